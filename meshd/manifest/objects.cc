#include "meshd/manifest/objects.h"

#include <fmt/format.h>

namespace zt::meshd::manifest {
namespace {

template <class T>
constexpr const char* kind_name() {
  if constexpr (std::is_same_v<T, Namespace>) return "Namespace";
  if constexpr (std::is_same_v<T, Pod>) return "Pod";
  if constexpr (std::is_same_v<T, Service>) return "Service";
  if constexpr (std::is_same_v<T, ServiceAccount>) return "ServiceAccount";
  if constexpr (std::is_same_v<T, AuthorizationPolicy>) return "AuthorizationPolicy";
  if constexpr (std::is_same_v<T, PeerAuthentication>) return "PeerAuthentication";
  if constexpr (std::is_same_v<T, Gateway>) return "Gateway";
  if constexpr (std::is_same_v<T, HttpRoute>) return "HTTPRoute";
}

std::string map_key(const ObjectMeta& meta) {
  return meta.namespace_.empty() ? meta.name : meta.namespace_ + "/" + meta.name;
}

}  // namespace

std::string ObjectKey::describe() const {
  if (namespace_.empty()) return fmt::format("{} {}", kind, name);
  return fmt::format("{} {}/{}", kind, namespace_, name);
}

const ObjectMeta& meta_of(const Object& object) {
  return std::visit([](const auto& o) -> const ObjectMeta& { return o.meta; }, object);
}

ObjectKey key_of(const Object& object) {
  return std::visit(
      [](const auto& o) {
        using T = std::decay_t<decltype(o)>;
        return ObjectKey{kind_name<T>(), o.meta.namespace_, o.meta.name};
      },
      object);
}

void ObjectSet::put(Object object) {
  std::visit(
      [this](auto&& o) {
        using T = std::decay_t<decltype(o)>;
        auto key = map_key(o.meta);
        if constexpr (std::is_same_v<T, Namespace>) namespaces.insert_or_assign(key, std::move(o));
        if constexpr (std::is_same_v<T, Pod>) pods.insert_or_assign(key, std::move(o));
        if constexpr (std::is_same_v<T, Service>) services.insert_or_assign(key, std::move(o));
        if constexpr (std::is_same_v<T, ServiceAccount>) {
          service_accounts.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, AuthorizationPolicy>) {
          authorization_policies.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, PeerAuthentication>) {
          peer_authentications.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, Gateway>) gateways.insert_or_assign(key, std::move(o));
        if constexpr (std::is_same_v<T, HttpRoute>) http_routes.insert_or_assign(key, std::move(o));
      },
      std::move(object));
}

size_t ObjectSet::size() const {
  return namespaces.size() + pods.size() + services.size() + service_accounts.size() +
         authorization_policies.size() + peer_authentications.size() + gateways.size() +
         http_routes.size();
}

}  // namespace zt::meshd::manifest
