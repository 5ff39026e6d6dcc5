#!/usr/bin/env bash
# User-space instructions per full wss:// handshake, edgews against uws_echo_tls, under callgrind: exact counts that
# the machine's load does not move (the kernel's part is not counted; bench/load/tls_race.sh measures CPU time).
#
#   bench/load/tls_instructions.sh [BUILD_DIR]     (after: cmake --build BUILD_DIR --target edgews uws_echo_tls_valgrind;
#                                                   about a minute)
#   BASELINE=OLD_BUILD/tools/edgews bench/load/tls_instructions.sh     (an earlier edgews beside them)
#   MESSAGES=1 bench/load/tls_instructions.sh     (per echoed message instead: scenario TLS (a), 100 connections x
#                                                  16 B, 1 in flight, at RATE (default 2000) msgs/s from edgews load)
#
# Each server runs under callgrind (uws_echo_tls_valgrind: the TLS peer without AVX-512, which valgrind cannot
# decode); bench/load/wss_handshakes.py warms it up for 2 s, the counters are zeroed, then HS_TIME (default 8) seconds
# of handshakes are counted. Handshakes = calls of SSL_new in the counted part. Settings as in tls_race.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/release}
hs_time=${HS_TIME:-8}
python=/usr/bin/python3
out=${OUT:-$(mktemp -d /tmp/edgews-tls-instructions.XXXXXX)}
mkdir -p "$out"
for bin in "$build/tools/edgews" "$build/bench/load/peers/uws_echo_tls_valgrind"; do
  [ -x "$bin" ] || { echo "missing $bin (see the usage at the top of $0)" >&2; exit 2; }
done
bash "$root/tools/make-dev-cert.sh" "$out/certs" >/dev/null
ca=$out/certs/ca.crt cert=$out/certs/localhost.crt key=$out/certs/localhost.key
edgews_args="serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert $cert --tls-key $key --threads 1 --log-level error --ping-interval 0"
declare -A cmd=(
  [edgews]="$build/tools/edgews $edgews_args"
  [uws]="$build/bench/load/peers/uws_echo_tls_valgrind 0 --tls $cert $key"
)
servers=(edgews uws)
if [ -n "${BASELINE:-}" ]; then cmd[base]="$BASELINE $edgews_args"; servers+=(base); fi

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
for s in "${servers[@]}"; do
  # shellcheck disable=SC2086
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$s.cg" ${cmd[$s]} >"$out/$s.out" 2>"$out/$s.err" &
  pids+=($!)
  printf -v "${s}_pid" %s "$!"
done
for s in "${servers[@]}"; do
  for _ in $(seq 120); do [ -s "$out/$s.out" ] && break; sleep 0.5; done
  port=$(head -1 "$out/$s.out" | awk '{print $NF}')
  [ -n "$port" ] || { echo "$s did not start under valgrind: see $out/$s.err" >&2; exit 1; }
  pid_var=${s}_pid
  if [ "${MESSAGES:-0}" = 1 ]; then
    # Connections open and warm for 5 s, then HS_TIME seconds of echoes counted.
    taskset -c 1 "$build/tools/edgews" load "wss://127.0.0.1:$port/" --ca "$ca" --connections 100 --inflight 1 \
      --size 16 --rate "${RATE:-2000}" --duration $((hs_time + 7)) --warmup 0 --connect-timeout 30 --quiet \
      >"$out/$s.client" 2>&1 &
    loader=$!
    sleep 5
    callgrind_control -z "${!pid_var}" >/dev/null 2>&1
    sleep "$hs_time"
    callgrind_control -d "${!pid_var}" >/dev/null 2>&1
    wait "$loader" || true
  else
    taskset -c 1 "$python" "$here/wss_handshakes.py" "$port" "$ca" 2 1 >/dev/null
    callgrind_control -z "${!pid_var}" >/dev/null 2>&1
    taskset -c 1 "$python" "$here/wss_handshakes.py" "$port" "$ca" "$hs_time" 2 >"$out/$s.client"
    callgrind_control -d "${!pid_var}" >/dev/null 2>&1
  fi
done
# The unit counted: handshakes are the calls of SSL_new, echoed messages (one record each way at 1 in flight)
# the calls of SSL_write or SSL_write_ex.
unit='SSL_new' label='handshakes counted' per='per handshake'
if [ "${MESSAGES:-0}" = 1 ]; then unit='SSL_write[_ex]*' label='messages counted' per='per message'; fi
for s in "${servers[@]}"; do
  dump=$(ls "$out/$s.cg".* | tail -1)
  total=$(callgrind_annotate --threshold=100 "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  n=$(callgrind_annotate --tree=calling --threshold=100 "$dump" | sed -n "s/.*>   ???:$unit (\([0-9,]*\)x).*/\1/p" \
      | tr -d , | paste -sd+ | bc)
  echo "$s $n $total"
done >"$out/table.txt"
echo "| server | $label | instructions | $per | over uWS |"
echo "|---|---|---|---|---|"
awk 'NR == FNR {if ($1 == "uws") u = $3 / $2; next}
     {printf "| %s | %d | %d | %d | %.4f |\n", $1, $2, $3, $3 / $2, $3 / $2 / u}' "$out/table.txt" "$out/table.txt"
echo "raw results: $out"
