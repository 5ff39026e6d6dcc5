#!/usr/bin/env bash
# Installs what the peer echo servers (bench/load/peers/) need, from Debian packages and npm only.
# Idempotent: apt-get skips what is installed, npm ci reinstalls exactly package-lock.json.
#
#   bench/load/peers/install.sh        (as root; about 1-3 minutes the first time)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkgs=(libboost-dev libwebsocketpp-dev libwebsockets-dev python3-websockets gnuplot-nox nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs from another repository may already provide npm; only ask apt for npm when no npm is on PATH.
if command -v npm >/dev/null; then
  missing=("${missing[@]/npm}")
fi
if command -v node >/dev/null; then
  missing=("${missing[@]/nodejs}")
fi
read -r -a missing <<<"${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq update
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bufferutil builds a native addon; node-gyp needs a compiler (present: the project builds with g++).
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
