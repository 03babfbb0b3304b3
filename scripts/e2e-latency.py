#!/usr/bin/env python3
"""End-to-end latency: from a raw message's `bridge.received_at` to its FHIR
records being visible to a reader (committed), measured by a reader that
polls the FHIR topics.

    scripts/e2e-latency.py --sqlite DATA_DIR/hl7bridge.db --seconds 30
    scripts/e2e-latency.py --kafka 127.0.0.1:19092 --seconds 30   # needs confluent-kafka
    scripts/e2e-latency.py --kafka 127.0.0.1:19092 --seconds 120 --expect 20000

One latency per raw message (the first FHIR record seen for its source
coordinates). Prints count, p50, p90, p99 and max in milliseconds, as JSON.
The reader polls every millisecond, so figures include up to 1 ms of polling.

--expect N: stop as soon as N raw messages have FHIR records, and also print
`last_at` (epoch seconds at which the N-th became visible): the whole pipeline's
end, for a run of N messages (bounded by --seconds all the same).

On Kafka the reader's `fetch.wait.max.ms` is 1 ms by default: Tansu 0.6 holds
a fetch for the full wait even when records are there, so the wait adds to
every figure. Each fetch costs the broker CPU, though (about 1,000 fetch
requests a second), so `--fetch-wait-ms` can trade one for the other.
"""
import argparse, datetime, json, sqlite3, sys, time


def received_ms(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else None


def from_sqlite(path, seconds, expect=None):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    last = db.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]
    seen, lat = set(), []
    end = time.time() + seconds
    while time.time() < end:
        rows = db.execute(
            "SELECT id, topic, headers FROM records WHERE id > ? ORDER BY id", (last,)
        ).fetchall()
        now = time.time() * 1000.0
        for rid, topic, headers in rows:
            last = rid
            if not topic.startswith("fhir.") or topic.endswith("dlq"):
                continue
            h = dict(headers and json.loads(headers) or [])
            src = (h.get("source.topic"), h.get("source.partition"), h.get("source.offset"))
            if src in seen or "bridge.received_at" not in h:
                continue
            seen.add(src)
            lat.append(now - received_ms(h["bridge.received_at"]))
        if expect and len(lat) >= expect:
            break
        time.sleep(0.001)
    return lat


def from_kafka(brokers, seconds, expect=None, fetch_wait_ms=1):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"e2e-{time.time()}",
                  "client.id": "e2e-latency", "auto.offset.reset": "latest",
                  "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms})
    c.subscribe(["fhir.encounter", "fhir.observation"])
    seen, lat = set(), []
    end = time.time() + seconds
    while time.time() < end:
        m = c.poll(0.05)
        if m is None or m.error():
            continue
        now = time.time() * 1000.0
        h = {k: v.decode() for k, v in (m.headers() or [])}
        src = (h.get("source.topic"), h.get("source.partition"), h.get("source.offset"))
        if src in seen or "bridge.received_at" not in h:
            continue
        seen.add(src)
        lat.append(now - received_ms(h["bridge.received_at"]))
        if expect and len(lat) >= expect:
            break
    c.close()
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sqlite")
    ap.add_argument("--kafka")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--expect", type=int)
    ap.add_argument("--fetch-wait-ms", type=int, default=1)
    a = ap.parse_args()
    if a.sqlite:
        lat = from_sqlite(a.sqlite, a.seconds, a.expect)
    else:
        lat = from_kafka(a.kafka, a.seconds, a.expect, a.fetch_wait_ms)
    print(json.dumps({"count": len(lat), "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90),
                      "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else None,
                      "last_at": time.time() if a.expect and len(lat) >= a.expect else None}))


if __name__ == "__main__":
    sys.exit(main())
