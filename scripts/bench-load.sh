#!/usr/bin/env bash
# Load benchmark of `hl7bridge serve` with the peers' load generator, using the method of
# /work/shared/peers/bench.sh (see RESULTS.md there) so the figures are comparable:
#   * servers pinned to CPU 0 (taskset -c 0, TOKIO_WORKER_THREADS=1), loadgen pinned to CPU 1;
#   * before every run, wait (bounded, ~10 min at most) until the machine is < 15 % busy;
#   * each configuration runs 3 times; the table gives the median msgs/s and the latency of the median run.
#   * in addition (not in bench.sh): the CPU time used by processes outside this script's process tree is
#     measured over each run. A run during which they used more than OTHER_MAX % of the machine (e.g. a
#     cargo build that started after the idle check) is printed and kept in the log but marked CONTAMINATED,
#     and the configuration is repeated (at most REPS extra attempts) until it has REPS clean runs.
#     Medians use the clean runs only; the table says how many runs were clean.
#
# Phases:
#   1. embedded store (SQLite WAL, fresh temp data dir): -c 1 -n 5000, -c 8 -n 20000, -c 8 -n 20000 --pipeline 16
#   2. Kafka backend: Tansu (memory storage) and hl7bridge both on CPU 0; -c 1 -n 3000, -c 8 -n 10000
#
# usage: scripts/bench-load.sh            (run from anywhere; takes ~5-15 min on an idle machine)
# env:   LOADGEN      loadgen binary          [/tmp/peers-build/target/release/loadgen]
#        TANSU        tansu binary            [~/.cargo/bin/tansu]
#        BRIDGE_PORT  MLLP port (127.0.0.1)   [27575]
#        KAFKA_PORT   Tansu port (127.0.0.1)  [29092]
#        REPS         clean runs per configuration  [3]
#        OTHER_MAX    max % of the machine used by other processes during a clean run  [5]
#        KEEP_WORK=1  keep the temp work dir (logs, data) instead of deleting it
# Only 127.0.0.1 is used. Every wait and loop is bounded. Everything started here is stopped by PID on exit.
set -u

HERE=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-/tmp/peers-build/target/release/loadgen}
TANSU=${TANSU:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}
BRIDGE_PORT=${BRIDGE_PORT:-27575}
KAFKA_PORT=${KAFKA_PORT:-29092}
REPS=${REPS:-3}
OTHER_MAX=${OTHER_MAX:-5}
HOST=127.0.0.1
M="--max-secs 120"

# Do not let a developer's HL7BRIDGE_* environment change the configuration under test.
for v in $(env | sed -n 's/^\(HL7BRIDGE_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export RUST_LOG=warn TOKIO_WORKER_THREADS=1

WORK=$(mktemp -d /tmp/hl7bridge-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
BRIDGE_PID="" TANSU_PID="" SAMPLER_PID=""

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 30 s, then SIGKILL. Only PIDs this script started.
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "   $name (pid $pid) did not stop within 30 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null; local rc=$?
  echo "   $name (pid $pid) stopped, exit status $rc"
}
cleanup() {
  trap - EXIT INT TERM
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
  stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
  stop_pid "$TANSU_PID" tansu; TANSU_PID=""
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

die() { echo "FATAL: $*"; exit 1; }

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

wait_port() { # wait_port PORT PID SECONDS
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    kill -0 "$2" 2>/dev/null || return 1
    ss -ltnH "sport = :$1" | grep -q LISTEN && return 0
    sleep 0.1
  done
  return 1
}

check_loopback_only() { # every listener on PORT must be on 127.0.0.1
  local addrs; addrs=$(ss -ltnH "sport = :$1" | awk '{print $4}' | tr '\n' ' ')
  echo "   listening sockets on :$1: $addrs"
  echo "$addrs" | tr ' ' '\n' | grep -v '^$' | grep -qv "^127\.0\.0\.1:" && die "a listener on :$1 is not on 127.0.0.1"
  return 0
}

PY=$(python3 -c 'import sys; print(sys.executable)') || { echo "FATAL: python3 is needed"; exit 1; }
other_ticks() { # CPU ticks (utime+stime+cutime+cstime) of all user processes outside this script's process tree
  "$PY" - "$$" <<'EOF'
import os, sys
me = int(sys.argv[1]); procs = {}
for p in os.listdir('/proc'):
    if not p.isdigit(): continue
    try: s = open(f'/proc/{p}/stat').read()
    except OSError: continue
    f = s[s.rindex(')') + 2:].split()
    procs[int(p)] = (int(f[1]), sum(int(x) for x in f[11:15]))
def ours(pid):
    for _ in range(64):
        if pid == me: return True
        if pid <= 1 or pid not in procs: return False
        pid = procs[pid][0]
    return False
print(sum(t for pid, (pp, t) in procs.items() if pid != 2 and pp != 2 and not ours(pid)))
EOF
}
HZ=$(getconf CLK_TCK)

busy_pct() { # whole-machine CPU busy % over 1 s (same as peers/bench.sh)
  local a b; a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local t=0 i; for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
  echo $(( 100 - 100 * (b[4] - a[4] + b[5] - a[5]) / t ))
}
idle_wait() { # bounded: at most ~10 min (120 samples)
  local k b
  for k in $(seq 1 120); do
    b=$(busy_pct); [ "$b" -lt 15 ] && { echo "   (machine busy ${b}% before run, waited ${k} samples)"; return; }
    sleep 4
  done
  echo "   WARNING: machine still ${b}% busy from other processes; results noisy"
}

start_bridge() { # start_bridge NAME EXTRA-ARGS...
  local name=$1; shift
  port_free "$BRIDGE_PORT" || die "port $BRIDGE_PORT is already in use"
  taskset -c 0 "$BRIDGE" serve --listen "$HOST:$BRIDGE_PORT" "$@" \
    > "$WORK/$name.stdout" 2> "$WORK/$name.stderr" &
  BRIDGE_PID=$!
  local i
  for i in $(seq 1 300); do   # bounded: 30 s
    grep -q "listening on" "$WORK/$name.stdout" 2>/dev/null && break
    kill -0 "$BRIDGE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "listening on" "$WORK/$name.stdout" 2>/dev/null; then
    echo "hl7bridge ($name) did not print 'listening on' within 30 s. stdout:"; cat "$WORK/$name.stdout"
    echo "stderr (tail):"; tail -n 30 "$WORK/$name.stderr"
    exit 1
  fi
  echo "== hl7bridge pid=$BRIDGE_PID (CPU affinity $(taskset -cp "$BRIDGE_PID" | awk '{print $NF}')): $(cat "$WORK/$name.stdout")"
  check_loopback_only "$BRIDGE_PORT"
}

rss_sampler() { # rss_sampler PID OUTFILE: peak VmRSS (kB) every 0.1 s, bounded to 300 s
  local pid=$1 out=$2 peak=0 r i
  for i in $(seq 1 3000); do
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || break
    [ -n "$r" ] || break
    [ "$r" -gt "$peak" ] && { peak=$r; echo "$peak" > "$out"; }
    sleep 0.1
  done
}

run_lg() { # run_lg BACKEND LOADGEN-ARGS...
  local backend=$1; shift
  kill -0 "$BRIDGE_PID" 2>/dev/null || { echo "   SKIPPED (hl7bridge is not running): loadgen $*"; return 1; }
  idle_wait
  echo "-- taskset -c 1 $LOADGEN --host $HOST --port $BRIDGE_PORT --label hl7bridge-$backend $* $M"
  local rssf="$WORK/rss.$$" rc o0 o1 t0 t1
  rm -f "$rssf"
  rss_sampler "$BRIDGE_PID" "$rssf" & SAMPLER_PID=$!
  o0=$(other_ticks); t0=$(date +%s%N)
  timeout 300 taskset -c 1 "$LOADGEN" --host "$HOST" --port "$BRIDGE_PORT" --label "hl7bridge-$backend" "$@" $M \
    > "$WORK/lg.out" 2>&1
  rc=$?
  t1=$(date +%s%N); o1=$(other_ticks)
  kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""
  cat "$WORK/lg.out"
  local peak; peak=$(cat "$rssf" 2>/dev/null || echo "?")
  # other processes' CPU over the run, as % of the whole machine (same scale as the busy % above)
  local other; other=$(( 100 * (o1 - o0) * 1000000000 / HZ / ((t1 - t0) * $(nproc)) ))
  local clean=true; [ "$other" -gt "$OTHER_MAX" ] && clean=false
  echo "   loadgen exit status $rc; hl7bridge peak VmRSS during run: ${peak} kB; other processes used ${other}% of the machine during the run$($clean || echo " -> CONTAMINATED (> ${OTHER_MAX}%), not used for the median")"
  grep '^JSON ' "$WORK/lg.out" | sed "s/^JSON {/{\"backend\":\"$backend\",\"rss_kb\":\"$peak\",\"other_pct\":$other,\"clean\":$clean,/" >> "$RESULTS"
  LAST_CLEAN=$clean
  if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
    echo "   hl7bridge EXITED during the run; stderr tail:"; tail -n 30 "$WORK/$backend.stderr"
  fi
}

run_config() { # run_config BACKEND ARGS...: REPS clean runs, at most 2*REPS attempts
  local good=0 a
  for a in $(seq 1 $(( 2 * REPS ))); do
    LAST_CLEAN=false
    run_lg "$@" || return 1
    $LAST_CLEAN && good=$((good + 1))
    [ "$good" -ge "$REPS" ] && return 0
  done
  echo "   WARNING: only $good clean runs of '$*' after $(( 2 * REPS )) attempts"
}

# ---------------------------------------------------------------------------------------------
[ -x "$LOADGEN" ] || die "loadgen not found at $LOADGEN (build it: cp -r /work/shared/peers /tmp/peers-build && cargo build --release -p loadgen)"
[ -x "$HERE/target/release/hl7bridge" ] || die "no $HERE/target/release/hl7bridge (cargo build --release)"
# Run a private copy, so a concurrent `cargo build` cannot replace the binary mid-benchmark.
BRIDGE=$WORK/hl7bridge
cp "$HERE/target/release/hl7bridge" "$BRIDGE"
cd "$WORK" || die "cd $WORK"

echo "# hl7bridge load benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host: $(nproc) CPUs, $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "hl7bridge: $HERE/target/release/hl7bridge (mtime $(date -u -r "$HERE/target/release/hl7bridge" '+%F %T'), sha256 $(sha256sum "$BRIDGE" | cut -c1-16)); git $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)$(git -C "$HERE" status --porcelain 2>/dev/null | grep -q . && echo ' (working tree has uncommitted changes)')"
echo "loadgen: $LOADGEN (sha256 $(sha256sum "$LOADGEN" | cut -c1-16)); work dir: $WORK"
echo "data dir filesystem: $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}')"
echo "env: RUST_LOG=$RUST_LOG TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS; servers on CPU 0, loadgen on CPU 1"

# ---- phase 1: embedded store ----------------------------------------------------------------
echo
echo "## embedded store"
start_bridge embedded --data-dir "$WORK/data-embedded"
run_config embedded -c 1 -n 5000
run_config embedded -c 8 -n 20000
run_config embedded -c 8 -n 20000 --pipeline 16
[ -n "$BRIDGE_PID" ] && kill -0 "$BRIDGE_PID" 2>/dev/null && \
  echo "   hl7bridge VmHWM (peak RSS over its whole life): $(awk '/^VmHWM:/{print $2" "$3}' /proc/$BRIDGE_PID/status)"
stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
echo "   data dir size: $(du -sh "$WORK/data-embedded" 2>/dev/null | cut -f1); stderr lines: $(wc -l < "$WORK/embedded.stderr")"
tail -n 5 "$WORK/embedded.stderr" | sed 's/^/   stderr: /'
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/data-embedded"

# ---- phase 2: Kafka (Tansu, memory storage) ---------------------------------------------------
echo
echo "## Kafka backend (Tansu memory storage, on CPU 0 with hl7bridge)"
if [ ! -x "$TANSU" ]; then
  echo "SKIPPED: tansu not found at $TANSU"
else
  port_free "$KAFKA_PORT" || die "port $KAFKA_PORT is already in use"
  echo "tansu: $TANSU ($("$TANSU" --version 2>/dev/null | head -1))"
  taskset -c 0 "$TANSU" broker --listener-url "tcp://$HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" --storage-engine memory://tansu/ \
    > "$WORK/tansu.log" 2>&1 &
  TANSU_PID=$!
  if ! wait_port "$KAFKA_PORT" "$TANSU_PID" 15; then
    echo "tansu did not listen on $KAFKA_PORT within 15 s; log tail:"; tail -n 30 "$WORK/tansu.log"; exit 1
  fi
  echo "== tansu pid=$TANSU_PID (CPU affinity $(taskset -cp "$TANSU_PID" | awk '{print $NF}'))"
  check_loopback_only "$KAFKA_PORT"
  echo "-- hl7bridge topics create --kafka-brokers $HOST:$KAFKA_PORT --partitions 6 --replication-factor 1"
  timeout 60 taskset -c 0 "$BRIDGE" topics create --kafka-brokers "$HOST:$KAFKA_PORT" \
    --partitions 6 --replication-factor 1 2>&1 | tail -n 20
  rc=${PIPESTATUS[0]}
  echo "   topics create exit status $rc"
  if [ "$rc" -ne 0 ]; then
    echo "   topics create FAILED; tansu log tail:"; tail -n 20 "$WORK/tansu.log"
  else
    start_bridge kafka --kafka-brokers "$HOST:$KAFKA_PORT" --data-dir "$WORK/data-kafka"
    run_config kafka -c 1 -n 3000
    run_config kafka -c 8 -n 10000
    stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
    echo "   hl7bridge (kafka) stderr lines: $(wc -l < "$WORK/kafka.stderr")"
    tail -n 5 "$WORK/kafka.stderr" | sed 's/^/   stderr: /'
  fi
  stop_pid "$TANSU_PID" tansu; TANSU_PID=""
fi

# ---- summary -----------------------------------------------------------------------------------
echo
echo "## Medians (clean runs only; p50/p99 from the median-throughput run; errors summed over ALL runs incl. contaminated)"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows, allrows = {}, {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    k = (d["backend"], d["mode"], d["conns"], d["n"])
    allrows.setdefault(k, []).append(d)
    rows.setdefault(k, [])
    if d["clean"]:
        rows[k].append(d)
print("| backend | mode | connections | N | clean runs / all runs | msgs/s (median) | min–max msgs/s | p50 ms | p99 ms | errors | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (b, mode, c, n), rs in list(rows.items()):
    if not rs:
        print(f"| {b} | {mode} | {c} | {n} | 0 / {len(allrows[(b, mode, c, n)])} | no clean run | | | | | |")
        del rows[(b, mode, c, n)]
        continue
    tp = [r["msgs_per_s"] for r in rs]
    med = statistics.median(tp)
    mid = min(rs, key=lambda r: abs(r["msgs_per_s"] - med))
    errs = sum(r["errors"] for r in allrows[(b, mode, c, n)])
    rss = [int(r["rss_kb"]) for r in rs if str(r["rss_kb"]).isdigit()]
    rss_s = f"{max(rss)/1024:.1f}" if rss else "?"
    print(f"| {b} | {mode} | {c} | {n} | {len(rs)} / {len(allrows[(b, mode, c, n)])} | {med:,.0f} | {min(tp):,.0f}–{max(tp):,.0f} | "
          f"{mid['p50_ms']:.3f} | {mid['p99_ms']:.3f} | {errs} | {rss_s} |")
med = {k: statistics.median(r["msgs_per_s"] for r in v) for k, v in rows.items()}
e1 = [v for (b, m, c, n), v in med.items() if b == "embedded" and m == "ping-pong" and c == 1]
e8 = [v for (b, m, c, n), v in med.items() if b == "embedded" and m == "ping-pong" and c == 8]
if e1 and e8:
    print(f"\nembedded ping-pong C=8 / C=1 throughput ratio: {e8[0]/e1[0]:.2f}x (design target >= 4x)")
EOF
echo
echo "# done $(date -u '+%H:%M:%S UTC')"
