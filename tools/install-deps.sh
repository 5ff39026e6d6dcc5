#!/usr/bin/env bash
# Installs the Debian packages edgews needs, quietly and only those that are missing.
#   tools/install-deps.sh build    what building the library, server and tools needs
#   tools/install-deps.sh test     the above plus what the test suite needs (clang for fuzzing, real browsers)
#   tools/install-deps.sh autobahn what the Autobahn TestSuite needs (tests/autobahn/run.sh), nothing else
set -euo pipefail

profile=${1:-build}
# The Autobahn TestSuite, ported to Debian's Python 3 (tests/autobahn/).
autobahn_packages=(python3 python3-autobahn python3-twisted python3-txaio python3-jinja2 python3-wsaccel)
packages=(build-essential cmake pkg-config libssl-dev libxxhash-dev zlib1g-dev libhiredis-dev libgtest-dev
          libgmock-dev libbenchmark-dev openssl)
if [[ $profile == autobahn ]]; then
  packages=("${autobahn_packages[@]}")
elif [[ $profile == test ]]; then
  packages+=("${autobahn_packages[@]}")
  packages+=(clang-14 libclang-rt-14-dev python3 python3-websockets strace
            prometheus)  # promtool checks the /metrics exposition
  # Cross-instance pub/sub and the deploy/ configurations run against the real broker and proxies.
  packages+=(redis-server haproxy nginx libnginx-mod-stream)  # the stream module: nginx TLS passthrough
  # systemd-socket-activate and systemd-analyze: socket activation and the unit files of deploy/systemd.
  packages+=(systemd)
  # The node ws client of the integration tests (its npm packages come from tests/clients/package-lock.json).
  # Only when node is missing: a newer node from another packaging must not be replaced by Debian's.
  command -v node >/dev/null || packages+=(nodejs npm)
  # Real clients for the browser tests: headless Chromium with its driver, WebKitGTK (Safari's engine) with
  # WebKitWebDriver and MiniBrowser under Xvfb; node runs the client helper's unit tests.
  packages+=(chromium chromium-driver webkit2gtk-driver xvfb)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
