#!/usr/bin/env bash
# The README's first command: install what is missing, build in Release, run the server.
# Arguments are passed to `edgews serve` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh build
cmake --preset release -DEDGEWS_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release -j"$(nproc)" --target edgews
exec build/release/tools/edgews serve "$@"
