#!/usr/bin/env bash
# TLS against uWebSockets: full handshakes and idle memory, edgews and uws_echo_tls in the same run.
#
#   bench/load/tls_race.sh [BUILD_DIR]     (default build/release, configured with -DEDGEWS_BUILD_PEERS=ON and
#                                           targets edgews and uws_echo_tls built; about 3 minutes with the defaults)
#   ROUNDS=1 HS_TIME=1 IDLE=200 SETTLE_MS=300 bench/load/tls_race.sh      (a smoke run of a few seconds)
#   BASELINE=OLD_BUILD/tools/edgews bench/load/tls_race.sh   (a third server, an earlier edgews: before and after)
#
# Both servers: one thread, pinned to core 0, one ECDSA P-256 certificate from tools/make-dev-cert.sh, TLS 1.3 with
# OpenSSL's default groups and suites (the client's first choice, X25519 and TLS_AES_256_GCM_SHA384), no server-side
# session cache, OpenSSL's two stateless tickets per handshake, no automatic pings (edgews --ping-interval 0; see
# bench/load/peers/uws_echo.cpp for uws_echo_tls). What each server settles on is checked with `openssl s_client`
# and printed first. Clients on core 1. In each of ROUNDS rounds the servers take turns (the order alternates):
#   (h) full wss:// opening handshakes: bench/load/wss_handshakes.py (PROCS blocking loops, each a new TCP
#       connection, a full TLS handshake without resumption, the upgrade request and its 101, then close) for HS_TIME
#       seconds against servers started once; server CPU from /proc/PID/stat (user + system, 10 ms ticks);
#   (m) server RSS per idle wss:// connection: `edgews load --connect-only` opening IDLE connections to a fresh
#       server, RSS read SETTLE_MS after the last one is open, minus RSS before, divided by IDLE.
# Prints every round with the edgews/uWS ratio and the medians of the in-round ratios. Asserts nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/release}
rounds=${ROUNDS:-5}
hs_time=${HS_TIME:-5}
procs=${PROCS:-4}
idle=${IDLE:-5000}
settle_ms=${SETTLE_MS:-4000}
edgews=$build/tools/edgews
uws=$build/bench/load/peers/uws_echo_tls
python=/usr/bin/python3
for bin in "$edgews" "$uws"; do
  if [ ! -x "$bin" ]; then
    echo "missing $bin: cmake -S . -B $build -DEDGEWS_BUILD_PEERS=ON && cmake --build $build --target edgews uws_echo_tls" >&2
    exit 2
  fi
done
out=${OUT:-$(mktemp -d /tmp/edgews-tls-race.XXXXXX)}
mkdir -p "$out"
source "$here/lib.sh"

bash "$root/tools/make-dev-cert.sh" "$out/certs" >/dev/null
ca=$out/certs/ca.crt cert=$out/certs/localhost.crt key=$out/certs/localhost.key
declare -A cmd=(
  # edgews serve always has a ws:// port too; the last word of its first line is the wss:// port.
  [edgews]="$edgews serve --host 127.0.0.1 --port 0 --tls-port 0 --tls-cert $cert --tls-key $key --threads 1 --log-level error --ping-interval 0"
  [uws]="$uws 0 --tls $cert $key"
)
servers=(edgews uws)
if [ -n "${BASELINE:-}" ]; then
  cmd[base]=${cmd[edgews]/#$edgews/$BASELINE}
  servers+=(base)
fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
in_order() {  # in_order ROUND: the servers, in reverse every other round
  if [ $(($1 % 2)) = 1 ]; then printf '%s\n' "${servers[@]}"; else printf '%s\n' "${servers[@]}" | tac; fi
}

machine before
for s in "${servers[@]}"; do
  # shellcheck disable=SC2086
  start "$s" 0 ${cmd[$s]}
done
for s in "${servers[@]}"; do
  port_var=${s}_port
  # The session tickets arrive after the handshake: keep the connection open a moment to count them. The moment
  # counts from s_client's start, not from the handshake: seconds, for a loaded machine (the servers share core 0).
  settled=$( (sleep 3) | timeout 10 openssl s_client -connect "127.0.0.1:${!port_var}" -CAfile "$ca" \
    -servername localhost -msg 2>&1 | awk '/^Server Temp Key:/ {sub(/^Server Temp Key: /, ""); group = $0}
                     /^New, TLSv/ {suite = $0}
                     /NewSessionTicket/ {tickets++}
                     END {printf "%s; key exchange %s; %d session tickets", suite, group, tickets}') || true
  echo "$s: $settled"
done

hz=$(getconf CLK_TCK)
for r in $(seq 1 "$rounds"); do
  for s in $(in_order "$r"); do
    pid_var=${s}_pid port_var=${s}_port
    before=$(cpu_ticks "${!pid_var}")
    taskset -c 1 "$python" "$here/wss_handshakes.py" "${!port_var}" "$ca" "$hs_time" "$procs" >"$out/h-$s-$r.txt"
    echo "ticks $(($(cpu_ticks "${!pid_var}") - before)) hz $hz" >>"$out/h-$s-$r.txt"
  done
done
for s in "${servers[@]}"; do
  pid_var=${s}_pid
  stop "${!pid_var}"
done

for r in $(seq 1 "$rounds"); do
  for s in $(in_order "$r"); do
    # shellcheck disable=SC2086
    start "m$s" 0 ${cmd[$s]}
    pid_var=m${s}_pid port_var=m${s}_port
    taskset -c 1 "$edgews" load "wss://127.0.0.1:${!port_var}/" --ca "$ca" --connect-only --connections "$idle" \
      --duration 1 --settle-ms "$settle_ms" --connect-timeout 60 --server-pid "${!pid_var}" \
      --json "$out/m-$s-$r.json" --quiet 2>>"$out/load.log" || echo "  ($s: errors counted, see $out/m-$s-$r.json)" >&2
    stop "${!pid_var}"
  done
done
machine after

echo "raw results: $out"
"$python" - "$out" "$rounds" "$idle" "$settle_ms" "${servers[@]}" <<'EOF'
import json, statistics, sys
out, rounds, idle, settle_ms, servers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
names = {"edgews": "edgews", "uws": "uWS", "base": "baseline"}
def handshakes(s, r):
    words = open(f"{out}/h-{s}-{r}.txt").read().split()
    n, failures, seconds, ticks, hz = (float(words[words.index(k) + 1])
                                       for k in ("handshakes", "failures", "seconds", "ticks", "hz"))
    return n / seconds, ticks * 1000.0 / hz / max(n, 1), int(failures)
def memory(s, r):
    j = json.load(open(f"{out}/m-{s}-{r}.json"))
    return j["server"]["rss_bytes_per_connection"], idle - j["open"]
# Ratios within each round: every edgews build to uWS, and edgews to the baseline when there is one.
pairs = [(s, "uws") for s in servers if s != "uws"] + ([("edgews", "base")] if "base" in servers else [])
n = len(servers)
head = ["round"] + [f"{names[s]} {what}" for what in ("hs/s", "server CPU ms/hs", "B/idle conn") for s in servers]
head += [f"{names[a]}/{names[b]} {what}" for what in ("CPU", "memory") for a, b in pairs] + ["failures, not open"]
def fmt(i, v):
    return f"{v:.0f}" if i < n else f"{v:.3f}" if i < 2 * n else f"{v:,.0f}" if i < 3 * n else f"{v:.3f}"
print()
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
cols = []
for r in range(1, rounds + 1):
    h = {s: handshakes(s, r) for s in servers}
    m = {s: memory(s, r) for s in servers}
    row = [h[s][0] for s in servers] + [h[s][1] for s in servers] + [m[s][0] for s in servers]
    row += [h[a][1] / h[b][1] for a, b in pairs] + [m[a][0] / m[b][0] for a, b in pairs]
    cols.append(row)
    bad = f"{sum(h[s][2] for s in servers)}, {sum(m[s][1] for s in servers)}"
    print("| " + " | ".join([str(r)] + [fmt(i, v) for i, v in enumerate(row)] + [bad]) + " |")
print("| median | " + " | ".join(fmt(i, statistics.median(c)) for i, c in enumerate(zip(*cols))) + " | |")
print(f"(ratios taken within each round, then the median; idle: {idle} wss:// connections, RSS read {settle_ms} ms "
      f"after the last was open)")
EOF
