#!/usr/bin/env bash
# What an idle weir costs besides memory: CPU time and wake-ups per second, per thread, with
# the relay job (MQTT source → pass-through WASM filter → republished) and no traffic. See
# docs/benchmarks.md ("An idle weir sleeps").
#
#   scripts/idle-cost.sh [BINARY] [SECONDS]
#   (defaults: target/release/weir 10)
#
# Starts Mosquitto on a free loopback port and weir, sends one reading through (so the
# module has been called), waits 3 s, then counts weir's CPU ticks (/proc, 10 ms each) and
# each thread's voluntary context switches (its wake-ups) over SECONDS. Needs mosquitto,
# mosquitto-clients and the example modules (scripts/build-filters.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/weir}")
seconds=${2:-10}
tools=()
source scripts/relay-setup.sh
cat >"$work/idle.toml" <<EOF
[broker]
url = "mqtt://127.0.0.1:$port"
[modules.job]
path = "$module"
kind = "filter"
[routes]
in = 'FROM /topics/bench/# INTO BrokeredEndpoint("/modules/job/inputs/in")'
out = 'FROM /messages/modules/job/outputs/* INTO /topics/out/x'
EOF
sleep 0.2
start_weir "$work/idle.toml"
mosquitto_pub -p "$port" -t bench/in -m '{"temperature":80}'
sleep 3
per_thread() { for task in /proc/"$weir"/task/*; do echo "${task##*/} $(tr ' ' _ <"$task/comm") $(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status")"; done; }
ticks() { awk '{print $14 + $15}' "/proc/$weir/stat"; }
cpu0=$(ticks)
per_thread >"$work/before"
sleep "$seconds"
cpu=$(($(ticks) - cpu0))
per_thread >"$work/after"
echo "$(basename "$binary"): idle for $seconds s: $((cpu * 10)) ms of CPU; wake-ups per second by thread name:"
awk -v s="$seconds" '
    FNR == NR { before[$1] = $3; next }
    { woke[$2] += ($3 - before[$1]) / s }
    END { for (name in woke) printf "  %-18s %.1f\n", name, woke[name] }' "$work/before" "$work/after" | sort
