#!/usr/bin/env python3
"""Cross-check the Kafka backend with a client this project did not write.

Sends fixtures (raw bytes, MLLP-framed) to a running `hl7bridge serve --kafka-brokers ...`,
then reads the topics with Confluent's Python client (confluent-kafka, its own librdkafka)
and checks topic, key, partition == Java murmur2(key) % partitions, headers and exact bytes.

    pip install confluent-kafka
    python3 scripts/check-with-confluent.py --mllp 127.0.0.1:2575 --brokers 127.0.0.1:19092 fixtures/*.hl7

With --registry URL it also registers a schema through Confluent's SchemaRegistryClient and reads
it back (pip install confluent-kafka authlib httpx cachetools attrs).
"""
import argparse, json, socket, sys, uuid

from confluent_kafka import Consumer, TopicPartition


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2, as a signed 32-bit int."""
    m, r, length = 0x5BD1E995, 24, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[length - rest:]
    if rest >= 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def send(addr, payload: bytes) -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.sendall(b"\x0b" + payload + b"\x1c\x0d")
        buf = b""
        try:
            while not buf.endswith(b"\x1c\x0d"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            pass  # enhanced mode NE/ER: no ACK is the right answer
    return buf.strip(b"\x0b\x1c\x0d")


def check_registry(url) -> int:
    """Register a schema with Confluent's own registry client, fetch it back by id and as latest."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": url})
    subject = "check-" + uuid.uuid4().hex + "-value"
    text = json.dumps({"type": "record", "name": "Check", "fields": [{"name": "a", "type": "string"}]})
    schema_id = client.register_schema(subject, Schema(text, "AVRO"))
    problems = 0
    if client.register_schema(subject, Schema(text, "AVRO")) != schema_id:
        print(f"registry: re-registering {subject} gave a new id"); problems += 1
    if json.loads(client.get_schema(schema_id).schema_str) != json.loads(text):
        print(f"registry: schema {schema_id} read back differs"); problems += 1
    latest = client.get_latest_version(subject)
    if (latest.schema_id, latest.version) != (schema_id, 1):
        print(f"registry: latest of {subject} is id {latest.schema_id} v{latest.version}"); problems += 1
    if not problems:
        print(f"ok registry {url}: {subject} -> id {schema_id}, version 1")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mllp", required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--registry", help="schema registry URL to check with SchemaRegistryClient")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    assert murmur2(b"21") == -973932308 and murmur2(b"foobar") == -790332482, "murmur2 self-check"
    registry_problems = check_registry(a.registry) if a.registry else 0

    sent = {}
    for f in a.files:
        raw = open(f, "rb").read()
        if raw.lstrip(b"\xef\xbb\xbf").startswith((b"FHS", b"BHS")):
            continue  # batches are split by the bridge; checked by the Rust suite
        ack = send(a.mllp, raw)
        code = ack.split(b"MSA")[1][1:3].decode() if b"MSA" in ack else "none"
        sent[raw] = (f, code)

    c = Consumer({"bootstrap.servers": a.brokers, "group.id": "check-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found, problems = {}, 0
    for topic in ["hl7v2.adt", "hl7v2.oru", "hl7v2.orm", "hl7v2.dlq"]:
        md = c.list_topics(topic, timeout=10).topics[topic]
        n = len(md.partitions)
        parts = [TopicPartition(topic, p, 0) for p in md.partitions]
        c.assign(parts)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
        remaining = sum(ends.values())
        while remaining > 0:
            msg = c.poll(5)
            if msg is None:
                break
            if msg.error():
                print("error:", msg.error()); problems += 1; break
            remaining -= 1
            key = msg.key()
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            if key is not None and msg.partition() != (murmur2(key) & 0x7FFFFFFF) % n:
                print(f"{topic}/{msg.partition()}@{msg.offset()}: partition != murmur2(key) % {n}"); problems += 1
            if msg.value() in sent:
                f, code = sent[msg.value()]
                found[msg.value()] = (topic, code, headers.get("hl7.control_id"), key)
    c.close()
    for raw, (f, code) in sent.items():
        if raw not in found:
            print(f"{f}: ACK {code} but its exact bytes are not on any topic"); problems += 1
        else:
            topic, _, cid, key = found[raw]
            print(f"ok {f}: ACK {code} -> {topic}, key={key.decode() if key else None}, hl7.control_id={cid}")
    problems += registry_problems
    print(f"{len(found)}/{len(sent)} messages found byte-identical; {problems} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
