#!/usr/bin/env bash
# The ACK rate with the in-process stage on, against `--no-transform`, in back-to-back pairs:
# the release bridge on CPU 0 (TOKIO_WORKER_THREADS=1), the peers' loadgen on CPU 1 (every ACK
# checked), C = 1, 8, 64. Prints one line per run with the load average at its start; a pair
# means something only if both runs saw the same load. With a peer set built by the peers' setup.sh
# (PEERS_WORK, default ~/.cache/hl7-peers), brightohir (Python, ACK only, stores nothing) runs in each
# repetition too, pinned the same way, so the ratio to it comes from the same run.
#   usage: scripts/bench-stage-ack.sh
#   env:   REPS [2], LOADGEN, BIN [target/release/hl7bridge], PORT [27611], PEERS_WORK, PEER_PORT [12008]
set -u
cd "$(dirname "$0")/.."
B=${BIN:-target/release/hl7bridge}
PW=${PEERS_WORK:-$HOME/.cache/hl7-peers}
LG=${LOADGEN:-$PW/bin/loadgen}
PEER_PORT=${PEER_PORT:-12008}
PORT=${PORT:-27611}
[ -x "$B" ] || { echo "no $B (cargo build --release)"; exit 2; }
[ -x "$LG" ] || { echo "no loadgen at $LG (set LOADGEN)"; exit 2; }
for rep in $(seq 1 "${REPS:-2}"); do
  for mode in no-transform stage; do
    for c in 1 8 64; do
      d=$(mktemp -d); extra=""; [ "$mode" = no-transform ] && extra="--no-transform"
      TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$B" serve --listen 127.0.0.1:$PORT --metrics-listen "" \
        --registry-listen "" $extra --data-dir "$d" > /dev/null 2>&1 & pid=$!
      sleep 1
      load=$(cut -d' ' -f1 /proc/loadavg)
      n=6000; [ "$c" = 1 ] && n=3000
      r=$(taskset -c 1 "$LG" --port $PORT -c "$c" -n "$n" --warmup 300 --max-secs 60 2>&1 \
        | grep -o '"msgs_per_s":[0-9.]*\|"p50_ms":[0-9.]*\|"p99_ms":[0-9.]*\|"errors":[0-9]*' | tr '\n' ' ')
      echo "rep$rep $mode C=$c load=$load $r"
      kill -TERM $pid; wait $pid; rm -rf "$d"
    done
  done
  if [ -x "$PW/fhirvenv/bin/python" ] && [ -f "$PW/brightohir/server.py" ]; then
    for c in 1 8 64; do
      (cd "$PW" && exec taskset -c 0 ./fhirvenv/bin/python brightohir/server.py $PEER_PORT) > /dev/null 2>&1 & pid=$!
      for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$PEER_PORT) 2>/dev/null && break; sleep 0.1; done
      load=$(cut -d' ' -f1 /proc/loadavg)
      n=6000; [ "$c" = 1 ] && n=3000
      r=$(taskset -c 1 "$LG" --port $PEER_PORT -c "$c" -n "$n" --warmup 300 --max-secs 60 2>&1 \
        | grep -o '"msgs_per_s":[0-9.]*\|"p50_ms":[0-9.]*\|"p99_ms":[0-9.]*\|"errors":[0-9]*' | tr '\n' ' ')
      echo "rep$rep brightohir C=$c load=$load $r"
      kill -TERM $pid; wait $pid 2>/dev/null
    done
  fi
done
