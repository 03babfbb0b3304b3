#!/usr/bin/env bash
# The embedded store's size over time, with and without retention: `serve` (stage on) takes
# ORU^R01 (9 OBX) from `replay` at RATE msg/s over 4 connections for DURATION seconds, and the
# database file is sampled every STEP seconds. The capped run sets raw_bytes 8 MiB and
# fhir_bytes 32 MiB, checked every 5 s.
#   usage: scripts/soak-retention.sh [BINARY]    env: RATE [100] DURATION [240] STEP [40] PORT [2691]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-target/release/hl7bridge}
RATE=${RATE:-100}; SECONDS_TOTAL=${DURATION:-240}; STEP=${STEP:-40}; PORT=${PORT:-2691}
for mode in none capped; do
  d=$(mktemp -d); mkdir -p "$d/data"
  if [ "$mode" = capped ]; then
    printf '[retention]\nraw_bytes = "8MiB"\nfhir_bytes = "32MiB"\ncheck_every = "5s"\n' > "$d/c.toml"
  else
    : > "$d/c.toml"
  fi
  "$B" serve --config "$d/c.toml" --listen 127.0.0.1:$PORT --data-dir "$d/data" --metrics-listen "" --registry-listen "" > /dev/null 2>&1 &
  pid=$!; sleep 1.5
  "$B" replay fixtures/oru_r01_v251.hl7 --to 127.0.0.1:$PORT --repeat 1000000 --unique-control-ids -c 4 --rate "$RATE" > /dev/null 2>&1 &
  rp=$!
  for ((t = STEP; t <= SECONDS_TOTAL; t += STEP)); do
    sleep "$STEP"
    mapped=$(python3 -c "import sqlite3,sys;print(sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True).execute('select coalesce(sum(count),0) from stage_outcomes').fetchone()[0])" "$d/data/hl7bridge.db")
    echo "$mode t=${t}s mapped=$mapped db=$(stat -c %s "$d/data/hl7bridge.db") wal=$(stat -c %s "$d/data/hl7bridge.db-wal" 2>/dev/null || echo 0)"
  done
  kill "$rp" 2>/dev/null || true; sleep 1; kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$d"
done
