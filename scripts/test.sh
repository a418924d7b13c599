#!/usr/bin/env bash
# Install what the tests need (idempotent: fast when already done) and run every test.
#   - Debian packages: mosquitto (real broker for the end-to-end tests), rabbitmq-server (the
#     AMQP connector's tests; the tests start their own node, not the system service), and
#     libssl-dev, npm and valgrind if the machine lacks them;
#   - npm packages azurite and @azure/storage-blob (the blob sink's tests), node-red (the
#     relay benchmark's smoke run), and tansu (a Kafka-compatible broker, cargo install), in
#     $WEIR_TOOLS;
#   - the wasm32-wasip2 target and the example modules (scripts/build-filters.sh, which also
#     installs componentize-py from PyPI for the Python module);
#   - then: formatting, clippy with warnings denied (which also compiles the benchmarks;
#     the vendored rumqttc's manifest turns both off for its upstream code), the edge build
#     (no Kafka, AMQP, blob or embedded broker) checked to link none of them, the SDK's and the example
#     modules' own unit tests, every workspace test (the vendored rumqttc's unit tests too), smoke runs
#     of the relay benchmark, of the instruction counter, of the inline-stall probe and of
#     the idle-cost probe, and short fuzz runs of the route language, the queue's readers,
#     the aggregate checkpoint, the MQTT decoders and the header and property-bag mappings
#     (cargo-fuzz, installed once).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)   # rdkafka builds librdkafka with TLS
command -v npm >/dev/null 2>&1 || missing+=(npm)              # Azurite and the Azure SDK for the blob tests
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)    # scripts/count-instructions.sh
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# Test servers that are not Debian packages live in a tool directory outside the checkout.
export WEIR_TOOLS="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"

# tansu, a Kafka-compatible broker, for the kafka sink's tests (cargo install, ~18 minutes once;
# its build directory is kept so an interrupted install resumes).
if [[ ! -x "$WEIR_TOOLS/tansu/bin/tansu" ]]; then
    echo "installing tansu into $WEIR_TOOLS/tansu (about 18 minutes, once)"
    cargo install tansu@0.6.0 --features dynostore --locked --quiet --root "$WEIR_TOOLS/tansu" --target-dir "$WEIR_TOOLS/tansu-build"
fi

# Azurite (the Azure Storage emulator) and the Azure SDK for JavaScript, which the blob tests
# use as an independent reader.
if [[ ! -x "$WEIR_TOOLS/node/node_modules/.bin/azurite-blob" || ! -d "$WEIR_TOOLS/node/node_modules/@azure/storage-blob" ]]; then
    echo "installing azurite and @azure/storage-blob into $WEIR_TOOLS/node"
    mkdir -p "$WEIR_TOOLS/node"
    (cd "$WEIR_TOOLS/node" && npm install --no-audit --no-fund --silent azurite@3 @azure/storage-blob@12 >/dev/null)
fi

# Node-RED, for the relay benchmark's smoke run below (its R6 case).
scripts/install-node-red.sh

scripts/build-filters.sh

cargo fmt --all --check
(cd filters && cargo fmt --all --check)
cargo clippy --workspace --all-targets --quiet -- -D warnings
(cd filters && cargo clippy --all-targets --quiet -- -D warnings && cargo test --quiet)
CARGO_TARGET_DIR=filters/target cargo test --quiet --manifest-path sdk-guest/rust/Cargo.toml
# The edge build (no Kafka, AMQP, blob storage, IoT Hub or embedded broker) compiles and links
# none of their code; then the full binary, which the CLI tests run.
minimal=(-p weir --no-default-features --features mqtt,file)
if cargo tree "${minimal[@]}" -e normal --prefix none | grep -E '^(rdkafka|lapin|object_store|rumqttd) '; then
    echo "the minimal build (${minimal[*]}) depends on the crates above" >&2; exit 1
fi
cargo check "${minimal[@]}" --quiet
cargo build --workspace --quiet   # the CLI tests run the `weir` binary itself
log=$(mktemp)
cargo test --workspace 2>&1 | tee "$log"

# Smoke runs of the relay benchmark (every case, few messages, the debug build), of the
# instruction counter, of the inline-stall probe and of the idle-cost probe: keep them
# working; no figure is judged
# here (docs/benchmarks.md has the real runs).
cargo test -p weir-tests --bench relay 2>&1 | tail -n 20
scripts/count-instructions.sh target/debug/weir 200
scripts/inline-stall.sh target/debug/weir 1 | tail -n 1
scripts/idle-cost.sh target/debug/weir 1

# Short fuzz runs: the route parser and evaluator (30 s), what reads bytes from disk (queue
# segments, a queue lane opened on damaged files, aggregate checkpoints) and from other systems
# (MQTT packets, Kafka/AMQP headers and IoT Hub property bags), 20 s each. cargo-fuzz
# uses nightly-only compiler flags; RUSTC_BOOTSTRAP lets this machine's stable toolchain accept them.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked --quiet
(cd runtime/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run route "$(mktemp -d)" seeds/route -- -max_total_time=30 2>&1 | tail -n 3)
for target in queue_segment queue_lane checkpoint mqtt_packets metadata_mapping; do
    (cd runtime/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$(mktemp -d)" "seeds/$target" -- -max_total_time=20 2>&1 | tail -n 2)
done

# One closing line for the whole run (the fuzzer's output comes last otherwise).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
