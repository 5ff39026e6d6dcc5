# Sourced by run.sh (the suite's fuzzingclient against `edgews serve`) and run_client.sh (its fuzzingserver
# against edgews::Client): the options both take, the suite's location, the spec files of the parts of a run and
# the processes a run starts. The sourcing script sets `name` (for messages) first, and `setup_only=no` when it
# takes --setup; --help prints the script's leading comment.

set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
build=$source_dir/build/release
modes=default,deflate
out=
cases=()
excluded=()
jobs=1
python=/usr/bin/python3  # Debian's: the suite runs on the python3-* packages, not on a pyenv or venv python

parse_args() {
  while (($#)); do
    case $1 in
      --build) build=$2; shift 2 ;;
      --modes) modes=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --exclude) excluded+=("$2"); shift 2 ;;
      --jobs) jobs=$2; shift 2 ;;
      --setup) [[ -n ${setup_only:-} ]] || { echo "$name: unknown option $1 (try --help)" >&2; exit 2; }
               setup_only=yes; shift ;;
      -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      -*) echo "$name: unknown option $1 (try --help)" >&2; exit 2 ;;
      *) cases+=("$1"); shift ;;
    esac
  done
  ((${#cases[@]})) || cases=("*")
  build=$(cd "$build" && pwd)
}

# Sets top: the directory above autobahntestsuite/ in the suite extracted at $1.
find_suite() {
  top=$(dirname "$(find "$1" -maxdepth 3 -name wstest.py -path '*autobahntestsuite/wstest.py' | head -1)")
  top=$(dirname "$top")
}

# Every process a run starts goes into pids; stop_all ends them (also on exit).
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

# write_specs PARTS_DIR fuzzingclient|fuzzingserver: one spec.json per part in PARTS_DIR/part-K (K = 1..jobs).
# The suite resolves the patterns into case ids, dealt round-robin so that every part gets its share of the long
# cases. A fuzzingclient spec names its server's port as PORT (the caller puts in the one the server got); a
# fuzzingserver spec gets a free loopback port of its own.
write_specs() {
  (cd "$top" && "$python" - "$1" "$jobs" "${cases[*]}" "${excluded[*]}" "$2" "$name") <<'PY'
import json, os, socket, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
parts_dir, jobs, cases, excluded = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
role, name = sys.argv[5], sys.argv[6]
case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
ids = case_set.parseSpecCases({"cases": cases, "exclude-cases": excluded})
unknown = [i for i in ids if i not in case_set.CasesById]
if unknown or not ids:
    sys.exit(f"{name}: no such Autobahn case: {' '.join(unknown) or ' '.join(cases)}")
for k in range(min(jobs, len(ids))):
    part = os.path.join(parts_dir, f"part-{k + 1}")
    os.makedirs(part)
    # 10 s instead of 1 s for the other side's half of a closing handshake: on a loaded machine a peer starved
    # for a second is not a protocol failure (the client's close frame may wait behind the echo of the last
    # message, and 9.4.7 echoes 4 MiB), and one that never answers still fails the case.
    spec = {"outdir": part, "options": {"closeHandshakeTimeout": 10},
            "cases": ids[k::jobs], "exclude-cases": [], "exclude-agent-cases": {}}
    if role == "fuzzingclient":
        spec["servers"] = [{"agent": "edgews", "url": "ws://127.0.0.1:PORT"}]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            spec["url"] = f"ws://127.0.0.1:{s.getsockname()[1]}"
    json.dump(spec, open(os.path.join(part, "spec.json"), "w"), indent=1)
PY
}

# Starts a mode's run: a fresh OUT/MODE with its specs; prints what runs.
start_mode() {  # MODE ROLE WHAT
  dir=$out/$1
  rm -rf "$dir"
  mkdir -p "$dir"
  write_specs "$dir" "$2"
  local what="cases ${cases[*]}"
  ((${#excluded[@]} == 0)) || what+=" except ${excluded[*]}"
  echo "autobahn: $3, $what, $jobs part(s) at once" >&2
  started=$SECONDS
  parts=("$dir"/part-*)
}
