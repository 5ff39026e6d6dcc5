# Helpers shared by bench/load/run.sh, paired.sh and peers.sh (sourced; start, load and machine need $out and
# $edgews).
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
# stop PID: stops a server started by start and forgets it, so that the exit's cleanup never signals its number
# again (by then another process may have it).
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

load() {  # load NAME PORT PID JSON ARGS...   (ws://; set scheme=wss and ca=FILE for wss://)
  local name=$1 port=$2 pid=$3 json=$4; shift 4
  local tls=()
  if [ "${scheme:-ws}" = wss ]; then tls=(--ca "$ca"); fi
  taskset -c 1 "$edgews" load "${scheme:-ws}://127.0.0.1:$port/" "${tls[@]}" --server-pid "$pid" --json "$json" \
    --quiet "$@" 2>>"$out/load.log" || echo "  ($name: errors counted, see $json)" >&2
}

# floor_setup DEFAULT_DURATION OUT_NAME: what bench/load/run.sh and paired.sh share. Sets edgews and floor (the
# binaries in $build, checked), rounds, duration, warmup, baseline and out from ROUNDS, DURATION, WARMUP,
# BASELINE and OUT (default $build/OUT_NAME, emptied).
floor_setup() {
  edgews=$build/tools/edgews
  floor=$build/bench/load/edgews_floor
  rounds=${ROUNDS:-5}
  duration=${DURATION:-$1}
  warmup=${WARMUP:-1}
  baseline=${BASELINE:-}
  out=${OUT:-$build/$2}
  if [ ! -x "$edgews" ] || [ ! -x "$floor" ]; then
    echo "build first: cmake --build --preset release (missing $edgews or $floor)" >&2
    exit 2
  fi
  rm -rf "$out" && mkdir -p "$out"
}

# machine before|after: the load average (and before, the CPU and kernel), printed and kept in $out/machine.txt.
machine() {
  if [ "$1" = before ]; then
    echo "load average before: $(cut -d" " -f1-3 /proc/loadavg)" | tee "$out/machine.txt"
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; kernel $(uname -r)" \
      | tee -a "$out/machine.txt"
  else
    echo "load average after: $(cut -d" " -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
  fi
}
