#!/usr/bin/env bash
# Instructions per message of the embedded stage catching up, under callgrind: two stores are filled by
# `serve --no-transform` + `replay` (N and 2N messages of FIXTURE), then `transform --data-dir` runs under
# callgrind on each until its cursor reaches the last raw record, and is stopped with SIGTERM.
# Per message = (total(2N) - total(N)) / N, so start-up and shutdown cancel out. Instruction counts do not
# depend on what else runs on the machine (wall-clock figures would).
#   usage: scripts/profile-stage.sh      env: N [1000], FIXTURE [fixtures/bench/oru_r01_8obx.hl7],
#          BIN [target/release/hl7bridge], PORT [27631], OUT [a new directory under /tmp]: callgrind files kept there
# Only 127.0.0.1 is used; every wait is bounded; everything started here is stopped by PID.
set -u
cd "$(dirname "$0")/.."
B=$(realpath "${BIN:-target/release/hl7bridge}")
N=${N:-1000}
FIXTURE=${FIXTURE:-fixtures/bench/oru_r01_8obx.hl7}
PORT=${PORT:-27631}
OUT=${OUT:-$(mktemp -d /tmp/hl7bridge-profile-stage.XXXXXX)}
[ -x "$B" ] || { echo "no $B (cargo build --release)"; exit 2; }
command -v valgrind > /dev/null || { echo "valgrind is needed"; exit 2; }
mkdir -p "$OUT"
PID=""
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; }
trap cleanup EXIT

raw_last() { # the last raw input's store id
  sqlite3 "file:$1/hl7bridge.db?mode=ro" "SELECT COALESCE(MAX(id), 0) FROM records WHERE topic LIKE 'hl7v2.%' AND topic <> 'hl7v2.dlq'"
}
cursor() {
  sqlite3 "file:$1/hl7bridge.db?mode=ro" "SELECT last_id FROM stage_cursors" 2>/dev/null || echo 0
}

fill() { # fill DIR COUNT
  local d=$1 n=$2 i
  ! (exec 3<> /dev/tcp/127.0.0.1/$PORT) 2>/dev/null || { echo "port $PORT is in use (set PORT)"; exit 1; }
  RUST_LOG=warn "$B" serve --no-transform --listen 127.0.0.1:$PORT --metrics-listen "" --registry-listen "" \
    --data-dir "$d" > "$OUT/serve.log" 2>&1 & PID=$!
  for i in $(seq 1 100); do (exec 3<> /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  "$B" replay --to 127.0.0.1:$PORT -c 8 --repeat "$n" --unique-control-ids --timeout 30s "$FIXTURE" > "$OUT/replay.log" 2>&1 \
    || { echo "replay failed: $(tail -3 "$OUT/replay.log")"; exit 1; }
  kill -TERM "$PID"; wait "$PID"; PID=""
  # Another process on this machine may have sent to the port meanwhile.
  i=$(sqlite3 "file:$d/hl7bridge.db?mode=ro" "SELECT COUNT(*) FROM records")
  [ "$i" = "$n" ] || { echo "the store holds $i records, not the $n sent (did something else send to port $PORT?)"; exit 1; }
}

profile() { # profile DIR NAME: prints the program's total instructions
  local d=$1 name=$2 last i
  last=$(raw_last "$d")
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name" \
    "$B" transform --data-dir "$d" --metrics-listen "" --registry-listen "" > "$OUT/transform.$name.log" 2>&1 & PID=$!
  for i in $(seq 1 6000); do  # bounded: 10 min
    [ "$(cursor "$d")" = "$last" ] && break
    sleep 0.1
  done
  [ "$(cursor "$d")" = "$last" ] || { echo "the stage did not catch up on $name within 10 min"; exit 1; }
  kill -TERM "$PID"; wait "$PID"; PID=""
  callgrind_annotate "$OUT/callgrind.$name" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
}

fill "$OUT/one" "$N"
fill "$OUT/two" $(( 2 * N ))
t1=$(profile "$OUT/one" one)
t2=$(profile "$OUT/two" two)
echo "fixture: $FIXTURE; binary: $B (sha256 $(sha256sum "$B" | cut -c1-16))"
echo "total instructions: N=$N $t1, 2N=$(( 2 * N )) $t2"
echo "per message: $(( (t2 - t1) / N ))"
echo "callgrind files: $OUT/callgrind.one, $OUT/callgrind.two"
