#!/usr/bin/env bash
# Readiness events and system calls per echoed message, edgews against an older build under the same load:
#
#   BASELINE=PATH bench/load/events.sh [BUILD_DIR]    (default build/release; about 1 minute with the defaults)
#
# Both servers run at once, pinned to core 0; each scenario loads one server at a time (`edgews load` on core 1, open
# loop at RATE_x msgs/s), the two alternating within each of ROUNDS rounds:
# 1. system calls: `perf stat` counts the server's epoll_wait, epoll_ctl, recvfrom, sendto, sendmsg, read and write
#    (OpenSSL's socket BIO uses the last two) over the DURATION s of the load (kernel tracepoints: no ptrace
#    stops), divided by the messages echoed;
# 2. ready events: a separate SAMPLE s window under `strace -e trace=epoll_wait` (ptrace slows the server, so only
#    the proportions are read): the share of events that carried EPOLLOUT alone, and that carried EPOLLOUT at all.
# Scenarios as bench/load/run.sh: (a) 100 connections, 16 B, 1 in flight; (b) the same, 16 in flight; (c) 10
# connections, 64 KiB; with TLS=1 also (ta), (tb): (a), (b) over wss:// (a development certificate). Needs perf and
# strace, and root for both. Environment: ROUNDS (default 2), DURATION (default 3), SAMPLE (default 1), RATE_A,
# RATE_B, RATE_C (defaults 10000, 100000, 1000), OUT (default BUILD_DIR/events-results). Prints a table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/release}
build=$(cd "$build" && pwd)
edgews=$build/tools/edgews
baseline=${BASELINE:?BASELINE=PATH of the edgews binary to compare with}
rounds=${ROUNDS:-2}
duration=${DURATION:-3}
sample=${SAMPLE:-1}
out=${OUT:-$build/events-results}
command -v perf >/dev/null && command -v strace >/dev/null || { echo "needs perf and strace" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

bash "$here/../../tools/make-dev-cert.sh" "$out/certs" >/dev/null
declare -A port tls_port pid
start() {  # start NAME BINARY
  "$2" serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert "$out/certs/localhost.crt" \
    --tls-key "$out/certs/localhost.key" --threads 1 --log-level warn --ping-interval 0 >"$out/$1.out" 2>&1 &
  local p=$!
  pids+=("$p")
  taskset -pc 0 "$p" >/dev/null
  for _ in $(seq 100); do grep -qs "listening on ports" "$out/$1.out" && break; sleep 0.1; done
  read -r port[$1] tls_port[$1] < <(sed -n 's/^edgews: listening on ports \([0-9]*\) \([0-9]*\)$/\1 \2/p' "$out/$1.out")
  [ -n "${port[$1]}" ] || { echo "$1 did not start: $(cat "$out/$1.out")" >&2; exit 1; }
  pid[$1]=$p
}
start edgews "$edgews"
start baseline "$baseline"

declare -A args=(
  [a]="--connections 100 --inflight 1 --size 16 --rate ${RATE_A:-10000}"
  [b]="--connections 100 --inflight 16 --size 16 --rate ${RATE_B:-100000}"
  [c]="--connections 10 --inflight 1 --size 65536 --rate ${RATE_C:-1000}"
)
scenarios=(a b c)
if [ "${TLS:-0}" = 1 ]; then
  args[ta]=${args[a]} args[tb]=${args[b]}
  scenarios+=(ta tb)
fi

url() {  # url SCENARIO SERVER
  case $1 in t*) echo "wss://127.0.0.1:${tls_port[$2]}/ --ca $out/certs/ca.crt" ;; *) echo "ws://127.0.0.1:${port[$2]}/" ;; esac
}

calls=syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_read,syscalls:sys_enter_write
for s in "${scenarios[@]}"; do
  for r in $(seq 1 "$rounds"); do
    for name in edgews baseline; do
      echo "($s) round $r: $name" >&2
      # shellcheck disable=SC2046
      taskset -c 1 "$edgews" load $(url "$s" "$name") ${args[$s]} --warmup 1 --duration $((duration + sample + 1)) \
        --quiet --json "$out/$s-$name-$r.json" 2>>"$out/load.log" &
      local_load=$!
      sleep 1
      perf stat -x, -e "$calls" -p "${pid[$name]}" -o "$out/$s-$name-$r.perf" -- sleep "$duration"
      timeout "$sample" strace -qq -e trace=epoll_wait -p "${pid[$name]}" -o "$out/$s-$name-$r.strace" || true
      wait "$local_load" || echo "  ($name: errors counted, see $out/$s-$name-$r.json)" >&2
    done
  done
done

python3 - "$out" "$rounds" "$duration" "${scenarios[@]}" <<'EOF'
import json, re, statistics, sys
out, rounds, duration, scenarios = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
kinds = ["epoll_wait", "epoll_ctl", "recvfrom", "sendto", "sendmsg", "read", "write"]
print("| scenario | server | msgs/s | " + " | ".join(k + " /msg" for k in kinds) +
      " | events per epoll_wait | events with EPOLLOUT alone | events with EPOLLOUT |")
print("|---|---|---|" + "---|" * (len(kinds) + 3))
for s in scenarios:
    for name in ["baseline", "edgews"]:
        per = {k: [] for k in kinds}
        rates, batch, alone, withOut = [], [], [], []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{out}/{s}-{name}-{r}.json"))
            rate = j["messages_per_s"]
            rates.append(rate)
            counts = {}
            for line in open(f"{out}/{s}-{name}-{r}.perf"):
                f = line.strip().split(",")
                if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
                    counts[f[2][len("syscalls:sys_enter_"):]] = float(f[0]) if f[0][0].isdigit() else 0.0
            for k in kinds:
                per[k].append(counts.get(k, 0.0) / (rate * duration))
            waits = events = out_alone = out_any = 0
            for line in open(f"{out}/{s}-{name}-{r}.strace"):
                if not line.startswith("epoll_wait("):
                    continue
                waits += 1
                masks = re.findall(r"events=([A-Z|]+)", line)
                events += len(masks)
                out_alone += sum(1 for m in masks if m == "EPOLLOUT")
                out_any += sum(1 for m in masks if "EPOLLOUT" in m.split("|"))
            batch.append(events / waits if waits else 0)
            alone.append(out_alone / events if events else 0)
            withOut.append(out_any / events if events else 0)
        med = statistics.median
        print(f"| ({s}) | {name} | {med(rates):.0f} | " + " | ".join(f"{med(per[k]):.4f}" for k in kinds) +
              f" | {med(batch):.1f} | {100 * med(alone):.1f}% | {100 * med(withOut):.1f}% |")
EOF
