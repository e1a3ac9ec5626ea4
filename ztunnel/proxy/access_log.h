// One access log line per proxied connection, written when it ends (or fails early), with the
// fields Istio's ztunnel writes (src/dst address, workload, namespace, identity, direction,
// bytes each way, duration, error). The same record updates the istio_tcp_* metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "ztunnel/proxy/metrics.h"

namespace zt::proxy {

struct ConnectionRecord {
  enum class Direction { kInbound, kOutbound };

  explicit ConnectionRecord(ProxyMetrics& m, Direction d)
      : metrics(m), direction(d), start(std::chrono::steady_clock::now()) {}
  ConnectionRecord(const ConnectionRecord&) = delete;
  ConnectionRecord& operator=(const ConnectionRecord&) = delete;
  // Logs and counts once, whichever way the connection ended.
  ~ConnectionRecord();

  // Called once the connection is established to the next hop (counts "opened").
  void opened();
  void set_error(std::string e, std::string flag = "CONNECT") {
    error = std::move(e);
    response_flags = std::move(flag);
  }

  ProxyMetrics& metrics;
  Direction direction;
  std::chrono::steady_clock::time_point start;

  std::string src_addr;
  std::string src_workload;
  std::string src_namespace;
  std::string src_identity;  // only when proven by mTLS
  std::string dst_addr;      // the L4 next hop
  std::string dst_hbone_addr;
  std::string dst_service;
  std::string dst_workload;
  std::string dst_namespace;
  std::string dst_identity;
  bool mtls = false;
  std::string error;
  std::string response_flags = "-";

  std::atomic<uint64_t> bytes_from_client{0};  // client -> server
  std::atomic<uint64_t> bytes_to_client{0};    // server -> client

 private:
  stats::Labels labels() const;
  bool opened_ = false;
};

}  // namespace zt::proxy
