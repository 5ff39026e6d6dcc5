#!/usr/bin/env bash
# Installs the node clients' packages (ws, bufferutil) from package-lock.json, once: a second run with an
# unchanged lock file does nothing. Quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "clients/install.sh: npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
stamp=node_modules/.edgews-installed
if [[ -f $stamp && $stamp -nt package-lock.json && -d node_modules/ws ]]; then
  exit 0
fi
if ! out=$(npm ci --no-audit --no-fund --loglevel=error 2>&1); then
  echo "$out" >&2
  echo "clients/install.sh: npm ci failed (the npm registry must be reachable once)" >&2
  exit 1
fi
touch "$stamp"
