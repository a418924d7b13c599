# Sourced by count-instructions.sh, cpu-per-message.sh, inline-stall.sh and idle-cost.sh: what
# they need around one weir run of the relay job. After sourcing: $module (the pass-through
# filter), $work (a directory removed on exit, with every process in $pids killed), $port
# (Mosquitto listening on it, with the relay benchmark's settings), free_port, and start_weir.
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

# start_weir PIPELINE [WRAPPER...]: run `$binary run PIPELINE` (under WRAPPER, e.g. valgrind)
# in the background, its log in $work/weir.log and its pid in $weir, and wait until it is
# ready ($ready_within seconds at most, 30 unless set).
start_weir() {
    "${@:2}" "$binary" run "$1" >"$work/weir.log" 2>&1 &
    weir=$!
    pids+=("$weir")
    for _ in $(seq $((${ready_within:-30} * 10))); do
        grep -q "ready: every source" "$work/weir.log" && return
        kill -0 "$weir" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/weir.log" >&2
    echo "weir did not get ready" >&2
    exit 1
}
