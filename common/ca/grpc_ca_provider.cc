#include "common/ca/grpc_ca_provider.h"

#include <fstream>
#include <sstream>

#include <openssl/x509v3.h>

#include "common/grpc/client.h"
#include "common/tls/certs.h"
#include "istio/v1/auth/ca.pb.h"

namespace zt::ca {
namespace {

using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
constexpr std::string_view kCreateCertificatePath =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

Result<std::string> read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("cannot read the {} file {}", what, path);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return failf("error reading the {} file {}", what, path);
  return s.str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::shared_ptr<GrpcCaProvider>> GrpcCaProvider::create(GrpcCaOptions options) {
  std::string_view addr = options.address;
  bool tls = false;
  if (addr.starts_with("https://")) {
    tls = true;
    addr.remove_prefix(8);
  } else if (addr.starts_with("http://")) {
    addr.remove_prefix(7);
  } else {
    return failf("CA address {}: must start with http:// or https://", options.address);
  }
  while (addr.ends_with('/')) addr.remove_suffix(1);
  auto colon = addr.rfind(':');
  if (addr.empty() || colon == std::string_view::npos || colon + 1 == addr.size()) {
    return failf("CA address {}: expected scheme://host:port", options.address);
  }
  if (tls) {
    if (!options.root_ca_path)
      return failf("CA address {} is https but no root CA file is set", options.address);
    auto roots = read_file(*options.root_ca_path, "CA root");
    if (!roots) return tl::unexpected(wrap(roots.error(), "CA " + options.address));
  }
  std::string target(addr);
  return std::shared_ptr<GrpcCaProvider>(
      new GrpcCaProvider(std::move(options), std::move(target), tls));
}

Result<std::optional<std::string>> GrpcCaProvider::roots() const {
  if (!tls_) return std::optional<std::string>{};
  auto r = read_file(*options_.root_ca_path, "CA root");
  if (!r) return tl::unexpected(r.error());
  if (trim(*r).empty()) return failf("the CA root file {} is empty", *options_.root_ca_path);
  return std::optional<std::string>(std::move(*r));
}

Result<std::vector<std::string>> GrpcCaProvider::create_certificate(const std::string& csr_pem,
                                                                    const tls::SpiffeId& identity,
                                                                    std::chrono::seconds validity) {
  const std::string& ca = options_.address;
  auto root_pem = roots();
  if (!root_pem) return tl::unexpected(wrap(root_pem.error(), "CA " + ca));

  grpc::Metadata metadata;
  if (options_.token_path) {
    auto token = read_file(*options_.token_path, "CA token");
    if (!token) return tl::unexpected(wrap(token.error(), "CA " + ca));
    auto t = trim(*token);
    if (t.empty()) return failf("CA {}: the token file {} is empty", ca, *options_.token_path);
    metadata.emplace_back("authorization", fmt::format("Bearer {}", t));
  }
  if (!options_.cluster_id.empty()) metadata.emplace_back("clusterid", options_.cluster_id);

  IstioCertificateRequest req;
  req.set_csr(csr_pem);
  req.set_validity_duration(validity.count());
  if (options_.impersonate) {
    (*req.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(
        identity.uri());
  }
  std::string request;
  if (!req.SerializeToString(&request)) return failf("CA {}: cannot serialize the request", ca);

  grpc::ChannelOptions channel;
  channel.address = options_.address;
  channel.root_pem = std::move(*root_pem);
  std::string response;
  grpc::CallStatus status =
      grpc::unary(channel, std::string(kCreateCertificatePath), std::move(metadata), request,
                  &response, std::chrono::steady_clock::now() + options_.timeout);
  IstioCertificateResponse resp;
  if (status.ok() && !resp.ParseFromString(response)) {
    status = {grpc::StatusCode::kInternal, "the response does not parse"};
  }
  if (!status.ok()) {
    return failf("CA {}: CreateCertificate for {} failed: {} ({}): {}", ca, identity,
                 grpc::code_name(status.code), static_cast<int>(status.code), status.message);
  }
  std::vector<std::string> chain(resp.cert_chain().begin(), resp.cert_chain().end());
  if (auto st = check_ca_response(chain, identity, ca); !st) return tl::unexpected(st.error());
  return chain;
}

Status check_ca_response(const std::vector<std::string>& chain, const tls::SpiffeId& asked,
                         std::string_view ca) {
  if (chain.empty()) return failf("CA {}: empty certificate chain for {}", ca, asked);
  auto leaf = tls::parse_pem_certs(chain.front());
  if (!leaf || leaf->empty()) {
    return failf("CA {}: the leaf certificate for {} does not parse: {}", ca, asked,
                 leaf ? "no certificate" : leaf.error().message);
  }
  auto got = tls::spiffe_id_of(leaf->front().get());
  if (!got)
    return failf("CA {}: the leaf for {} has no SPIFFE identity: {}", ca, asked,
                 got.error().message);
  if (*got != asked)
    return failf("CA {}: CA returned a certificate for {}, asked for {}", ca, *got, asked);
  // The last element holds the root(s) the workload will trust: each must be a CA certificate,
  // and there must be more than the leaf itself.
  auto roots = tls::parse_pem_certs(chain.back());
  if (!roots)
    return failf("CA {}: the root element of the chain does not parse: {}", ca,
                 roots.error().message);
  size_t total = chain.size() == 1 ? roots->size() : chain.size();
  if (total < 2) return failf("CA {}: the chain for {} has no root after the leaf", ca, asked);
  for (const auto& r : *roots) {
    if (chain.size() == 1 && &r == &roots->front()) continue;  // the leaf, when all is one element
    if (X509_check_ca(r.get()) == 0) {
      return failf("CA {}: the chain for {} ends with a non-CA certificate ({})", ca, asked,
                   tls::subject_of(r.get()));
    }
  }
  return {};
}

}  // namespace zt::ca
