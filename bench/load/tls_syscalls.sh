#!/usr/bin/env bash
# System calls per full wss:// handshake of `edgews serve`, counted by strace: which calls, how many, how many fail.
#
#   bench/load/tls_syscalls.sh [BUILD_DIR]     (default build/release, target edgews built; about 10 seconds)
#   BASELINE=OLD_BUILD/tools/edgews bench/load/tls_syscalls.sh     (an earlier edgews beside it)
#
# uws_echo_tls (bench/load/peers/, -DEDGEWS_BUILD_PEERS=ON) is measured too when it is built.
# Each server runs under `strace -f -c` (one thread, pinned to core 0, settings as in tls_race.sh) while
# bench/load/wss_handshakes.py opens HS_TIME (default 3) seconds of full handshakes from PROCS (default 2) loops on
# core 1; the counts are divided by the handshakes done. strace slows the server, so the rate means nothing here:
# only the calls per handshake do. Asserts nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/release}
hs_time=${HS_TIME:-3}
procs=${PROCS:-2}
python=/usr/bin/python3
command -v strace >/dev/null || { echo "strace is missing: apt-get install strace" >&2; exit 2; }
if [ ! -x "$build/tools/edgews" ]; then
  echo "missing $build/tools/edgews: cmake --build $build --target edgews" >&2
  exit 2
fi
out=${OUT:-$(mktemp -d /tmp/edgews-tls-syscalls.XXXXXX)}
mkdir -p "$out"
bash "$root/tools/make-dev-cert.sh" "$out/certs" >/dev/null
ca=$out/certs/ca.crt cert=$out/certs/localhost.crt key=$out/certs/localhost.key
args="serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert $cert --tls-key $key --threads 1 --log-level error"
args+=" --ping-interval 0"
declare -A cmd=([edgews]="$build/tools/edgews $args")
servers=(edgews)
uws=$build/bench/load/peers/uws_echo_tls
if [ -x "$uws" ]; then cmd[uws]="$uws 0 --tls $cert $key"; servers+=(uws); fi
if [ -n "${BASELINE:-}" ]; then cmd[base]="$BASELINE $args"; servers+=(base); fi

tracer=
trap '[ -n "$tracer" ] && kill "$tracer" 2>/dev/null; wait 2>/dev/null || true' EXIT
for s in "${servers[@]}"; do
  # shellcheck disable=SC2086
  taskset -c 0 strace -f -c -o "$out/$s.strace" ${cmd[$s]} >"$out/$s.out" 2>"$out/$s.err" &
  tracer=$!
  for _ in $(seq 100); do [ -s "$out/$s.out" ] && break; sleep 0.1; done
  port=$(head -1 "$out/$s.out" | awk '{print $NF}')
  [ -n "$port" ] || { echo "$s did not start: see $out/$s.err" >&2; exit 1; }
  taskset -c 1 "$python" "$here/wss_handshakes.py" "$port" "$ca" "$hs_time" "$procs" >"$out/$s.client"
  # The server is strace's child: SIGTERM stops it, and strace writes its table once it is gone.
  kill -TERM "$(pgrep -P "$tracer")"
  wait "$tracer" || true
  tracer=
done

echo "| server | handshakes | system calls per handshake | failed per handshake | setsockopt per handshake (failed) |"
echo "|---|---|---|---|---|"
for s in "${servers[@]}"; do
  n=$(awk '{print $2}' "$out/$s.client")
  # strace -c columns: % time, seconds, usecs/call, calls, errors (empty when none), syscall.
  awk -v n="$n" -v s="$s" '
    $NF == "setsockopt" {set = $4; setfail = (NF == 6 ? $5 : 0)}
    $NF == "total" {calls = $4; fail = (NF == 6 ? $5 : 0)}
    END {printf "| %s | %d | %.2f | %.2f | %.2f (%.2f) |\n", s, n, calls / n, fail / n, set / n, setfail / n}' \
    "$out/$s.strace"
done
echo "(strace -f -c of the server; the tables per server: $out/*.strace)"
