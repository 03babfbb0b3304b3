# shellcheck shell=bash
# Shared functions of scripts/bench-load.sh and scripts/bench-e2e.sh. Source it; it runs nothing itself.
#
# Method (same as /work/shared/peers/bench.sh, so figures are comparable with ../shared/peers/RESULTS.md):
#   * servers pinned to CPU 0 (taskset -c 0, TOKIO_WORKER_THREADS=1), load generators pinned to CPU 1;
#   * before every run, wait (bounded, ~10 min at most) until the machine is < 15 % busy;
#   * over every run, the CPU time of processes outside the calling script's process tree is measured.
#     A run during which they used more than OTHER_MAX % of the machine is kept in the log but marked
#     CONTAMINATED and is not used for medians.
# Everything started through these functions is stopped by PID (bl_cleanup); every wait is bounded.
#
# After sourcing: call bl_init NAME, then use bl_start_bridge / bl_start_tansu / bl_measure / bl_row.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOADGEN=${LOADGEN:-/tmp/peers-build/target/release/loadgen}
[ -x "$LOADGEN" ] || [ ! -x "$HOME/.cache/hl7-peers/bin/loadgen" ] || LOADGEN=$HOME/.cache/hl7-peers/bin/loadgen
TANSU=${TANSU:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}
BRIDGE_PORT=${BRIDGE_PORT:-27575}
KAFKA_PORT=${KAFKA_PORT:-29092}
REPS=${REPS:-3}
OTHER_MAX=${OTHER_MAX:-5}
HOST=127.0.0.1
HZ=$(getconf CLK_TCK)
PY=$(python3 -c 'import sys; print(sys.executable)') || { echo "FATAL: python3 is needed"; exit 1; }
BRIDGE_PID="" TANSU_PID="" SAMPLER_PID="" EXTRA_PIDS="" PROXY_PID=""

# Do not let a developer's HL7BRIDGE_* environment change the configuration under test.
for v in $(env | sed -n 's/^\(HL7BRIDGE_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export RUST_LOG=warn TOKIO_WORKER_THREADS=1

die() { echo "FATAL: $*"; exit 1; }

bl_init() { # bl_init NAME: work dir, results file, private copy of the release binary, traps
  WORK=$(mktemp -d "/tmp/hl7bridge-$1.XXXXXX")
  RESULTS=$WORK/results.jsonl
  : > "$RESULTS"
  trap bl_cleanup EXIT
  trap 'echo "interrupted"; exit 130' INT TERM
  [ -x "$HERE/target/release/hl7bridge" ] || die "no $HERE/target/release/hl7bridge (cargo build --release)"
  # Run a private copy, so a concurrent `cargo build` cannot replace the binary mid-benchmark.
  BRIDGE=$WORK/hl7bridge
  cp "$HERE/target/release/hl7bridge" "$BRIDGE"
}

bl_header() { # what ran where: printed at the top of every report
  echo "host: $(nproc) CPUs, $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "hl7bridge: $HERE/target/release/hl7bridge (mtime $(date -u -r "$HERE/target/release/hl7bridge" '+%F %T'), sha256 $(sha256sum "$BRIDGE" | cut -c1-16)); git $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)$(git -C "$HERE" status --porcelain 2>/dev/null | grep -q . && echo ' (working tree has uncommitted changes)')"
  [ -x "$LOADGEN" ] && echo "loadgen: $LOADGEN (sha256 $(sha256sum "$LOADGEN" | cut -c1-16))"
  echo "work dir: $WORK; data dir filesystem: $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}')"
  echo "env: RUST_LOG=$RUST_LOG TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS; servers on CPU 0, load generators on CPU 1; clean run: other processes < ${OTHER_MAX}% of the machine"
}

bl_stop_pid() { # bl_stop_pid PID NAME: SIGTERM, wait up to 30 s, then SIGKILL. Only PIDs we started.
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

bl_cleanup() {
  trap - EXIT INT TERM
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
  local p; for p in $EXTRA_PIDS; do bl_stop_pid "$p" "helper"; done
  bl_stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
  bl_stop_pid "$TANSU_PID" tansu; TANSU_PID=""
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}

bl_port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

bl_wait_port() { # bl_wait_port PORT PID SECONDS
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    kill -0 "$2" 2>/dev/null || return 1
    ss -ltnH "sport = :$1" | grep -q LISTEN && return 0
    sleep 0.1
  done
  return 1
}

bl_check_loopback_only() { # every listener on PORT must be on 127.0.0.1
  local addrs; addrs=$(ss -ltnH "sport = :$1" | awk '{print $4}' | tr '\n' ' ')
  echo "   listening sockets on :$1: $addrs"
  echo "$addrs" | tr ' ' '\n' | grep -v '^$' | grep -qv "^127\.0\.0\.1:" && die "a listener on :$1 is not on 127.0.0.1"
  return 0
}

bl_other_ticks() { # CPU ticks (utime+stime+cutime+cstime) of all user processes outside this script's process tree
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

bl_pid_ticks() { # utime+stime of PID (all its threads), in clock ticks
  awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat" 2>/dev/null || echo 0
}

bl_busy_pct() { # whole-machine CPU busy % over 1 s
  local a b; a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local t=0 i; for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
  echo $(( 100 - 100 * (b[4] - a[4] + b[5] - a[5]) / t ))
}

bl_past_deadline() { [ -n "${DEADLINE:-}" ] && [ "$(date +%s)" -ge "$DEADLINE" ]; }

bl_idle_wait() { # bounded: at most ~IDLE_MAX_SAMPLES*5 s (default ~10 min); no waiting past DEADLINE (epoch s)
  local k b max=${IDLE_MAX_SAMPLES:-120}
  bl_past_deadline && max=1
  for k in $(seq 1 "$max"); do
    b=$(bl_busy_pct); [ "$b" -lt 15 ] && { echo "   (machine busy ${b}% before run, waited ${k} samples)"; return; }
    sleep 4
  done
  echo "   WARNING: machine still ${b}% busy from other processes; results noisy"
}

bl_rss_sampler() { # bl_rss_sampler PID OUTFILE: peak VmRSS (kB) every 0.1 s, bounded to 300 s
  local pid=$1 out=$2 peak=0 r i
  for i in $(seq 1 3000); do
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || break
    [ -n "$r" ] || break
    [ "$r" -gt "$peak" ] && { peak=$r; echo "$peak" > "$out"; }
    sleep 0.1
  done
}

bl_rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null; }
bl_hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null; }

bl_start_server() { # bl_start_server NAME PORT READY-REGEX CMD...: pinned to CPU 0; sets SERVER_PID
  local name=$1 port=$2 ready=$3; shift 3
  bl_port_free "$port" || die "port $port is already in use"
  taskset -c 0 "$@" > "$WORK/$name.stdout" 2> "$WORK/$name.stderr" &
  SERVER_PID=$!
  local i
  for i in $(seq 1 300); do   # bounded: 30 s
    if [ -n "$ready" ]; then grep -q "$ready" "$WORK/$name.stdout" 2>/dev/null && break
    else ss -ltnH "sport = :$port" | grep -q LISTEN && break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$SERVER_PID" 2>/dev/null || ! ss -ltnH "sport = :$port" | grep -q LISTEN; then
    echo "$name did not listen on :$port within 30 s. stdout:"; tail -n 20 "$WORK/$name.stdout"
    echo "stderr (tail):"; tail -n 30 "$WORK/$name.stderr"
    return 1
  fi
  echo "== $name pid=$SERVER_PID (CPU affinity $(taskset -cp "$SERVER_PID" | awk '{print $NF}'))"
  bl_check_loopback_only "$port"
}

bl_start_bridge() { # bl_start_bridge NAME SERVE-ARGS...: sets BRIDGE_PID
  local name=$1; shift
  bl_start_server "$name" "$BRIDGE_PORT" "listening on" "$BRIDGE" serve --listen "$HOST:$BRIDGE_PORT" \
    --metrics-listen "" --registry-listen "" "$@" || exit 1
  BRIDGE_PID=$SERVER_PID
  echo "   $(cat "$WORK/$name.stdout")"
}

bl_start_tansu() { # Tansu (memory storage) on CPU 0, loopback only: sets TANSU_PID
  # With PROXY_PORT set, Tansu advertises that port and scripts/kafka-requests.py (on CPU 1) listens there and
  # counts the requests of every client passing through it (sets PROXY_PID; snapshots: bl_proxy_counts).
  [ -x "$TANSU" ] || { echo "SKIPPED: tansu not found at $TANSU"; return 1; }
  echo "tansu: $TANSU ($("$TANSU" --version 2>/dev/null | head -1))"
  local adv=${PROXY_PORT:-$KAFKA_PORT}
  bl_start_server tansu "$KAFKA_PORT" "" "$TANSU" broker --listener-url "tcp://$HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$HOST:$adv" --storage-engine memory://tansu/ || return 1
  TANSU_PID=$SERVER_PID
  if [ -n "${PROXY_PORT:-}" ]; then
    bl_port_free "$PROXY_PORT" || die "port $PROXY_PORT is already in use"
    taskset -c 1 "$PY" "$HERE/scripts/kafka-requests.py" --listen "$HOST:$PROXY_PORT" --broker "$HOST:$KAFKA_PORT" \
      > "$WORK/proxy.stdout" 2> "$WORK/proxy.stderr" &
    PROXY_PID=$!; EXTRA_PIDS="$EXTRA_PIDS $PROXY_PID"
    bl_wait_port "$PROXY_PORT" "$PROXY_PID" 10 || { echo "   request-counting proxy did not start"; return 1; }
    echo "   request-counting proxy pid=$PROXY_PID on :$PROXY_PORT (Tansu advertises it)"
  fi
  echo "-- hl7bridge topics create --kafka-brokers $HOST:$KAFKA_PORT (6 partitions)"
  timeout 60 taskset -c 0 "$BRIDGE" topics create --kafka-brokers "$HOST:$KAFKA_PORT" \
    > "$WORK/topics-create.out" 2>&1
  local rc=$?
  tail -n 3 "$WORK/topics-create.out" | sed 's/^/   /'
  [ "$rc" -eq 0 ] || { echo "   topics create FAILED ($rc); tansu log tail:"; tail -n 20 "$WORK/tansu.stderr"; return 1; }
}

# bl_measure TARGET-PID LABEL CMD...: one measured run of CMD (pinned to CPU 1 by the caller's CMD or here),
# after an idle wait. Output goes to $WORK/run.out (and is printed). Sets:
#   LAST_RC, LAST_CLEAN (true/false), LAST_OTHER (% of machine used by others), LAST_CPU (% of one core used by
#   TARGET-PID over the run), LAST_RSS (peak VmRSS kB of TARGET-PID during the run), LAST_SECS.
bl_measure() {
  local target=$1 label=$2; shift 2
  bl_idle_wait
  echo "-- [$label] $*"
  local rssf="$WORK/rss.sample" o0 o1 t0 t1 c0 c1
  rm -f "$rssf"
  bl_rss_sampler "$target" "$rssf" & SAMPLER_PID=$!
  o0=$(bl_other_ticks); c0=$(bl_pid_ticks "$target"); t0=$(date +%s%N)
  timeout "${RUN_TIMEOUT:-300}" "$@" > "$WORK/run.out" 2>&1
  LAST_RC=$?
  t1=$(date +%s%N); c1=$(bl_pid_ticks "$target"); o1=$(bl_other_ticks)
  kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""
  grep -v '^replay: ' "$WORK/run.out" | tail -n 15
  LAST_RSS=$(cat "$rssf" 2>/dev/null || echo 0)
  LAST_OTHER=$(( 100 * (o1 - o0) * 1000000000 / HZ / ((t1 - t0) * $(nproc)) ))
  LAST_CPU=$(( 100 * (c1 - c0) * 1000000000 / HZ / (t1 - t0) ))
  LAST_SECS=$(awk "BEGIN{printf \"%.2f\", ($t1 - $t0) / 1e9}")
  LAST_CLEAN=true; [ "$LAST_OTHER" -gt "$OTHER_MAX" ] && LAST_CLEAN=false
  echo "   exit status $LAST_RC; ${LAST_SECS} s; target peak VmRSS ${LAST_RSS} kB; target CPU ${LAST_CPU}% of one core; other processes used ${LAST_OTHER}% of the machine$($LAST_CLEAN || echo " -> CONTAMINATED (> ${OTHER_MAX}%), not used for medians")"
}

# bl_row KEY=VALUE...: appends one JSON result row, merging the tool's own figures:
#   the loadgen's "JSON {...}" line or replay's --report file ($WORK/replay.json) if present in this run,
#   and the LAST_* figures of bl_measure. Numbers stay numbers.
bl_row() {
  "$PY" - "$RESULTS" "$WORK/run.out" "$WORK/replay.json" "$LAST_RSS" "$LAST_CPU" "$LAST_OTHER" "$LAST_CLEAN" "$@" <<'EOF'
import json, os, sys
res, out, rep, rss, cpu, other, clean, *kv = sys.argv[1:]
row = {}
for line in open(out, errors="replace"):
    if line.startswith("JSON {"):
        d = json.loads(line[5:])
        row.update(msgs_per_s=d["msgs_per_s"], p50_ms=d["p50_ms"], p99_ms=d["p99_ms"], max_ms=d["max_ms"],
                   ok=d["ok"], errors=d["errors"], n=d["n"], mode=d["mode"], conns=d["conns"], tool="loadgen")
if "tool" not in row and os.path.exists(rep):
    d = json.load(open(rep))
    row.update(msgs_per_s=d["msgs_per_s"], p50_ms=d["latency_ms"]["p50"], p99_ms=d["latency_ms"]["p99"],
               max_ms=d["latency_ms"]["max"], ok=d["accepted"], errors=d["sent"] - d["accepted"], n=d["sent"],
               tool="replay")
    os.remove(rep)
row.update(rss_kb=int(rss or 0), cpu_pct=int(cpu or 0), other_pct=int(other or 0), clean=(clean == "true"))
for a in kv:
    k, v = a.split("=", 1)
    try: v = json.loads(v)
    except ValueError: pass
    row[k] = v
open(res, "a").write(json.dumps(row) + "\n")
EOF
}

# bl_repeat FN ARGS...: calls FN ARGS (which must end in bl_measure, setting LAST_CLEAN) until REPS clean runs,
# at most 2*REPS attempts. FN returning non-zero stops the repetition.
bl_repeat() {
  local good=0 a
  for a in $(seq 1 $(( 2 * REPS ))); do
    "$@" || return 1
    $LAST_CLEAN && good=$((good + 1))
    [ "$good" -ge "$REPS" ] && return 0
    bl_past_deadline && { echo "   past DEADLINE: no more repetitions ($good clean of $a)"; return 0; }
  done
  echo "   WARNING: only $good clean runs of '$*' after $(( 2 * REPS )) attempts"
}

bl_proxy_counts() { # the proxy's request counts so far, one JSON line ({"client.id": {"Produce": n, ...}})
  local before; before=$(wc -l < "$WORK/proxy.stdout")
  kill -USR1 "$PROXY_PID" 2>/dev/null || { echo "{}"; return; }
  local i; for i in $(seq 1 50); do [ "$(wc -l < "$WORK/proxy.stdout")" -gt "$before" ] && break; sleep 0.1; done
  tail -n 1 "$WORK/proxy.stdout"
}

bl_fsync_probe() { # bl_fsync_probe DIR: p50/p99 of (4 KiB pwrite + fsync) on DIR's filesystem, 300 rounds; prints JSON
  "$PY" - "$1" <<'EOF'
import json, os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
buf, lat = os.urandom(4096), []
for i in range(300):
    t = time.perf_counter()
    os.pwrite(fd, buf, (i % 64) * 4096)
    os.fsync(fd)
    lat.append((time.perf_counter() - t) * 1000)
os.close(fd); os.remove(path)
lat.sort()
print(json.dumps({"fsync_p50_ms": round(lat[len(lat) // 2], 3), "fsync_p99_ms": round(lat[int(len(lat) * 0.99)], 3)}))
EOF
}
