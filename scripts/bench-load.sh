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

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
M="--max-secs 120"

run_lg() { # run_lg BACKEND LOADGEN-ARGS...
  local backend=$1; shift
  kill -0 "$BRIDGE_PID" 2>/dev/null || { echo "   SKIPPED (hl7bridge is not running): loadgen $*"; return 1; }
  bl_measure "$BRIDGE_PID" "hl7bridge-$backend" taskset -c 1 "$LOADGEN" --host "$HOST" --port "$BRIDGE_PORT" \
    --label "hl7bridge-$backend" "$@" $M
  bl_row backend="$backend"
  if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
    echo "   hl7bridge EXITED during the run; stderr tail:"; tail -n 30 "$WORK/$backend.stderr"
  fi
}

# ---------------------------------------------------------------------------------------------
[ -x "$LOADGEN" ] || die "loadgen not found at $LOADGEN (build it: cp -r /work/shared/peers /tmp/peers-build && cargo build --release -p loadgen)"
bl_init bench
cd "$WORK" || die "cd $WORK"

echo "# hl7bridge load benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
bl_header

# ---- phase 1: embedded store ----------------------------------------------------------------
echo
echo "## embedded store"
bl_start_bridge embedded --data-dir "$WORK/data-embedded"
bl_repeat run_lg embedded -c 1 -n 5000
bl_repeat run_lg embedded -c 8 -n 20000
bl_repeat run_lg embedded -c 8 -n 20000 --pipeline 16
[ -n "$BRIDGE_PID" ] && kill -0 "$BRIDGE_PID" 2>/dev/null && \
  echo "   hl7bridge VmHWM (peak RSS over its whole life): $(awk '/^VmHWM:/{print $2" "$3}' /proc/$BRIDGE_PID/status)"
bl_stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
echo "   data dir size: $(du -sh "$WORK/data-embedded" 2>/dev/null | cut -f1); stderr lines: $(wc -l < "$WORK/embedded.stderr")"
tail -n 5 "$WORK/embedded.stderr" | sed 's/^/   stderr: /'
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/data-embedded"

# ---- phase 2: Kafka (Tansu, memory storage) ---------------------------------------------------
echo
echo "## Kafka backend (Tansu memory storage, on CPU 0 with hl7bridge)"
if bl_start_tansu; then
  bl_start_bridge kafka --kafka-brokers "$HOST:$KAFKA_PORT" --data-dir "$WORK/data-kafka"
  bl_repeat run_lg kafka -c 1 -n 3000
  bl_repeat run_lg kafka -c 8 -n 10000
  bl_stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
  echo "   hl7bridge (kafka) stderr lines: $(wc -l < "$WORK/kafka.stderr")"
  tail -n 5 "$WORK/kafka.stderr" | sed 's/^/   stderr: /'
fi
bl_stop_pid "$TANSU_PID" tansu; TANSU_PID=""

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
