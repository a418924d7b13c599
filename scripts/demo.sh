#!/usr/bin/env bash
# Run the demo pipeline on weir's embedded MQTT broker (nothing else needs installing):
# builds the example modules and weir, starts `weir run pipelines/demo.toml`, and simulated
# machines publishing telemetry. Watch the alerts from another terminal with any MQTT client:
#     mosquitto_sub -h 127.0.0.1 -p 1883 -t 'alerts/#' -v
# and what goes "upstream" in out/upstream.jsonl. Ctrl-C stops both (weir drains first).
set -euo pipefail
cd "$(dirname "$0")/.."

WEIR_SKIP_PYTHON=1 scripts/build-filters.sh
cargo build --release --quiet -p weir
weir=target/release/weir

"$weir" run pipelines/demo.toml &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break
    kill -0 $pid 2>/dev/null || exit 1
    sleep 0.1
done
echo "weir is running. Alerts: mosquitto_sub -h 127.0.0.1 -p 1883 -t 'alerts/#' -v   Upstream: tail -f out/upstream.jsonl"
"$weir" simulate --machines 5 --rate 2 "$@"
