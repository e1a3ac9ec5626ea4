#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the benchmarks need.
# Idempotent: safe to run again; apt-get only installs what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git
  clang llvm lld libclang-rt-14-dev
  # lld 16 links ztunnel in the order of ztunnel/text-order.txt (lld 14 lacks -z pack-relative-relocs)
  lld-16
  # libraries (libboost1.81-dev, not libboost-dev: Asio 1.26 has as_tuple and awaitable operators)
  libboost1.81-dev libssl-dev libnghttp2-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libexpected-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libbpf-dev bpftool linux-libc-dev libre2-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  curl openssl iproute2 procps prometheus
  # scripts/text-order.sh profiles ztunnel with callgrind
  valgrind
  nghttp2-client wrk iperf3 haproxy nginx-light python3 python3-h2 gnuplot-nox
  # validating the Kubernetes manifests (deploy/) with the kubernetes-models npm packages
  nodejs
)
# npm: Debian's package, unless a node.js build that bundles its own npm is installed already.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${#missing[@]} packages: ${missing[*]}"
apt-get update -q
# libboost-dev (1.74) conflicts with libboost1.81-dev; remove it if something pulled it in.
if dpkg-query -W -f='${Status}' libboost-dev 2>/dev/null | grep -q "install ok installed"; then
  apt-get remove -y -q libboost-dev
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
