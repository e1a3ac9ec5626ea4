#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, then ctest with every label
# (unit, integration, privileged, fuzz).
# Usage: scripts/test.sh [--sanitize] [extra ctest args...]
#   --sanitize   build and run the tests under ASan + UBSan instead (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
build_dir=build
if [ "${1:-}" = "--sanitize" ]; then
  shift
  scripts/build.sh --sanitize
  build_dir=build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  scripts/build.sh
fi

ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "$@"
