#!/usr/bin/env python3
"""Cross-check the Kafka backend with clients this project did not write.

Sends fixtures with python-hl7's `mllp_send` to a running `hl7bridge serve --kafka-brokers ...`,
then reads the topics with Confluent's Python client (confluent-kafka, its own librdkafka):

- raw topics: topic, key, partition == Java murmur2(key) % partitions, and the exact bytes sent;
- FHIR topics (--fhir-topic, given by the caller from the bridge's own list): each record through
  Confluent's DeserializingConsumer + AvroDeserializer + SchemaRegistryClient against the bridge's
  registry (--registry). Its key is the patient key of the raw record it came from, its partition is
  murmur2(key) % partitions, and the decoded value, nulls dropped, validates against the FHIR R4
  JSON Schema (--fhir-schema) definition of its resourceType. It prints the records per topic.

The packages come from scripts/pyenv.sh (target/pyenv); `tests/confluent_client.rs` runs this in
the suite. By hand, against a running bridge and `transform`:

    scripts/pyenv.sh
    target/pyenv/bin/python scripts/check-with-confluent.py --mllp 127.0.0.1:2575 --send-only fixtures/*.hl7
    target/pyenv/bin/python scripts/check-with-confluent.py --brokers 127.0.0.1:19092 \\
        --registry http://127.0.0.1:2576 --fhir-topic fhir.observation fixtures/*.hl7

With --mllp and without --send-only it sends, then checks at once (raw topics only make sense
then: the stage may not have caught up).
"""
import argparse, json, os, subprocess, sys, tempfile, uuid

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
RAW_TOPICS = ["hl7v2.adt", "hl7v2.oru", "hl7v2.orm", "hl7v2.dlq"]
# A topic read to its end is done after this many empty one-second polls in a row.
EMPTY_POLLS = 3


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


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def as_sent(raw: bytes) -> bytes:
    """What mllp_send puts in the frame: it strips start blocks and CRs from both ends."""
    return raw.strip(SB + CR)


def mllp_send_path() -> str:
    """python-hl7's `mllp_send`, beside this interpreter (the venv) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mllp_send")
    return beside if os.path.exists(beside) else "mllp_send"


def send(addr: str, raw: bytes) -> str:
    """Sends one fixture as one frame with python-hl7's mllp_send; returns MSA-1 or "none".

    mllp_send reads MLLP frames from a file. A message in enhanced mode NE/ER gets no ACK: the
    bridge closes the idle connection (serve's --idle-timeout) and mllp_send prints nothing."""
    host, port = addr.rsplit(":", 1)
    with tempfile.NamedTemporaryFile(suffix=".mllp") as f:
        f.write(SB + raw + EB + CR)
        f.flush()
        out = subprocess.run([mllp_send_path(), "--port", port, "--file", f.name, host],
                             capture_output=True, timeout=120, check=True).stdout
    return out.split(b"MSA")[1][1:3].decode() if b"MSA" in out else "none"


def read_topic(consumer, topic: str, expect=None):
    """Every record of `topic` from the start: `expect` of them, or (without it) until
    EMPTY_POLLS polls in a row came back empty. Not up to the high watermarks: Tansu 0.6 reports
    the last batch's base offset + 1, too low after a batch of several records (a batch file's
    messages, the stage's outputs)."""
    from confluent_kafka import TopicPartition

    md = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(md.partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    records, empty = [], 0
    while (expect is None or len(records) < expect) and empty < EMPTY_POLLS:
        msg = consumer.poll(1)
        if msg is None:
            empty += 1
            continue
        if msg.error():
            raise RuntimeError(f"{topic}: {msg.error()}")
        empty = 0
        records.append(msg)
    return records, len(parts)


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


def drop_nulls(v):
    """What a generic consumer writing JSON does with Avro's nulls: leaves them out."""
    if isinstance(v, dict):
        return {k: drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [drop_nulls(x) for x in v if x is not None]
    return v


class FhirValidator:
    """The FHIR R4 JSON Schema, one validator per resourceType definition."""

    def __init__(self, path):
        import jsonschema

        self.full = json.load(open(path))
        self.jsonschema = jsonschema
        self.by_type = {}

    def errors(self, resource):
        rt = resource.get("resourceType")
        if rt not in self.full["definitions"]:
            return [f"resourceType {rt!r} is not an R4 resource"]
        if rt not in self.by_type:
            schema = {"$schema": self.full["$schema"], "definitions": self.full["definitions"],
                      "$ref": f"#/definitions/{rt}"}
            self.by_type[rt] = self.jsonschema.Draft6Validator(schema)
        # Paths and validators only: messages would quote patient data.
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.validator}"
                for e in self.by_type[rt].iter_errors(resource)]


def numeric_values(v) -> int:
    """The `value` members that arrive as JSON numbers (the decimals)."""
    if isinstance(v, dict):
        return sum((k == "value" and isinstance(x, (int, float)) and not isinstance(x, bool))
                   + numeric_values(x) for k, x in v.items())
    if isinstance(v, list):
        return sum(numeric_values(x) for x in v)
    return 0


def check_fhir(brokers, registry, topics, expected, schema_path, raw_keys) -> int:
    from confluent_kafka import DeserializingConsumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import StringDeserializer

    validator = FhirValidator(schema_path)
    c = DeserializingConsumer({
        "bootstrap.servers": brokers, "group.id": "check-" + uuid.uuid4().hex,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "key.deserializer": StringDeserializer("utf_8"),
        "value.deserializer": AvroDeserializer(SchemaRegistryClient({"url": registry})),
    })
    problems = 0
    for topic in topics:
        records, n = read_topic(c, topic, expected.get(topic))
        numeric, companions, invalid = 0, 0, 0
        for msg in records:
            where = f"{topic}/{msg.partition()}@{msg.offset()}"
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            key = msg.key().encode() if msg.key() is not None else None
            source = (headers.get("source.topic"), headers.get("source.partition"),
                      headers.get("source.offset"))
            if source not in raw_keys:
                print(f"{where}: no raw record at its source.* coordinates"); problems += 1
            elif key != raw_keys[source]:
                print(f"{where}: the key is not the patient key of its raw record"); problems += 1
            elif key is not None and msg.partition() != partition_of(key, n):
                print(f"{where}: partition != murmur2(key) % {n}"); problems += 1
            elif key is None and str(msg.partition()) != source[1]:
                print(f"{where}: a null key, on another partition than its raw record"); problems += 1
            resource = drop_nulls(msg.value())
            if resource.get("resourceType") != headers.get("fhir.resource_type"):
                print(f"{where}: resourceType differs from the fhir.resource_type header"); problems += 1
            errors = validator.errors(resource)
            for e in errors:
                print(f"{where}: not FHIR R4: {e}"); problems += 1
            invalid += bool(errors)
            numeric += numeric_values(resource)
            companions += json.dumps(resource).count('"_value"')
        if topic in expected and len(records) != expected[topic]:
            print(f"{topic}: {len(records)} records read, {expected[topic]} expected"); problems += 1
        print(f"{topic}: {len(records)} records, {len(records) - invalid} FHIR R4 valid; {numeric} numeric values, "
              f"{companions} _value companions")
    c.close()
    return problems


def topic_counts(args):
    """`TOPIC[=N]` arguments as (topic, N or None)."""
    out = []
    for t in args:
        name, _, n = t.partition("=")
        out.append((name, int(n) if n else None))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mllp", help="send the files to this MLLP address first")
    ap.add_argument("--send-only", action="store_true", help="send, print the ACK codes, stop")
    ap.add_argument("--brokers")
    ap.add_argument("--registry", help="schema registry URL: checked with SchemaRegistryClient, "
                                       "and used to decode the FHIR topics")
    ap.add_argument("--raw-topic", action="append", default=[], metavar="TOPIC[=N]",
                    help="a raw topic to read (repeatable) [default: %s]; N: records expected"
                         % ",".join(RAW_TOPICS))
    ap.add_argument("--fhir-topic", action="append", default=[], metavar="TOPIC[=N]",
                    help="a FHIR topic to decode and validate (repeatable); N: records expected")
    ap.add_argument("--fhir-schema", default=os.path.join(os.path.dirname(__file__), "..",
                                                          "tests", "fhir", "fhir.r4.schema.json"))
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    assert murmur2(b"21") == -973932308 and murmur2(b"foobar") == -790332482, "murmur2 self-check"

    sent, acks = {}, {}
    for f in a.files:
        raw = open(f, "rb").read()
        # A batch is split into its messages by the bridge: its exact bytes are checked by the
        # Rust suite, not here.
        if not raw.lstrip(b"\xef\xbb\xbf").startswith((b"FHS", b"BHS")):
            sent[as_sent(raw)] = f
        if a.mllp:
            acks[f] = send(a.mllp, raw)
            print(f"sent {f} with mllp_send: ACK {acks[f]}")
    if a.send_only:
        return
    if not a.brokers:
        ap.error("--brokers is needed to check")
    if a.fhir_topic and not a.registry:
        ap.error("--fhir-topic needs --registry")
    problems = check_registry(a.registry) if a.registry else 0

    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": "check-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found, raw_keys = {}, {}
    for topic, expect in topic_counts(a.raw_topic or RAW_TOPICS):
        records, n = read_topic(c, topic, expect)
        if expect is not None and len(records) != expect:
            print(f"{topic}: {len(records)} records read, {expect} expected"); problems += 1
        for msg in records:
            key = msg.key()
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            raw_keys[(topic, str(msg.partition()), str(msg.offset()))] = key
            if key is not None and msg.partition() != partition_of(key, n):
                print(f"{topic}/{msg.partition()}@{msg.offset()}: partition != murmur2(key) % {n}"); problems += 1
            if msg.value() in sent:
                found[msg.value()] = (topic, headers.get("hl7.control_id"), key)
    c.close()
    for raw, f in sent.items():
        if raw not in found:
            print(f"{f}: ACK {acks.get(f, '?')} but its exact bytes are not on any topic"); problems += 1
        else:
            topic, cid, key = found[raw]
            print(f"ok {f}: -> {topic}, key={key.decode() if key else None}, hl7.control_id={cid}")
    print(f"{len(found)}/{len(sent)} messages found byte-identical")

    if a.fhir_topic:
        counts = topic_counts(a.fhir_topic)
        expected = {t: n for t, n in counts if n is not None}
        problems += check_fhir(a.brokers, a.registry, [t for t, _ in counts], expected,
                               a.fhir_schema, raw_keys)
    print(f"{problems} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
