#!/usr/bin/env bash
# End-to-end benchmark of `hl7bridge serve` on the embedded store and on Kafka (Tansu, memory storage), with the
# peers of /work/shared/peers measured in the same run under the same method (see scripts/bench-lib.sh):
# servers on CPU 0 (TOKIO_WORKER_THREADS=1), load generators on CPU 1, idle-wait before each run, runs during
# which other processes used > OTHER_MAX % of the machine marked CONTAMINATED and repeated.
#
# Phases (all by default; pick some with PHASES="embedded kafka ..."):
#   embedded  release bridge, embedded store (SQLite WAL, synchronous=FULL), the in-process FHIR stage on (default):
#             * `hl7bridge replay --unique-control-ids` with fixtures/bench/adt_a01.hl7 (1.6 KB) and
#               fixtures/oru_r01_20obx.hl7 (4.4 KB, 20 OBX), C = 1, 8, 64 connections: ACK msgs/s, p50/p99/max ACK
#               latency (replay's own figures), bridge peak RSS and CPU % of one core over the run;
#             * the peers' loadgen (its own ADT/ORU mix, every ACK checked), C=1, C=8, C=8 x 16 pipelined: the
#               row the peers are compared with; plus C=8 with --no-transform (ingest alone).
#   e2e       fresh bridge (embedded, stage on): end-to-end latency at RATE msg/s, as above.
#   kafka     Tansu (memory storage) + bridge on CPU 0: the same replay matrix; then on a fresh Tansu, with
#             `hl7bridge transform` on CPU 0 too, end-to-end latency at RATE msg/s.
#   idle      fresh bridge: RSS before and with IDLE_CONNS idle connections.
#   pipeline  fresh bridge: ORU^R01 (8 OBX) at 8 connections, PIPE_N messages; ACK msgs/s, the stage's lag when the
#             last ACK arrives, and whole-pipeline msgs/s (until the stage has committed FHIR for every input).
#   kafka-pipe  the README's Kafka layout (Tansu + `serve --no-transform` on CPU 0, `transform` on CPU 1) at RATE:
#             reached rate, e2e p50/p99, CPU per message per process, Kafka requests per message (see the phase).
#   kafka-growth  the same layout at GROWTH_RATE (300) msg/s for 7 windows of 15 s: CPU per message per process and
#             window (Tansu's grows with what its partitions hold; docs/tansu.md).
#   kafka-pipeline  the same layout: ORU^R01 8 OBX at 8 connections, PIPE_N messages, until the FHIR of every one is
#             visible to a Kafka reader (whole pipeline msgs/s, as `pipeline` on the embedded store).
#   peers     each peer of $PEERS_WORK/peers.sh (built by /work/shared/peers/setup.sh), pinned the same way, with the
#             same loadgen: C=1, C=8 and (once) C=8 x 16 pipelined; ratio hl7bridge / peer in the summary.
#
# usage: scripts/bench-e2e.sh                       (~30-50 min on an idle machine)
#        PHASES="embedded" REPS=1 scripts/bench-e2e.sh
# env:   REPS (3), OTHER_MAX (5), RATE (2000), E2E_SECS (15), IDLE_CONNS (1000), PIPE_N (20000),
#        SCALE (100: percent of the default message counts), PEERS_WORK (~/.cache/hl7-peers), PEERS (space-separated names),
#        OUT (directory that receives log-free results: results.jsonl and summary.md), KEEP_WORK=1,
#        GROWTH_RATE (300), LOADGEN, TANSU, BRIDGE_PORT (27575), KAFKA_PORT (29092), PROXY_PORT (29093, kafka-pipe's counted run),
#        KP_RUNS ("direct counted embedded embedded-split"), KP_BRIDGE_ARGS / KP_TRANSFORM_ARGS / KP_READER_ARGS (extra arguments, e.g.
#        "-X linger.ms=1" or "--fetch-wait-ms 5", to compare settings), KPY (a python with confluent-kafka),
#        DEADLINE (epoch seconds: after it, no idle-waiting and no repetitions, so a run on a busy machine ends)
# Only 127.0.0.1 is used. Every wait and loop is bounded. Everything started here is stopped by PID on exit.
set -u

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
PHASES=${PHASES:-"embedded e2e kafka kafka-pipe kafka-growth kafka-pipeline idle pipeline peers"}
RATE=${RATE:-2000}
E2E_SECS=${E2E_SECS:-15}
IDLE_CONNS=${IDLE_CONNS:-1000}
SCALE=${SCALE:-100}
PIPE_N=$(( ${PIPE_N:-20000} * SCALE / 100 ))
PEERS_WORK=${PEERS_WORK:-$HOME/.cache/hl7-peers}
PEERS=${PEERS:-"mllp-codec mllp-codec-nc brightohir simple-hl7 medplum-hl7 python-hl7 node-hl7-server hl7apy v2fhir-bridge"}
ADT=$HERE/fixtures/bench/adt_a01.hl7
ORU20=$HERE/fixtures/oru_r01_20obx.hl7
ORU8=$HERE/fixtures/bench/oru_r01_8obx.hl7
E2E=$HERE/scripts/e2e-latency.py
M="--max-secs 120"
n_for() { # messages per run for C connections
  case $1 in 1) echo $(( 3000 * SCALE / 100 ));; 8) echo $(( 20000 * SCALE / 100 ));; *) echo $(( 30000 * SCALE / 100 ));; esac
}
has() { case " $PHASES " in *" $1 "*) return 0;; esac; return 1; }

bl_init bench-e2e
cd "$WORK" || die "cd $WORK"
echo "# hl7bridge end-to-end benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
bl_header
echo "phases: $PHASES; REPS=$REPS RATE=$RATE E2E_SECS=$E2E_SECS SCALE=$SCALE"
for f in "$ADT" "$ORU20" "$ORU8"; do echo "fixture: ${f#$HERE/} ($(wc -c < "$f") bytes)"; done
fsync_probe() { # the disk's fsync latency right now (other jobs' I/O changes it; CPU contamination does not show it)
  local j; j=$(bl_fsync_probe "$WORK"); echo "fsync probe ($1): $j"
  "$PY" -c "import json,sys; d=json.loads(sys.argv[2]); d.update(suite='fsync', when=sys.argv[3]); open(sys.argv[1],'a').write(json.dumps(d)+'\n')" "$RESULTS" "$j" "$1"
}
fsync_probe start

# ---- drivers ------------------------------------------------------------------------------------------
replay_run() { # replay_run BACKEND FIXTURE-LABEL C N [EXTRA-REPLAY-ARGS...] (files come from $FILES)
  local backend=$1 fx=$2 c=$3 n=$4; shift 4
  kill -0 "$BRIDGE_PID" 2>/dev/null || { echo "   SKIPPED (hl7bridge is not running)"; return 1; }
  local per=$(( n / $(echo "$FILES" | wc -w) ))
  wait_stage
  # shellcheck disable=SC2086
  bl_measure "$BRIDGE_PID" "hl7bridge-$backend $fx C=$c" taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" \
    -c "$c" --repeat "$per" --unique-control-ids --timeout 10s --report "$WORK/replay.json" "$@" $FILES
  local lag=null
  [ -n "${STAGE_DB:-}" ] && lag=$(stage_status "$STAGE_DB" | awk '{print $3}') && echo "   stage lag at the last ACK: $lag"
  bl_row suite=replay server=hl7bridge backend="$backend" fixture="$fx" conns="$c" mode=ping-pong stage_lag="$lag"
}

lg_run() { # lg_run SERVER BACKEND PORT LOADGEN-ARGS...: the peers' loadgen against PORT, server pid $TARGET_PID
  local server=$1 backend=$2 port=$3; shift 3
  kill -0 "$TARGET_PID" 2>/dev/null || { echo "   SKIPPED ($server is not running)"; return 1; }
  [ "$server" = hl7bridge ] && wait_stage
  bl_measure "$TARGET_PID" "$server" taskset -c 1 "$LOADGEN" --host "$HOST" --port "$port" --label "$server" "$@" $M
  bl_row suite=loadgen server="$server" backend="$backend"
}

e2e_run() { # e2e_run BACKEND SOURCE-ARGS...: latency reader + rate-limited replay (8 connections, ADT + ORU 8 OBX)
  local backend=$1; shift
  local n=$(( RATE * E2E_SECS )) warm=1
  [ "$backend" = kafka ] && warm=8   # the Kafka reader must join its group before traffic starts
  wait_stage
  bl_idle_wait
  echo "-- e2e latency reader: $E2E $* --seconds $(( E2E_SECS + warm + 5 ))"
  taskset -c 1 "$PY" "$E2E" "$@" --seconds $(( E2E_SECS + warm + 5 )) > "$WORK/e2e.json" 2> "$WORK/e2e.err" &
  local rpid=$!
  EXTRA_PIDS="$EXTRA_PIDS $rpid"
  sleep "$warm"
  FILES="$ADT $ORU8" IDLE_MAX_SAMPLES=1 replay_run "$backend" "adt+oru8@${RATE}/s" 8 "$n" --rate "$RATE" >/dev/null
  sed -n '$p' "$RESULTS"
  local i; for i in $(seq 1 $(( E2E_SECS + warm + 30 ))); do kill -0 "$rpid" 2>/dev/null || break; sleep 1; done
  kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null
  EXTRA_PIDS=${EXTRA_PIDS/ $rpid/}
  echo "   e2e: $(cat "$WORK/e2e.json" 2>/dev/null) $(tail -n 2 "$WORK/e2e.err" 2>/dev/null)"
  "$PY" - "$RESULTS" "$WORK/e2e.json" "$RATE" <<'EOF'
import json, sys
res, e2e, rate = sys.argv[1:]
rows = [json.loads(l) for l in open(res)]
try: e = json.load(open(e2e))
except Exception: e = {}
rows[-1].update(suite="e2e", offered_rate=int(rate), e2e_count=e.get("count"), e2e_p50_ms=e.get("p50_ms"),
                e2e_p99_ms=e.get("p99_ms"), e2e_max_ms=e.get("max_ms"))
open(res, "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF
}

matrix() { # matrix BACKEND: the replay cases
  local b=$1 fx c
  for fx in adt oru20; do
    if [ $fx = adt ]; then FILES=$ADT; else FILES=$ORU20; fi
    for c in 1 8 64; do
      FILES=$FILES bl_repeat replay_run "$b" "$fx" "$c" "$(n_for "$c")"
    done
  done
}

stage_status() { # stage_status DB: "<inputs> <stage-done> <lag> <fhir records>" of the embedded store
  "$PY" - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
cur = db.execute("SELECT COALESCE(MAX(last_id), 0) FROM stage_cursors").fetchone()[0]
inputs = db.execute("SELECT COUNT(*) FROM records WHERE topic LIKE 'hl7v2.%'").fetchone()[0]
lag = db.execute("SELECT COUNT(*) FROM records WHERE id > ? AND topic LIKE 'hl7v2.%'", (cur,)).fetchone()[0]
fhir = db.execute("SELECT COUNT(*) FROM records WHERE topic LIKE 'fhir.%'").fetchone()[0]
print(inputs, inputs - lag, lag, fhir)
EOF
}

wait_stage() { # with the in-process stage on: let it finish the previous case's backlog first (bounded: 180 s)
  [ -n "${STAGE_DB:-}" ] || return 0
  local i st=""
  for i in $(seq 1 1800); do
    st=$(stage_status "$STAGE_DB" 2>/dev/null) || st=""
    [ "$(echo "$st" | awk '{print $3}')" = 0 ] && break
    sleep 0.1
  done
  [ "$i" -gt 1 ] && echo "   (waited $((i / 10)) s for the stage to catch up: lag $(echo "$st" | awk '{print $3}'))"
  return 0
}

stop_bridge() { # stop_bridge NAME
  [ -n "$BRIDGE_PID" ] && kill -0 "$BRIDGE_PID" 2>/dev/null && \
    echo "   hl7bridge VmHWM (peak RSS over its life): $(bl_hwm_kb "$BRIDGE_PID") kB"
  bl_stop_pid "$BRIDGE_PID" hl7bridge; BRIDGE_PID=""
  echo "   stderr lines: $(wc -l < "$WORK/$1.stderr")"; tail -n 5 "$WORK/$1.stderr" | sed 's/^/   stderr: /'
}

# ---- embedded store -----------------------------------------------------------------------------------
if has embedded; then
  echo; echo "## embedded store (stage on)"
  bl_start_bridge embedded --data-dir "$WORK/data-embedded"
  STAGE_DB=$WORK/data-embedded/hl7bridge.db
  matrix embedded
  if [ -x "$LOADGEN" ]; then
    TARGET_PID=$BRIDGE_PID
    bl_repeat lg_run hl7bridge embedded "$BRIDGE_PORT" -c 1 -n $(( 5000 * SCALE / 100 ))
    bl_repeat lg_run hl7bridge embedded "$BRIDGE_PORT" -c 8 -n $(( 20000 * SCALE / 100 ))
    bl_repeat lg_run hl7bridge embedded "$BRIDGE_PORT" -c 8 -n $(( 20000 * SCALE / 100 )) --pipeline 16
  else
    echo "SKIPPED loadgen cases: no loadgen at $LOADGEN"
  fi
  echo "   store: $(stage_status "$WORK/data-embedded/hl7bridge.db" | awk '{print $1" inputs, "$2" done by the stage, lag "$3", "$4" FHIR records"}')"
  stop_bridge embedded
  STAGE_DB=""
  rm -rf "$WORK/data-embedded"

  echo; echo "## embedded store, --no-transform (ingest alone)"
  bl_start_bridge embedded-nt --data-dir "$WORK/data-nt" --no-transform
  FILES=$ADT bl_repeat replay_run embedded-no-transform adt 8 "$(n_for 8)"
  if [ -x "$LOADGEN" ]; then
    TARGET_PID=$BRIDGE_PID
    bl_repeat lg_run hl7bridge embedded-no-transform "$BRIDGE_PORT" -c 8 -n $(( 20000 * SCALE / 100 ))
  fi
  stop_bridge embedded-nt
  rm -rf "$WORK/data-nt"
fi

# ---- end-to-end latency, embedded (fresh bridge: no stage backlog from the throughput cases) ----------
if has e2e; then
  echo; echo "## end-to-end latency, embedded store (fresh bridge, stage on)"
  bl_start_bridge e2e --data-dir "$WORK/data-e2e"
  STAGE_DB=$WORK/data-e2e/hl7bridge.db
  e2e_run embedded --sqlite "$STAGE_DB"
  STAGE_DB=""
  stop_bridge e2e
  rm -rf "$WORK/data-e2e"
fi

# ---- Kafka --------------------------------------------------------------------------------------------
if has kafka; then
  echo; echo "## Kafka backend (Tansu memory storage on CPU 0 with hl7bridge; acks=all, idempotent)"
  if bl_start_tansu; then
    bl_start_bridge kafka --kafka-brokers "$HOST:$KAFKA_PORT" --data-dir "$WORK/data-kafka"
    matrix kafka
    if [ -x "$LOADGEN" ]; then
      TARGET_PID=$BRIDGE_PID
      bl_repeat lg_run hl7bridge kafka "$BRIDGE_PORT" -c 8 -n $(( 10000 * SCALE / 100 ))
    fi
    stop_bridge kafka
    bl_stop_pid "$TANSU_PID" tansu; TANSU_PID=""
    echo "   fresh Tansu for the end-to-end case, with hl7bridge transform on CPU 0"
    if bl_start_tansu; then
      bl_start_bridge kafka-e2e --kafka-brokers "$HOST:$KAFKA_PORT" --data-dir "$WORK/data-kafka2"
      RUST_LOG=info,rdkafka=warn taskset -c 0 "$BRIDGE" transform --kafka-brokers "$HOST:$KAFKA_PORT" \
        --metrics-listen "" --registry-listen "" > "$WORK/transform.stdout" 2> "$WORK/transform.stderr" &
      TPID=$!; EXTRA_PIDS="$EXTRA_PIDS $TPID"
      for i in $(seq 1 600); do  # bounded: 60 s for the consumer group to assign partitions
        grep -q "partitions assigned" "$WORK/transform.stderr" && break
        kill -0 "$TPID" 2>/dev/null || break
        sleep 0.1
      done
      echo "   transform: $(grep -c "partitions assigned" "$WORK/transform.stderr") assignment(s) after $((i / 10)) s"
      echo "   warm-up: 400 messages at 400/s, not measured"
      timeout 60 taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" -c 2 --rate 400 --repeat 200 \
        --unique-control-ids "$ADT" "$ORU8" 2>/dev/null | tail -n 1 | sed 's/^/   /'
      if kill -0 "$TPID" 2>/dev/null; then
        e2e_run kafka --kafka "$HOST:$KAFKA_PORT"
        echo "   transform CPU over its life: $(( 100 * $(bl_pid_ticks "$TPID") / HZ ))/100 s; VmHWM $(bl_hwm_kb "$TPID") kB"
      else
        echo "   transform exited; stderr tail:"; tail -n 20 "$WORK/transform.stderr"
      fi
      bl_stop_pid "$TPID" "hl7bridge transform"; EXTRA_PIDS=${EXTRA_PIDS/ $TPID/}
      grep -v "INFO" "$WORK/transform.stderr" | tail -n 5 | sed 's/^/   transform stderr: /'
      stop_bridge kafka-e2e
      bl_stop_pid "$TANSU_PID" tansu; TANSU_PID=""
    fi
  fi
fi

# ---- Kafka pipeline: the README's layout, the stage member on its own core -----------------------------
# Tansu (memory storage) and `serve --no-transform` share CPU 0; `hl7bridge transform`, the only stage member, runs on
# CPU 1 with the load generator and the latency reader. Why this split: the member is what the stage's settings and
# code change, so it gets the core whose other users are light at RATE (a rate-limited replay and one reader); the
# bridge and the broker are the ACK path and stay together as in the `kafka` phase. Fresh runs, as KP_RUNS lists:
#   * direct: reached rate (replay's ACKs/s), e2e p50/p99 at RATE offered (ORU^R01 8 OBX, 8 connections), and CPU
#     per message of each process (utime+stime from /proc over the replay and the reader's tail, / messages ACKed);
#   * through scripts/kafka-requests.py (Tansu advertises the proxy): Kafka requests per message per client
#     (client.id bridge / transform / e2e-latency) and API. The proxy adds a hop, so its latencies are not used;
#   * embedded: the same load on the embedded store (serve with its stage on, CPU 0; the reader polls the SQLite
#     file), to tell what Tansu costs from what the bridge and the stage cost;
#   * embedded-split: the two processes of the Kafka layout on the embedded store (serve --no-transform on CPU 0,
#     `transform --data-dir` on CPU 1): the same split with SQLite in place of the broker.
KP_BRIDGE_ARGS=${KP_BRIDGE_ARGS:-} KP_TRANSFORM_ARGS=${KP_TRANSFORM_ARGS:-} KP_READER_ARGS=${KP_READER_ARGS:-} TPID=""
KPY=${KPY:-$HERE/target/pyenv/bin/python}   # Confluent's client for the Kafka reader (scripts/pyenv.sh)
[ -x "$KPY" ] || KPY=$PY
kp_start() { # kp_start NAME: fresh Tansu, bridge (--no-transform) and transform; sets TPID. Returns 1 on failure.
  bl_start_tansu || return 1
  # shellcheck disable=SC2086
  bl_start_bridge "kp-$1" --kafka-brokers "$HOST:$KAFKA_PORT" --no-transform -X client.id=bridge $KP_BRIDGE_ARGS
  # shellcheck disable=SC2086
  RUST_LOG=info,rdkafka=warn taskset -c 1 "$BRIDGE" transform --kafka-brokers "$HOST:$KAFKA_PORT" \
    -X client.id=transform $KP_TRANSFORM_ARGS --data-dir "$WORK/data-kp-transform" --metrics-listen "" --registry-listen "" \
    > "$WORK/transform.stdout" 2> "$WORK/transform.stderr" &
  TPID=$!; EXTRA_PIDS="$EXTRA_PIDS $TPID"
  local i; for i in $(seq 1 600); do  # bounded: 60 s for the consumer group to assign partitions
    grep -q "partitions assigned" "$WORK/transform.stderr" && break
    kill -0 "$TPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "   transform pid=$TPID on CPU 1: $(grep -c "partitions assigned" "$WORK/transform.stderr") assignment(s) after $((i / 10)) s"
  kill -0 "$TPID" 2>/dev/null || { echo "   transform exited:"; tail -n 20 "$WORK/transform.stderr"; return 1; }
  echo "   warm-up: 400 messages at 400/s, not measured"
  timeout 60 taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" -c 2 --rate 400 --repeat 400 \
    --unique-control-ids "$ORU8" 2>/dev/null | tail -n 1 | sed 's/^/   /'
  sleep 2
}
kp_stop() {
  bl_stop_pid "$TPID" "hl7bridge transform"; EXTRA_PIDS=${EXTRA_PIDS/ $TPID/}; TPID=""
  grep -v "INFO" "$WORK/transform.stderr" | tail -n 5 | sed 's/^/   transform stderr: /'
  stop_bridge "kp-$1"
  bl_stop_pid "$TANSU_PID" tansu; TANSU_PID=""
  if [ -n "$PROXY_PID" ]; then bl_stop_pid "$PROXY_PID" proxy; EXTRA_PIDS=${EXTRA_PIDS/ $PROXY_PID/}; PROXY_PID=""; fi
  rm -rf "$WORK/data-kp-transform"
}
kp_ticks() { # CPU ticks of Tansu, the bridge and transform (0 for one not running, as on the embedded store)
  local p out=""
  for p in "$TANSU_PID" "$BRIDGE_PID" "$TPID"; do
    if [ -n "$p" ]; then out="$out $(bl_pid_ticks "$p")"; else out="$out 0"; fi
  done
  echo "$out"
}
kp_run() { # kp_run LABEL [READER-ARGS...]: one measured run at RATE; appends a suite=kafka-pipe row
  local label=$1; shift
  local n=$(( RATE * E2E_SECS )) warm=8 secs=$(( E2E_SECS + 8 + 5 ))
  local counts0="{}" counts1="{}" ta0 tb0 tt0 ta1 tb1 tt1
  local src=(--kafka "$HOST:$KAFKA_PORT")
  case $label in embedded*) src=(--sqlite "$STAGE_DB"); warm=2;; esac
  echo "-- e2e latency reader: $E2E ${src[*]} $* --seconds $secs"
  taskset -c 1 "$KPY" "$E2E" "${src[@]}" "$@" --seconds "$secs" > "$WORK/e2e.json" 2> "$WORK/e2e.err" &
  local rpid=$!; EXTRA_PIDS="$EXTRA_PIDS $rpid"
  sleep "$warm"
  [ -n "$PROXY_PID" ] && counts0=$(bl_proxy_counts)
  read -r ta0 tb0 tt0 < <(kp_ticks)
  FILES=$ORU8 IDLE_MAX_SAMPLES=1 replay_run kafka-pipe "oru8@${RATE}/s" 8 "$n" --rate "$RATE" >/dev/null
  local i; for i in $(seq 1 $(( secs + 30 ))); do kill -0 "$rpid" 2>/dev/null || break; sleep 1; done
  read -r ta1 tb1 tt1 < <(kp_ticks)
  [ -n "$PROXY_PID" ] && counts1=$(bl_proxy_counts)
  kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; EXTRA_PIDS=${EXTRA_PIDS/ $rpid/}
  echo "   e2e: $(cat "$WORK/e2e.json" 2>/dev/null) $(tail -n 2 "$WORK/e2e.err" 2>/dev/null)"
  "$PY" - "$RESULTS" "$WORK/e2e.json" "$RATE" "$label" "$HZ" "$ta0" "$ta1" "$tb0" "$tb1" "$tt0" "$tt1" \
    "$counts0" "$counts1" <<'EOF'
import json, sys
res, e2e, rate, label, hz, ta0, ta1, tb0, tb1, tt0, tt1, c0, c1 = sys.argv[1:]
rows = [json.loads(l) for l in open(res)]
try: e = json.load(open(e2e))
except Exception: e = {}
r = rows[-1]
ok = r.get("ok") or 0
us = lambda a, b: round((int(b) - int(a)) * 1e6 / int(hz) / ok) if ok else None
r.update(suite="kafka-pipe", label=label, offered_rate=int(rate), e2e_count=e.get("count"),
         e2e_p50_ms=e.get("p50_ms"), e2e_p99_ms=e.get("p99_ms"), e2e_max_ms=e.get("max_ms"),
         cpu_us_per_msg={"tansu": us(ta0, ta1), "bridge": us(tb0, tb1), "transform": us(tt0, tt1)}
                        if not label.startswith("embedded") else
                        {"bridge": us(tb0, tb1), "transform": us(tt0, tt1)} if label == "embedded-split" else
                        {"bridge": us(tb0, tb1)})
c0, c1 = json.loads(c0), json.loads(c1)
if c1 and ok:
    req = {}
    for client, apis in c1.items():
        d = {api: n - c0.get(client, {}).get(api, 0) for api, n in apis.items()}
        d = {api: round(n / ok, 3) for api, n in d.items() if n}
        if d: req[client] = d
    r["requests_per_msg"] = req
print("   " + json.dumps({k: r.get(k) for k in ("label", "msgs_per_s", "p50_ms", "p99_ms", "e2e_p50_ms", "e2e_p99_ms",
                                              "cpu_us_per_msg", "requests_per_msg")}))
open(res, "w").write("".join(json.dumps(x) + "\n" for x in rows))
EOF
}

KP_RUNS=${KP_RUNS:-"direct counted embedded embedded-split"}
if has kafka-pipe; then
  echo; echo "## Kafka pipeline at $RATE msg/s offered: Tansu + serve --no-transform on CPU 0, transform on CPU 1"
  echo "   bridge args: ${KP_BRIDGE_ARGS:-none}; transform args: ${KP_TRANSFORM_ARGS:-none}; reader args: ${KP_READER_ARGS:-none}"
  for run in $KP_RUNS; do
    if [ "$run" = embedded ]; then   # the same load on the embedded store: serve with its stage on, on CPU 0
      echo "   the same load on the embedded store (serve, stage on, CPU 0; the reader polls its SQLite file)"
      bl_start_bridge kp-embedded --data-dir "$WORK/data-kp-embedded"
      STAGE_DB=$WORK/data-kp-embedded/hl7bridge.db
      timeout 60 taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" -c 2 --rate 400 --repeat 400 \
        --unique-control-ids "$ORU8" 2>/dev/null | tail -n 1 | sed 's/^/   warm-up: /'
      # shellcheck disable=SC2086
      kp_run embedded $KP_READER_ARGS
      STAGE_DB=""; stop_bridge kp-embedded; rm -rf "$WORK/data-kp-embedded"
      continue
    fi
    if [ "$run" = embedded-split ]; then   # the README's two processes on the embedded store: no broker at all
      echo "   the two-process layout on the embedded store (serve --no-transform on CPU 0, transform on CPU 1)"
      bl_start_bridge kp-embedded-split --data-dir "$WORK/data-kp-split" --no-transform
      STAGE_DB=$WORK/data-kp-split/hl7bridge.db
      RUST_LOG=info taskset -c 1 "$BRIDGE" transform --data-dir "$WORK/data-kp-split" --metrics-listen "" \
        --registry-listen "" > "$WORK/transform.stdout" 2> "$WORK/transform.stderr" &
      TPID=$!; EXTRA_PIDS="$EXTRA_PIDS $TPID"
      timeout 60 taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" -c 2 --rate 400 --repeat 400 \
        --unique-control-ids "$ORU8" 2>/dev/null | tail -n 1 | sed 's/^/   warm-up: /'
      # shellcheck disable=SC2086
      kp_run embedded-split $KP_READER_ARGS
      bl_stop_pid "$TPID" "hl7bridge transform"; EXTRA_PIDS=${EXTRA_PIDS/ $TPID/}; TPID=""
      STAGE_DB=""; stop_bridge kp-embedded-split; rm -rf "$WORK/data-kp-split"
      continue
    fi
    [ "$run" = counted ] && echo "   through the request-counting proxy (its latencies include the proxy's hop)"
    # shellcheck disable=SC2086
    if [ "$run" = counted ]; then PROXY_PORT=${PROXY_PORT:-29093} kp_start "$run" && kp_run "$run" $KP_READER_ARGS
    else kp_start "$run" && kp_run "$run" $KP_READER_ARGS; fi
    kp_stop "$run"
  done
fi

# ---- Tansu over time: its CPU per message, window by window, at a rate it can sustain at first ---------------
# Tansu 0.6's fetch lists every batch of a partition (docs/tansu.md), so its cost per message grows with what the
# topics hold. Same layout as kafka-pipe, no latency reader; GROWTH_RATE msg/s for 7 windows of 15 s.
GROWTH_RATE=${GROWTH_RATE:-300}
if has kafka-growth; then
  echo; echo "## Tansu CPU per message over time: ORU^R01 8 OBX at $GROWTH_RATE msg/s, 8 connections, 7 x 15 s"
  if kp_start growth; then
    per=$(( GROWTH_RATE * 15 ))
    taskset -c 1 "$BRIDGE" replay --to "$HOST:$BRIDGE_PORT" -c 8 --rate "$GROWTH_RATE" --repeat $(( per * 7 + GROWTH_RATE * 5 )) \
      --unique-control-ids "$ORU8" > "$WORK/growth.out" 2>&1 &
    gpid=$!; EXTRA_PIDS="$EXTRA_PIDS $gpid"
    for w in 1 2 3 4 5 6 7; do
      read -r ta0 tb0 tt0 < <(kp_ticks); sleep 15; read -r ta1 tb1 tt1 < <(kp_ticks)
      echo "   window $w ($(( (w - 1) * 15 ))-$(( w * 15 )) s, ~$per messages): CPU us per message: tansu" \
        "$(( (ta1 - ta0) * 1000000 / HZ / per )), bridge $(( (tb1 - tb0) * 1000000 / HZ / per )), transform" \
        "$(( (tt1 - tt0) * 1000000 / HZ / per ))"
      "$PY" -c "import json,sys; open(sys.argv[1],'a').write(json.dumps(dict(suite='kafka-growth', window=int(sys.argv[2]), rate=int(sys.argv[3]), tansu_us=int(sys.argv[4]), bridge_us=int(sys.argv[5]), transform_us=int(sys.argv[6])))+'\n')" \
        "$RESULTS" "$w" "$GROWTH_RATE" $(( (ta1 - ta0) * 1000000 / HZ / per )) $(( (tb1 - tb0) * 1000000 / HZ / per )) \
        $(( (tt1 - tt0) * 1000000 / HZ / per ))
    done
    for i in $(seq 1 120); do kill -0 "$gpid" 2>/dev/null || break; sleep 1; done   # bounded: 120 s
    kill "$gpid" 2>/dev/null; wait "$gpid" 2>/dev/null; EXTRA_PIDS=${EXTRA_PIDS/ $gpid/}
    echo "   replay: $(grep -v '^replay: ' "$WORK/growth.out" | tail -n 1)"
  fi
  kp_stop growth
fi

# ---- whole pipeline on Kafka: ORU^R01 8 OBX as fast as the bridge ACKs, until the FHIR of the last one is visible
if has kafka-pipeline; then
  echo; echo "## whole pipeline on Kafka: ORU^R01 8 OBX, 8 connections, $PIPE_N messages (same split as kafka-pipe)"
  if kp_start pipeline; then
    taskset -c 1 "$KPY" "$E2E" --kafka "$HOST:$KAFKA_PORT" --expect "$PIPE_N" --seconds 600 \
      > "$WORK/e2e.json" 2> "$WORK/e2e.err" &
    rpid=$!; EXTRA_PIDS="$EXTRA_PIDS $rpid"
    sleep 8   # the reader joins its group before traffic starts (it reads from the end)
    t0=$(date +%s%N)
    FILES=$ORU8 replay_run kafka-pipeline oru8 8 "$PIPE_N"
    for i in $(seq 1 600); do kill -0 "$rpid" 2>/dev/null || break; sleep 1; done   # bounded: 600 s
    kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; EXTRA_PIDS=${EXTRA_PIDS/ $rpid/}
    echo "   reader: $(cat "$WORK/e2e.json" 2>/dev/null) $(tail -n 2 "$WORK/e2e.err" 2>/dev/null)"
    "$PY" - "$RESULTS" "$WORK/e2e.json" "$t0" "$PIPE_N" <<'EOF'
import json, sys
res, e2e, t0, n = sys.argv[1:]
rows = [json.loads(l) for l in open(res)]
try: e = json.load(open(e2e))
except Exception: e = {}
last = e.get("last_at")
rows[-1].update(suite="kafka-pipeline", fhir_seen=e.get("count"), e2e_p50_ms=e.get("p50_ms"), e2e_p99_ms=e.get("p99_ms"),
                pipeline_msgs_per_s=int(n) / (last - int(t0) / 1e9) if last else None)
print("   whole pipeline: %s msg/s (%s of %s messages' FHIR seen)" % (rows[-1]["pipeline_msgs_per_s"], e.get("count"), n))
open(res, "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF
  fi
  kp_stop pipeline
fi

# ---- idle connections -----------------------------------------------------------------------------------
if has idle; then
  echo; echo "## RSS with $IDLE_CONNS idle connections (embedded store, fresh bridge)"
  bl_start_bridge idle --data-dir "$WORK/data-idle"
  sleep 1
  base=$(bl_rss_kb "$BRIDGE_PID")
  taskset -c 1 "$PY" - "$HOST" "$BRIDGE_PORT" "$IDLE_CONNS" > "$WORK/idle.out" 2>&1 <<'EOF' &
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    socks.append(s)
print(f"opened {len(socks)}", flush=True)
time.sleep(12)
for s in socks: s.close()
EOF
  IPID=$!
  for i in $(seq 1 100); do grep -q opened "$WORK/idle.out" && break; kill -0 $IPID 2>/dev/null || break; sleep 0.1; done
  sleep 4
  est=$(ss -tnH state established "sport = :$BRIDGE_PORT" | wc -l)
  held=$(bl_rss_kb "$BRIDGE_PID")
  wait $IPID
  echo "   $(cat "$WORK/idle.out"); established at the bridge: $est; VmRSS before: $base kB, with the connections: $held kB"
  "$PY" -c "import json,sys; open(sys.argv[1],'a').write(json.dumps(dict(suite='idle', server='hl7bridge', backend='embedded', conns=int(sys.argv[2]), established=int(sys.argv[3]), rss_before_kb=int(sys.argv[4]), rss_kb=int(sys.argv[5])))+'\n')" \
    "$RESULTS" "$IDLE_CONNS" "$est" "$base" "$held"
  stop_bridge idle
  rm -rf "$WORK/data-idle"
fi

# ---- whole pipeline -------------------------------------------------------------------------------------
if has pipeline; then
  echo; echo "## whole pipeline: ORU^R01 8 OBX, 8 connections, $PIPE_N messages, stage on (embedded, fresh store)"
  bl_start_bridge pipeline --data-dir "$WORK/data-pipe"
  DB=$WORK/data-pipe/hl7bridge.db
  t0=$(date +%s%N)
  FILES=$ORU8 replay_run embedded-pipeline oru8 8 "$PIPE_N"
  t1=$(date +%s%N)
  read -r ins done lag fhir < <(stage_status "$DB")
  echo "   at the last ACK: $ins inputs, stage done $done, lag $lag, $fhir FHIR records"
  c0=$(bl_pid_ticks "$BRIDGE_PID")
  for i in $(seq 1 1800); do  # bounded: 180 s
    read -r ins2 done2 lag2 fhir2 < <(stage_status "$DB")
    [ "${lag2:-1}" -eq 0 ] && break
    sleep 0.1
  done
  t2=$(date +%s%N)
  echo "   caught up after $(( (t2 - t1) / 1000000 )) ms more: lag $lag2, $fhir2 FHIR records"
  "$PY" - "$RESULTS" "$ins" "$lag" "$lag2" "$fhir2" "$t0" "$t1" "$t2" "$PIPE_N" <<'EOF'
import json, sys
res, ins, lag, lag2, fhir, t0, t1, t2, n = sys.argv[1:]
rows = [json.loads(l) for l in open(res)]
t0, t1, t2 = int(t0), int(t1), int(t2)
rows[-1].update(suite="pipeline", lag_at_last_ack=int(lag), lag_final=int(lag2), fhir_records=int(fhir),
                catch_up_ms=(t2 - t1) / 1e6, pipeline_msgs_per_s=int(n) / ((t2 - t0) / 1e9) if int(lag2) == 0 else None)
open(res, "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF
  stop_bridge pipeline
  rm -rf "$WORK/data-pipe"
fi

# ---- peers --------------------------------------------------------------------------------------------
if has peers; then
  echo; echo "## peers ($PEERS_WORK), same loadgen and pinning"
  if [ ! -f "$PEERS_WORK/peers.sh" ] || [ ! -x "$LOADGEN" ]; then
    echo "SKIPPED: no $PEERS_WORK/peers.sh (run /work/shared/peers/setup.sh) or no loadgen"
  else
    for peer in $PEERS; do
      line=$(grep "^$peer|" "$PEERS_WORK/peers.sh") || { echo "unknown peer $peer"; continue; }
      IFS='|' read -r name port cmd modeflags <<<"$line"
      echo; echo "### $name"
      cd "$PEERS_WORK" || die "cd $PEERS_WORK"
      # shellcheck disable=SC2086
      bl_start_server "$name" "$port" "" $cmd; rc=$?
      cd "$WORK" || die "cd $WORK"
      [ "$rc" -eq 0 ] || { echo "   $name did not start"; bl_stop_pid "$SERVER_PID" "$name"; continue; }
      TARGET_PID=$SERVER_PID
      case $name in
        hl7apy|brightohir-convert) small="-n 400 --warmup 20";;
        v2fhir-bridge) small="-n 1000";;
        python-hl7|node-hl7-server) small="-n 5000";;
        *) small="-n $(( 20000 * SCALE / 100 ))";;
      esac
      if [ "$name" != mllp-codec-nc ]; then   # the -nc build exists for the pipelined case only
        # shellcheck disable=SC2086
        bl_repeat lg_run "$name" none "$port" $modeflags -c 1 $small
        # shellcheck disable=SC2086
        bl_repeat lg_run "$name" none "$port" $modeflags -c 8 $small
      fi
      case $name in
        # one message per connection (hl7apy, node-hl7-server) or no pipelining in the default build (mllp-codec)
        hl7apy|node-hl7-server|mllp-codec) ;;
        # shellcheck disable=SC2086
        *) lg_run "$name" none "$port" -c 8 $small --pipeline 16 --ack-timeout-ms 2000 --max-errors 20 ;;
      esac
      bl_stop_pid "$SERVER_PID" "$name"
      [ "$name" = v2fhir-bridge ] && rm -rf "$PEERS_WORK/v2fhir-bridge/bundles"   # one JSON file per message
      echo "   $name stopped; log tail:"; tail -n 3 "$WORK/$name.stderr" "$WORK/$name.stdout" 2>/dev/null | sed 's/^/   /'
    done
  fi
fi

fsync_probe end

# ---- summary ------------------------------------------------------------------------------------------
echo
echo "## Summary (medians of clean runs; latency from the median-throughput run; errors summed over ALL runs)"
"$PY" "$HERE/scripts/bench-summary.py" "$RESULTS" | tee "$WORK/summary.md"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp "$RESULTS" "$WORK/summary.md" "$OUT/" && echo "results copied to $OUT"; fi
echo
echo "# done $(date -u '+%H:%M:%S UTC')"
