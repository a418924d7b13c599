#!/usr/bin/env bash
# Size and idle memory of weir's full and edge builds (the README's figures).
#
#   scripts/edge-sizes.sh               build both (release, ~25 min on 2 cores), then measure
#   scripts/edge-sizes.sh BIN [BIN…]    measure these binaries only
#
# Each binary is stripped (a copy), then runs a pipeline with one MQTT source on a Mosquitto
# of its own (127.0.0.1, a free port) and a file sink; its resident memory is read 2 s after
# it is ready. Needs mosquitto (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "${broker:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

binaries=("$@")
if [[ ${#binaries[@]} -eq 0 ]]; then
    cargo build --release -p weir --quiet
    cp target/release/weir "$work/weir-full"
    cargo build --release -p weir --no-default-features --features mqtt,file --quiet
    cp target/release/weir "$work/weir-mqtt-file"
    binaries=("$work/weir-full" "$work/weir-mqtt-file")
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
sleep 0.5
cat > "$work/pipeline.toml" <<TOML
upstream = "out"
[broker]
url = "mqtt://127.0.0.1:$port"
[sinks.out]
type = "file"
path = "$work/out.jsonl"
[routes]
up = "FROM /topics/# INTO \$upstream"
TOML

for binary in "${binaries[@]}"; do
    stripped="$work/$(basename "$binary").stripped"
    cp "$binary" "$stripped"
    strip "$stripped"
    "$stripped" run "$work/pipeline.toml" > "$work/log" 2>&1 &
    weir=$!
    for _ in $(seq 100); do grep -q "ready: every source" "$work/log" && break; sleep 0.1; done
    sleep 2
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$weir/status")
    kill -TERM "$weir"
    wait "$weir" || true
    awk -v name="$binary" -v stripped="$(stat -c %s "$stripped")" -v built="$(stat -c %s "$binary")" -v rss="$rss" \
        'BEGIN { printf "%s: %.1f MiB stripped (%.1f MiB as built), idle RSS %.1f MiB\n", name, stripped / 1048576, built / 1048576, rss / 1024 }'
done
