#!/usr/bin/env bash
# The relay benchmarks (R1, R1b) beside a plain Mosquitto subscriber, and idle memory and
# startup readings; see docs/benchmarks.md. WEIR_BENCH_MESSAGES sets messages per case.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-filters.sh >/dev/null
cargo build --release -p weir
cargo bench -p weir-tests --bench relay
