#!/usr/bin/env bash
# How long other messages wait while a module called inline runs long: the figure behind
# "A long inline call set aside" in docs/benchmarks.md.
#
#   scripts/inline-stall.sh [BINARY] [DEADLINE_SECS]
#   (defaults: target/release/weir 3)
#
# weir reads two brokers: the local one feeds the chaos filter (the tests' module) and a
# plain route, a second one ("plant") another plain route. Once the filter is called inline,
# it is sent `loop`, which spins until its deadline; meanwhile, every 50 ms, a reading with
# its send time as payload is published to each plain route. Prints, for each source, the
# largest and the median wait (receive time minus send time). Needs mosquitto,
# mosquitto-clients, python3 and the example modules (scripts/build-filters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/weir}")
deadline=${2:-3}
tools=()
source scripts/relay-setup.sh
chaos=$PWD/filters/target/wasm32-wasip2/release/chaos.wasm
plant=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$plant" >"$work/plant.conf"
mosquitto -c "$work/plant.conf" >"$work/plant.log" 2>&1 &
pids+=($!)
cat >"$work/stall.toml" <<EOF
[broker]
url = "mqtt://127.0.0.1:$port"
[modules.chaos]
path = "$chaos"
deadline = "${deadline}s"
batch_size = 1
[sources.plant]
type = "mqtt"
connection = { url = "mqtt://127.0.0.1:$plant" }
topics = ["line/#"]
[routes]
chaos_in = 'FROM /topics/chaos INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
chaos_out = 'FROM /messages/modules/chaos/outputs/* INTO /topics/survived'
direct = 'FROM /topics/direct INTO /topics/passed'
plant = "FROM /topics/line/# WHERE \$source = 'plant' INTO /topics/relayed"
EOF
sleep 0.3
start_weir "$work/stall.toml"

# Twenty short calls make the filter inline.
seq 20 | mosquitto_pub -p "$port" -t chaos -l
for _ in $(seq 50); do grep -q "called where its messages arrive" "$work/weir.log" && break; sleep 0.1; done
grep -q "called where its messages arrive" "$work/weir.log" || { cat "$work/weir.log" >&2; echo "the filter was not called inline" >&2; exit 1; }

readings=$((deadline * 20))
mosquitto_sub -p "$port" -t relayed -t passed -C $((readings * 2)) -F '%t %U %p' >"$work/received" &
subscriber=$!
pids+=("$subscriber")
sleep 0.3
mosquitto_pub -p "$port" -t chaos -m loop
for _ in $(seq "$readings"); do
    mosquitto_pub -p "$plant" -t line/1 -m "$(date +%s.%N)"
    mosquitto_pub -p "$port" -t direct -m "$(date +%s.%N)"
    sleep 0.05
done
for _ in $(seq 100); do kill -0 "$subscriber" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$subscriber" 2>/dev/null; then echo "the subscriber did not receive all $((readings * 2)) readings" >&2; exit 1; fi
python3 - "$work/received" "$(basename "$binary")" <<'EOF'
import sys
waits = {"passed": [], "relayed": []}
for topic, received, sent in (line.split() for line in open(sys.argv[1])):
    waits[topic].append((float(received) - float(sent)) * 1000)
report = []
for topic, source in (("passed", "same source"), ("relayed", "other source")):
    ms = sorted(waits[topic])
    report.append(f"{source}: largest {ms[-1]:.0f}, median {ms[len(ms) // 2]:.1f}")
print(f"{sys.argv[2]}: wait in ms of {len(waits['passed'])} readings per source while an inline call ran long: " + "; ".join(report))
EOF
