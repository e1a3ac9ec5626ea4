// One record per request the waypoint served: at finish() it adds one sample to
// istio_requests_total and istio_request_duration_milliseconds (and the request/response size
// histograms) with reporter="waypoint", and writes one access log line through the process
// logger: `component=access reporter=waypoint src.addr=... method=GET path="/x" status=200
// flags=- ...` (text values quoted and escaped, unknown fields left out, as ztunnel's log).
// A TCP relay (relay_tcp) writes one L4 line with TcpRecord.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "waypoint/proxy/metrics.h"
#include "ztunnel/state/types.h"

namespace zt::waypoint::proxy {

struct RequestRecord {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  std::string src_addr;      // the original client ip
  std::string src_identity;  // the HBONE peer's SPIFFE URI
  // app and version: the workload's canonical name and revision, as ztunnel reports them.
  std::string src_workload, src_namespace, src_app, src_version, src_cluster;
  std::string dst_service, dst_service_name, dst_service_namespace;  // the backend service
  std::string dst_workload, dst_namespace, dst_principal, dst_app, dst_version, dst_cluster;
  std::string upstream;  // endpoint "<ip>:<port>" of the last attempt
  std::string method, path, authority, protocol = "http";
  std::string route;  // "ns/name" of the HTTPRoute, "default" for the implicit route
  std::string request_id;
  int status = 0;
  std::string grpc_status;
  std::string flags;  // comma-joined, "" = none ("-")
  std::string error;  // why a local response was produced
  uint64_t request_bytes = 0, response_bytes = 0;
  uint32_t attempts = 0;

  void set_source(const zt::state::Workload& w);
  // `identities`: the endpoint's, when already formatted (the workload's own first).
  void set_destination(const zt::state::Workload& w,
                       const std::vector<std::string>& identities = {});
  void set_service(const zt::state::Service& s);
  void add_flag(std::string_view flag);

  // Metrics and log line (built only when info lines are logged); call once. With `cache` (the
  // worker's), the series are looked up there first.
  void finish(WaypointMetrics& metrics, RequestSeriesCache* cache = nullptr);
};

struct TcpRecord {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::string src_addr, src_identity, dst_service, dst_workload, dst_namespace, upstream;
  std::string error, flags;
  uint64_t bytes_sent = 0, bytes_received = 0;
  void finish();
};

}  // namespace zt::waypoint::proxy
