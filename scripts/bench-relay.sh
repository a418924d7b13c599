#!/usr/bin/env bash
# The performance issue's benchmark in one run: R1 and R1b beside a plain Mosquitto
# subscriber, R8 latency, R6 against a Node-RED flow, R9 memory and startup; see
# docs/benchmarks.md. WEIR_BENCH_MESSAGES sets messages per throughput case.
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_TOOLS="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"
scripts/install-node-red.sh
scripts/build-filters.sh >/dev/null
cargo build --release -p weir
cargo bench -p weir-tests --bench relay
