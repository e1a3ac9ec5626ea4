#!/usr/bin/env bash
# mesh_bench (issue 7): ambient vs our sidecar mode vs HAProxy sidecars vs no mesh in the simulated
# cluster, with a report. Builds what it needs (scripts/build.sh, Release, build/) and runs
# build/bin/mesh_bench as root with the given arguments.
#
#   sudo bench/run_mesh_bench.sh              # full run (rates 500,1000,2000 x 1,4,16 conns, 3 repeats)
#   sudo bench/run_mesh_bench.sh --short      # under 5 minutes on 2 cores
#   sudo bench/run_mesh_bench.sh --smoke      # under 90 s (what the test suite runs)
#   sudo bench/run_mesh_bench.sh --short --scenarios ambient,sidecar --out /tmp/mb
#
# Output: bench/results/mesh-<UTC date-time>/ (report.md, results.json, plots/) unless --out is
# given. Needs root (network namespaces, cgroups, eBPF), haproxy, iperf3, curl and gnuplot
# (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "run_mesh_bench.sh: run as root (the simulated cluster needs it)" >&2
  exit 1
fi

# A build/ configured earlier with the benchmarks off would not have the mesh_bench target.
if [ -f build/CMakeCache.txt ] && grep -q '^ZT_BUILD_BENCH:BOOL=OFF' build/CMakeCache.txt; then
  cmake -S . -B build -DZT_BUILD_BENCH=ON >/dev/null
fi
scripts/build.sh mesh_bench ztunnel meshd node-agent http-echo meshsim waypoint loadgen

args=("$@")
have_out=0
for a in "${args[@]}"; do
  case "$a" in
    --out | --out=*) have_out=1 ;;
    --help | -h) exec build/bin/mesh_bench --help ;;
  esac
done
if [ "$have_out" -eq 0 ]; then
  args+=(--out "bench/results/mesh-$(date -u +%Y%m%d-%H%M%S)")
fi
exec build/bin/mesh_bench "${args[@]}"
