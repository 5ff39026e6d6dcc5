#!/usr/bin/env bash
# TLS at the server: `edgews serve` with a ws:// and a wss:// port, measured from separate processes.
#   1. wss echo msgs/s beside plain ws in the same run (same server process), 100 connections, 16 B,
#      1 and 16 in flight; ROUNDS rounds, ws and wss alternate which goes first
#   2. full TLS handshakes per second from `openssl s_time -new` (TLS 1.3 and 1.2), with the server's CPU time
#   3. RSS per idle wss (and ws) connection: `edgews load --connect-only` holding N connections, fresh server
# Server pinned to core 0, clients to core 1 (taskset). Prints figures; asserts nothing.
#
#   bench/load/tls_server.sh            (after cmake --build --preset release)
#   ROUNDS=3 DURATION=4 IDLE=2000 HS_TIME=5 BUILD=build/release bench/load/tls_server.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$here/build/release}
edgews=$build/tools/edgews
rounds=${ROUNDS:-3}
duration=${DURATION:-4}
idle=${IDLE:-2000}
hs_time=${HS_TIME:-5}
out=$(mktemp -d /tmp/edgews-tls-bench.XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

bash "$here/tools/make-dev-cert.sh" "$out/certs" >/dev/null
ca=$out/certs/ca.crt

start_server() {  # sets server_pid, ws_port, wss_port
  taskset -c 0 "$edgews" serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert "$out/certs/localhost.crt" \
    --tls-key "$out/certs/localhost.key" --log-level error --max-connections 100000 >"$out/serve.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do grep -qs "listening on ports" "$out/serve.out" && break; sleep 0.1; done
  read -r ws_port wss_port < <(sed -n 's/^edgews: listening on ports \([0-9]*\) \([0-9]*\)$/\1 \2/p' "$out/serve.out")
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

field() {  # field FILE python-expression-on-j
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)," \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kTLS: tcp_available_ulp = '$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null)'" \
     "(no 'tls': the kernel has no CONFIG_TLS, OpenSSL uses user-space records)"

echo
echo "== 1. echo: 100 connections, 16 B binary, ${duration}s measured per run, $rounds rounds =="
start_server
printf '%-6s %-9s %-5s %12s %14s %10s\n' round inflight proto msgs/s server_us/msg p99_us
for round in $(seq "$rounds"); do
  for inflight in 1 16; do
    if [ $((round % 2)) = 1 ]; then order="ws wss"; else order="wss ws"; fi
    for proto in $order; do
      port=$ws_port; extra=()
      if [ "$proto" = wss ]; then port=$wss_port; extra=(--ca "$ca"); fi
      json=$out/echo-$round-$inflight-$proto.json
      taskset -c 1 "$edgews" load "$proto://127.0.0.1:$port/" "${extra[@]}" --connections 100 --size 16 \
        --inflight "$inflight" --duration "$duration" --warmup 1 --server-pid "$server_pid" --json "$json" \
        --quiet >>"$out/load.log" 2>&1
      printf '%-6s %-9s %-5s %12.0f %14.2f %10.0f\n' "$round" "$inflight" "$proto" \
        "$(field "$json" "j['messages_per_s']")" "$(field "$json" "j['server']['cpu_us_per_msg']")" \
        "$(field "$json" "j['latency_us']['p99']")"
    done
  done
done
python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for inflight in (1, 16):
    ratios, cpu_ratios, ws, wss = [], [], [], []
    for r in range(1, rounds + 1):
        a = json.load(open(f"{out}/echo-{r}-{inflight}-ws.json"))
        b = json.load(open(f"{out}/echo-{r}-{inflight}-wss.json"))
        ws.append(a["messages_per_s"]); wss.append(b["messages_per_s"])
        ratios.append(b["messages_per_s"] / a["messages_per_s"])
        cpu_ratios.append(b["server"]["cpu_us_per_msg"] / a["server"]["cpu_us_per_msg"])
        errors = a["errors_total"] + b["errors_total"]
        if errors:
            print(f"round {r} inflight {inflight}: {errors} errors counted by edgews load")
    print(f"inflight {inflight:2}: median ws {statistics.median(ws):.0f} msgs/s, wss {statistics.median(wss):.0f} "
          f"msgs/s, wss/ws msgs/s ratio (median of in-round ratios) {statistics.median(ratios):.3f}, "
          f"server CPU per message wss/ws {statistics.median(cpu_ratios):.2f}")
EOF

echo
echo "== 2. full TLS handshakes per second: openssl s_time -new, ${hs_time}s each, one client process =="
for version in tls1_3 tls1_2; do
  before=$(cpu_ticks "$server_pid")
  started=$(date +%s.%N)
  result=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$wss_port" -new -"$version" -CAfile "$ca" \
             -time "$hs_time" 2>/dev/null | grep -E "connections in [0-9]+ real seconds" | head -1)
  ended=$(date +%s.%N)
  after=$(cpu_ticks "$server_pid")
  count=$(echo "$result" | awk '{print $1}')
  python3 - "$version" "$count" "$started" "$ended" "$before" "$after" "$(getconf CLK_TCK)" <<'EOF'
import sys
version, count, started, ended, before, after, hz = sys.argv[1:8]
count = int(count); ticks = int(after) - int(before); seconds = float(ended) - float(started)
cpu_ms = ticks * 1000.0 / int(hz)
print(f"{version}: {count / seconds:.0f} handshakes/s ({count} in {seconds:.2f} s wall); server CPU "
      f"{cpu_ms / max(count, 1):.3f} ms per handshake -> {count * 1000.0 / max(cpu_ms, 1):.0f} handshakes per "
      f"server CPU second")
EOF
done
stop_server

echo
echo "== 3. RSS per idle connection: $idle connections held by edgews load --connect-only, fresh server each =="
for proto in wss ws; do
  start_server
  port=$ws_port; extra=()
  if [ "$proto" = wss ]; then port=$wss_port; extra=(--ca "$ca"); fi
  json=$out/idle-$proto.json
  taskset -c 1 "$edgews" load "$proto://127.0.0.1:$port/" "${extra[@]}" --connect-only --connections "$idle" \
    --duration 3 --server-pid "$server_pid" --connect-timeout 60 --json "$json" --quiet >>"$out/load.log" 2>&1
  echo "$proto: open $(field "$json" "j['open']"), server RSS $(field "$json" "j['server']['rss_kib_before']") KiB" \
       "-> $(field "$json" "j['server']['rss_kib']") KiB, $(field "$json" "round(j['server']['rss_bytes_per_connection'])")" \
       "bytes per connection"
  stop_server
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
