#include "waypoint/proxy/access_log.h"

#include <iterator>

#include <fmt/format.h>

#include "common/base/log.h"

namespace zt::waypoint::proxy {
namespace {

std::string_view or_unknown(const std::string& s) {
  return s.empty() ? std::string_view("unknown") : std::string_view(s);
}

// `key="value"` with quotes, backslashes and newlines escaped (one record stays one line);
// nothing when the value is empty.
void str(std::string& out, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  out += ' ';
  out += key;
  out += "=\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  out += '"';
}

void num(std::string& out, std::string_view key, uint64_t value) {
  fmt::format_to(std::back_inserter(out), " {}={}", key, value);
}

}  // namespace

void RequestRecord::set_source(const zt::state::Workload& w) {
  src_workload = w.workload_name.empty() ? w.name : w.workload_name;
  src_namespace = w.namespace_name;
  src_app = w.canonical_name;
  src_version = w.canonical_revision;
  src_cluster = w.cluster_id;
}

void RequestRecord::set_destination(const zt::state::Workload& w,
                                    const std::vector<std::string>& identities) {
  dst_workload = w.workload_name.empty() ? w.name : w.workload_name;
  dst_namespace = w.namespace_name;
  dst_principal = identities.empty() ? w.identity() : identities.front();
  dst_app = w.canonical_name;
  dst_version = w.canonical_revision;
  dst_cluster = w.cluster_id;
}

void RequestRecord::set_service(const zt::state::Service& s) {
  dst_service = s.hostname;
  dst_service_name = s.name;
  dst_service_namespace = s.namespace_name;
}

void RequestRecord::add_flag(std::string_view flag) {
  if (flag.empty()) return;
  if (!flags.empty()) flags += ',';
  flags += flag;
}

void RequestRecord::finish(WaypointMetrics& metrics, RequestSeriesCache* cache) {
  auto elapsed = std::chrono::steady_clock::now() - start;
  double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  const std::string_view flag_label = flags.empty() ? std::string_view("-") : flags;
  char code_buf[16];
  const auto code_end = fmt::format_to_n(code_buf, sizeof(code_buf), "{}", status).out;
  const std::string_view code(code_buf, static_cast<size_t>(code_end - code_buf));
  // The label values, in the order of the label names below.
  const std::string_view values[] = {
      or_unknown(src_workload),
      or_unknown(src_namespace),
      or_unknown(src_identity),
      or_unknown(src_app),
      or_unknown(src_version),
      or_unknown(src_app),
      or_unknown(src_version),
      or_unknown(src_cluster),
      or_unknown(dst_workload),
      or_unknown(dst_namespace),
      or_unknown(dst_principal),
      or_unknown(dst_service),
      or_unknown(dst_service_name),
      or_unknown(dst_service_namespace),
      or_unknown(dst_app),
      or_unknown(dst_version),
      or_unknown(dst_app),
      or_unknown(dst_version),
      or_unknown(dst_cluster),
      protocol,
      code,
      grpc_status,
      flag_label,
  };
  const RequestSeries* series = nullptr;
  RequestSeries uncached;
  std::string key;
  if (cache != nullptr) {
    key.reserve(256);
    for (auto v : values) RequestSeriesCache::append(key, v);
    series = cache->find(key);
  }
  if (series == nullptr) {
    static constexpr const char* kNames[] = {
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_canonical_service",
        "source_canonical_revision",
        "source_cluster",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
        "destination_app",
        "destination_version",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_cluster",
        "request_protocol",
        "response_code",
        "grpc_response_status",
        "response_flags",
    };
    static_assert(std::size(kNames) == std::size(values));
    stats::Labels labels;
    labels.reserve(std::size(kNames) + 2);
    labels.emplace_back("reporter", "waypoint");
    for (size_t i = 0; i < std::size(kNames); ++i) labels.emplace_back(kNames[i], values[i]);
    labels.emplace_back("connection_security_policy", "mutual_tls");
    uncached = RequestSeries{
        .requests = &metrics.requests.with(labels),
        .duration = &metrics.duration.with(labels),
        .request_bytes = &metrics.request_bytes.with(labels),
        .response_bytes = &metrics.response_bytes.with(labels),
    };
    series = cache != nullptr ? &cache->insert(std::move(key), uncached) : &uncached;
  }
  series->requests->inc();
  series->duration->observe(ms);
  series->request_bytes->observe(static_cast<double>(request_bytes));
  series->response_bytes->observe(static_cast<double>(response_bytes));

  // The access log line: only built when it is written.
  if (!::zt::log::enabled(::zt::log::Level::kInfo)) return;
  std::string line = "component=access reporter=waypoint";
  str(line, "src.addr", src_addr);
  str(line, "src.identity", src_identity);
  str(line, "src.workload", src_workload);
  str(line, "src.namespace", src_namespace);
  str(line, "dst.service", dst_service);
  str(line, "dst.workload", dst_workload);
  str(line, "dst.namespace", dst_namespace);
  str(line, "dst.identity", dst_principal);
  str(line, "upstream", upstream);
  str(line, "method", method);
  str(line, "path", path);
  str(line, "authority", authority);
  str(line, "protocol", protocol);
  num(line, "status", static_cast<uint64_t>(status));
  line += " flags=";
  line += flag_label;
  str(line, "route", route);
  str(line, "request_id", request_id);
  num(line, "attempts", attempts);
  num(line, "bytes_received", request_bytes);
  num(line, "bytes_sent", response_bytes);
  num(line, "duration_ms", static_cast<uint64_t>(ms));
  str(line, "error", error);
  ZT_LOG_INFO("{}", line);
}

void TcpRecord::finish() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  std::string line = "component=access reporter=waypoint protocol=tcp";
  str(line, "src.addr", src_addr);
  str(line, "src.identity", src_identity);
  str(line, "dst.service", dst_service);
  str(line, "dst.workload", dst_workload);
  str(line, "dst.namespace", dst_namespace);
  str(line, "upstream", upstream);
  line += " flags=" + (flags.empty() ? std::string("-") : flags);
  num(line, "bytes_sent", bytes_sent);
  num(line, "bytes_received", bytes_received);
  num(line, "duration_ms", static_cast<uint64_t>(ms));
  str(line, "error", error);
  if (error.empty()) {
    ZT_LOG_INFO("{}", line);
  } else {
    ZT_LOG_WARN("{}", line);
  }
}

}  // namespace zt::waypoint::proxy
