#!/usr/bin/env python3
"""Counts Kafka protocol requests per client and API, as a TCP proxy in front of one broker.

    scripts/kafka-requests.py --listen 127.0.0.1:29093 --broker 127.0.0.1:29092

Start the broker with `--advertised-listener-url tcp://<listen>`, so clients that
bootstrap through the proxy keep using it. Every client-to-broker frame is a request:
its header gives the API key and the client.id (`-X client.id=...` tells processes
apart). On SIGUSR1 the counts so far are printed as one JSON line
(`{"client.id": {"Produce": n, "Fetch": n, ...}}`); a benchmark takes the difference
of two snapshots. Only counts and API names are printed, never payloads.

Bounded: at most MAX_CONNS connections; a frame larger than MAX_FRAME closes its
connection (Kafka's own default limit is 100 MiB).
"""
import argparse, asyncio, collections, json, signal, struct, sys

MAX_CONNS = 256
MAX_FRAME = 100 * 1024 * 1024
API = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
       9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
       13: "LeaveGroup", 14: "SyncGroup", 18: "ApiVersions", 19: "CreateTopics",
       22: "InitProducerId", 32: "DescribeConfigs"}

counts = collections.defaultdict(collections.Counter)
conns = 0


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def requests(reader, writer):
    """Client to broker: frame by frame, counting each request."""
    try:
        while True:
            head = await reader.readexactly(4)
            (size,) = struct.unpack(">i", head)
            if size < 8 or size > MAX_FRAME:
                break
            body = await reader.readexactly(size)
            api_key, _ver, _corr, id_len = struct.unpack(">hhih", body[:10])
            client = body[10:10 + id_len].decode("utf-8", "replace") if id_len > 0 else "-"
            counts[client][API.get(api_key, f"api{api_key}")] += 1
            writer.write(head + body)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(host, port, bhost, bport):
    async def accept(cr, cw):
        global conns
        if conns >= MAX_CONNS:
            cw.close()
            return
        conns += 1
        try:
            br, bw = await asyncio.wait_for(asyncio.open_connection(bhost, bport), 10)
        except (OSError, asyncio.TimeoutError):
            conns -= 1
            cw.close()
            return
        await asyncio.gather(requests(cr, bw), pipe(br, cw))
        conns -= 1

    server = await asyncio.start_server(accept, host, port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(counts), flush=True))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()
    print(json.dumps(counts), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--broker", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    bhost, bport = a.broker.rsplit(":", 1)
    asyncio.run(serve(host, int(port), bhost, int(bport)))


if __name__ == "__main__":
    sys.exit(main())
