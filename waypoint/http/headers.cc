#include "waypoint/http/headers.h"

#include <algorithm>

#include "waypoint/base/strings.h"

namespace zt::waypoint::http {

std::optional<std::string_view> find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return std::string_view(h.value);
  }
  return std::nullopt;
}

std::optional<std::string> joined_header(const HeaderList& headers, std::string_view name) {
  std::optional<std::string> out;
  for (const auto& h : headers) {
    if (!iequals(h.name, name)) continue;
    if (out) {
      out->push_back(',');
      out->append(h.value);
    } else {
      out = h.value;
    }
  }
  return out;
}

size_t count_header(const HeaderList& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](const Header& h) { return iequals(h.name, name); }));
}

void set_header(HeaderList& headers, std::string_view name, std::string_view value) {
  auto it = std::find_if(headers.begin(), headers.end(),
                         [&](const Header& h) { return iequals(h.name, name); });
  if (it == headers.end()) {
    headers.push_back({std::string(name), std::string(value)});
    return;
  }
  it->value = std::string(value);
  // Drop later duplicates, keep the first position.
  auto rest =
      std::remove_if(it + 1, headers.end(), [&](const Header& h) { return iequals(h.name, name); });
  headers.erase(rest, headers.end());
}

void add_header(HeaderList& headers, std::string_view name, std::string_view value) {
  for (auto& h : headers) {
    if (iequals(h.name, name)) {
      h.value.push_back(',');
      h.value.append(value);
      return;
    }
  }
  headers.push_back({std::string(name), std::string(value)});
}

size_t remove_header(HeaderList& headers, std::string_view name) {
  const size_t before = headers.size();
  std::erase_if(headers, [&](const Header& h) { return iequals(h.name, name); });
  return before - headers.size();
}

std::string_view RequestHead::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

std::string_view RequestHead::query() const {
  std::string_view t = target;
  const size_t q = t.find('?');
  return q == t.npos ? std::string_view() : t.substr(q + 1);
}

bool is_grpc(const HeaderList& headers) {
  auto ct = find_header(headers, "content-type");
  return ct && ct->substr(0, 16) == "application/grpc";
}

bool is_native_grpc(const HeaderList& headers) {
  auto ct = find_header(headers, "content-type");
  if (!ct || ct->substr(0, 16) != "application/grpc") return false;
  return ct->size() == 16 || (*ct)[16] == '+' || (*ct)[16] == ';';
}

int grpc_status_for_http(int status) {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

std::string grpc_message_encoded(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || c == '%') {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

}  // namespace zt::waypoint::http
