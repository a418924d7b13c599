#!/usr/bin/env bash
# weir's CPU time and context switches per message for one burst of readings, or for readings
# at a steady rate: the R1 job (MQTT source → pass-through WASM filter → null sink) or the R1b
# job (the filter's output republished to a local topic). For comparing builds where
# throughput runs are noise; run the builds alternately. See docs/benchmarks.md ("Modules
# called inline", and "At low rates" for RATE).
#
#   scripts/cpu-per-message.sh [BINARY] [MESSAGES] [PAYLOAD_BYTES] [QOS] [null|republish] [RATE]
#   (defaults: target/release/weir 50000 64 1 republish 0)
#
# Starts Mosquitto on a free loopback port and weir, publishes MESSAGES readings with
# mosquitto_pub, as fast as the broker takes them or (RATE > 0) RATE a second, paced by a
# Python loop (at 200 a second, 3,000 readings give the 10 ms CPU ticks a resolution of about
# 5 %), waits until weir has handled all of them
# (the null sink's count on /metrics, or a subscriber that has every republished copy), and
# reads weir's user+system CPU ticks (/proc, 10 ms each) and its threads' voluntary context
# switches over that time. Needs mosquitto, mosquitto-clients and the example modules
# (scripts/build-filters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/weir}")
messages=${2:-50000}
size=${3:-64}
qos=${4:-1}
job=${5:-republish}
rate=${6:-0}
tools=()
source scripts/relay-setup.sh
metrics=$(free_port)
case $job in
    null) sink=$'[sinks.discard]\ntype = "null"'; into=discard ;;
    republish) sink=""; into='/topics/out/x' ;;
    *) echo "job is null or republish, not $job" >&2; exit 1 ;;
esac
cat >"$work/relay.toml" <<EOF
[runtime]
http_listen = "127.0.0.1:$metrics"
[broker]
url = "mqtt://127.0.0.1:$port"
qos = $qos
client_id = "cpu-per-message-$$"
[modules.job]
path = "$module"
kind = "filter"
$sink
[routes]
in = 'FROM /topics/bench/# INTO BrokeredEndpoint("/modules/job/inputs/in")'
out = 'FROM /messages/modules/job/outputs/* INTO $into'
EOF
sleep 0.2
start_weir "$work/relay.toml"
python3 -c "
pad = 'x' * max(0, $size - 40)
for i in range($messages): print('{\"seq\":%d,\"temperature\":80,\"pad\":\"%s\"}' % (i, pad))" >"$work/readings"
if [[ $job == republish ]]; then
    mosquitto_sub -p "$port" -t 'out/#' -q "$qos" -C "$messages" >/dev/null &
    subscriber=$!
    pids+=("$subscriber")
    sleep 0.3
fi
handled() {
    python3 -c "
import urllib.request
text = urllib.request.urlopen('http://127.0.0.1:$metrics/metrics').read().decode()
print(sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith('weir_sink_messages_total') and 'discard' in l))"
}
ticks() { awk '{print $14 + $15}' "/proc/$weir/stat"; }
switches() { cat /proc/"$weir"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }
cpu0=$(ticks)
switches0=$(switches)
start=$(date +%s.%N)
if ((rate > 0)); then
    python3 -c "
import sys, time
due = time.monotonic()
for line in open('$work/readings'):
    sys.stdout.write(line); sys.stdout.flush()
    due += 1 / $rate
    time.sleep(max(0, due - time.monotonic()))" | mosquitto_pub -p "$port" -t bench/in -q "$qos" -l
else
    mosquitto_pub -p "$port" -t bench/in -q "$qos" -l <"$work/readings"
fi
for _ in $(seq 1200); do
    if [[ $job == republish ]]; then kill -0 "$subscriber" 2>/dev/null || break; else (($(handled) >= messages)) && break; fi
    sleep 0.05
done
end=$(date +%s.%N)
incomplete() {
    echo "$1 (the broker's log, then weir's, follow; Mosquitto 2.0 has disconnected mosquitto_pub \"due to out of memory\" after some 35,000 QoS 1 messages sent in one go: send fewer)" >&2
    tail -n 3 "$work/mosquitto.log" "$work/weir.log" >&2
    exit 1
}
if [[ $job == republish ]] && kill -0 "$subscriber" 2>/dev/null; then incomplete "the subscriber did not receive all $messages messages within a minute"; fi
if [[ $job == null ]] && (($(handled) < messages)); then incomplete "weir handled $(handled) of $messages messages within a minute"; fi
cpu=$(($(ticks) - cpu0))
switched=$(($(switches) - switches0))
inline=$(grep -q "called where its messages arrive" "$work/weir.log" && echo "called inline" || echo "called on its own thread")
grep -q "ran long" "$work/weir.log" && inline="$inline, then on its own thread after a long call"
paced=""
((rate > 0)) && paced=", $rate a second"
python3 -c "print('%s: %d messages of %d B at QoS %s (%s%s), %.2f s: %.2f µs of CPU and %.2f context switches per message (module %s)' % (
    '$(basename "$binary")', $messages, $size, '$qos', '$job', '$paced', $end - $start, $cpu * 10000.0 / $messages, $switched / $messages, '$inline'))"
