#include "meshd/ca/ca_server.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/base/log.h"
#include "common/identity/csr.h"
#include "common/tls/spiffe.h"

namespace zt::meshd::ca {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view unquote(std::string_view s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

constexpr std::string_view kImpersonatedIdentity = "ImpersonatedIdentity";

}  // namespace

Result<TokenTable> TokenTable::parse(std::string_view text, std::string_view source) {
  TokenTable table;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty() || line == "---") continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return failf("{}:{}: expected \"<token>: <node name>\"", source, line_no);
    }
    auto token = unquote(trim(line.substr(0, colon)));
    auto node = unquote(trim(line.substr(colon + 1)));
    if (token.empty() || node.empty()) {
      return failf("{}:{}: empty token or node name", source, line_no);
    }
    if (!table.nodes_.emplace(std::string(token), std::string(node)).second) {
      return failf("{}:{}: token listed twice", source, line_no);
    }
  }
  return table;
}

Result<TokenTable> TokenTable::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return failf("cannot read tokens file {}", path);
  std::stringstream buf;
  buf << in.rdbuf();
  return parse(buf.str(), path);
}

std::optional<std::string> TokenTable::node_for(std::string_view token) const {
  auto it = nodes_.find(token);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

CaServer::CaServer(identity::CertificateAuthority ca, CaServerOptions options,
                   std::optional<TokenTable> tokens)
    : ca_(std::move(ca)), options_(std::move(options)), tokens_(std::move(tokens)) {}

void CaServer::publish(std::shared_ptr<const MeshSnapshot> snapshot) {
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(snapshot);
}

CaOutcome CaServer::refuse(grpc::StatusCode code, std::string message) const {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
      unauthenticated_++;
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      denied_++;
      break;
    default:
      invalid_++;
      break;
  }
  return CaOutcome{code, std::move(message), {}};
}

CaOutcome CaServer::handle(std::optional<std::string_view> authorization,
                           const istio::v1::auth::IstioCertificateRequest& request) const {
  // Who is asking.
  std::optional<std::string> node;
  if (tokens_) {
    if (!authorization) {
      return refuse(grpc::StatusCode::UNAUTHENTICATED, "no authorization: Bearer token given");
    }
    std::string_view header = trim(*authorization);
    constexpr std::string_view kBearer = "Bearer ";
    if (header.size() <= kBearer.size() || header.substr(0, kBearer.size()) != kBearer) {
      return refuse(grpc::StatusCode::UNAUTHENTICATED,
                    "authorization header is not \"Bearer <token>\"");
    }
    node = tokens_->node_for(trim(header.substr(kBearer.size())));
    if (!node) return refuse(grpc::StatusCode::UNAUTHENTICATED, "unknown bearer token");
  }

  // What is asked for.
  auto csr = identity::parse_csr_pem(request.csr());
  if (!csr) {
    return refuse(grpc::StatusCode::INVALID_ARGUMENT,
                  fmt::format("bad CSR: {}", csr.error().describe()));
  }
  tls::SpiffeId requested = csr->id;
  if (request.has_metadata()) {
    const auto& fields = request.metadata().fields();
    auto it = fields.find(std::string(kImpersonatedIdentity));
    if (it != fields.end()) {
      if (!it->second.has_string_value()) {
        return refuse(grpc::StatusCode::INVALID_ARGUMENT,
                      "metadata ImpersonatedIdentity is not a string");
      }
      auto impersonated = tls::SpiffeId::parse(it->second.string_value());
      if (!impersonated) {
        return refuse(
            grpc::StatusCode::INVALID_ARGUMENT,
            fmt::format("metadata ImpersonatedIdentity: {}", impersonated.error().describe()));
      }
      if (*impersonated != csr->id) {
        return refuse(
            grpc::StatusCode::PERMISSION_DENIED,
            fmt::format("CSR asks for {} but ImpersonatedIdentity is {}", csr->id, *impersonated));
      }
      requested = *impersonated;
    }
  }
  if (requested.trust_domain != options_.trust_domain) {
    return refuse(
        grpc::StatusCode::PERMISSION_DENIED,
        fmt::format("identity {} is not in trust domain {}", requested, options_.trust_domain));
  }
  if (node) {
    std::shared_ptr<const MeshSnapshot> snapshot;
    {
      std::lock_guard lock(snapshot_mu_);
      snapshot = snapshot_;
    }
    bool allowed = false;
    if (snapshot) {
      auto it = snapshot->identities_by_node.find(*node);
      allowed = it != snapshot->identities_by_node.end() && it->second.contains(requested.uri());
    }
    if (!allowed) {
      return refuse(grpc::StatusCode::PERMISSION_DENIED,
                    fmt::format("node {} runs no workload with identity {}", *node, requested));
    }
  }

  std::chrono::seconds validity{request.validity_duration()};
  if (validity.count() <= 0) validity = options_.default_validity;
  if (validity > options_.max_validity) validity = options_.max_validity;
  auto chain = ca_.sign_csr(request.csr(), validity, requested);
  if (!chain) {
    return refuse(grpc::StatusCode::INVALID_ARGUMENT,
                  fmt::format("cannot sign CSR for {}: {}", requested, chain.error().describe()));
  }
  issued_++;
  return CaOutcome{grpc::StatusCode::OK, {}, std::move(*chain)};
}

CaServerStats CaServer::stats() const {
  return CaServerStats{issued_.load(), unauthenticated_.load(), denied_.load(), invalid_.load()};
}

grpc::ServerUnaryReactor* CaServer::CreateCertificate(
    grpc::CallbackServerContext* context, const istio::v1::auth::IstioCertificateRequest* request,
    istio::v1::auth::IstioCertificateResponse* response) {
  std::optional<std::string_view> authorization;
  std::string_view cluster_id;
  for (const auto& [key, value] : context->client_metadata()) {
    std::string_view k(key.data(), key.size());
    if (k == "authorization") authorization = std::string_view(value.data(), value.size());
    if (k == "clusterid") cluster_id = std::string_view(value.data(), value.size());
  }
  auto outcome = handle(authorization, *request);
  auto* reactor = context->DefaultReactor();
  if (outcome.code != grpc::StatusCode::OK) {
    ZT_LOG_WARN("certificate refused component=ca peer={} cluster={} code={} reason=\"{}\"",
                context->peer(), cluster_id, static_cast<int>(outcome.code), outcome.message);
    reactor->Finish(grpc::Status(outcome.code, outcome.message));
    return reactor;
  }
  ZT_LOG_DEBUG("certificate issued component=ca peer={} cluster={}", context->peer(), cluster_id);
  for (auto& pem : outcome.cert_chain) response->add_cert_chain(std::move(pem));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace zt::meshd::ca
