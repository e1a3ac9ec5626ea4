// The certificate source of a proxy (ztunnel, the waypoint): an Istio CA over gRPC when an
// address is given, else the built-in CA in-process, from a key pair on disk or a generated one.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/base/result.h"
#include "common/ca/grpc_ca_provider.h"
#include "common/identity/certificate_provider.h"

namespace zt::ca {

struct ProviderChoice {
  // CA_ADDRESS: when set, `grpc` (its address filled in here) is used.
  std::optional<std::string> ca_address;
  GrpcCaOptions grpc;
  // --ca-cert/--ca-key for the built-in CA; without both a key pair is generated.
  std::optional<std::string> ca_cert_path;
  std::optional<std::string> ca_key_path;
  std::string trust_domain = "cluster.local";
};

// Errors name the option that failed ("CA_ADDRESS: ...", "loading the built-in CA
// (--ca-cert/--ca-key): ...").
Result<std::shared_ptr<identity::CertificateProvider>> make_certificate_provider(
    ProviderChoice choice);

}  // namespace zt::ca
