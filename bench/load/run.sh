#!/usr/bin/env bash
# One command for the echo comparison of edgews against the floor (bench/load/floor.cpp):
#
#   bench/load/run.sh [BUILD_DIR]        (default build/release; takes about 6 minutes)
#
# Servers are pinned to core 0 and started side by side (an idle server costs nothing), the load generator is
# pinned to core 1, and the servers take turns within each round, so a drift of the machine affects both.
# Scenarios: (a) 100 connections, 16 B, 1 in flight; (b) 100 connections, 16 B, 16 in flight; (c) 10 connections,
# 64 KiB binary; (d) server memory per idle connection at 10,000 (and 19,000) connections, fresh servers;
# (f) edgews with 2 reactor threads against 1 in scenario (b).
# Environment: ROUNDS (default 5), DURATION (seconds per run, default 5), WARMUP (default 1); BASELINE: the path of
# an older edgews binary to measure in the same rounds as a third server in (a)-(c), for before/after ratios.
# Raw JSON of every run goes to $OUT (default build/release/load-results); the summary table is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/release}
source "$here/lib.sh"
floor_setup 5 load-results

machine before
common=(--duration "$duration" --warmup "$warmup")
declare -A scenario_args=(
  [a]="--connections 100 --inflight 1 --size 16"
  [b]="--connections 100 --inflight 16 --size 16"
  [c]="--connections 10 --inflight 1 --size 65536"
)

start edgews 0 "$edgews" serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn
start floor 0 "$floor" --port 0
[ -z "$baseline" ] || start baseline 0 "$baseline" serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn
for s in a b c; do
  for r in $(seq 1 "$rounds"); do
    echo "scenario ($s) round $r" >&2
    # shellcheck disable=SC2086
    load edgews "$edgews_port" "$edgews_pid" "$out/$s-edgews-$r.json" ${scenario_args[$s]} "${common[@]}"
    # shellcheck disable=SC2086
    load floor "$floor_port" "$floor_pid" "$out/$s-floor-$r.json" ${scenario_args[$s]} "${common[@]}"
    if [ -n "$baseline" ]; then
      # shellcheck disable=SC2086
      load baseline "$baseline_port" "$baseline_pid" "$out/$s-baseline-$r.json" ${scenario_args[$s]} "${common[@]}"
    fi
  done
done
stop "$edgews_pid"; stop "$floor_pid"
[ -z "$baseline" ] || stop "$baseline_pid"

# (f): 2 reactor threads may use both cores (the load generator shares core 1 with the second one).
start edgews1 0 "$edgews" serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn
start edgews2 0,1 "$edgews" serve --host 127.0.0.1 --port 0 --threads 2 --log-level warn
for r in $(seq 1 "$rounds"); do
  echo "scenario (f) round $r" >&2
  # shellcheck disable=SC2086
  load edgews1 "$edgews1_port" "$edgews1_pid" "$out/f-edgews1-$r.json" ${scenario_args[b]} "${common[@]}"
  # shellcheck disable=SC2086
  load edgews2 "$edgews2_port" "$edgews2_pid" "$out/f-edgews2-$r.json" ${scenario_args[b]} "${common[@]}"
done
stop "$edgews1_pid"; stop "$edgews2_pid"

# (d): idle memory, a fresh server each time. A process may hold 20,000 descriptors here (ulimit -Hn), so
# 19,000 connections is the most the load generator can open.
for n in 10000 19000; do
  for name in edgews floor; do
    echo "scenario (d) $n idle connections: $name" >&2
    if [ "$name" = edgews ]; then
      start d_server 0 "$edgews" serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn --ping-interval 0
    else
      start d_server 0 "$floor" --port 0
    fi
    sleep 0.5
    load "$name" "$d_server_port" "$d_server_pid" "$out/d$n-$name.json" --connect-only --connections "$n" \
      --duration 2 --connect-timeout 60
    stop "$d_server_pid"
  done
done

machine after
python3 "$here/summarize.py" "$out" "$rounds"
