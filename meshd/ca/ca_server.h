// meshd's Istio CA: istio.v1.auth.IstioCertificateService/CreateCertificate (facts §3.2),
// signing workload CSRs with the built-in CertificateAuthority.
//
// Who may ask for what: with a token table, the caller's `authorization: Bearer <token>` names a
// node, and the identity requested (ImpersonatedIdentity, else the CSR's SAN) must be one that a
// pod scheduled on that node runs (MeshSnapshot::identities_by_node of the latest snapshot).
// Without a token table any identity of meshd's trust domain is signed (development only).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/base/result.h"
#include "common/identity/certificate_authority.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "meshd/model/snapshot.h"

namespace zt::meshd::ca {

// Bearer token -> node name, from a file of lines "token: node" (a flat YAML map; quotes allowed,
// '#' starts a comment, blank lines ignored).
class TokenTable {
 public:
  static Result<TokenTable> parse(std::string_view text, std::string_view source = "tokens");
  static Result<TokenTable> load(const std::string& path);

  // The node a token authenticates, or nullopt for an unknown token.
  std::optional<std::string> node_for(std::string_view token) const;
  size_t size() const { return nodes_.size(); }

 private:
  std::map<std::string, std::string, std::less<>> nodes_;
};

struct CaServerOptions {
  std::string trust_domain = "cluster.local";
  std::chrono::seconds default_validity{24 * 3600};  // when the request asks for <= 0
  std::chrono::seconds max_validity{7 * 24 * 3600};  // longer requests are shortened to this
};

struct CaServerStats {
  uint64_t issued = 0;
  uint64_t unauthenticated = 0;
  uint64_t denied = 0;
  uint64_t invalid = 0;
};

// What one CreateCertificate call decides; the gRPC handler is a thin shell over handle().
struct CaOutcome {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  std::vector<std::string> cert_chain;  // leaf first, root last, when code == OK
};

class CaServer final : public istio::v1::auth::IstioCertificateService::CallbackService {
 public:
  CaServer(identity::CertificateAuthority ca, CaServerOptions options,
           std::optional<TokenTable> tokens);

  // The latest snapshot: its identities_by_node decides impersonation.
  void publish(std::shared_ptr<const MeshSnapshot> snapshot);

  // `authorization` is the request's authorization header, if any.
  CaOutcome handle(std::optional<std::string_view> authorization,
                   const istio::v1::auth::IstioCertificateRequest& request) const;

  CaServerStats stats() const;
  const identity::CertificateAuthority& authority() const { return ca_; }

  grpc::ServerUnaryReactor* CreateCertificate(
      grpc::CallbackServerContext* context, const istio::v1::auth::IstioCertificateRequest* request,
      istio::v1::auth::IstioCertificateResponse* response) override;

 private:
  CaOutcome refuse(grpc::StatusCode code, std::string message) const;

  const identity::CertificateAuthority ca_;
  const CaServerOptions options_;
  const std::optional<TokenTable> tokens_;

  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const MeshSnapshot> snapshot_;

  mutable std::atomic<uint64_t> issued_{0}, unauthenticated_{0}, denied_{0}, invalid_{0};
};

}  // namespace zt::meshd::ca
