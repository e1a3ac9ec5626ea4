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
  if constexpr (std::is_same_v<T, DestinationRule>) return "DestinationRule";
  if constexpr (std::is_same_v<T, GrpcRoute>) return "GRPCRoute";
  if constexpr (std::is_same_v<T, RequestAuthentication>) return "RequestAuthentication";
  if constexpr (std::is_same_v<T, MeshConfigMap>) return "ConfigMap";
  if constexpr (std::is_same_v<T, VirtualService>) return "VirtualService";
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
        if constexpr (std::is_same_v<T, DestinationRule>) {
          destination_rules.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, GrpcRoute>) grpc_routes.insert_or_assign(key, std::move(o));
        if constexpr (std::is_same_v<T, RequestAuthentication>) {
          request_authentications.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, MeshConfigMap>) {
          mesh_configs.insert_or_assign(key, std::move(o));
        }
        if constexpr (std::is_same_v<T, VirtualService>) {
          virtual_services.insert_or_assign(key, std::move(o));
        }
      },
      std::move(object));
}

size_t ObjectSet::size() const {
  return namespaces.size() + pods.size() + services.size() + service_accounts.size() +
         authorization_policies.size() + peer_authentications.size() + gateways.size() +
         http_routes.size() + destination_rules.size() + grpc_routes.size() +
         request_authentications.size() + mesh_configs.size() + virtual_services.size();
}

namespace {

// FNV-1a, 64 bit, from a given offset basis: stable across runs, machines and compilers.
uint64_t fnv1a(std::string_view text, uint64_t basis) {
  uint64_t h = basis;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

std::string kube_uid(std::string_view kind, const ObjectMeta& meta) {
  if (!meta.uid.empty()) return meta.uid;
  const std::string key = fmt::format("{}/{}/{}", kind, meta.namespace_, meta.name);
  const uint64_t hi = fnv1a(key, 0xcbf29ce484222325ull);
  const uint64_t lo = fnv1a(key, 0x84222325cbf29ce4ull);
  // Shaped like an RFC 4122 version-5 UUID, as Kubernetes UIDs are UUIDs.
  return fmt::format("{:08x}-{:04x}-5{:03x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xfff, 0x8000 | ((lo >> 48) & 0x3fff), lo & 0xffffffffffffull);
}

}  // namespace zt::meshd::manifest
