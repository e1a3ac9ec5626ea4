#!/usr/bin/env bash
# Configures and builds into build/ (Release) or, with --sanitize, build-asan/ (ASan + UBSan).
# Usage: scripts/build.sh [--sanitize] [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = "--sanitize" ]; then
  shift
  build_dir=build-asan
  # The fuzzers are sanitized already; the benchmarks are not tests.
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DZT_SANITIZE=ON -DZT_BUILD_FUZZ=OFF -DZT_BUILD_BENCH=OFF)
fi

# ccache, when installed, makes rebuilds in fresh clones cheap; CI works without it.
if command -v ccache >/dev/null 2>&1; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

jobs=$(nproc)
cmake -S . -B "$build_dir" -G Ninja "${cmake_args[@]}" >/dev/null
ninja -C "$build_dir" -j "$jobs" "$@"
