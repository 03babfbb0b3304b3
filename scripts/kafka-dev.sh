#!/usr/bin/env bash
# A real Kafka-protocol broker for development and tests: Tansu 0.6 (Apache-2.0).
#
#   scripts/kafka-dev.sh install         # cargo install tansu (skipped when already at the version)
#   scripts/kafka-dev.sh start [PORT]    # memory storage on 127.0.0.1:PORT (default 19092)
#   scripts/kafka-dev.sh start-sqlite [PORT] [FILE]   # durable storage, survives restarts
#   scripts/kafka-dev.sh stop | status | bin
#
# The test suite starts its own private brokers from the same binary; `start`
# is for running hl7bridge by hand (`--kafka-brokers 127.0.0.1:19092`).
set -euo pipefail
TANSU_VERSION=0.6.0
STATE=${HL7BRIDGE_KAFKA_STATE:-${TMPDIR:-/tmp}/hl7bridge-kafka}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin

tansu_bin() {
  if [ -n "${TANSU_BIN:-}" ]; then echo "$TANSU_BIN"; return; fi
  if [ -x "$CARGO_BIN/tansu" ]; then echo "$CARGO_BIN/tansu"; return; fi
  command -v tansu || true
}

install() {
  local b; b=$(tansu_bin)
  if [ -n "$b" ] && "$b" --version 2>/dev/null | grep -q "tansu $TANSU_VERSION"; then
    echo "tansu $TANSU_VERSION already installed at $b"; return
  fi
  echo "installing tansu $TANSU_VERSION (about 12 min on 2 cores)..."
  # memory storage needs dynostore, sqlite storage needs libsql.
  cargo install tansu --locked --version "$TANSU_VERSION" --features libsql,dynostore
}

start() {
  local engine=$1 port=$2
  mkdir -p "$STATE"
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    echo "already running (pid $(cat "$STATE/pid"))"; return
  fi
  local b; b=$(tansu_bin); [ -n "$b" ] || { echo "tansu not installed: run $0 install" >&2; exit 1; }
  nohup "$b" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$engine" > "$STATE/tansu.log" 2>&1 &
  echo $! > "$STATE/pid"
  for _ in $(seq 1 100); do   # bounded: 10 s
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then echo "tansu on 127.0.0.1:$port ($engine), pid $(cat "$STATE/pid")"; return; fi
    sleep 0.1
  done
  echo "tansu did not start; log:" >&2; tail -20 "$STATE/tansu.log" >&2; exit 1
}

stop() {
  if [ -f "$STATE/pid" ]; then kill "$(cat "$STATE/pid")" 2>/dev/null || true; rm -f "$STATE/pid"; echo stopped; fi
}

case "${1:-}" in
  install) install ;;
  start) start "memory://tansu/" "${2:-19092}" ;;
  # Tansu reads sqlite:///x as a relative path; an absolute one needs four slashes.
  start-sqlite) f=${3:-$STATE/tansu.db}; mkdir -p "$(dirname "$f")"; start "sqlite:///$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "${2:-19092}" ;;
  stop) stop ;;
  status) if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then echo "running (pid $(cat "$STATE/pid"))"; else echo "not running"; exit 1; fi ;;
  bin) tansu_bin ;;
  *) echo "usage: $0 install|start [PORT]|start-sqlite [PORT] [FILE]|stop|status|bin" >&2; exit 2 ;;
esac
