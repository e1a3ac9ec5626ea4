#include "meshd/kube/store.h"

#include <type_traits>

#include <fmt/format.h>

#include "common/base/log.h"

namespace zt::meshd::kube {
namespace {

using manifest::ManifestError;
using manifest::Object;
using manifest::ObjectKey;
using manifest::ObjectSet;

// Calls f with the map of `set` that holds objects of `kind`.
template <class F>
void with_map(ObjectSet& set, const std::string& kind, F&& f) {
  if (kind == "Namespace") {
    f(set.namespaces);
  } else if (kind == "Pod") {
    f(set.pods);
  } else if (kind == "Service") {
    f(set.services);
  } else if (kind == "ServiceAccount") {
    f(set.service_accounts);
  } else if (kind == "AuthorizationPolicy") {
    f(set.authorization_policies);
  } else if (kind == "PeerAuthentication") {
    f(set.peer_authentications);
  } else if (kind == "Gateway") {
    f(set.gateways);
  } else if (kind == "HTTPRoute") {
    f(set.http_routes);
  } else if (kind == "DestinationRule") {
    f(set.destination_rules);
  } else if (kind == "GRPCRoute") {
    f(set.grpc_routes);
  } else if (kind == "RequestAuthentication") {
    f(set.request_authentications);
  } else if (kind == "ConfigMap") {
    f(set.mesh_configs);
  } else if (kind == "VirtualService") {
    f(set.virtual_services);
  }
}

std::string map_key(const ObjectKey& key) {
  return key.namespace_.empty() ? key.name : key.namespace_ + "/" + key.name;
}

std::string scalar(const YAML::Node& node, const char* key) {
  if (!node.IsMap()) return {};
  auto n = node[key];
  if (!n.IsDefined() || !n.IsScalar()) return {};
  return n.Scalar();
}

// The key from metadata alone (DELETED events, errors without a usable object).
std::optional<ObjectKey> raw_key(const ResourceType& type, const YAML::Node& object) {
  auto md = object["metadata"];
  auto name = scalar(md, "name");
  if (name.empty()) return std::nullopt;
  std::string ns;
  if (type.kind != "Namespace") {
    ns = scalar(md, "namespace");
    if (ns.empty()) ns = "default";
  }
  return ObjectKey{type.kind, ns, name};
}

struct Converted {
  std::optional<Object> object;
  std::optional<ObjectKey> failed;  // set on a validation failure with a usable name
  std::optional<ManifestError> error;
  std::optional<Object> fallback;    // what stands in for `failed` while it has no good version
  bool nothing_to_stand_in = false;  // (ManifestError::nothing_to_stand_in)
};

void warn_stand_in(const ObjectKey& key) {
  ZT_LOG_ERROR("component=kube {} has no good version: it fails closed until fixed",
               key.describe());
}

// "<kind>/<namespace>/<name>": a key of ObjectStore::stand_ins_.
std::string tagged(const std::string& kind, const std::string& map_key) {
  return kind + "/" + map_key;
}

Converted convert_item(const ResourceType& type, YAML::Node item) {
  Converted out;
  // LIST items carry no kind/apiVersion; the type says what they are.
  if (item.IsMap()) {
    if (!item["kind"].IsDefined()) item["kind"] = type.kind;
    if (!item["apiVersion"].IsDefined()) item["apiVersion"] = type.api_version;
  }
  std::string file = type.path();
  tl::expected<std::optional<Object>, manifest::ConvertError> converted;
  try {
    converted = manifest::convert(item);
  } catch (const std::exception& e) {
    converted = tl::unexpected(manifest::ConvertError{std::nullopt, e.what()});
  }
  if (!converted) {
    out.failed = converted.error().object;
    if (out.failed) out.fallback = std::move(converted.error().fallback);
    out.nothing_to_stand_in = converted.error().nothing_to_stand_in;
    if (!out.failed && item.IsMap()) out.failed = raw_key(type, item);
    out.error =
        ManifestError{file, 0, out.failed, fmt::format("{}: {}", file, converted.error().message)};
    return out;
  }
  if (!*converted) {
    out.error = ManifestError{
        file, 0, raw_key(type, item),
        fmt::format("{}: object is not a {} ({})", file, type.kind, type.api_version)};
    return out;
  }
  if (manifest::key_of(**converted).kind != type.kind) {
    out.error = ManifestError{file, 0, std::nullopt,
                              fmt::format("{}: {} is not a {}", file,
                                          manifest::key_of(**converted).describe(), type.kind)};
    return out;
  }
  out.object = std::move(**converted);
  return out;
}

}  // namespace

ObjectStore::Errors ObjectStore::apply_list(const ResourceType& type,
                                            const std::vector<YAML::Node>& items) {
  Errors errors;
  with_map(set_, type.kind, [&](auto& map) {
    using Map = std::decay_t<decltype(map)>;
    using T = typename Map::mapped_type;
    Map next;
    std::set<std::string> next_stand_ins;
    for (const auto& item : items) {
      auto c = convert_item(type, item);
      if (c.error) {
        if (c.failed) {
          auto key = map_key(*c.failed);
          auto it = map.find(key);
          const bool standing_in = stand_ins_.contains(tagged(type.kind, key));
          if (it != map.end() && !standing_in) {
            ZT_LOG_WARN("component=kube keeping the last good version of {}", c.failed->describe());
            next.insert_or_assign(it->first, it->second);
          } else if (auto* stand_in = c.fallback ? std::get_if<T>(&*c.fallback) : nullptr) {
            warn_stand_in(*c.failed);
            next.insert_or_assign(key, std::move(*stand_in));
            next_stand_ins.insert(tagged(type.kind, key));
          } else if (it != map.end() && !c.nothing_to_stand_in) {
            // (read too little to say: the earlier stand-in stays)
            next.insert_or_assign(it->first, it->second);
            next_stand_ins.insert(tagged(type.kind, key));
          }
        }
        errors.push_back(std::move(*c.error));
        continue;
      }
      auto key = map_key(manifest::key_of(*c.object));
      next.insert_or_assign(std::move(key), std::get<T>(std::move(*c.object)));
    }
    std::erase_if(stand_ins_, [&](const std::string& k) { return k.starts_with(type.kind + "/"); });
    stand_ins_.merge(next_stand_ins);
    if (next != map) {
      map = std::move(next);
      dirty_ = true;
    }
  });
  return errors;
}

ObjectStore::Errors ObjectStore::apply_event(const ResourceType& type, const WatchEvent& event) {
  Errors errors;
  if (event.type == EventType::kBookmark || event.type == EventType::kError) return errors;
  with_map(set_, type.kind, [&](auto& map) {
    using Map = std::decay_t<decltype(map)>;
    using T = typename Map::mapped_type;
    if (event.type == EventType::kDeleted) {
      // The last state of the object: only its name matters (it may even be invalid).
      auto key = raw_key(type, event.object);
      if (!key) {
        errors.push_back(ManifestError{type.path(), 0, std::nullopt,
                                       type.path() + ": DELETED event without metadata.name"});
        return;
      }
      stand_ins_.erase(tagged(type.kind, map_key(*key)));
      if (map.erase(map_key(*key)) > 0) dirty_ = true;
      return;
    }
    auto c = convert_item(type, event.object);
    if (c.error) {
      if (c.failed) {
        auto key = map_key(*c.failed);
        const bool standing_in = stand_ins_.contains(tagged(type.kind, key));
        auto* stand_in = c.fallback ? std::get_if<T>(&*c.fallback) : nullptr;
        if (map.count(key) && !standing_in) {
          ZT_LOG_WARN("component=kube keeping the last good version of {}", c.failed->describe());
        } else if (stand_in) {
          // (the latest document's stand-in replaces an earlier one: it is no good version)
          warn_stand_in(*c.failed);
          map.insert_or_assign(key, std::move(*stand_in));
          stand_ins_.insert(tagged(type.kind, key));
          dirty_ = true;
        } else if (standing_in && c.nothing_to_stand_in) {
          map.erase(key);
          stand_ins_.erase(tagged(type.kind, key));
          dirty_ = true;
        }
      }
      errors.push_back(std::move(*c.error));
      return;
    }
    auto key = map_key(manifest::key_of(*c.object));
    stand_ins_.erase(tagged(type.kind, key));
    auto& object = std::get<T>(*c.object);
    auto it = map.find(key);
    if (it != map.end() && it->second == object) return;
    map.insert_or_assign(std::move(key), std::move(object));
    dirty_ = true;
  });
  return errors;
}

std::shared_ptr<const manifest::ObjectSet> ObjectStore::snapshot() {
  dirty_ = false;
  return std::make_shared<const manifest::ObjectSet>(set_);
}

}  // namespace zt::meshd::kube
