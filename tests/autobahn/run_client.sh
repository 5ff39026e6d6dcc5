#!/usr/bin/env bash
# The Autobahn TestSuite (fuzzingserver) against edgews::Client: tests/autobahn/echo_client.cpp connects to the
# suite, runs each case and echoes every message; without and with permessage-deflate:
#
#   tests/autobahn/run_client.sh [--build DIR] [--modes default,deflate,deflate-nct] [--jobs N] [--out DIR]
#                                [--exclude CASE]... [CASE ...]
#
# CASE is an Autobahn case id or a pattern in which * matches anything ("1.1.1", "9.3.*"); none = all 517
# cases. Modes: default (no extension offered: sections 12 and 13 are UNIMPLEMENTED), deflate (permessage-deflate
# offered with client_max_window_bits), deflate-nct (the same with client_no_context_takeover offered: the
# client's compressor then starts afresh for every message). Each mode runs its cases in N parts at once (--jobs,
# default 1), each part with its own fuzzingserver on a free loopback port and its own client. Prints one table
# per mode (behavior, and behaviorClose), then every case that is not OK; exits non-zero when a case is FAILED,
# NON-STRICT or closed UNCLEAN. The suite is set up as tests/autobahn/run.sh does it (run.sh --setup); the
# client is $EDGEWS_ECHO_CLIENT or BUILD/tests/autobahn/autobahn_echo_client. Reports stay in OUT/MODE (default
# BUILD/autobahn/client-reports).
name=run_client.sh
source "$(dirname "$0")/common.sh"
parse_args "$@"
out=${out:-$build/autobahn/client-reports}
client=${EDGEWS_ECHO_CLIENT:-$build/tests/autobahn/autobahn_echo_client}
[[ -x $client ]] || {
  echo "run_client.sh: no client at $client: build it (cmake --build --preset release --target autobahn_echo_client)" >&2
  exit 2
}
EDGEWS_BIN=${EDGEWS_BIN:-$build/tools/edgews} "$here/run.sh" --build "$build" --setup
find_suite "$build/autobahn/testsuite"

# Waits until the fuzzingserver of spec $1 accepts connections (at most 30 s).
wait_listening() {
  local port
  port=$(sed -n 's/.*"ws:\/\/127.0.0.1:\([0-9]*\)".*/\1/p' "$1")
  for _ in $(seq 1 300); do
    "$python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
      "$port" 2>/dev/null && { echo "$port"; return 0; }
    sleep 0.1
  done
  return 1
}

status=0
IFS=, read -ra mode_list <<<"$modes"
for mode in "${mode_list[@]}"; do
  case $mode in
    default) flags=() ;;
    deflate) flags=(--deflate) ;;
    deflate-nct) flags=(--deflate --client-no-context-takeover) ;;
    *) echo "run_client.sh: unknown mode $mode (default, deflate or deflate-nct)" >&2; exit 2 ;;
  esac
  start_mode "$mode" fuzzingserver "edgews::Client ${flags[*]:-(defaults)}"
  clients=()
  for part in "${parts[@]}"; do
    (cd "$top" && exec timeout 7200 "$python" -c 'import sys; sys.argv = ["wstest", "-m", "fuzzingserver", "-u", "0", "-s", sys.argv[1]]
from autobahntestsuite import wstest; wstest.run()' "$part/spec.json" >"$part/wstest.log" 2>&1) &
    pids+=($!)
    port=$(wait_listening "$part/spec.json") || {
      echo "run_client.sh: the fuzzingserver did not start; see $part/wstest.log:" >&2
      tail -20 "$part/wstest.log" >&2
      exit 2
    }
    timeout 7200 "$client" --url "ws://127.0.0.1:$port" --agent edgews-client "${flags[@]}" >"$part/client.log" 2>&1 &
    clients+=($!)
  done
  for i in "${!clients[@]}"; do
    wait "${clients[$i]}" || {
      echo "run_client.sh: the client did not run every case; see ${parts[$i]}/client.log:" >&2
      tail -20 "${parts[$i]}/client.log" >&2
      status=1
    }
  done
  stop_all
  echo
  echo "edgews::Client ${flags[*]:-(defaults)}: $((SECONDS - started)) s"
  "$python" "$here/summarize.py" "${parts[@]/%//index.json}" || status=1
done
exit $status
