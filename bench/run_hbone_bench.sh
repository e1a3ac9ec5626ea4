#!/usr/bin/env bash
# Builds ztunnel and hbone_bench (Release, build/) and runs the HBONE benchmark: single-stream
# throughput, request latency and new-connection rate through two ztunnels, as ratios to a
# direct connection on this machine. See bench/README.md for how to read the output.
# Usage: bench/run_hbone_bench.sh [--full] [--no-build] [hbone_bench options...]
#   (default)   a short run: 256 MiB transfers, 5000 requests, 300 connections (~5 s after the build)
#   --full      the run behind bench/README.md: 1 GiB transfers (median of 3), 20000 requests,
#               2000 connections (~40 s on 2 CPUs)
#   --no-build  use the binaries already in $ZT_BIN_DIR (default build/bin)
# Options after these go to hbone_bench and override the mode's (see hbone_bench --help).
# Every number is also written as JSON next to the binaries: hbone_bench-<UTC time>.json.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=short
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --full) mode=full; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done

bin_dir=${ZT_BIN_DIR:-build/bin}
export ZT_BIN_DIR=$bin_dir
if [ "$build" = 1 ]; then
  scripts/build.sh hbone_bench ztunnel
fi

if [ "$mode" = full ]; then
  args=(--bytes 1G --repeat 3 --requests 20000 --warmup 2000 --connections 2000)
else
  args=(--bytes 256M --requests 5000 --warmup 500 --connections 300)
fi
json="$(dirname "$bin_dir")/hbone_bench-$(date -u +%Y%m%dT%H%M%SZ).json"

"$bin_dir/hbone_bench" --workers 1 "${args[@]}" --json "$json" "$@"
echo "JSON: $json"
