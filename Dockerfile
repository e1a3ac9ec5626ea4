# syntax=docker/dockerfile:1
# The ambient-mesh image: ztunnel, meshd, the node agent and the waypoint, built from this checkout.
#   docker build -t ghcr.io/ambient-mesh/ambient-mesh:0.1.0 .
# Used by every workload in deploy/ (each picks its binary with `command`).
# tests/integration/deploy/check_dockerfile.cjs checks this file's structure: the stages and
# base images, that every binary copied is a CMake target and every binary the manifests
# run is copied, and that the runtime packages provide every shared library the binaries load.

# ---- build: the same Debian 12 toolchain and libraries as a developer machine and CI -------
FROM debian:bookworm AS build
# scripts/setup.sh is the one list of packages (build, tests and benchmarks); it is copied
# alone first so that this layer is rebuilt only when the list changes.
COPY scripts/setup.sh /tmp/setup.sh
RUN /tmp/setup.sh && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Release build of the deployable binaries only: no tests, fuzzers or benchmarks.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DZT_BUILD_TESTS=OFF -DZT_BUILD_FUZZ=OFF -DZT_BUILD_BENCH=OFF \
 && cmake --build build --target ztunnel meshd node-agent waypoint \
 && strip --strip-unneeded build/bin/ztunnel build/bin/meshd build/bin/node-agent build/bin/waypoint

# ---- runtime: the shared libraries those binaries load, and nothing else -------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
      ca-certificates \
      libssl3 \
      libnghttp2-14 \
      libyaml-cpp0.7 \
      libspdlog1.10 \
      libfmt9 \
      libgrpc++1.51 \
      libprotobuf32 \
      libbpf1 \
      libre2-9 \
 && rm -rf /var/lib/apt/lists/*
# Non-root by default (meshd and the waypoint run like this). The node DaemonSet's containers
# set runAsUser 0 because Kubernetes makes added capabilities effective only for root; they
# drop every capability they do not need (deploy/README.md).
RUN groupadd --system --gid 65532 mesh \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mesh
COPY --from=build /src/build/bin/ztunnel /usr/local/bin/ztunnel
COPY --from=build /src/build/bin/meshd /usr/local/bin/meshd
COPY --from=build /src/build/bin/node-agent /usr/local/bin/node-agent
COPY --from=build /src/build/bin/waypoint /usr/local/bin/waypoint
USER 65532:65532
# 15001/15006/15008 live in the pods' namespaces, not here; these are the proxy's own ports.
EXPOSE 15008 15012 15020 15021
ENTRYPOINT ["/usr/local/bin/ztunnel"]
LABEL org.opencontainers.image.title="ambient-mesh" \
      org.opencontainers.image.description="Istio-compatible ambient mesh data plane: ztunnel, meshd, node agent, waypoint" \
      org.opencontainers.image.version="0.1.0"
