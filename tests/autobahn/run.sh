#!/usr/bin/env bash
# The Autobahn TestSuite (fuzzingclient) against `edgews serve`, with its default settings and with --deflate:
#
#   tests/autobahn/run.sh [--build DIR] [--modes default,deflate] [--out DIR] [--exclude CASE]... [--setup]
#                         [CASE ...]
#
# CASE is an Autobahn case id or a pattern in which * matches anything ("1.1.1", "9.3.*"); none = all 517 cases (about 15 minutes per mode on
# two cores; sections 9, 12 and 13 take most of it). The suite comes from /work/shared/autobahn (or
# $AUTOBAHN_TARBALL) and is extracted into the build directory, never into the source tree; its Debian packages
# are installed when missing (tools/install-deps.sh autobahn). Each mode gets its own server on a free loopback
# port. Prints one table per mode of cases by result (behavior, and behaviorClose), then every case that is not
# OK; exits non-zero when a case is FAILED or NON-STRICT (INFORMATIONAL and UNIMPLEMENTED are reported only).
# The HTML and JSON reports stay in OUT/MODE (default BUILD/autobahn/reports). --setup only installs and extracts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
build=$source_dir/build/release
modes=default,deflate
out=
setup_only=no
cases=()
excluded=()
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --exclude) excluded+=("$2"); shift 2 ;;
    --setup) setup_only=yes; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) cases+=("$1"); shift ;;
  esac
done
((${#cases[@]})) || cases=("*")
build=$(cd "$build" && pwd)
out=${out:-$build/autobahn/reports}
edgews=${EDGEWS_BIN:-$build/tools/edgews}
tarball=${AUTOBAHN_TARBALL:-/work/shared/autobahn/autobahntestsuite-b8a5120-py3.tar.gz}
python=/usr/bin/python3  # Debian's: the suite runs on the python3-* packages, not on a pyenv or venv python
[[ -x $edgews ]] ||
  { echo "run.sh: no edgews binary at $edgews: build it (cmake --build --preset release)" >&2; exit 2; }
[[ -r $tarball ]] || { echo "run.sh: no Autobahn TestSuite at $tarball: set AUTOBAHN_TARBALL" >&2; exit 2; }

"$source_dir/tools/install-deps.sh" autobahn

# Extract once per tarball (a stamp holds its checksum), beside and then renamed into place, so that a run that
# starts meanwhile never sees half a suite.
suite=$build/autobahn/testsuite
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if [[ ! -f $suite/.stamp || $(cat "$suite/.stamp") != "$sum" ]]; then
  fresh=$(mktemp -d "$build/autobahn-extract.XXXXXX")
  tar -xzf "$tarball" -C "$fresh"
  echo "$sum" >"$fresh/.stamp"
  mkdir -p "$build/autobahn"
  rm -rf "$suite"
  mv -T "$fresh" "$suite" 2>/dev/null || rm -rf "$fresh"  # another run got there first: keep its copy
fi
top=$(dirname "$(find "$suite" -maxdepth 3 -name wstest.py -path '*autobahntestsuite/wstest.py' | head -1)")
top=$(dirname "$top")
[[ -d $top/autobahntestsuite ]] || { echo "run.sh: $tarball holds no autobahntestsuite/wstest.py" >&2; exit 2; }
[[ $setup_only == no ]] || exit 0

server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

# Starts edgews on a free port (--port 0) and sets server_port from the line it prints.
start_server() {
  local log=$1; shift
  "$edgews" serve --host 127.0.0.1 --port 0 --log-level warn "$@" >"$log.out" 2>"$log.err" &
  server_pid=$!
  server_port=
  for _ in $(seq 1 100); do
    server_port=$(sed -n 's/^edgews: listening on port \([0-9]*\)$/\1/p' "$log.out")
    [[ -n $server_port ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: edgews serve $* did not start: $(cat "$log.err")" >&2
  exit 2
}

status=0
IFS=, read -ra mode_list <<<"$modes"
for mode in "${mode_list[@]}"; do
  case $mode in
    default) flags=() ;;
    deflate) flags=(--deflate) ;;
    *) echo "run.sh: unknown mode $mode (default or deflate)" >&2; exit 2 ;;
  esac
  dir=$out/$mode
  rm -rf "$dir"
  mkdir -p "$dir"
  start_server "$dir/edgews" "${flags[@]}"
  "$python" - "$dir/spec.json" "$dir" "$server_port" "${cases[*]}" "${excluded[*]}" <<'EOF'
import json, sys
spec, outdir, port, cases, excluded = sys.argv[1:6]
json.dump({"outdir": outdir, "servers": [{"agent": "edgews", "url": f"ws://127.0.0.1:{port}"}],
           "cases": cases.split(), "exclude-cases": excluded.split(), "exclude-agent-cases": {}},
          open(spec, "w"), indent=1)
EOF
  what="cases ${cases[*]}"
  ((${#excluded[@]} == 0)) || what+=" except ${excluded[*]}"
  echo "autobahn: edgews serve ${flags[*]:-(defaults)} on 127.0.0.1:$server_port, $what" >&2
  started=$SECONDS
  # The suite's own per-case timeouts bound each case; this bounds the whole run (the full suite takes ~15 min).
  (cd "$top" && timeout 3600 "$python" -c 'import sys; sys.argv = ["wstest", "-m", "fuzzingclient", "-s", sys.argv[1]]
from autobahntestsuite import wstest; wstest.run()' "$dir/spec.json" >"$dir/wstest.log" 2>&1) ||
    { echo "run.sh: wstest failed (exit $?); see $dir/wstest.log:" >&2; tail -20 "$dir/wstest.log" >&2; exit 2; }
  alive=yes
  kill -0 "$server_pid" 2>/dev/null || alive=no
  stop_server
  echo
  echo "edgews serve ${flags[*]:-(defaults)}: $((SECONDS - started)) s"
  "$python" "$here/summarize.py" "$dir/index.json" || status=1
  if [[ $alive == no ]]; then
    echo "run.sh: the server died during the run; its stderr: $(tail -5 "$dir/edgews.err")" >&2
    status=1
  fi
done
exit $status
