#!/usr/bin/env bash
# `edgews load` on the client API against its raw engine, in one run:
#
#   bench/load/client_engine.sh [BUILD_DIR]      (default build/release; about 3 minutes with the defaults)
#
# An edgews server pinned to core 0 (and a second for wss://); `edgews load` on core 1, once with --engine raw (lean
# connections on the codec) and once with --engine client (one edgews::Client per connection on one reactor), in
# alternating order, ROUNDS times. Scenarios as bench/load/run.sh, in closed loop (each engine sends as fast as the
# echoes come back, so a client that costs more per message shows as fewer messages per second): (a) 100
# connections, 16 B, 1 in flight; (b) 100 connections, 16 B, 16 in flight; (c) 10 connections, 64 KiB; (e) = (a)
# over wss://; and (f) = (b) in open loop at RATE msgs/s (default 600,000, which both engines sustain on a 2-core
# machine; both offer the same messages, so the load generator's CPU per message is the engine's like-for-like cost).
# Printed per scenario: the medians of messages per second and of the load generator's own CPU per message, the
# client engine's ratio to the raw one, and the medians of those ratios within each round (the two engines ran
# back to back there: the machine's drift between rounds cancels).
# Environment: ROUNDS (default 5), DURATION (seconds per run, default 3), WARMUP (default 1), SCENARIOS (default
# "a b c e f"), RATE. Raw JSON goes to $OUT (default BUILD_DIR/client-engine-results); the table to
# $OUT/client_engine.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build/release}" && pwd)
source "$here/lib.sh"
edgews=$build/tools/edgews
[ -x "$edgews" ] || { echo "build first: cmake --build --preset release (missing $edgews)" >&2; exit 2; }
rounds=${ROUNDS:-5}
duration=${DURATION:-3}
warmup=${WARMUP:-1}
out=${OUT:-$build/client-engine-results}
rm -rf "$out" && mkdir -p "$out"

declare -A scenario_args=(
  [a]="--connections 100 --inflight 1 --size 16"
  [b]="--connections 100 --inflight 16 --size 16"
  [c]="--connections 10 --inflight 1 --size 65536"
  [e]="--connections 100 --inflight 1 --size 16"
  [f]="--connections 100 --inflight 16 --size 16 --rate ${RATE:-600000}"
)
machine before
certs=$out/certs
bash "$here/../../tools/make-dev-cert.sh" "$certs" >/dev/null 2>&1
start edgews 0 "$edgews" serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn --ping-interval 0
# The wss:// server prints "listening on ports WS WSS": start() keeps the last.
start edgews_tls 0 "$edgews" serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert "$certs/localhost.crt" \
  --tls-key "$certs/localhost.key" --threads 1 --log-level warn --ping-interval 0
for s in ${SCENARIOS:-a b c e f}; do
  port=$edgews_port pid=$edgews_pid scheme=ws
  if [ "$s" = e ]; then port=$edgews_tls_port pid=$edgews_tls_pid scheme=wss ca=$certs/ca.crt; fi
  for r in $(seq 1 "$rounds"); do
    echo "scenario ($s) round $r" >&2
    order=(raw client)
    if [ $((r % 2)) -eq 0 ]; then order=(client raw); fi
    for engine in "${order[@]}"; do
      # shellcheck disable=SC2086
      scheme=$scheme load "$engine" "$port" "$pid" "$out/$s-$engine-$r.json" ${scenario_args[$s]} \
        --engine "$engine" --duration "$duration" --warmup "$warmup"
    done
  done
done
stop "$edgews_pid"
stop "$edgews_tls_pid"
machine after

python3 - "$out" "$rounds" <<'EOF' | tee "$out/client_engine.md"
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
names = {"a": "(a) 100 x 16 B, 1 in flight", "b": "(b) 100 x 16 B, 16 in flight", "c": "(c) 10 x 64 KiB",
         "e": "(e) = (a) over wss://", "f": "(f) = (b) in open loop at %s msgs/s" % os.environ.get("RATE", "600000")}
print("| scenario | raw msgs/s | client msgs/s | client / raw | in-round client / raw: median (range) "
      "| raw us/msg | client us/msg | in-round us/msg client / raw | rounds | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s, name in names.items():
    runs = {e: [] for e in ("raw", "client")}
    pairs = []  # client / raw within each round: the machine's drift between rounds cancels
    cpu_pairs = []
    for r in range(1, rounds + 1):
        got = {}
        for e in runs:
            try:
                with open(os.path.join(out, "%s-%s-%d.json" % (s, e, r))) as f:
                    got[e] = json.load(f)
                    runs[e].append(got[e])
            except (FileNotFoundError, json.JSONDecodeError):
                pass
        if len(got) == 2 and got["raw"]["messages_per_s"] > 0:
            pairs.append(got["client"]["messages_per_s"] / got["raw"]["messages_per_s"])
        if len(got) == 2 and got["raw"]["client"]["cpu_us_per_msg"] > 0:
            cpu_pairs.append(got["client"]["client"]["cpu_us_per_msg"] / got["raw"]["client"]["cpu_us_per_msg"])
    if not runs["raw"] and not runs["client"]:
        continue
    med = lambda e, k: statistics.median([k(j) for j in runs[e]]) if runs[e] else float("nan")
    rate = {e: med(e, lambda j: j["messages_per_s"]) for e in runs}
    cpu = {e: med(e, lambda j: j["client"]["cpu_us_per_msg"]) for e in runs}
    errors = sum(j["errors_total"] for e in runs for j in runs[e])
    ratio = rate["client"] / rate["raw"] if rate["raw"] else float("nan")
    in_round = "%.3f (%.2f-%.2f)" % (statistics.median(pairs), min(pairs), max(pairs)) if pairs else "-"
    cpu_in_round = "%.3f" % statistics.median(cpu_pairs) if cpu_pairs else "-"
    print("| %s | %.0f | %.0f | %.3f | %s | %.3f | %.3f | %s | %d, %d | %d |" % (name, rate["raw"], rate["client"],
          ratio, in_round, cpu["raw"], cpu["client"], cpu_in_round, len(runs["raw"]), len(runs["client"]), errors))
EOF
