#!/usr/bin/env bash
# The whole test suite, as the README gives it and as .ci/run calls it.
# Installs what the suite needs (the Tansu Kafka broker; Confluent's Python client, python-hl7
# and jsonschema in target/pyenv), then runs every test.
# Kafka tests start their own private brokers from that binary and must not skip.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/kafka-dev.sh install
scripts/pyenv.sh
export HL7BRIDGE_REQUIRE_KAFKA=1
export TANSU_BIN="${TANSU_BIN:-$(scripts/kafka-dev.sh bin)}"

# Benchmarks are compiled, not run: speed is measured by `cargo bench`, never asserted in tests.
cargo test --locked --features fuzzing --benches --no-run --quiet
# `fuzzing` compiles the fuzz targets' checks, so the corpora run as tests.
cargo test --locked --features fuzzing --lib --bins --tests "$@"
