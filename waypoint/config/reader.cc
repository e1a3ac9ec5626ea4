#include "waypoint/config/reader.h"

#include <cmath>

#include "waypoint/config/parse.h"

namespace zt::waypoint::config::detail {

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

std::string index(std::string_view path, size_t i) { return fmt::format("{}[{}]", path, i); }

std::string show(const YAML::Node& node) {
  if (node.IsScalar()) {
    std::string s = node.Scalar();
    if (s.size() > 64) s = s.substr(0, 64) + "...";
    return fmt::format("\"{}\"", s);
  }
  return node.IsSequence() ? "a list" : node.IsMap() ? "a map" : "null";
}

// ---- scalars ---------------------------------------------------------------------------------

Status read_string(const YAML::Node& node, std::string_view path, std::string& out) {
  if (!node.IsScalar()) return error_at(path, fmt::format("must be a string, got {}", show(node)));
  out = node.Scalar();
  return {};
}

Status read_nonempty(const YAML::Node& node, std::string_view path, std::string& out) {
  if (auto s = read_string(node, path, out); !s) return s;
  if (out.empty()) return error_at(path, "must not be empty");
  return {};
}

Status read_int(const YAML::Node& node, std::string_view path, int64_t min, int64_t max,
                int64_t& out) {
  int64_t v = 0;
  if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, v)) {
    return error_at(path, fmt::format("must be an integer, got {}", show(node)));
  }
  if (v < min || v > max) {
    return error_at(path, fmt::format("{} is out of range [{}, {}]", v, min, max));
  }
  out = v;
  return {};
}

Status read_double(const YAML::Node& node, std::string_view path, double min, double max,
                   double& out) {
  double v = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, v) || std::isnan(v)) {
    return error_at(path, fmt::format("must be a number, got {}", show(node)));
  }
  if (v < min || v > max)
    return error_at(path, fmt::format("{} is out of range [{}, {}]", v, min, max));
  out = v;
  return {};
}

Status read_bool(const YAML::Node& node, std::string_view path, bool& out) {
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, out)) {
    return error_at(path, fmt::format("must be true or false, got {}", show(node)));
  }
  return {};
}

Status read_duration(const YAML::Node& node, std::string_view path, Duration& out) {
  std::string text;
  if (auto s = read_string(node, path, text); !s) return s;
  auto d = parse_duration(text);
  if (!d) return error_at(path, d.error().message);
  out = *d;
  return {};
}

Status read_optional_duration(const YAML::Node& node, std::string_view path,
                              std::optional<Duration>& out) {
  Duration d{0};
  if (auto s = read_duration(node, path, d); !s) return s;
  out = d.count() == 0 ? std::nullopt : std::optional<Duration>(d);
  return {};
}

Status read_port(const YAML::Node& node, std::string_view path, std::optional<uint16_t>& out) {
  uint16_t port = 0;
  if (auto s = read_uint(node, path, port, 1, 65535); !s) return s;
  out = port;
  return {};
}

Status read_string_list(Reader& r, const YAML::Node& node, std::string_view path,
                        std::vector<std::string>& out) {
  return r.list(node, path, [&](const YAML::Node& item, const std::string& p) -> Status {
    std::string s;
    if (auto st = read_nonempty(item, p, s); !st) return st;
    out.push_back(std::move(s));
    return {};
  });
}

Status check_http_path(std::string_view path_value, std::string_view path) {
  if (path_value.empty() || path_value.front() != '/') return error_at(path, "must start with '/'");
  if (path_value.find('#') != path_value.npos) return error_at(path, "must not contain '#'");
  if (path_value.find("//") != path_value.npos) return error_at(path, "must not contain '//'");
  for (unsigned char c : path_value) {
    if (c <= 0x20 || c == 0x7f) return error_at(path, "must not contain spaces or control bytes");
  }
  return {};
}

std::string strip_trailing_slash(std::string value) {
  while (value.size() > 1 && value.back() == '/') value.pop_back();
  return value;
}

Status read_metadata(Reader& r, const YAML::Node& node, std::string_view path, std::string& name,
                     std::string& ns, int64_t* created) {
  if (!node.IsMap()) return error_at(path, "must be a map");
  if (!present(node["name"])) return error_at(path, "missing required field \"name\"");
  if (auto s = read_nonempty(node["name"], join(path, "name"), name); !s) return s;
  if (present(node["namespace"])) {
    if (auto s = read_nonempty(node["namespace"], join(path, "namespace"), ns); !s) return s;
  }
  if (created && present(node["creationTimestamp"])) {
    std::string ts;
    if (auto s = read_string(node["creationTimestamp"], join(path, "creationTimestamp"), ts); !s)
      return s;
    auto t = parse_rfc3339(ts);
    if (!t) return error_at(join(path, "creationTimestamp"), t.error().message);
    *created = *t;
  }
  return {};
}

std::string qualify_host(std::string_view host, std::string_view ns, std::string_view domain) {
  if (host.find('.') != host.npos) return std::string(host);
  return fmt::format("{}.{}.svc.{}", host, ns, domain);
}

}  // namespace zt::waypoint::config::detail
