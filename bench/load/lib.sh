# Helpers shared by bench/load/run.sh and bench/load/peers.sh (sourced; needs $out and $edgews).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME CPUS COMMAND...: starts a server, sets ${NAME}_pid and ${NAME}_port (the last word of the first line
# the server prints).
start() {
  local name=$1 cpus=$2; shift 2
  local fifo=$out/$name.fifo
  rm -f "$fifo"; mkfifo "$fifo"
  taskset -c "$cpus" "$@" >"$fifo" 2>"$out/$name.log" &
  local pid=$!
  pids+=("$pid")
  local line
  read -r -t 10 line <"$fifo" || { echo "$name did not start" >&2; exit 1; }
  rm -f "$fifo"
  printf -v "${name}_pid" %s "$pid"
  printf -v "${name}_port" %s "${line##* }"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

load() {  # load NAME PORT PID JSON ARGS...   (ws://; set scheme=wss and ca=FILE for wss://)
  local name=$1 port=$2 pid=$3 json=$4; shift 4
  local tls=()
  if [ "${scheme:-ws}" = wss ]; then tls=(--ca "$ca"); fi
  taskset -c 1 "$edgews" load "${scheme:-ws}://127.0.0.1:$port/" "${tls[@]}" --server-pid "$pid" --json "$json" \
    --quiet "$@" 2>>"$out/load.log" || echo "  ($name: errors counted, see $json)" >&2
}
