#include "waypoint/proxy/access_log.h"

#include <fmt/format.h>

#include "common/base/log.h"

namespace zt::waypoint::proxy {
namespace {

std::string or_unknown(const std::string& s) { return s.empty() ? "unknown" : s; }

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
}

void RequestRecord::set_destination(const zt::state::Workload& w) {
  dst_workload = w.workload_name.empty() ? w.name : w.workload_name;
  dst_namespace = w.namespace_name;
  dst_principal = w.identity();
  dst_version = w.canonical_revision;
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

void RequestRecord::finish(WaypointMetrics& metrics) {
  auto elapsed = std::chrono::steady_clock::now() - start;
  double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  std::string flag_label = flags.empty() ? "-" : flags;
  stats::Labels labels = {
      {"reporter", "waypoint"},
      {"source_workload", or_unknown(src_workload)},
      {"source_workload_namespace", or_unknown(src_namespace)},
      {"source_principal", or_unknown(src_identity)},
      {"source_app", or_unknown(src_app)},
      {"source_version", or_unknown(src_version)},
      {"destination_workload", or_unknown(dst_workload)},
      {"destination_workload_namespace", or_unknown(dst_namespace)},
      {"destination_principal", or_unknown(dst_principal)},
      {"destination_service", or_unknown(dst_service)},
      {"destination_service_name", or_unknown(dst_service_name)},
      {"destination_service_namespace", or_unknown(dst_service_namespace)},
      {"destination_version", or_unknown(dst_version)},
      {"request_protocol", protocol},
      {"response_code", std::to_string(status)},
      {"grpc_response_status", grpc_status},
      {"response_flags", flag_label},
      {"connection_security_policy", "mutual_tls"},
  };
  metrics.requests.with(labels).inc();
  metrics.duration.with(labels).observe(ms);
  metrics.request_bytes.with(labels).observe(static_cast<double>(request_bytes));
  metrics.response_bytes.with(labels).observe(static_cast<double>(response_bytes));

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
  line += " flags=" + flag_label;
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
