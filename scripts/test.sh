#!/usr/bin/env bash
# The whole test suite, as the README gives it and as .ci/run calls it.
# Installs and starts whatever the suite needs, runs every test, cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets "$@"
# Doc tests are not part of --all-targets.
cargo test --locked --doc
