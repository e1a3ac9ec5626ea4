#!/usr/bin/env bash
# The main job, on one machine (as root): installs what is needed, builds, then starts a
# simulated 2-node Kubernetes cluster out of network namespaces, veths, a bridge and cgroups
# (meshd as the control plane; on each node a node agent that attaches the eBPF capture and a
# ztunnel in shared mode), sends traffic between an ambient namespace and a plain one and
# through a waypoint (L7 routing and authorization), and prints what happened: which
# connections were captured, the identities on each side, bytes, the waypoint's routes and
# counters, and a packet capture of the node link showing TLS 1.3 on port 15008 and no
# plaintext.
# Usage: scripts/demo.sh [--no-setup] [--keep]
#   --keep   leave the cluster running afterwards (build/bin/meshsim down --prefix zdemo)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--no-setup" ]; then
  shift
else
  scripts/setup.sh
fi
scripts/build.sh meshsim http-echo ztunnel meshd node-agent waypoint
exec build/bin/meshsim demo --manifests sim/examples/demo "$@"
