// Fuzzes what the waypoint does with an HTTP/1.x request head from a client it cannot trust, in
// the order its HTTP/1.1 server does it: the raw-byte checks, Beast's parse with the waypoint's
// own parser, the field checks that stop request smuggling, path normalisation in every mode,
// and the forwarding rewrites of the header list. Besides crashes and sanitizer reports it traps
// on broken invariants:
// - a head the checks accept has exactly one way of framing its body, the one they report;
// - a normalised path is canonical: normalising it again gives the same path, and it has no "."
//   or ".." segment (what L7 authorization checked is what the next hop sees);
// - after strip_hop_by_hop no hop-by-hop field is left, and Host is still there;
// - x-request-id and traceparent are present and well formed after the rewrites.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "waypoint/authz/normalize.h"
#include "waypoint/base/random.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/headers.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http1/wire.h"

namespace {

using namespace zt::waypoint;

void require(bool ok) {
  if (!ok) std::abort();
}

bool has_dot_segment(std::string_view path) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view seg = path.substr(start, end - start);
    if (seg == "." || seg == "..") return true;
    start = end + 1;
  }
  return false;
}

void check_normalisation(const std::string& target) {
  using authz::EscapedSlashes;
  using authz::PathNormalization;
  for (auto mode : {PathNormalization::kNone, PathNormalization::kBase,
                    PathNormalization::kMergeSlashes, PathNormalization::kDecodeAndMergeSlashes}) {
    for (auto slashes : {EscapedSlashes::kKeep, EscapedSlashes::kReject, EscapedSlashes::kDecode}) {
      const authz::NormalizeOptions options{.mode = mode, .escaped_slashes = slashes};
      auto once = authz::normalize_target(target, options);
      if (!once) {
        require(once.error().status == 400);
        continue;
      }
      if (mode == PathNormalization::kNone) {
        require(*once == target);
        continue;
      }
      if (target.empty() || target[0] != '/') continue;  // "*" and authority-form stay as they are
      require(!once->empty() && (*once)[0] == '/');
      const std::string_view path = std::string_view(*once).substr(0, once->find('?'));
      require(!has_dot_segment(path));
      if (mode != PathNormalization::kBase) require(path.find("//") == std::string_view::npos);
      auto twice = authz::normalize_target(*once, options);
      require(twice.has_value() && *twice == *once);
    }
  }
}

void check_forwarding(http::HeaderList headers, bool upgrade) {
  const bool had_host = http::find_header(headers, "host").has_value();
  http::HopByHopOptions options{.keep_upgrade = upgrade, .keep_te_trailers = !upgrade};
  const http::HopByHop hop = http::strip_hop_by_hop(headers, options);
  for (std::string_view name : {"keep-alive", "proxy-connection", "transfer-encoding",
                                "proxy-authenticate", "proxy-authorization"}) {
    require(!http::find_header(headers, name).has_value());
  }
  if (!hop.upgrade) require(!http::find_header(headers, "connection").has_value());
  require(http::find_header(headers, "host").has_value() == had_host);

  http::append_forwarded_for(headers, "10.0.0.1");
  require(http::count_header(headers, "x-forwarded-for") == 1);
  SeededRandom random(1);
  const std::string id = http::ensure_request_id(headers, random);
  require(!id.empty() && http::find_header(headers, "x-request-id").has_value());
  const http::TraceResult trace = http::ensure_traceparent(headers, random, upgrade, upgrade);
  auto written = http::find_header(headers, "traceparent");
  require(written.has_value() && http::count_header(headers, "traceparent") == 1);
  auto parsed = http::TraceParent::parse(*written);
  require(parsed.has_value());
  if (trace.action != http::TraceAction::kPropagated) require(*written == trace.context.format());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  http::HeadLimits limits;
  limits.max_head_bytes = 8 * 1024;
  limits.max_headers = 32;

  const size_t head_end = http::find_head_end(input);
  const std::string_view raw =
      input.substr(0, head_end == std::string_view::npos ? input.size() : head_end);
  if (!http::check_raw_head(raw, limits) || head_end == std::string_view::npos) return 0;

  http1::detail::RequestParser parser(limits.max_headers);
  parser.header_limit(static_cast<std::uint32_t>(limits.max_head_bytes + 1024));
  parser.body_limit(1 << 20);
  parser.eager(false);
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
  if (ec || !parser.is_header_done()) return 0;

  const http::Version version =
      parser.version == 10 ? http::Version::kHttp10 : http::Version::kHttp11;
  http::RequestHead head;
  head.method = parser.method;
  head.target = parser.target;
  head.headers = parser.headers;
  auto framing = http::check_request_head(head, version, limits);
  if (!framing) {
    const int status = framing.error().status;
    require(status == 400 || status == 431 || status == 501);
    require(!framing.error().reason.empty());
    return 0;
  }

  // One way of framing the body, and the one reported.
  const size_t lengths = http::count_header(head.headers, "content-length");
  const size_t codings = http::count_header(head.headers, "transfer-encoding");
  require(lengths + codings <= 1);
  switch (framing->kind) {
    case http::BodyFraming::Kind::kNone:
      require(lengths == 0 && codings == 0);
      break;
    case http::BodyFraming::Kind::kContentLength: {
      require(lengths == 1 && framing->has_content_length);
      const std::string_view value = trim_ows(*http::find_header(head.headers, "content-length"));
      uint64_t n = 0;
      const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), n);
      require(err == std::errc() && end == value.data() + value.size());
      require(n == framing->content_length);
      break;
    }
    case http::BodyFraming::Kind::kChunked:
      require(codings == 1 && version == http::Version::kHttp11);
      break;
    case http::BodyFraming::Kind::kHttp2Stream:
      std::abort();  // never for HTTP/1.x
  }
  require(version == http::Version::kHttp10 || http::count_header(head.headers, "host") == 1);

  check_normalisation(head.target);
  check_forwarding(head.headers, version == http::Version::kHttp11 &&
                                     http::find_header(head.headers, "upgrade").has_value());
  return 0;
}
