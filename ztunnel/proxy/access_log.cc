#include "ztunnel/proxy/access_log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/base/log.h"

namespace zt::proxy {
namespace {

std::string or_unknown(const std::string& s) { return s.empty() ? "unknown" : s; }

// The JSON-mode access logger: same stream (stderr, and spdlog's console mutex, so lines never
// interleave with the process logger's), but the fields are keys of the object rather than one
// escaped message. Its level is left open; the process logger's level decides (see emit()).
spdlog::logger& json_access_logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto l = std::make_shared<spdlog::logger>("access", std::move(sink));
    l->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","scope":"access",%v})",
        spdlog::pattern_time_type::utc));
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

// A quote, backslash or newline inside a value is escaped so one record stays one line (a
// key="value" parser can split text lines); JSON also needs the other control characters.
enum class Escape { kText, kJson };

void escape(std::string& out, std::string_view s, Escape mode) {
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (mode == Escape::kJson && static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out.push_back(c);
        }
    }
  }
}

// Builds either `msg key="v" key=n ...` (text) or `"msg":"..","key":"v","key":n` (JSON body).
class Fields {
 public:
  Fields(bool json, std::string_view msg) : json_(json) {
    if (json_) {
      out_ += "\"msg\":\"";
      escape(out_, msg, Escape::kJson);
      out_ += '"';
    } else {
      out_ += "access ";
      out_ += msg;
    }
  }
  // Only when there is a value (Istio leaves unknown fields out).
  void str(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    if (json_) {
      out_ += ",\"";
      out_ += key;
      out_ += "\":\"";
      escape(out_, value, Escape::kJson);
      out_ += '"';
    } else {
      out_ += ' ';
      out_ += key;
      out_ += "=\"";
      escape(out_, value, Escape::kText);
      out_ += '"';
    }
  }
  void num(std::string_view key, uint64_t value) {
    if (json_) {
      fmt::format_to(std::back_inserter(out_), ",\"{}\":{}", key, value);
    } else {
      fmt::format_to(std::back_inserter(out_), " {}={}", key, value);
    }
  }
  std::string take() { return std::move(out_); }

 private:
  bool json_;
  std::string out_;
};

void emit(spdlog::level::level_enum level, const std::string& line) {
  if (log::current_format() == log::Format::kJson) {
    // The process logger's level (admin /logging) applies to access lines too.
    if (!spdlog::default_logger_raw()->should_log(level)) return;
    json_access_logger().log(level, "{}", line);
  } else {
    spdlog::default_logger_raw()->log(level, "{}", line);
  }
}

void fill(PeerLabels& l, const state::Workload& w) {
  l.workload = w.workload_name.empty() ? w.name : w.workload_name;
  l.canonical_service = w.canonical_name;
  l.canonical_revision = w.canonical_revision;
  l.cluster = w.cluster_id;
  if (w.locality) {
    l.region = w.locality->region;
    l.zone = w.locality->zone;
  }
  l.known = true;
}

}  // namespace

void ConnectionRecord::set_source(const state::Workload& w) {
  src_workload = w.name;
  src_namespace = w.namespace_name;
  fill(src_labels, w);
}

void ConnectionRecord::set_destination(const state::Workload& w) {
  dst_workload = w.name;
  dst_namespace = w.namespace_name;
  dst_principal = w.identity();
  fill(dst_labels, w);
}

void ConnectionRecord::set_destination_service(const state::Service& s) {
  dst_service = s.hostname;
  dst_service_name = s.name;
  dst_service_namespace = s.namespace_name;
}

stats::Labels ConnectionRecord::labels() const {
  // Workload names fall back to what the proxy knows without a state lookup (its own workload).
  auto src_wl = src_labels.workload.empty() ? src_workload : src_labels.workload;
  auto dst_wl = dst_labels.workload.empty() ? dst_workload : dst_labels.workload;
  stats::Labels l = {
      {"reporter", direction == Direction::kOutbound ? "source" : "destination"},
      {"source_workload", or_unknown(src_wl)},
      {"source_canonical_service", or_unknown(src_labels.canonical_service)},
      {"source_canonical_revision", or_unknown(src_labels.canonical_revision)},
      {"source_workload_namespace", or_unknown(src_namespace)},
      {"source_principal", or_unknown(src_identity)},
      {"source_app", or_unknown(src_labels.canonical_service)},
      {"source_version", or_unknown(src_labels.canonical_revision)},
      {"source_cluster", or_unknown(src_labels.cluster)},
      {"destination_service", or_unknown(dst_service)},
      {"destination_service_namespace", or_unknown(dst_service_namespace)},
      {"destination_service_name", or_unknown(dst_service_name)},
      {"destination_workload", or_unknown(dst_wl)},
      {"destination_canonical_service", or_unknown(dst_labels.canonical_service)},
      {"destination_canonical_revision", or_unknown(dst_labels.canonical_revision)},
      {"destination_workload_namespace", or_unknown(dst_namespace)},
      {"destination_principal", or_unknown(dst_identity.empty() ? dst_principal : dst_identity)},
      {"destination_app", or_unknown(dst_labels.canonical_service)},
      {"destination_version", or_unknown(dst_labels.canonical_revision)},
      {"destination_cluster", or_unknown(dst_labels.cluster)},
      {"request_protocol", "tcp"},
      {"response_flags", response_flags},
      {"connection_security_policy", mtls ? "mutual_tls" : "unknown"},
  };
  if (src_labels.known || dst_labels.known) {
    l.emplace_back("source_region", or_unknown(src_labels.region));
    l.emplace_back("source_zone", or_unknown(src_labels.zone));
    l.emplace_back("destination_region", or_unknown(dst_labels.region));
    l.emplace_back("destination_zone", or_unknown(dst_labels.zone));
  }
  return l;
}

std::string ConnectionRecord::render(std::string_view msg, bool full) const {
  Fields f(log::current_format() == log::Format::kJson, msg);
  f.str("src.addr", src_addr);
  if (full) {
    f.str("src.workload", src_workload);
    f.str("src.namespace", src_namespace);
    f.str("src.identity", mtls ? src_identity : std::string());
  }
  f.str("dst.addr", dst_addr);
  if (full) {
    f.str("dst.hbone_addr", dst_hbone_addr);
    f.str("dst.waypoint", dst_waypoint);
    f.str("dst.service", dst_service);
    f.str("dst.workload", dst_workload);
    f.str("dst.namespace", dst_namespace);
    f.str("dst.identity", mtls ? dst_identity : std::string());
  }
  f.str("direction", direction == Direction::kOutbound ? "outbound" : "inbound");
  if (full) {
    // Istio's log convention: bytes the local workload sent and received, so the client's
    // bytes are "sent" on the source side and "received" on the destination side.
    bool out = direction == Direction::kOutbound;
    f.num("bytes_sent", out ? bytes_from_client.load() : bytes_to_client.load());
    f.num("bytes_recv", out ? bytes_to_client.load() : bytes_from_client.load());
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    f.str("duration", fmt::format("{}ms", ms));
  }
  f.str("error", error);
  return f.take();
}

void ConnectionRecord::opened() {
  if (opened_labels_) return;
  opened_labels_ = labels();
  metrics.opened.with(*opened_labels_).inc();
  if (spdlog::default_logger_raw()->should_log(spdlog::level::debug)) {
    emit(spdlog::level::debug, render("connection opened", true));
  }
}

ConnectionRecord::~ConnectionRecord() {
  if (opened_labels_) {
    // The label set the connection opened with, plus how it ended.
    auto l = *opened_labels_;
    for (auto& [name, value] : l) {
      if (name == "response_flags") value = response_flags;
    }
    // Istio's convention (istio/istio#32399): on both reporters "received" is what the client
    // sent and "sent" is what it got back. As in Istio, bytes go to the series the connection
    // opened with (response_flags "-"); only "closed" carries how it ended.
    metrics.received_bytes.with(*opened_labels_).inc(bytes_from_client.load());
    metrics.sent_bytes.with(*opened_labels_).inc(bytes_to_client.load());
    if (!error.empty()) metrics.failed.with(l).inc();
    // Last: a scrape (another thread) that counts a connection closed also sees its bytes.
    metrics.closed.with(l).inc();
    if (error.empty()) {
      emit(spdlog::level::info, render("connection complete", true));
    } else {
      emit(spdlog::level::err, render("connection complete", true));
    }
    return;
  }
  if (error.empty()) {
    // Never reached the copy, but nothing failed (the client left first): logged, not counted.
    emit(spdlog::level::info, render("connection complete", true));
    return;
  }
  metrics.failed.with(labels()).inc();
  emit(spdlog::level::warn, render("connection failed", true));
}

}  // namespace zt::proxy
