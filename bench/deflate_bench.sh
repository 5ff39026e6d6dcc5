#!/bin/sh
# permessage-deflate echo figures for bench/RESULTS.md: starts `edgews serve` (plain, then --deflate with and
# without context takeover), runs bench/micro/deflate_echo against it, stops it by PID.
#   bench/deflate_bench.sh [build_dir] [seconds] [idle_connections]
set -eu
build=${1:-build/release}
seconds=${2:-5}
idle=${3:-1000}
run() {
  label=$1; shift
  "$build/tools/edgews" serve --host 127.0.0.1 --port 0 --log-level warn --ping-interval 0 "$@" > /tmp/deflate_bench.$$ &
  pid=$!
  for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q listening /tmp/deflate_bench.$$ 2>/dev/null && break; sleep 0.2; done
  port=$(awk '/listening/ {print $NF}' /tmp/deflate_bench.$$)
  mode=plain
  case "$*" in *--deflate*) mode=deflate ;; esac
  for size in 200 4096; do
    echo "== $label, $size B"
    "$build/bench/micro/deflate_echo" "$port" "$pid" "$size" "$seconds" "$mode" "$([ "$size" = 4096 ] && echo "$idle" || echo 0)"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f /tmp/deflate_bench.$$
}
run "uncompressed"
run "deflate, context takeover (window 15, memLevel 8)" --deflate --deflate-min-size 0
run "deflate, server_no_context_takeover, shared compressor" --deflate --deflate-min-size 0 --deflate-no-context-takeover
run "deflate, window 9, memLevel 1, level 1" --deflate --deflate-min-size 0 --deflate-window-bits 9 --deflate-mem-level 1 --deflate-level 1
