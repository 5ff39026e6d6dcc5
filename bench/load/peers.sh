#!/usr/bin/env bash
# One command for the peer comparison: edgews, the floor and six peer echo servers side by side.
#
#   bench/load/peers.sh [BUILD_DIR]      (default build/release; after the build about 28 minutes with the defaults,
#                                         5 rounds of each kind, as the method asks)
#
# From a clean checkout it installs the Debian and npm packages (bench/load/peers/install.sh, needs root),
# configures BUILD_DIR with EDGEWS_BUILD_PEERS=ON and builds the servers it needs (uWebSockets from the archives in
# ../shared/peers, see bench/load/peers/CMakeLists.txt), then measures.
# Method as bench/load/run.sh: all servers pinned to core 0 and started at once (an idle server costs nothing),
# the load generator pinned to core 1, the servers take turns inside each round, medians over the rounds and
# ratios to edgews taken within each round. Scenarios: (a) 100 connections, 16 B, 1 in flight; (b) 100
# connections, 16 B, 16 in flight; (c) 10 connections, 64 KiB binary; (d) server memory per idle connection at
# 10,000 connections, a fresh server each; (e) scenarios (a) and (b) over wss:// (TLS 1.3, one ECDSA P-256
# certificate from tools/make-dev-cert.sh for all) against a second instance of every server that speaks TLS, each on
# its own TLS port, started alongside the others (the floor has no TLS and sits (e) out).
# Then, paired: each other server and edgews loaded at the same time at the same fixed rate (as bench/load/paired.sh
# does for the floor), PAIRED_ROUNDS rounds per pair, for CPU-per-message ratios free of the machine's drift.
# Environment: ROUNDS (default 5), PAIRED_ROUNDS (default 5), DURATION (seconds per run, default 3), WARMUP
# (default 1), SKIP_INSTALL=1, SERVERS (a subset to race, e.g. "edgews uws floor"; edgews is always one).
# Raw JSON goes to $OUT (default BUILD_DIR/peer-results); the table (peers.md), the plot (peers.svg) and its data
# (peers.dat) go to $RESULTS (default bench/load/results).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/release}
rounds=${ROUNDS:-5}
paired_rounds=${PAIRED_ROUNDS:-5}
duration=${DURATION:-3}
warmup=${WARMUP:-1}
out=${OUT:-$build/peer-results}
results=${RESULTS:-$here/results}
python=/usr/bin/python3  # Debian's python3, which python3-websockets belongs to

if [ "${SKIP_INSTALL:-0}" != 1 ]; then "$here/peers/install.sh"; fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEDGEWS_BUILD_PEERS=ON >/dev/null
nice cmake --build "$build" -j2 --target edgews edgews_floor uws_echo uws_echo_tls beast_echo websocketpp_echo \
  lws_echo >/dev/null

edgews=$build/tools/edgews
p=$build/bench/load/peers
declare -A cmd=(
  [edgews]="$edgews serve --host 127.0.0.1 --port 0 --threads 1 --log-level warn --ping-interval 0"
  [floor]="$build/bench/load/edgews_floor --port 0"
  [uws]="$p/uws_echo 0"
  [beast]="$p/beast_echo 0"
  [websocketpp]="$p/websocketpp_echo 0"
  [lws]="$p/lws_echo 0"
  [node_ws]="node $here/peers/ws_echo.mjs 0"
  [python]="$python $here/peers/py_echo.py 0"
)
servers=(edgews floor uws beast websocketpp lws node_ws python)

rm -rf "$out" && mkdir -p "$out" "$results"
source "$here/lib.sh"

# (e): the same programs in their TLS mode, one certificate for all.
bash "$root/tools/make-dev-cert.sh" "$out/certs" >/dev/null
ca=$out/certs/ca.crt
cert=$out/certs/localhost.crt
key=$out/certs/localhost.key
declare -A tls_cmd=(
  # edgews serve always has a ws:// port too; the last word of its first line is the wss:// port.
  [edgews]="${cmd[edgews]/--port 0/--port 0 --tls-port 0 --tls-cert $cert --tls-key $key}"
  [uws]="$p/uws_echo_tls 0 --tls $cert $key"
  [beast]="${cmd[beast]} --tls $cert $key"
  [websocketpp]="${cmd[websocketpp]} --tls $cert $key"
  [lws]="${cmd[lws]} --tls $cert $key"
  [node_ws]="${cmd[node_ws]} --tls $cert $key"
  [python]="${cmd[python]} --tls $cert $key"
)
tls_servers=(edgews uws beast websocketpp lws node_ws python)
if [ -n "${SERVERS:-}" ]; then
  keep() { local name; for name in "$@"; do [[ " edgews $SERVERS " == *" $name "* ]] && printf '%s ' "$name"; done; }
  read -ra servers <<<"$(keep "${servers[@]}")"
  read -ra tls_servers <<<"$(keep "${tls_servers[@]}")"
fi

machine before
common=(--duration "$duration" --warmup "$warmup")
declare -A scenario_args=(
  [a]="--connections 100 --inflight 1 --size 16"
  [b]="--connections 100 --inflight 16 --size 16"
  [c]="--connections 10 --inflight 1 --size 65536 --binary"
)

for s in "${servers[@]}"; do
  # shellcheck disable=SC2086
  start "$s" 0 ${cmd[$s]}
done
for s in "${tls_servers[@]}"; do
  # shellcheck disable=SC2086
  start "${s}_tls" 0 ${tls_cmd[$s]}
done
# Every server must echo text and binary: one short check of each before measuring (errors are reported).
for s in "${servers[@]}"; do
  pid_var=${s}_pid port_var=${s}_port
  for mode in --text --binary; do
    load "$s" "${!port_var}" "${!pid_var}" "$out/check-$s$mode.json" --connections 4 --inflight 4 --size 100 \
      --duration 1 --warmup 0 "$mode"
  done
done
# The same over TLS, and the protocol and cipher each TLS server settles on with an OpenSSL 3 client offering
# the defaults (as edgews load does; both use Debian's libssl).
for s in "${tls_servers[@]}"; do
  pid_var=${s}_tls_pid port_var=${s}_tls_port
  for mode in --text --binary; do
    scheme=wss load "$s" "${!port_var}" "${!pid_var}" "$out/check-tls-$s$mode.json" --connections 4 --inflight 4 \
      --size 100 --duration 1 --warmup 0 "$mode"
  done
  timeout 10 openssl s_client -connect "127.0.0.1:${!port_var}" -CAfile "$ca" -brief </dev/null 2>&1 \
    | sed -n 's/^Protocol version: //p; s/^Ciphersuite: //p' | paste -sd' ' >"$out/tls-$s.txt" || true
done
# (e) is scenarios (a) and (b) over wss://: "ea" and "eb" in file names.
scenario_args[ea]=${scenario_args[a]}
scenario_args[eb]=${scenario_args[b]}
for sc in a b c ea eb; do
  case $sc in e*) list=("${tls_servers[@]}") suffix=_tls scheme=wss ;; *) list=("${servers[@]}") suffix= scheme=ws ;; esac
  for r in $(seq 1 "$rounds"); do
    echo "scenario ($sc) round $r" >&2
    for s in "${list[@]}"; do
      pid_var=$s${suffix}_pid port_var=$s${suffix}_port
      # shellcheck disable=SC2086
      load "$s" "${!port_var}" "${!pid_var}" "$out/$sc-$s-$r.json" ${scenario_args[$sc]} "${common[@]}"
    done
  done
done
# Paired (see bench/load/paired.sh for why): each other server and edgews loaded at the same time, at the same
# fixed rate, each by its own load generator on core 1, so that each round compares the two over one window.
# The rate is the scenario's, or half the slower server's closed-loop msgs/s above if lower (both share core 0).
declare -A paired_rate=([a]=25000 [b]=120000 [c]=5000 [ea]=20000 [eb]=100000)
for sc in a b c ea eb; do
  case $sc in e*) list=("${tls_servers[@]}") suffix=_tls scheme=wss ;; *) list=("${servers[@]}") suffix= scheme=ws ;; esac
  for s in "${list[@]}"; do
    [ "$s" != edgews ] || continue
    rate=$($python "$here/summarize.py" --pair-rate "$out" "$sc" "$s" "${paired_rate[$sc]}")
    for r in $(seq 1 "$paired_rounds"); do
      echo "paired ($sc) edgews and $s at $rate msgs/s, round $r" >&2
      loaders=()
      # The load generator started first costs its server more (2% between two copies of one binary, see
      # paired.sh): every other round starts the other one first.
      order=(edgews "$s")
      if [ $((r % 2)) = 0 ]; then order=("$s" edgews); fi
      for name in "${order[@]}"; do
        pid_var=$name${suffix}_pid port_var=$name${suffix}_port
        # shellcheck disable=SC2086
        load "$name" "${!port_var}" "${!pid_var}" "$out/p$sc-$s-$name-$r.json" ${scenario_args[$sc]} --rate "$rate" \
          "${common[@]}" &
        loaders+=($!)
      done
      wait "${loaders[@]}"
    done
  done
done
scheme=ws
for s in "${servers[@]}"; do pid_var=${s}_pid; stop "${!pid_var}"; done
for s in "${tls_servers[@]}"; do pid_var=${s}_tls_pid; stop "${!pid_var}"; done

# (d): idle memory at 10,000 connections, a fresh server each.
for s in "${servers[@]}"; do
  echo "scenario (d) 10000 idle connections: $s" >&2
  # shellcheck disable=SC2086
  start d_server 0 ${cmd[$s]}
  sleep 0.5
  load "$s" "$d_server_port" "$d_server_pid" "$out/d10000-$s.json" --connect-only --connections 10000 \
    --duration 2 --connect-timeout 60
  stop "$d_server_pid"
done

machine after
$python "$here/summarize.py" --peers "$out" "$rounds" "$results" "${servers[@]}"
command -v gnuplot >/dev/null && gnuplot -e "dat='$results/peers.dat'; svg='$results/peers.svg'" "$here/peers.gp"
echo "table: $results/peers.md   plot: $results/peers.svg"
