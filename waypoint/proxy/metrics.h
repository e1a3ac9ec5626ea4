// The waypoint's metrics (Istio's request families with reporter="waypoint") and its own
// counters. Families are registered once; the pipeline fills the labels per request.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "common/stats/registry.h"

namespace zt::waypoint::proxy {

// Labels of istio_requests_total / istio_request_duration_milliseconds, Istio's standard set
// (what Kiali and Istio's dashboards query): reporter ("waypoint"), source_workload,
// source_workload_namespace, source_principal, source_app, source_version,
// source_canonical_service, source_canonical_revision, source_cluster, destination_workload,
// destination_workload_namespace, destination_principal, destination_service,
// destination_service_name, destination_service_namespace, destination_app,
// destination_version, destination_canonical_service, destination_canonical_revision,
// destination_cluster, request_protocol ("http" | "grpc"), response_code,
// grpc_response_status, response_flags ("-" when none; else NR, UO, UH, URX, UT, UF, DI, FI,
// UC, RL...), connection_security_policy ("mutual_tls"). App and version are the workload's
// canonical name and revision, as ztunnel reports them.
struct WaypointMetrics {
  explicit WaypointMetrics(stats::Registry& r)
      : requests(r.counter_family("istio_requests_total", "Requests served by the waypoint.")),
        duration(r.histogram_family("istio_request_duration_milliseconds",
                                    "Request duration at the waypoint, in milliseconds.",
                                    {0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                                     30000, 60000, 300000, 600000, 1800000, 3600000})),
        request_bytes(r.histogram_family("istio_request_bytes", "Request sizes in bytes.",
                                         {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000})),
        response_bytes(r.histogram_family("istio_response_bytes", "Response sizes in bytes.",
                                          {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000})),
        upstream_attempts(r.counter_family("waypoint_upstream_attempts",
                                           "Requests sent to endpoints, retries included.")),
        ejections(r.counter_family("waypoint_outlier_ejections",
                                   "Endpoints ejected by outlier detection.")),
        hbone_streams(r.counter_family("waypoint_hbone_streams",
                                       "HBONE CONNECT streams, by direction and result.")),
        errors(r.counter_family("waypoint_errors", "Handled errors, by component and kind.")) {}

  stats::CounterFamily& requests;
  stats::HistogramFamily& duration;
  stats::HistogramFamily& request_bytes;
  stats::HistogramFamily& response_bytes;
  stats::CounterFamily& upstream_attempts;
  stats::CounterFamily& ejections;
  stats::CounterFamily& hbone_streams;
  stats::CounterFamily& errors;

  void error(std::string_view component, std::string_view kind) {
    errors.with({{"component", std::string(component)}, {"kind", std::string(kind)}}).inc();
  }
};

// The series of one request label set: istio_requests_total, the duration and the two size
// histograms.
struct RequestSeries {
  stats::Counter* requests = nullptr;
  stats::Histogram* duration = nullptr;
  stats::Histogram* request_bytes = nullptr;
  stats::Histogram* response_bytes = nullptr;
};

// One worker's cache of RequestSeries by label values, so a request does not build, sort and
// look up its 25 labels four times under the registry's locks (Family::with). Single-threaded
// (a Pipeline owns one). The key is the values in the fixed label order, each prefixed with its
// length, so two different label sets never share a key.
class RequestSeriesCache {
 public:
  static constexpr size_t kMaxEntries = 4096;  // then cleared: the registry keeps the series

  // The cached series for `key`, or nullptr.
  const RequestSeries* find(const std::string& key) const {
    auto it = series_.find(key);
    return it == series_.end() ? nullptr : &it->second;
  }
  const RequestSeries& insert(std::string key, RequestSeries s) {
    if (series_.size() >= kMaxEntries) series_.clear();
    return series_.insert_or_assign(std::move(key), s).first->second;
  }

  // Appends `value` to `key` with its length first.
  static void append(std::string& key, std::string_view value) {
    const auto n = static_cast<uint32_t>(value.size());
    key.append(reinterpret_cast<const char*>(&n), sizeof(n));
    key.append(value);
  }

 private:
  std::unordered_map<std::string, RequestSeries> series_;
};

}  // namespace zt::waypoint::proxy
