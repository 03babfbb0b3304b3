#!/usr/bin/env bash
# Runs each fuzz target in turn for SECONDS_PER_TARGET (default 600) on its
# committed corpus, with the HL7 dictionary; logs go to fuzz/logs/<target>.log.
# Stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
# `-s none`: the address-sanitizer build fails because rdkafka-sys's
# configure links its C test programs without ASan (see README "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECONDS_PER_TARGET:-600}
mkdir -p logs
for t in ${TARGETS:-mllp_decoder parse_route_ack map_avro}; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" -- \
    -max_total_time="$secs" -dict=dict/hl7.dict -max_len=8192 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1 || echo "$t: exit $?"
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE' "logs/$t.log" || true
done
