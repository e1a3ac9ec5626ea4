#include "ztunnel/proxy/access_log.h"

#include "common/base/log.h"

namespace zt::proxy {
namespace {

std::string or_unknown(const std::string& s) { return s.empty() ? "unknown" : s; }

std::string principal(const std::string& uri) {
  return uri.empty() ? "unknown" : uri;
}

// key="value" only when there is a value.
void field(std::string& out, std::string_view key, const std::string& value) {
  if (value.empty()) return;
  fmt::format_to(std::back_inserter(out), " {}=\"{}\"", key, value);
}

}  // namespace

stats::Labels ConnectionRecord::labels() const {
  return {
      {"reporter", direction == Direction::kOutbound ? "source" : "destination"},
      {"source_workload", or_unknown(src_workload)},
      {"source_workload_namespace", or_unknown(src_namespace)},
      {"source_principal", principal(src_identity)},
      {"destination_service", or_unknown(dst_service)},
      {"destination_workload", or_unknown(dst_workload)},
      {"destination_workload_namespace", or_unknown(dst_namespace)},
      {"destination_principal", principal(dst_identity)},
      {"request_protocol", "tcp"},
      {"response_flags", response_flags},
      {"connection_security_policy", mtls ? "mutual_tls" : "unknown"},
  };
}

void ConnectionRecord::opened() {
  if (opened_) return;
  opened_ = true;
  metrics.opened.with(labels()).inc();
}

ConnectionRecord::~ConnectionRecord() {
  auto l = labels();
  if (opened_) {
    metrics.closed.with(l).inc();
    // Istio's convention: "received" is what the server side received.
    metrics.received_bytes.with(l).inc(bytes_from_client.load());
    metrics.sent_bytes.with(l).inc(bytes_to_client.load());
  }
  if (!error.empty()) metrics.failed.with(l).inc();

  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start)
                .count();
  std::string line = error.empty() || opened_ ? "connection complete" : "connection failed";
  field(line, "src.addr", src_addr);
  field(line, "src.workload", src_workload);
  field(line, "src.namespace", src_namespace);
  field(line, "src.identity", src_identity);
  field(line, "dst.addr", dst_addr);
  field(line, "dst.hbone_addr", dst_hbone_addr);
  field(line, "dst.service", dst_service);
  field(line, "dst.workload", dst_workload);
  field(line, "dst.namespace", dst_namespace);
  field(line, "dst.identity", dst_identity);
  field(line, "direction", direction == Direction::kOutbound ? "outbound" : "inbound");
  fmt::format_to(std::back_inserter(line), " bytes_sent={} bytes_recv={} duration=\"{}ms\"",
                 bytes_from_client.load(), bytes_to_client.load(), ms);
  field(line, "error", error);
  if (error.empty()) {
    ZT_LOG_INFO("access {}", line);
  } else if (opened_) {
    ZT_LOG_ERROR("access {}", line);
  } else {
    ZT_LOG_WARN("access {}", line);
  }
}

}  // namespace zt::proxy
