# Sourced by count-instructions.sh, cpu-per-message.sh and inline-stall.sh: what they need around one weir
# run of the relay job. After sourcing: $module (the pass-through filter), $work (a directory
# removed on exit, with every process in $pids killed), $port (Mosquitto listening on it,
# with the relay benchmark's settings), and free_port.
for tool in "${tools[@]}" mosquitto mosquitto_pub mosquitto_sub python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install valgrind mosquitto mosquitto-clients python3" >&2; exit 1; }
done
module=$PWD/filters/target/wasm32-wasip2/release/pass_through.wasm
[[ -f $module ]] || { echo "$module is missing: run scripts/build-filters.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 200000\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
