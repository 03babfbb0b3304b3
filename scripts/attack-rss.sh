#!/usr/bin/env bash
# Hostile-peer check for the MLLP listener: runs the release bridge on
# loopback, attacks it in phases, samples its RSS from /proc, and checks after
# every phase that a real sender still gets AA.
#
#   scripts/attack-rss.sh            # N=1000 connections per phase
#   N=300 scripts/attack-rss.sh      # lighter
#
# Phases (plain TCP listener, then a TLS listener):
#   idle        N connections that never send a byte
#   cap         max_connections + 100 connections: the surplus must be refused
#   slowloris   N connections dripping one byte every 2 s into an open frame,
#               held until frame_timeout (20 s here) cuts them
#   partial     N connections that send a 60 KiB partial frame and stall
#   oversize    100 concurrent 4 MiB frames (limit 1 MiB): AR 104 and close
#   junk        50 concurrent floods of 32 MiB of bytes outside any frame
#   tls-stall   N TCP connections to the TLS listener that never say hello,
#               held until tls.handshake_timeout (10 s here) cuts them
#   tls-idle    N completed TLS sessions, idle
#
# Only 127.0.0.1 is used; every loop is bounded; the bridges are stopped at
# the end. Needs python3 and openssl. Prints a table: RSS before, peak and
# after each phase (MiB), and what the bridge did.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-1000}
BIN=${BIN:-target/release/hl7bridge}
if [[ ! -x $BIN ]]; then
  cargo build --release --bin hl7bridge
fi
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.pem" 2>/dev/null

start_bridge() { # name, extra args...
  local name=$1; shift
  "$BIN" serve --listen 127.0.0.1:0 --metrics-listen "" --registry-listen "" \
    --data-dir "$WORK/$name-data" --frame-timeout 20s --idle-timeout 15m \
    --max-connections 1024 --max-message-bytes 1MiB "$@" \
    >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    grep -q "listening on" "$WORK/$name.stdout" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$WORK/$name.stdout" || { echo "$name did not start"; cat "$WORK/$name.stderr"; exit 1; }
}

start_bridge plain
PLAIN_PID=${PIDS[-1]}
PLAIN_ADDR=$(awk '{print $4; exit}' "$WORK/plain.stdout")
start_bridge tls --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" --tls-handshake-timeout 10s
TLS_PID=${PIDS[-1]}
TLS_ADDR=$(awk '{print $4; exit}' "$WORK/tls.stdout")

python3 - "$N" "$PLAIN_PID" "$PLAIN_ADDR" "$TLS_PID" "$TLS_ADDR" "$WORK/server.pem" <<'PY'
import socket, ssl, sys, threading, time

N = int(sys.argv[1])
PLAIN_PID, PLAIN = int(sys.argv[2]), sys.argv[3]
TLS_PID, TLS = int(sys.argv[4]), sys.argv[5]
CA = sys.argv[6]
MAX_CONNECTIONS = 1024

def addr(a):
    h, p = a.rsplit(":", 1)
    return (h, int(p))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

class Sampler:
    """Samples a process's RSS every 50 ms; keeps the peak."""
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss_kib(pid), False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)
    def done(self):
        self.stop = True
        self.t.join()
        return self.peak

def frame(b):
    return b"\x0b" + b + b"\x1c\x0d"

def adt(cid, fac="TESTFAC"):
    return (f"MSH|^~\\&|ATTACK|{fac}|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
            f"PID|1||M1^^^GENHOSP^MR||TESTPATIENT^ALPHA\rPV1|1|I\r").encode()

def read_frame(s, timeout=15):
    s.settimeout(timeout)
    buf = b""
    while b"\x1c\x0d" not in buf:
        c = s.recv(65536)
        if not c:
            return None
        buf += c
    return buf

def msa(ack):
    if not ack:
        return None
    for seg in ack.strip(b"\x0b\x1c\r").split(b"\r"):
        if seg.startswith(b"MSA"):
            return seg.split(b"|")[1].decode()
    return None

def connect(a, tls=None):
    s = socket.create_connection(addr(a), timeout=15)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        s = tls.wrap_socket(s, server_hostname="localhost")
    return s

def alive(a, tls=None, tag="LIVE"):
    """A real sender still gets AA (retries while slots free up)."""
    for _ in range(100):
        try:
            s = connect(a, tls)
            s.sendall(frame(adt(f"{tag}{time.time_ns() % 10**9}")))
            code = msa(read_frame(s))
            s.close()
            if code:
                return code
        except OSError:
            pass
        time.sleep(0.2)
    return "none"

def closed_by_server(s, wait=0.0):
    s.settimeout(wait if wait > 0 else 0.001)
    try:
        return s.recv(1024) == b""
    except socket.timeout:
        return False
    except OSError:
        return True

def wait_all_closed(socks, limit):
    deadline = time.time() + limit
    open_ = list(socks)
    while open_ and time.time() < deadline:
        open_ = [s for s in open_ if not closed_by_server(s)]
        if open_:
            time.sleep(0.5)
    return len(socks) - len(open_)

def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass

rows = []

def phase(name, pid, a, body, tls=None):
    before = rss_kib(pid)
    smp = Sampler(pid)
    note = body()
    time.sleep(0.5)
    peak = smp.done()
    time.sleep(2)
    after = rss_kib(pid)
    live = alive(a, tls)
    rows.append((name, before, peak, after, live, note))
    print(f"{name:<10} before {before/1024:6.1f} MiB  peak {peak/1024:6.1f}  after {after/1024:6.1f}  live {live}  {note}", flush=True)

def idle():
    socks = [connect(PLAIN) for _ in range(N)]
    time.sleep(5)
    held = sum(1 for s in socks if not closed_by_server(s))
    close_all(socks)
    return f"{held}/{N} held open"

def cap():
    n = MAX_CONNECTIONS + 100
    socks = [connect(PLAIN) for _ in range(n)]
    time.sleep(2)
    refused = sum(1 for s in socks if closed_by_server(s, 0.01))
    close_all(socks)
    return f"{refused}/{n} refused (cap {MAX_CONNECTIONS})"

def slowloris():
    socks = []
    for _ in range(N):
        s = connect(PLAIN)
        s.sendall(b"\x0bMSH|")
        socks.append(s)
    t0 = time.time()
    writes = 0
    # One byte per connection every 2 s, until frame_timeout (20 s) cuts them.
    while time.time() - t0 < 40:
        alive_socks = 0
        for s in socks:
            try:
                s.send(b"X")
                writes += 1
                alive_socks += 1
            except OSError:
                pass
        if alive_socks == 0:
            break
        time.sleep(2)
    cut = wait_all_closed(socks, 10)
    close_all(socks)
    return f"{cut}/{N} cut by frame_timeout after {time.time()-t0:.0f} s, {writes} drip writes"

def partial():
    socks = []
    chunk = b"\x0bMSH|^~\\&|" + b"P" * (60 * 1024)
    for _ in range(N):
        s = connect(PLAIN)
        s.sendall(chunk)
        socks.append(s)
    time.sleep(5)
    held = sum(1 for s in socks if not closed_by_server(s))
    close_all(socks)
    return f"{held}/{N} x 60 KiB partial frames held"

def oversize():
    results = []
    big = frame(adt("BIG") + b"X" * (4 << 20))
    def one():
        try:
            s = connect(PLAIN)
            try:
                s.sendall(big)
            except OSError:
                pass
            results.append(msa(read_frame(s)))
            s.close()
        except OSError:
            results.append(None)
    ts = [threading.Thread(target=one) for _ in range(100)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return f"{results.count('AR')}/100 got AR (4 MiB frames, limit 1 MiB)"

def junk():
    sent = []
    blob = b"J" * (1 << 20)
    def one():
        s = connect(PLAIN)
        n = 0
        try:
            for _ in range(32):
                s.sendall(blob)
                n += len(blob)
            s.sendall(frame(adt("AFTERJUNK")))
            sent.append(msa(read_frame(s)))
        except OSError:
            sent.append(None)
        s.close()
    ts = [threading.Thread(target=one) for _ in range(50)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return f"50 x 32 MiB junk; {sent.count('AA')}/50 then got AA on the same connection"

ctx = ssl.create_default_context(cafile=CA)

def tls_stall():
    socks = [connect(TLS) for _ in range(N)]
    time.sleep(5)
    held = sum(1 for s in socks if not closed_by_server(s))
    cut = wait_all_closed(socks, 20)
    close_all(socks)
    return f"{held}/{N} held during handshake wait, {cut}/{N} cut by handshake_timeout"

def tls_idle():
    socks = [connect(TLS, ctx) for _ in range(N)]
    time.sleep(5)
    close_all(socks)
    return f"{N} TLS sessions idle"

start_plain = rss_kib(PLAIN_PID)
print(f"plain bridge pid {PLAIN_PID} RSS at start {start_plain/1024:.1f} MiB; warm-up: {alive(PLAIN)}", flush=True)
for name, body in [("idle", idle), ("cap", cap), ("slowloris", slowloris),
                   ("partial", partial), ("oversize", oversize), ("junk", junk)]:
    phase(name, PLAIN_PID, PLAIN, body)
time.sleep(5)
end_plain = rss_kib(PLAIN_PID)

start_tls = rss_kib(TLS_PID)
print(f"tls bridge pid {TLS_PID} RSS at start {start_tls/1024:.1f} MiB; warm-up: {alive(TLS, ctx)}", flush=True)
for name, body in [("tls-stall", tls_stall), ("tls-idle", tls_idle)]:
    phase(name, TLS_PID, TLS, body, ctx)
time.sleep(5)
end_tls = rss_kib(TLS_PID)

peak_plain = max(r[2] for r in rows if not r[0].startswith("tls"))
peak_tls = max(r[2] for r in rows if r[0].startswith("tls"))
print()
print("| phase | RSS before | peak | after | real sender after | what happened |")
print("|---|---|---|---|---|---|")
for name, b, p, a, live, note in rows:
    print(f"| {name} | {b/1024:.1f} MiB | {p/1024:.1f} MiB | {a/1024:.1f} MiB | {live} | {note} |")
print()
print(f"plain listener: start {start_plain/1024:.1f} MiB, peak {peak_plain/1024:.1f} MiB, end {end_plain/1024:.1f} MiB")
print(f"TLS listener:   start {start_tls/1024:.1f} MiB, peak {peak_tls/1024:.1f} MiB, end {end_tls/1024:.1f} MiB")
bad = [r for r in rows if r[4] != "AA"]
sys.exit(1 if bad else 0)
PY
echo "bridge stderr lines mentioning refusals/handshakes:"
echo "  plain: connection refused x $(grep -c "connection refused" "$WORK/plain.stderr" || true)"
echo "  tls: handshake failed x $(grep -c "TLS handshake failed" "$WORK/tls.stderr" || true)"
