// The waypoint configuration readers' shared helpers: a YAML walker with field paths in every
// error and a bound on visited nodes (`Reader`), and readers for the scalars Kubernetes objects
// use. Internal to waypoint/config (parse.cc, virtual_service.cc); not a public interface.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/base/result.h"
#include "waypoint/config/model.h"

namespace zt::waypoint::config::detail {

// Aliases let a small document name the same subtree many times; bound the work.
constexpr size_t kMaxVisitedNodes = 2'000'000;

std::string join(std::string_view path, std::string_view key);  // "a.b"
std::string index(std::string_view path, size_t i);             // "a[3]"
inline tl::unexpected<Error> error_at(std::string_view path, std::string_view message) {
  return failf("{}: {}", path, message);
}

std::string show(const YAML::Node& node);  // a value for an error message
inline bool present(const YAML::Node& node) { return node && node.IsDefined() && !node.IsNull(); }

// Walks maps and lists with paths for errors and a bound on visited nodes.
class Reader {
 public:
  using FieldFn = std::function<Status(const YAML::Node&, const std::string&)>;
  struct Field {
    std::string_view key;
    FieldFn parse;  // null: accepted and ignored
  };

  Status count(std::string_view path) {
    if (++visited_ > kMaxVisitedNodes) return error_at(path, "document too large (too many nodes)");
    return {};
  }

  // A map whose keys must be among `fields`; null fields are ignored on purpose.
  Status object(const YAML::Node& node, std::string_view path,
                std::initializer_list<Field> fields) {
    if (!node.IsMap()) return error_at(path, fmt::format("must be a map, got {}", show(node)));
    std::set<std::string, std::less<>> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (auto s = count(path); !s) return s;
      if (!it->first.IsScalar()) return error_at(path, "keys must be plain strings");
      const std::string& key = it->first.Scalar();
      auto field =
          std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
      if (field == fields.end()) {
        std::string expected;
        for (const auto& f : fields) {
          expected += fmt::format("{}{}", expected.empty() ? "" : ", ", f.key);
        }
        return error_at(
            join(path, key),
            fmt::format("unknown or unsupported field (expected one of: {})", expected));
      }
      if (!seen.insert(key).second) return error_at(join(path, key), "duplicate key");
      if (!field->parse || it->second.IsNull()) continue;
      if (auto s = field->parse(it->second, join(path, key)); !s) return s;
    }
    return {};
  }

  template <class Fn>
  Status list(const YAML::Node& node, std::string_view path, Fn&& fn) {
    if (node.IsNull()) return {};
    if (!node.IsSequence())
      return error_at(path, fmt::format("must be a list, got {}", show(node)));
    size_t i = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++i) {
      if (auto s = count(path); !s) return s;
      if (auto s = fn(*it, index(path, i)); !s) return s;
    }
    return {};
  }

 private:
  size_t visited_ = 0;
};

using Field = Reader::Field;

// ---- scalars ---------------------------------------------------------------------------------

Status read_string(const YAML::Node& node, std::string_view path, std::string& out);
Status read_nonempty(const YAML::Node& node, std::string_view path, std::string& out);
Status read_int(const YAML::Node& node, std::string_view path, int64_t min, int64_t max,
                int64_t& out);
template <class T>
Status read_uint(const YAML::Node& node, std::string_view path, T& out, int64_t min = 0,
                 int64_t max = std::numeric_limits<T>::max()) {
  int64_t v = 0;
  if (auto s = read_int(node, path, min, max, v); !s) return s;
  out = static_cast<T>(v);
  return {};
}

Status read_double(const YAML::Node& node, std::string_view path, double min, double max,
                   double& out);
Status read_bool(const YAML::Node& node, std::string_view path, bool& out);
Status read_duration(const YAML::Node& node, std::string_view path, Duration& out);
// A duration where zero means "disabled" (Gateway API timeouts).
Status read_optional_duration(const YAML::Node& node, std::string_view path,
                              std::optional<Duration>& out);
Status read_port(const YAML::Node& node, std::string_view path, std::optional<uint16_t>& out);
template <class E>
Status read_enum(const YAML::Node& node, std::string_view path,
                 std::initializer_list<std::pair<std::string_view, E>> values, E& out) {
  std::string text;
  if (auto s = read_string(node, path, text); !s) return s;
  std::string names;
  for (const auto& [name, value] : values) {
    if (name == text) {
      out = value;
      return {};
    }
    names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
  }
  return error_at(path, fmt::format("unknown value \"{}\" (expected one of: {})", text, names));
}

Status read_string_list(Reader& r, const YAML::Node& node, std::string_view path,
                        std::vector<std::string>& out);
// Gateway API path values: absolute, no fragment, no empty segment.
Status check_http_path(std::string_view path_value, std::string_view path);
std::string strip_trailing_slash(std::string value);

// An object's metadata: name (required), namespace, creationTimestamp (when `created` is set).
Status read_metadata(Reader& r, const YAML::Node& node, std::string_view path, std::string& name,
                     std::string& ns, int64_t* created);

// Istio's Percent {value} (0-100), HTTPRetry and HTTPFaultInjection (parse.cc).
Status read_percentage(Reader& r, const YAML::Node& node, std::string_view path, double& out);
Status read_istio_retries(Reader& r, const YAML::Node& node, std::string_view path,
                          RetryPolicy& out);
Status read_istio_fault(Reader& r, const YAML::Node& node, std::string_view path,
                        FaultInjection& out);

// A VirtualService object (virtual_service.cc; parse.h says what is read).
Status read_virtual_service(Reader& r, const YAML::Node& object, std::string_view cluster_domain,
                            std::string_view path, HttpRoute& out);

// "reviews" -> "reviews.<ns>.svc.<domain>"; names with a dot are taken as FQDNs.
std::string qualify_host(std::string_view host, std::string_view ns, std::string_view domain);

}  // namespace zt::waypoint::config::detail
