#!/usr/bin/env bash
# Regenerates ztunnel/text-order.txt, the order in which the linker lays out ztunnel's functions.
#
# Why: the kernel maps an executable's code 64 KiB at a time around each page a process touches
# (fault-around), and those pages count in its RSS. ztunnel touches about 1.6 MB of its 5.8 MB of
# code, spread over nearly all of it, so nearly all of it was resident. Linked in the order this
# file gives (the functions a real run executed, the busiest first; lld's --symbol-ordering-file),
# the touched code is packed at the start of .text and the rest is never mapped.
#
# How: runs `mesh_bench --smoke` on the scenarios that exercise ztunnel (ambient L4, ambient with
# a waypoint, and sidecar mode, which is ztunnel in dedicated mode) with every ztunnel under
# valgrind's callgrind, then lists the ztunnel functions callgrind saw run, busiest first.
# Re-run it after large changes to ztunnel; a stale list still links (names that no longer exist
# are skipped), it only packs less well.
#
# Usage (root, after scripts/build.sh; needs valgrind, which scripts/setup.sh installs):
#   scripts/text-order.sh [BUILD_DIR]
set -euo pipefail
repo=$(realpath "$(dirname "$0")/..")
build=$(realpath "${1:-$repo/build}")
cd "$repo"

if [ "$(id -u)" -ne 0 ]; then
  echo "text-order.sh: run as root (mesh_bench builds the simulated cluster)" >&2
  exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
  echo "text-order.sh: needs valgrind (apt-get install valgrind)" >&2
  exit 1
fi
if [ ! -x "$build/bin/ztunnel" ] || [ ! -x "$build/bin/mesh_bench" ]; then
  echo "text-order.sh: $build/bin/ztunnel or mesh_bench missing; run scripts/build.sh first" >&2
  exit 1
fi

work=$(mktemp -d /tmp/text-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/callgrind"
for f in "$build"/bin/*; do ln -s "$f" "$work/bin/"; done
rm "$work/bin/ztunnel"
# Periodic dumps (--dump-every-bb): the cluster's teardown kills the node ztunnels with SIGKILL,
# which leaves no final dump.
{
  echo '#!/bin/sh'
  printf 'exec valgrind -q --tool=callgrind --demangle=no --dump-instr=no --collect-jumps=no '
  printf -- '--dump-every-bb=20000000 --callgrind-out-file=%q %q "$@"\n' \
    "$work/callgrind/cg.%p" "$build/bin/ztunnel"
} > "$work/bin/ztunnel"
chmod +x "$work/bin/ztunnel"

echo "text-order.sh: running mesh_bench --smoke with ztunnel under callgrind (about 2 minutes)"
"$build/bin/mesh_bench" --smoke --scenarios ambient,ambient-waypoint,sidecar --rates 200 \
  --connections 4 --pods 1,3 --duration 5s --prefix zto --bin-dir "$work/bin" \
  --out "$work/results" > "$work/mesh_bench.log" 2>&1 || {
  echo "text-order.sh: mesh_bench failed; its log:" >&2
  tail -30 "$work/mesh_bench.log" >&2
  exit 1
}

shopt -s nullglob
profiles=("$work"/callgrind/cg.*)
if [ "${#profiles[@]}" -eq 0 ]; then
  echo "text-order.sh: callgrind wrote no profile; mesh_bench's log: $work/mesh_bench.log" >&2
  trap - EXIT
  exit 1
fi
# Written aside and moved into place only when complete: a failed run keeps the old list.
python3 "$repo/scripts/text_order.py" "$build/bin/ztunnel" "${profiles[@]}" > "$work/order.txt"
mv "$work/order.txt" "$repo/ztunnel/text-order.txt"
echo "text-order.sh: wrote ztunnel/text-order.txt ($(wc -l < "$repo/ztunnel/text-order.txt") functions)"
