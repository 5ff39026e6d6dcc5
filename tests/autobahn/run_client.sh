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
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
build=$source_dir/build/release
modes=default,deflate
out=
cases=()
excluded=()
jobs=1
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --exclude) excluded+=("$2"); shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_client.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) cases+=("$1"); shift ;;
  esac
done
((${#cases[@]})) || cases=("*")
build=$(cd "$build" && pwd)
out=${out:-$build/autobahn/client-reports}
client=${EDGEWS_ECHO_CLIENT:-$build/tests/autobahn/autobahn_echo_client}
python=/usr/bin/python3
[[ -x $client ]] || {
  echo "run_client.sh: no client at $client: build it (cmake --build --preset release --target autobahn_echo_client)" >&2
  exit 2
}
EDGEWS_BIN=${EDGEWS_BIN:-$build/tools/edgews} "$here/run.sh" --build "$build" --setup
top=$(dirname "$(find "$build/autobahn/testsuite" -maxdepth 3 -name wstest.py -path '*autobahntestsuite/wstest.py' | head -1)")
top=$(dirname "$top")

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap stop_all EXIT

# One spec.json per part in PARTS_DIR/part-K, each with a free loopback port of its own.
write_specs() {
  (cd "$top" && "$python" - "$1" "$jobs" "${cases[*]}" "${excluded[*]}") <<'PY'
import json, os, socket, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
parts_dir, jobs, cases, excluded = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
ids = case_set.parseSpecCases({"cases": cases, "exclude-cases": excluded})
unknown = [i for i in ids if i not in case_set.CasesById]
if unknown or not ids:
    sys.exit(f"run_client.sh: no such Autobahn case: {' '.join(unknown) or ' '.join(cases)}")
for k in range(min(jobs, len(ids))):
    part = os.path.join(parts_dir, f"part-{k + 1}")
    os.makedirs(part)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # As in run.sh: 10 s instead of 1 s for the client's half of a closing handshake. The client's close frame
    # waits behind the echo of the last message, which a suite starved of CPU reads slowly (9.4.7 echoes 4 MiB).
    json.dump({"url": f"ws://127.0.0.1:{port}", "outdir": part, "options": {"closeHandshakeTimeout": 10},
               "cases": ids[k::jobs], "exclude-cases": [], "exclude-agent-cases": {}},
              open(os.path.join(part, "spec.json"), "w"), indent=1)
PY
}

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
  dir=$out/$mode
  rm -rf "$dir"
  mkdir -p "$dir"
  write_specs "$dir"
  what="cases ${cases[*]}"
  ((${#excluded[@]} == 0)) || what+=" except ${excluded[*]}"
  echo "autobahn: edgews::Client ${flags[*]:-(defaults)}, $what, $jobs part(s) at once" >&2
  started=$SECONDS
  parts=("$dir"/part-*)
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
