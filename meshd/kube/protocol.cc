#include "meshd/kube/protocol.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace zt::meshd::kube {
namespace {

std::string scalar(const YAML::Node& node, const char* key) {
  auto n = node[key];
  if (!n.IsDefined() || !n.IsScalar()) return {};
  return n.Scalar();
}

YAML::Node load(std::string_view text) { return YAML::Load(std::string(text)); }

std::string query_selectors(const ResourceType& type, const Selectors& selectors) {
  std::string q;
  if (type.kind == "Pod" && !selectors.field.empty()) {
    q += "&fieldSelector=" + url_encode(selectors.field);
  } else if (!type.field_selector.empty()) {
    q += "&fieldSelector=" + url_encode(type.field_selector);
  }
  if (!selectors.label.empty() && type.field_selector.empty()) {
    q += "&labelSelector=" + url_encode(selectors.label);
  }
  return q;
}

}  // namespace

std::string ResourceType::path() const {
  if (api_version.find('/') == std::string::npos) {
    if (!namespace_.empty()) {
      return fmt::format("/api/{}/namespaces/{}/{}", api_version, namespace_, plural);
    }
    return fmt::format("/api/{}/{}", api_version, plural);
  }
  return fmt::format("/apis/{}/{}", api_version, plural);
}

std::string ResourceType::group() const {
  auto slash = api_version.find('/');
  return slash == std::string::npos ? std::string() : api_version.substr(0, slash);
}

bool ResourceType::custom() const {
  auto g = group();
  if (g == "gateway.networking.k8s.io") return true;
  return g.find('.') != std::string::npos && !g.ends_with(".k8s.io");
}

namespace {

// The scalar `item` of each map in the list `list` of a discovery document (JSON read as YAML).
Result<std::vector<std::string>> discovery_list(std::string_view body, const char* list,
                                                const char* item, std::string_view what) {
  try {
    auto doc = YAML::Load(std::string(body));
    auto entries = doc.IsMap() ? doc[list] : YAML::Node();
    if (!entries.IsDefined() || !entries.IsSequence()) {
      return failf("not an {}: no {} list", what, list);
    }
    std::vector<std::string> out;
    for (const auto& e : entries) {
      if (e.IsMap() && e[item].IsDefined() && e[item].IsScalar()) out.push_back(e[item].Scalar());
    }
    return out;
  } catch (const std::exception& e) {
    return failf("not an {}: {}", what, e.what());
  }
}

}  // namespace

Result<std::vector<std::string>> parse_resource_names(std::string_view body) {
  return discovery_list(body, "resources", "name", "APIResourceList");
}

Result<std::vector<std::string>> parse_group_versions(std::string_view body) {
  return discovery_list(body, "versions", "groupVersion", "APIGroup");
}

const std::vector<ResourceType>& resource_types() {
  static const std::vector<ResourceType> kTypes = {
      {"Namespace", "v1", "namespaces"},
      {"Pod", "v1", "pods"},
      {"Service", "v1", "services"},
      {"ServiceAccount", "v1", "serviceaccounts"},
      {"AuthorizationPolicy", "security.istio.io/v1", "authorizationpolicies"},
      {"PeerAuthentication", "security.istio.io/v1", "peerauthentications"},
      {"Gateway", "gateway.networking.k8s.io/v1", "gateways"},
      {"HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes"},
      {"DestinationRule", "networking.istio.io/v1", "destinationrules"},
      {"GRPCRoute", "gateway.networking.k8s.io/v1", "grpcroutes", /*older_version_is_none=*/true},
      {"RequestAuthentication", "security.istio.io/v1", "requestauthentications"},
      // Istio's MeshConfig: the ConfigMap istio in the root namespace (ambient::Options).
      {"ConfigMap", "v1", "configmaps", false, "metadata.name=istio", "istio-system", true},
      // Routing only: without it a waypoint routes by Service and HTTPRoute, which opens nothing.
      {"VirtualService", "networking.istio.io/v1", "virtualservices", true, "", "", true},
  };
  return kTypes;
}

std::string url_encode(std::string_view value) {
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string list_target(const std::string& base_path, const ResourceType& type,
                        const Selectors& selectors, uint32_t limit,
                        const std::string& continue_token) {
  std::string t = fmt::format("{}{}?limit={}", base_path, type.path(), limit);
  if (!continue_token.empty()) t += "&continue=" + url_encode(continue_token);
  return t + query_selectors(type, selectors);
}

std::string watch_target(const std::string& base_path, const ResourceType& type,
                         const Selectors& selectors, const std::string& resource_version,
                         uint32_t timeout_seconds) {
  std::string t = fmt::format("{}{}?watch=1&allowWatchBookmarks=true&timeoutSeconds={}", base_path,
                              type.path(), timeout_seconds);
  if (!resource_version.empty()) t += "&resourceVersion=" + url_encode(resource_version);
  return t + query_selectors(type, selectors);
}

std::string ApiStatus::describe() const {
  std::string out = fmt::format("{}", code);
  if (!reason.empty()) out += " " + reason;
  if (!message.empty()) out += ": " + message;
  return out;
}

namespace {
std::optional<ApiStatus> status_of(const YAML::Node& n) {
  if (!n.IsMap() || scalar(n, "kind") != "Status") return std::nullopt;
  ApiStatus s;
  try {
    if (n["code"].IsDefined() && n["code"].IsScalar()) s.code = n["code"].as<int>();
  } catch (const YAML::Exception&) {
    s.code = 0;
  }
  s.reason = scalar(n, "reason");
  s.message = scalar(n, "message");
  return s;
}
}  // namespace

std::optional<ApiStatus> parse_status(std::string_view body) {
  try {
    return status_of(load(body));
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
}

Result<ListPage> parse_list(std::string_view body) {
  YAML::Node doc;
  try {
    doc = load(body);
  } catch (const YAML::Exception& e) {
    return failf("list response is not JSON: line {}, column {}: {}", e.mark.line + 1,
                 e.mark.column + 1, e.msg);
  }
  if (!doc.IsMap()) return fail("list response is not a JSON object");
  if (auto st = status_of(doc)) return failf("list response is a Status: {}", st->describe());
  ListPage page;
  auto md = doc["metadata"];
  if (md.IsDefined() && md.IsMap()) {
    page.resource_version = scalar(md, "resourceVersion");
    page.continue_token = scalar(md, "continue");
  }
  if (page.resource_version.empty()) return fail("list response has no metadata.resourceVersion");
  auto items = doc["items"];
  if (items.IsDefined() && !items.IsNull()) {
    if (!items.IsSequence()) return fail("list response: items is not an array");
    for (const auto& item : items) page.items.push_back(item);
  }
  return page;
}

std::string_view to_string(EventType type) {
  switch (type) {
    case EventType::kAdded:
      return "ADDED";
    case EventType::kModified:
      return "MODIFIED";
    case EventType::kDeleted:
      return "DELETED";
    case EventType::kBookmark:
      return "BOOKMARK";
    case EventType::kError:
      return "ERROR";
  }
  return "?";
}

Result<WatchEvent> parse_watch_event(std::string_view line) {
  YAML::Node doc;
  try {
    doc = load(line);
  } catch (const YAML::Exception& e) {
    return failf("watch event is not JSON: column {}: {}", e.mark.column + 1, e.msg);
  }
  if (!doc.IsMap()) return fail("watch event is not a JSON object");
  auto type = scalar(doc, "type");
  WatchEvent ev;
  if (type == "ADDED") {
    ev.type = EventType::kAdded;
  } else if (type == "MODIFIED") {
    ev.type = EventType::kModified;
  } else if (type == "DELETED") {
    ev.type = EventType::kDeleted;
  } else if (type == "BOOKMARK") {
    ev.type = EventType::kBookmark;
  } else if (type == "ERROR") {
    ev.type = EventType::kError;
  } else {
    return failf("watch event has unknown type \"{}\"", type);
  }
  ev.object = doc["object"];
  if (!ev.object.IsDefined() || !ev.object.IsMap()) {
    return failf("{} watch event has no object", type);
  }
  if (ev.type == EventType::kError) {
    ev.status = status_of(ev.object);
    if (!ev.status) ev.status = ApiStatus{0, "", "ERROR event without a Status object"};
    return ev;
  }
  auto md = ev.object["metadata"];
  if (md.IsDefined() && md.IsMap()) ev.resource_version = scalar(md, "resourceVersion");
  if (ev.resource_version.empty()) {
    return failf("{} watch event has no metadata.resourceVersion", type);
  }
  return ev;
}

bool LineSplitter::feed(std::string_view data,
                        const std::function<void(std::string_view)>& on_line) {
  buffer_.append(data);
  size_t start = 0;
  for (;;) {
    auto nl = buffer_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(buffer_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) on_line(line);
    start = nl + 1;
  }
  buffer_.erase(0, start);
  return buffer_.size() <= max_line_;
}

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed)
    : initial_(initial), max_(max), current_(initial), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  auto bound = current_;
  current_ = std::min(max_, current_ * 2);
  auto low = bound.count() / 2;
  std::uniform_int_distribution<int64_t> dist(low, bound.count());
  return std::chrono::milliseconds(dist(rng_));
}

NextStep next_step(const WatchOutcome& o) {
  if (o.http_status == 410) return NextStep::kRelist;
  if (o.error_event)
    return *o.error_event == 410 ? NextStep::kRelist : NextStep::kWatchAfterBackoff;
  if (o.http_status != 200) return NextStep::kWatchAfterBackoff;
  if (o.events > 0) return NextStep::kWatch;
  if (o.transport_error) return NextStep::kWatchAfterBackoff;
  return o.duration >= std::chrono::seconds(1) ? NextStep::kWatch : NextStep::kWatchAfterBackoff;
}

bool list_restart_now(int http_status) { return http_status == 410; }

}  // namespace zt::meshd::kube
