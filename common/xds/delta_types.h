// The data a Delta ADS client hands to whoever applies the resources (ztunnel's state sync, and
// later the waypoint), and what that code answers. Kept free of gRPC so the appliers can be
// unit-tested without a stream; the protobuf Any is the resource exactly as it came off the wire.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/message_lite.h>

namespace zt::xds {

inline constexpr std::string_view kAddressType = "type.googleapis.com/istio.workload.Address";
inline constexpr std::string_view kAuthorizationType =
    "type.googleapis.com/istio.security.Authorization";

struct Resource {
  std::string name{};  // workloads by uid, services by "namespace/hostname", policies by "ns/name"
  std::string version{};  // opaque, from the server
  google::protobuf::Any body{};
};

// One DeltaDiscoveryResponse for one type URL.
struct DeltaUpdate {
  std::string type_url{};
  std::vector<Resource> added{};  // added or changed
  std::vector<std::string> removed{};
};

// The message in a resource's body, once the caller has checked the body's type by name
// (Any::Is<T>(), or its type URL). Any::UnpackTo(Message*) checks it against the message's
// descriptor instead, and building that loads the generated descriptor pool: heap, and code pages
// that stay resident.
inline bool parse_body(const google::protobuf::Any& body, google::protobuf::MessageLite& message) {
  return message.ParseFromString(body.value());
}

// A resource the applier refused; everything else in the update was applied. The client NACKs
// with "name: reason; name: reason" and does not record the refused versions.
struct Rejection {
  std::string name{};
  std::string reason{};
};

}  // namespace zt::xds
