#!/usr/bin/env bash
# edgews against the floor at the same offered load, both loaded at the same time:
#
#   bench/load/paired.sh [BUILD_DIR]      (default build/release; about 2 minutes with the defaults)
#
# The question "within 5% of the floor?" needs a steadier method than turns: on this machine the kernel's cost
# per message drifts by 10-20% between runs a few seconds apart, for every server alike. Here both servers are
# pinned to core 0 and each gets its own `edgews load --rate R` (open loop, the same fixed rate for both, both on
# core 1) started at the same moment, so one round measures both over the same window, under the same drift.
# Each load generator reports its server's CPU per message over its window (the kernel's per-process CPU clock).
# Scenarios as bench/load/run.sh: (a) 100 connections, 16 B, 1 in flight; (b) 100 connections, 16 B, 16 in flight;
# (c) 10 connections, 64 KiB binary. The rates are chosen so that the load generators keep them on one core.
# Environment: ROUNDS (default 5), DURATION (seconds per run, default 4), WARMUP (default 1), RATE_A, RATE_B,
# RATE_C (messages/s per server; defaults 25000, 120000, 5000); BASELINE: the path of an older edgews binary,
# loaded as a third server in the same rounds, for before/after ratios. TLS=1: the same over wss:// (TLS 1.3, one
# ECDSA P-256 certificate from tools/make-dev-cert.sh), default rates 20000, 100000 and 1000,
# with uWebSockets' TLS build (uws_echo_tls: configure with -DEDGEWS_BUILD_PEERS=ON) in the floor's place, which
# speaks no TLS. REFERENCE=uws: uWebSockets' plain build (uws_echo) in the floor's place. The servers are started
# afresh for each round, in another order each time. Raw JSON goes to $OUT (default BUILD_DIR/paired-results);
# the table is printed and written to $OUT/paired.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/release}
source "$here/lib.sh"
floor_setup 4 paired-results

serve=(serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn --ping-interval 0)
if [ "${TLS:-0}" = 1 ]; then
  reference=uws
  scenarios=(a b c)
  uws_tls=$build/bench/load/peers/uws_echo_tls
  [ -x "$uws_tls" ] || { echo "TLS=1 needs $uws_tls: configure with -DEDGEWS_BUILD_PEERS=ON" >&2; exit 2; }
  bash "$here/../../tools/make-dev-cert.sh" "$out/certs" >/dev/null
  scheme=wss ca=$out/certs/ca.crt
  # edgews prints its plain port, then its TLS port: start() takes the last.
  serve+=(--tls-port 0 --tls-cert "$out/certs/localhost.crt" --tls-key "$out/certs/localhost.key")
  reference_cmd=("$uws_tls" 0 --tls "$out/certs/localhost.crt" "$out/certs/localhost.key")
elif [ "${REFERENCE:-floor}" = uws ]; then
  reference=uws
  scenarios=(a b c)
  uws=$build/bench/load/peers/uws_echo
  [ -x "$uws" ] || { echo "REFERENCE=uws needs $uws: configure with -DEDGEWS_BUILD_PEERS=ON" >&2; exit 2; }
  reference_cmd=("$uws" 0)
else
  reference=floor
  scenarios=(a b c)
  reference_cmd=("$floor" --port 0)
fi
if [ "${TLS:-0}" = 1 ]; then default_a=20000 default_b=100000 default_c=1000
else default_a=25000 default_b=120000 default_c=5000; fi
declare -A scenario_args=(
  [a]="--connections 100 --inflight 1 --size 16 --rate ${RATE_A:-$default_a}"
  [b]="--connections 100 --inflight 16 --size 16 --rate ${RATE_B:-$default_b}"
  [c]="--connections 10 --inflight 1 --size 65536 --rate ${RATE_C:-$default_c}"
)
machine before

servers=(edgews "$reference")
if [ -n "$baseline" ]; then servers+=(baseline); fi
start_server() {
  case $1 in
    edgews) start edgews 0 "$edgews" "${serve[@]}" ;;
    baseline) start baseline 0 "$baseline" "${serve[@]}" ;;
    *) start "$1" 0 "${reference_cmd[@]}" ;;
  esac
}
n=${#servers[@]}
for s in "${scenarios[@]}"; do
  for r in $(seq 1 "$rounds"); do
    echo "scenario ($s) round $r" >&2
    # Fresh servers each round, started and loaded in another order each time: two copies of one binary, started
    # once and always loaded in the same order, differed by 2% (the first started costing more), and by 1% when
    # only the order of the load generators turned.
    order=()
    for k in $(seq 0 $((n - 1))); do order+=("${servers[$(((k + r) % n))]}"); done
    for name in "${order[@]}"; do start_server "$name"; done
    loaders=()
    for name in "${order[@]}"; do
      port_var=${name}_port pid_var=${name}_pid
      # shellcheck disable=SC2086
      load "$name" "${!port_var}" "${!pid_var}" "$out/$s-$name-$r.json" ${scenario_args[$s]} \
        --duration "$duration" --warmup "$warmup" &
      loaders+=($!)
    done
    wait "${loaders[@]}"
    for name in "${order[@]}"; do
      pid_var=${name}_pid
      stop "${!pid_var}"
    done
  done
done

machine after
python3 "$here/summarize.py" --paired "$out" "$rounds" "$reference" | tee "$out/paired.md"
