#!/usr/bin/env bash
# The Autobahn TestSuite (fuzzingclient) against `edgews serve`, with its default settings and with --deflate:
#
#   tests/autobahn/run.sh [--build DIR] [--modes default,deflate] [--jobs N] [--out DIR] [--exclude CASE]...
#                         [--setup] [CASE ...]
#
# CASE is an Autobahn case id or a pattern in which * matches anything ("1.1.1", "9.3.*"); none = all 517
# cases. The suite comes from /work/shared/autobahn (or $AUTOBAHN_TARBALL) and is extracted into the build
# directory, never into the source tree; its Debian packages are installed when missing (tools/install-deps.sh
# autobahn). Each mode runs its cases in N parts at once (--jobs, default 1), each part with its own client and
# its own server on a free loopback port. The whole suite takes half a minute with the defaults, where sections
# 12 and 13 are unimplemented (no compression), and most of an hour with --deflate on a busy two-core machine
# (the client's Python compression of sections 12 and 13): --jobs 4 shortens it. Prints one table per mode of
# cases by result (behavior, and behaviorClose), then every case that is not OK; exits non-zero when a case is
# FAILED, NON-STRICT or closed UNCLEAN (or another close failure); INFORMATIONAL and UNIMPLEMENTED are reported. The HTML and JSON reports stay in
# OUT/MODE (default BUILD/autobahn/reports). --setup only installs the packages and extracts the suite.
name=run.sh
setup_only=no
source "$(dirname "$0")/common.sh"
parse_args "$@"
out=${out:-$build/autobahn/reports}
edgews=${EDGEWS_BIN:-$build/tools/edgews}
tarball=${AUTOBAHN_TARBALL:-/work/shared/autobahn/autobahntestsuite-b8a5120-py3.tar.gz}
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
find_suite "$suite"
[[ -d $top/autobahntestsuite ]] || { echo "run.sh: $tarball holds no autobahntestsuite/wstest.py" >&2; exit 2; }
[[ $setup_only == no ]] || exit 0

# Starts edgews on a free port (--port 0) and sets server_port from the line it prints.
start_server() {
  local log=$1; shift
  "$edgews" serve --host 127.0.0.1 --port 0 --log-level warn "$@" >"$log.out" 2>"$log.err" &
  local pid=$!
  pids+=("$pid")
  server_port=
  for _ in $(seq 1 100); do
    server_port=$(sed -n 's/^edgews: listening on port \([0-9]*\)$/\1/p' "$log.out")
    [[ -n $server_port ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
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
  start_mode "$mode" fuzzingclient "edgews serve ${flags[*]:-(defaults)}"
  clients=()
  for part in "${parts[@]}"; do
    start_server "$part/edgews" "${flags[@]}"
    sed -i "s/127.0.0.1:PORT/127.0.0.1:$server_port/" "$part/spec.json"
    # The suite's own per-case timeouts bound each case; this bounds the whole run.
    (cd "$top" && exec timeout 7200 "$python" -c 'import sys; sys.argv = ["wstest", "-m", "fuzzingclient", "-s", sys.argv[1]]
from autobahntestsuite import wstest; wstest.run()' "$part/spec.json" >"$part/wstest.log" 2>&1) &
    clients+=($!)
  done
  for i in "${!clients[@]}"; do
    if ! wait "${clients[$i]}"; then
      echo "run.sh: wstest failed; see ${parts[$i]}/wstest.log:" >&2
      tail -20 "${parts[$i]}/wstest.log" >&2
      kill "${clients[@]}" 2>/dev/null || true
      exit 2
    fi
  done
  dead=()
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || dead+=("${parts[$i]}/edgews.err")
  done
  stop_all
  echo
  echo "edgews serve ${flags[*]:-(defaults)}: $((SECONDS - started)) s"
  "$python" "$here/summarize.py" "${parts[@]/%//index.json}" || status=1
  if ((${#dead[@]})); then
    echo "run.sh: a server died during the run; see ${dead[*]}" >&2
    status=1
  fi
done
exit $status
