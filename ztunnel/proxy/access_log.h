// One access log line per proxied connection, written when it ends (or fails early), with the
// fields Istio's ztunnel writes (src/dst address, workload, namespace, identity, direction,
// bytes each way, duration, error). The same record updates the istio_tcp_* metrics.
//
// Lifecycle (as in Istio's ztunnel, src/proxy/metrics.rs):
//  - opened(): the connection reached its next hop. Counts istio_tcp_connections_opened_total
//    (response_flags "-") and logs DEBUG "connection opened".
//  - destruction after opened(): counts istio_tcp_connections_closed_total with the final
//    response_flags, and the bytes each way on the opened series; logs INFO "connection
//    complete", or ERROR with error="..." when it failed. Bytes are added at close (Istio adds
//    them as they flow).
//  - destruction without opened() but with an error: an early failure. Logs WARN "connection
//    failed" and counts istio_tcp_connections_failed_total with the response flag; no
//    opened/closed counts (Istio's log_early_deny).
//
// Metric labels are Istio's CommonTrafficLabels: values that are not known are "unknown"; the
// locality labels are present once a source or destination workload is known.
//
// Output: text mode writes `access connection complete src.addr=... dst.addr=...` through the
// process logger; JSON mode (LOG_FORMAT=json) writes one object per line with "scope":"access",
// "msg" and each field as its own key ("src.addr", "bytes_sent", ...).
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "ztunnel/proxy/metrics.h"
#include "ztunnel/state/types.h"

namespace zt::proxy {

// Workload attributes used as metric labels (Istio's workload fields).
struct PeerLabels {
  std::string workload;            // workload_name, else the pod name
  std::string canonical_service;   // canonical_name
  std::string canonical_revision;  // canonical_revision
  std::string cluster;
  std::string region, zone;
  bool known = false;  // a workload was found: the locality labels are emitted
};

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

  // Fill the workload/service fields (log and labels) from the state.
  void set_source(const state::Workload& w);
  void set_destination(const state::Workload& w);
  void set_destination_service(const state::Service& s);

  ProxyMetrics& metrics;
  Direction direction;
  std::chrono::steady_clock::time_point start;

  std::string src_addr;
  std::string src_workload;  // pod name (log)
  std::string src_namespace;
  std::string src_identity;  // only when proven by mTLS
  std::string dst_addr;      // the L4 next hop
  std::string dst_hbone_addr;
  std::string dst_waypoint;  // outbound: "<ip>:<port>" of the waypoint it went through, else ""
  std::string dst_service;  // hostname
  std::string dst_service_name;
  std::string dst_service_namespace;
  std::string dst_workload;  // pod name (log)
  std::string dst_namespace;
  std::string dst_identity;   // the identity the peer proved (or must prove)
  std::string dst_principal;  // label: the destination workload's identity, even without mTLS
  PeerLabels src_labels, dst_labels;
  bool mtls = false;
  std::string error;
  std::string response_flags = "-";

  std::atomic<uint64_t> bytes_from_client{0};  // client -> server
  std::atomic<uint64_t> bytes_to_client{0};    // server -> client

  // The istio_tcp_* label set for the current fields (exposed for tests).
  stats::Labels labels() const;

 private:
  std::string render(std::string_view msg, bool full) const;
  std::optional<stats::Labels> opened_labels_;
};

}  // namespace zt::proxy
