#!/usr/bin/env bash
# Where a message's server time goes, for edgews, uWebSockets (uws_echo) and the floor under the same load:
#
#   bench/load/where.sh [BUILD_DIR]     (default build/release, configured with EDGEWS_BUILD_PEERS=ON; about 6
#                                        minutes; needs perf (linux-perf) and valgrind, and root for perf)
#
# The three servers run pinned to core 0, the load generator (edgews load) on core 1, as in bench/load/peers.sh.
# Each scenario is offered at a fixed rate that every server sustains (RATE_A, RATE_B, RATE_C; defaults 10000,
# 100000 and 1000 msgs/s), so that all three see the same arrivals and batching is the servers' own doing:
#   (a) 100 connections, 16 B, 1 in flight; (b) the same, 16 in flight; (c) 10 connections, 64 KiB binary.
# 1. CPU: ROUNDS rounds (default 3) of DURATION s (default 3), the servers in turns within each round; server CPU
#    per message from /proc (edgews load --server-pid) and its ratio to edgews within each round.
# 2. System calls: one run per server and scenario, every system call exit recorded for WINDOW s (default 2) with
#    `perf record -e raw_syscalls:sys_exit -p PID` (a kernel tracepoint: the server runs at nearly full speed,
#    unlike under strace's ptrace stops); per message: calls by kind, and per epoll_wait its batch (events
#    returned), reads and writes per turn (between two epoll_waits), bytes per read.
# 3. Instructions: each server again under `valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes` (this
#    KVM guest exposes no hardware counters to perf stat), at a tenth of the rate, counters zeroed after the
#    connections open and dumped WINDOW s later: user-space instructions, simulated branch mispredictions and
#    cache misses per message (the kernel's share is not counted).
#    The syscall run goes on for another WINDOW s sampled by `perf record -F 2999 -e cpu-clock` (kernel and user
#    symbols; the top of `perf report --sort sym` is kept as prof-SCENARIO-SERVER.txt).
# BASELINE=PATH (an older edgews binary) and BASELINE_FLOOR=PATH (an older edgews_floor) join steps 1 and 2 as
# edgews_before and floor_before, for before/after ratios in the same rounds.
# Raw files go to $OUT (default BUILD_DIR/where-results); the tables are printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/release}
build=$(cd "$build" && pwd)
edgews=$build/tools/edgews
rounds=${ROUNDS:-3}
duration=${DURATION:-3}
window=${WINDOW:-2}
out=${OUT:-$build/where-results}
declare -A rate=([a]=${RATE_A:-10000} [b]=${RATE_B:-100000} [c]=${RATE_C:-1000})
declare -A args=(
  [a]="--connections 100 --inflight 1 --size 16"
  [b]="--connections 100 --inflight 16 --size 16"
  [c]="--connections 10 --inflight 1 --size 65536 --binary"
)
declare -A cmd=(
  [edgews]="$edgews serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn --ping-interval 0"
  [uws]="$build/bench/load/peers/uws_echo 0"
  [floor]="$build/bench/load/edgews_floor --port 0"
)
servers=(edgews uws floor)
if [ -n "${BASELINE:-}" ]; then
  cmd[edgews_before]="${cmd[edgews]/$edgews/$BASELINE}"
  servers+=(edgews_before)
fi
if [ -n "${BASELINE_FLOOR:-}" ]; then
  cmd[floor_before]="$BASELINE_FLOOR --port 0"
  servers+=(floor_before)
fi
for s in "${servers[@]}"; do
  bin=${cmd[$s]%% *}
  [ -x "$bin" ] || { echo "missing $bin: cmake -DEDGEWS_BUILD_PEERS=ON, build edgews edgews_floor uws_echo" >&2; exit 2; }
done
command -v perf >/dev/null && command -v valgrind >/dev/null ||
  { echo "needs perf and valgrind: apt-get install linux-perf valgrind" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"
source "$here/lib.sh"
machine before

for s in "${servers[@]}"; do
  # shellcheck disable=SC2086
  start "$s" 0 ${cmd[$s]}
done

# 1. CPU per message, in turns.
for sc in a b c; do
  for r in $(seq 1 "$rounds"); do
    echo "cpu ($sc) round $r" >&2
    for s in "${servers[@]}"; do
      pid_var=${s}_pid port_var=${s}_port
      # shellcheck disable=SC2086
      load "$s" "${!port_var}" "${!pid_var}" "$out/cpu-$sc-$s-$r.json" ${args[$sc]} --rate "${rate[$sc]}" \
        --duration "$duration" --warmup 1
    done
  done
done

# 2. System calls: the window opens after a second of load and closes a second before it ends.
for sc in a b c; do
  for s in "${servers[@]}"; do
    echo "syscalls ($sc) $s" >&2
    pid_var=${s}_pid port_var=${s}_port
    # shellcheck disable=SC2086
    load "$s" "${!port_var}" "${!pid_var}" "$out/sys-$sc-$s.json" ${args[$sc]} --rate "${rate[$sc]}" \
      --duration $((2 * window + 2)) --warmup 0 &
    loader=$!
    sleep 1
    perf record -q -e raw_syscalls:sys_exit -p "${!pid_var}" -o "$out/sys-$sc-$s.data" -- sleep "$window" \
      >/dev/null 2>&1
    perf record -q -F 2999 -e cpu-clock -p "${!pid_var}" -o "$out/prof-$sc-$s.data" -- sleep "$window" \
      >/dev/null 2>&1
    wait "$loader"
    perf report -i "$out/prof-$sc-$s.data" --stdio --no-children --sort dso,sym -q --percent-limit 0.7 2>/dev/null \
      | head -40 >"$out/prof-$sc-$s.txt"
    rm -f "$out/prof-$sc-$s.data"
    perf script -i "$out/sys-$sc-$s.data" -F trace >"$out/sys-$sc-$s.txt" 2>/dev/null
    rm -f "$out/sys-$sc-$s.data"
  done
done
for s in "${servers[@]}"; do pid_var=${s}_pid; stop "${!pid_var}"; done
servers=(edgews uws floor)

# 3. Instructions under callgrind, one server at a time, at a tenth of the rate (callgrind_control reaches the
# process by its PID; the counters are zeroed once the load runs and dumped WINDOW s later).
cmd[uws]="$build/bench/load/peers/uws_echo_valgrind 0"
[ -x "${cmd[uws]%% *}" ] || { echo "missing ${cmd[uws]%% *}: build the target uws_echo_valgrind" >&2; exit 2; }
for sc in a b c; do
  for s in "${servers[@]}"; do
    echo "callgrind ($sc) $s" >&2
    # shellcheck disable=SC2086
    start cg 0 valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --callgrind-out-file="$out/cg-$sc-$s" \
      ${cmd[$s]}
    # shellcheck disable=SC2086
    load "$s" "$cg_port" "$cg_pid" "$out/cg-$sc-$s.json" ${args[$sc]} --rate $((rate[$sc] / 10)) \
      --duration $((window + 6)) --warmup 0 --connect-timeout 30 &
    loader=$!
    sleep 4  # every connection open and upgraded under valgrind's pace: the handshakes stay out of the counts
    callgrind_control -z "$cg_pid" >/dev/null
    sleep "$window"
    callgrind_control -d "$cg_pid" >/dev/null
    wait "$loader"
    stop "$cg_pid"
  done
done

machine after
python3 "$here/where.py" "$out" "$window" "$rounds" "${rate[a]}" "${rate[b]}" "${rate[c]}"
