#include "waypoint/http/request_checks.h"

#include <string>

#include "waypoint/base/strings.h"

namespace zt::waypoint::http {
namespace {

tl::unexpected<Rejection> reject(int status, std::string reason) {
  return tl::unexpected<Rejection>(Rejection{status, std::move(reason)});
}

bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_valid_target(std::string_view method, std::string_view target) {
  if (target.empty()) return false;
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f || c == '#') return false;
  }
  if (target[0] == '/') return true;
  if (target == "*") return method == "OPTIONS";
  if (method == "CONNECT") return target.find('/') == target.npos;  // host:port
  return false;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

size_t find_head_end(std::string_view buffer) {
  const size_t pos = buffer.find("\r\n\r\n");
  return pos == buffer.npos ? buffer.npos : pos + 4;
}

tl::expected<void, Rejection> check_raw_head(std::string_view head, const HeadLimits& limits) {
  const size_t end = find_head_end(head);
  const size_t used = end == head.npos ? head.size() : end;
  if (used > limits.max_head_bytes) return reject(431, "http1.headers_too_large");
  if (end != head.npos) head = head.substr(0, end);

  // Walk complete lines; an incomplete last line is only checked for bytes seen so far.
  size_t pos = 0;
  size_t line_no = 0;
  size_t fields = 0;
  while (pos < head.size()) {
    const size_t lf = head.find('\n', pos);
    const bool complete = lf != head.npos;
    std::string_view line = head.substr(pos, complete ? lf - pos : head.npos);
    if (complete) {
      if (line.empty() || line.back() != '\r') return reject(400, "http1.bare_lf");
      line.remove_suffix(1);
    } else if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);  // the LF may be in the next read
    }
    if (line.find('\r') != line.npos) return reject(400, "http1.bare_cr");
    if (line.find('\0') != line.npos) return reject(400, "http1.nul_in_head");
    if (line.empty()) break;  // the blank line ending the head, or nothing more received yet
    if (line_no == 0) {
      if (complete) {
        const size_t sp1 = line.find(' ');
        const size_t sp2 = sp1 == line.npos ? line.npos : line.find(' ', sp1 + 1);
        if (sp1 == line.npos || sp2 == line.npos || line.find(' ', sp2 + 1) != line.npos ||
            sp1 == 0 || sp2 == sp1 + 1) {
          return reject(400, "http1.invalid_request_line");
        }
        const std::string_view version = line.substr(sp2 + 1);
        if (version != "HTTP/1.1" && version != "HTTP/1.0") {
          return reject(400, "http1.invalid_version");
        }
      }
    } else {
      if (line.front() == ' ' || line.front() == '\t') return reject(400, "http1.obs_fold");
      if (complete) {
        const size_t colon = line.find(':');
        if (colon == line.npos) return reject(400, "http1.field_without_colon");
        if (!is_token(line.substr(0, colon))) return reject(400, "http1.invalid_field_name");
        if (++fields > limits.max_headers) return reject(431, "http1.too_many_headers");
      }
    }
    if (!complete) break;
    pos = lf + 1;
    ++line_no;
  }
  return {};
}

tl::expected<BodyFraming, Rejection> check_request_head(const RequestHead& head, Version version,
                                                        const HeadLimits& limits) {
  if (!is_token(head.method)) return reject(400, "invalid_method");
  for (char c : head.method) {
    if (c >= 'a' && c <= 'z') return reject(400, "method_not_uppercase");
  }
  if (!is_valid_target(head.method, head.target)) return reject(400, "invalid_request_target");

  if (head.headers.size() > limits.max_headers) return reject(431, "too_many_headers");
  size_t bytes = head.method.size() + head.target.size() + 12;
  for (const auto& h : head.headers) bytes += h.name.size() + h.value.size() + 4;
  if (bytes > limits.max_head_bytes) return reject(431, "headers_too_large");

  size_t host_count = 0;
  size_t cl_count = 0;
  std::string_view cl_value;
  std::string te;  // all Transfer-Encoding lines joined
  bool has_te = false;
  for (const auto& h : head.headers) {
    if (!is_token(h.name)) return reject(400, "invalid_header_name");
    if (!is_field_value(h.value)) return reject(400, "invalid_header_value");
    if (iequals(h.name, "host")) {
      ++host_count;
    } else if (iequals(h.name, "content-length")) {
      ++cl_count;
      cl_value = h.value;
    } else if (iequals(h.name, "transfer-encoding")) {
      if (has_te) te.push_back(',');
      te.append(h.value);
      has_te = true;
    }
  }
  if (!is_field_value(head.authority)) return reject(400, "invalid_authority");

  if (version == Version::kHttp11 && host_count != 1) {
    return reject(400, host_count == 0 ? "missing_host" : "duplicate_host");
  }
  if (version == Version::kHttp10 && host_count > 1) return reject(400, "duplicate_host");

  BodyFraming framing;
  if (cl_count > 1) return reject(400, "duplicate_content_length");
  if (cl_count == 1) {
    const std::string_view v = trim_ows(cl_value);
    // 19 digits always fit in uint64_t; refuse longer values instead of overflowing.
    if (!all_digits(v) || v.size() > 19) return reject(400, "invalid_content_length");
    framing.has_content_length = true;
    framing.content_length = std::stoull(std::string(v));
  }

  if (has_te) {
    if (version == Version::kHttp2) return reject(400, "transfer_encoding_in_http2");
    if (version == Version::kHttp10) return reject(400, "transfer_encoding_in_http10");
    if (cl_count > 0) return reject(400, "content_length_and_transfer_encoding");
    const auto codings = split_list(te);
    size_t chunked = 0;
    for (auto c : codings) {
      if (iequals(c, "chunked")) ++chunked;
    }
    if (codings.empty() || !iequals(codings.back(), "chunked")) {
      return reject(400, "transfer_encoding_not_ending_in_chunked");
    }
    if (chunked > 1) return reject(400, "chunked_applied_twice");
    if (codings.size() != 1) return reject(501, "unsupported_transfer_coding");
    framing.kind = BodyFraming::Kind::kChunked;
    return framing;
  }
  if (version == Version::kHttp2) {
    framing.kind = BodyFraming::Kind::kHttp2Stream;
  } else if (framing.has_content_length) {
    framing.kind = BodyFraming::Kind::kContentLength;
  }
  return framing;
}

bool is_field_value(std::string_view v) {
  for (unsigned char c : v) {
    if (c == '\t') continue;
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace zt::waypoint::http
