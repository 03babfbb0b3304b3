#!/usr/bin/env bash
# Instructions per message on the ACK path: the whole `serve --no-transform` process (release,
# TOKIO_WORKER_THREADS=1) under callgrind, driven by the peers' loadgen at C connections (its
# ADT/ORU mix, every ACK checked). Per message = (total at N2 - total at N1) / (N2 - N1), so
# start-up and shutdown cancel out. Instruction counts do not depend on other load, so this can
# run on a busy machine.
#   usage: scripts/callgrind-ingest.sh     env: BIN [target/release/hl7bridge], LOADGEN, C [8],
#          N1 [1000], N2 [3000], PORT [27631], EXTRA (more serve flags, e.g. "" to keep the stage on)
set -eu
cd "$(dirname "$0")/.."
B=${BIN:-target/release/hl7bridge}
LG=${LOADGEN:-${PEERS_WORK:-$HOME/.cache/hl7-peers}/bin/loadgen}
C=${C:-8}; N1=${N1:-1000}; N2=${N2:-3000}; PORT=${PORT:-27631}
EXTRA=${EXTRA---no-transform}
[ -x "$B" ] || { echo "no $B (cargo build --release)"; exit 2; }
[ -x "$LG" ] || { echo "no loadgen at $LG (set LOADGEN)"; exit 2; }
command -v valgrind > /dev/null || { echo "valgrind is not installed"; exit 2; }
total() { # N -> total instructions of the serve process (runs in $(...): its own EXIT trap)
  local d out i pid=""
  trap '[ -n "$pid" ] && kill $pid 2> /dev/null' EXIT
  d=$(mktemp -d); out=$d/callgrind.out
  # shellcheck disable=SC2086
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$B" serve --listen 127.0.0.1:$PORT --metrics-listen "" --registry-listen "" $EXTRA \
    --data-dir "$d/data" > "$d/serve.log" 2>&1 & pid=$!
  for i in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
  "$LG" --port $PORT -c "$C" -n "$1" --max-secs 600 > "$d/loadgen.log" 2>&1 \
    || { echo "loadgen failed at N=$1:"; tail -3 "$d/loadgen.log"; kill $pid; exit 1; }
  grep -q '"errors":0' "$d/loadgen.log" || { echo "loadgen saw errors at N=$1"; tail -2 "$d/loadgen.log"; exit 1; }
  kill -TERM $pid; wait $pid || true; pid=""
  grep -m1 '^summary:\|^totals:' "$out" | awk '{print $2}'
  rm -rf "$d"
}
t1=$(total "$N1"); t2=$(total "$N2")
echo "serve $EXTRA, C=$C: N=$N1 $t1 instructions, N=$N2 $t2 instructions, per message $(( (t2 - t1) / (N2 - N1) ))"
