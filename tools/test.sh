#!/usr/bin/env bash
# The README's second command: install what is missing, build, and run the whole test suite:
#   1. Release build: unit, integration and real-client tests, a subset of the Autobahn TestSuite (ctest);
#   2. the same unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer (quarantine
#      bounded to 16 MiB so that the RSS bounds of the leak tests stay meaningful);
#   3. libFuzzer targets built with clang-14, each run for a bounded time (EDGEWS_FUZZ_SECONDS, default 20);
#   4. the load benchmark commands (bench/load/paired.sh, run.sh, peers.sh), one short round each: they must
#      run from a clean checkout and print whole, error-free tables (peers.sh installs and builds the peers).
# Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
fuzz_seconds=${EDGEWS_FUZZ_SECONDS:-20}
tools/install-deps.sh test

stage() { printf '\n==== %s ====\n' "$*"; }

stage "Release build"
# Options stated here: the README's first command builds the same directory with tests off.
cmake --preset release -DEDGEWS_BUILD_TESTS=ON -DEDGEWS_BUILD_BENCH=ON -DEDGEWS_BUILD_TOOLS=ON >/dev/null
cmake --build --preset release -j"$jobs"
stage "Release tests"
ctest --preset release -j"$jobs"

stage "ASan + UBSan build"
cmake --preset asan >/dev/null
cmake --build --preset asan -j"$jobs"
stage "ASan + UBSan tests"
ctest --preset asan -j"$jobs"

stage "Fuzz build (clang-14, libFuzzer)"
cmake --preset fuzz -DEDGEWS_FUZZ_SECONDS="$fuzz_seconds" >/dev/null
cmake --build --preset fuzz -j"$jobs"
stage "Fuzz runs (${fuzz_seconds}s each)"
ctest --preset fuzz

stage "Load benchmark commands (one short round each)"
tests/bench/scripts_smoke.py build/release

stage "All stages passed"
