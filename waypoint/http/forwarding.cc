#include "waypoint/http/forwarding.h"

#include <algorithm>
#include <vector>

#include "waypoint/base/strings.h"

namespace zt::waypoint::http {
namespace {

constexpr std::string_view kHex = "0123456789abcdef";

// Writes n bytes as 2n lower-case hex digits at `out` (which has room for them); returns the end.
char* put_hex(char* out, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    *out++ = kHex[p[i] >> 4];
    *out++ = kHex[p[i] & 0xf];
  }
  return out;
}

bool parse_hex(std::string_view s, uint8_t* out) {
  for (size_t i = 0; i < s.size(); i += 2) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;  // upper case is invalid in traceparent
    };
    const int hi = nib(s[i]);
    const int lo = nib(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

template <size_t N>
void fill_random(std::array<uint8_t, N>& a, Random& random) {
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t v = random.next_u64();
      for (size_t j = 0; j < 8 && i + j < N; ++j) a[i + j] = static_cast<uint8_t>(v >> (8 * j));
    }
  } while (all_zero(a));
}

}  // namespace

HopByHop strip_hop_by_hop(HeaderList& headers, const HopByHopOptions& options) {
  HopByHop info;
  std::vector<std::string> listed;
  bool connection_upgrade = false;
  for (const auto& h : headers) {
    if (!iequals(h.name, "connection")) continue;
    for (auto token : split_list(h.value)) {
      if (token.empty()) continue;
      if (iequals(token, "close")) info.connection_close = true;
      if (iequals(token, "keep-alive")) info.connection_keep_alive = true;
      if (iequals(token, "upgrade")) connection_upgrade = true;
      listed.emplace_back(token);
    }
  }
  if (auto te = joined_header(headers, "te")) {
    for (auto coding : split_list(*te)) {
      // "trailers" may carry parameters in theory; gRPC sends it bare.
      if (iequals(coding.substr(0, coding.find(';')), "trailers")) info.te_trailers = true;
    }
  }
  const auto upgrade = joined_header(headers, "upgrade");
  if (connection_upgrade && upgrade) info.upgrade = *upgrade;
  const bool keep_upgrade = options.keep_upgrade && info.upgrade.has_value();

  std::erase_if(headers, [&](const Header& h) {
    if (is_protected_header(h.name)) return false;
    if (iequals(h.name, "upgrade")) return !keep_upgrade;
    if (is_hop_by_hop(h.name)) return true;
    return std::any_of(listed.begin(), listed.end(),
                       [&](const std::string& l) { return iequals(l, h.name); });
  });
  if (keep_upgrade) headers.push_back({"connection", "upgrade"});
  if (options.keep_te_trailers && info.te_trailers) headers.push_back({"te", "trailers"});
  return info;
}

void append_forwarded_for(HeaderList& headers, std::string_view client_ip) {
  auto existing = joined_header(headers, "x-forwarded-for");
  if (!existing || trim_ows(*existing).empty()) {
    set_header(headers, "x-forwarded-for", client_ip);
    return;
  }
  std::string value = *existing;
  value.append(", ");
  value.append(client_ip);
  set_header(headers, "x-forwarded-for", value);
}

std::string uuid_v4(Random& random) {
  std::array<uint8_t, 16> b{};
  const uint64_t hi = random.next_u64();
  const uint64_t lo = random.next_u64();
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // variant 10xx
  std::string out(36, '-');                           // 8-4-4-4-12 hex digits
  char* at = out.data();
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++at;  // keeps the '-'
    at = put_hex(at, &b[i], 1);
  }
  return out;
}

std::string ensure_request_id(HeaderList& headers, Random& random) {
  if (auto id = find_header(headers, "x-request-id"); id && !trim_ows(*id).empty()) {
    return std::string(*id);
  }
  std::string id = uuid_v4(random);
  set_header(headers, "x-request-id", id);
  return id;
}

std::string TraceParent::format() const {
  // Version 00 - trace id - parent id - flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
  std::string out(55, '-');
  out[0] = out[1] = '0';
  put_hex(out.data() + 3, trace_id.data(), trace_id.size());
  put_hex(out.data() + 36, parent_id.data(), parent_id.size());
  put_hex(out.data() + 53, &flags, 1);
  return out;
}

std::optional<TraceParent> TraceParent::parse(std::string_view text) {
  // version(2) - trace(32) - parent(16) - flags(2) = 55 characters.
  if (text.size() < 55) return std::nullopt;
  if (text[2] != '-' || text[35] != '-' || text[52] != '-') return std::nullopt;
  TraceParent tp;
  if (!parse_hex(text.substr(0, 2), &tp.version) || tp.version == 0xff) return std::nullopt;
  if (tp.version == 0 && text.size() != 55) return std::nullopt;
  if (tp.version != 0 && text.size() > 55 && text[55] != '-') return std::nullopt;
  if (!parse_hex(text.substr(3, 32), tp.trace_id.data())) return std::nullopt;
  if (!parse_hex(text.substr(36, 16), tp.parent_id.data())) return std::nullopt;
  if (!parse_hex(text.substr(53, 2), &tp.flags)) return std::nullopt;
  if (all_zero(tp.trace_id) || all_zero(tp.parent_id)) return std::nullopt;
  return tp;
}

TraceResult ensure_traceparent(HeaderList& headers, Random& random, bool new_span, bool sampled) {
  std::optional<TraceParent> incoming;
  if (count_header(headers, "traceparent") == 1) {
    incoming = TraceParent::parse(trim_ows(*find_header(headers, "traceparent")));
  }
  TraceResult result;
  if (incoming) {
    result.context = *incoming;
    result.context.version = 0;
    if (!new_span) {
      result.action = TraceAction::kPropagated;
      return result;  // untouched, byte for byte
    }
    fill_random(result.context.parent_id, random);
    result.action = TraceAction::kNewSpan;
    set_header(headers, "traceparent", result.context.format());
    return result;
  }
  fill_random(result.context.trace_id, random);
  fill_random(result.context.parent_id, random);
  result.context.flags = sampled ? 1 : 0;
  result.action = TraceAction::kCreated;
  remove_header(headers, "tracestate");  // belongs to the trace we could not continue
  set_header(headers, "traceparent", result.context.format());
  return result;
}

bool is_protected_header(std::string_view name) {
  return iequals(name, "host") || (!name.empty() && name.front() == ':');
}

// (by length first: most header names match none of the lengths and cost one switch)
bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    case 18:
      return iequals(name, "proxy-authenticate");
    case 19:
      return iequals(name, "proxy-authorization");
    default:
      return false;
  }
}

}  // namespace zt::waypoint::http
