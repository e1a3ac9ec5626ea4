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

}  // namespace zt::waypoint::http
