#!/usr/bin/env bash
# Instructions weir executes per message on the R1b path (MQTT source → pass-through WASM
# filter → republished to a local topic), counted by valgrind's callgrind: the same count
# for the same binary and input however busy the machine is, so small changes show where
# throughput runs are noise. See docs/benchmarks.md ("Instructions per message").
#
#   scripts/count-instructions.sh [BINARY] [MESSAGES] [QOS] [INLINE_BUDGET]
#   (defaults: target/release/weir 5000 0 50ms)
#
# Under valgrind a module call takes some 50 times as long as at full speed, so the pipeline's
# `inline_call_budget` is 50 ms here: the module is called inline, as it would be at 1 ms at
# full speed. INLINE_BUDGET=0s counts the path through the module's own thread; an empty one
# leaves the setting out (builds older than the setting reject it).
#
# Starts Mosquitto on a free loopback port and weir under callgrind, zeroes the counters
# once weir is ready, publishes MESSAGES readings of ~60 bytes with mosquitto_pub, waits
# until a subscriber has all the republished copies, and divides weir's instructions since
# the zeroing by MESSAGES. Needs valgrind, mosquitto, mosquitto-clients and the example
# modules (scripts/build-filters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/weir}")
messages=${2:-5000}
qos=${3:-0}
budget=${4-50ms}
tools=(valgrind callgrind_control)
source scripts/relay-setup.sh
runtime=""
[[ -n $budget ]] && runtime=$'[runtime]\ninline_call_budget = "'"$budget"'"'
cat >"$work/relay.toml" <<EOF
$runtime
[broker]
url = "mqtt://127.0.0.1:$port"
qos = $qos
[modules.job]
path = "$module"
kind = "filter"
[routes]
in = 'FROM /topics/bench/# INTO BrokeredEndpoint("/modules/job/inputs/in")'
out = 'FROM /messages/modules/job/outputs/* INTO /topics/out/{\$topic[1]}'
EOF
sleep 0.3
ready_within=120 start_weir "$work/relay.toml" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out"

python3 -c "
for i in range($messages): print('{\"seq\":%d,\"temperature\":80,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}' % i)" >"$work/readings"
mosquitto_sub -p "$port" -t 'out/#' -q "$qos" -C "$messages" >/dev/null &
subscriber=$!
pids+=("$subscriber")
sleep 0.5
callgrind_control -z "$weir" >/dev/null 2>&1
mosquitto_pub -p "$port" -t bench/in -q "$qos" -l <"$work/readings"
for _ in $(seq 600); do kill -0 "$subscriber" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$subscriber" 2>/dev/null; then echo "the subscriber did not receive all $messages messages" >&2; exit 1; fi
callgrind_control -d "$weir" >/dev/null 2>&1
sleep 1
dump=$(ls -t "$work"/callgrind.out.* | head -1)
total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
inline=$(grep -q "called where its messages arrive" "$work/weir.log" && echo "the module called inline" || echo "the module called on its own thread")
echo "$(basename "$binary"): $messages messages at QoS $qos, $total instructions, $((total / messages)) per message ($inline)"
