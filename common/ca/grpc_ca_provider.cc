#include "common/ca/grpc_ca_provider.h"

#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <openssl/x509v3.h>

#include "common/tls/certs.h"
#include "istio/v1/auth/ca.grpc.pb.h"

namespace zt::ca {
namespace {

using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
using istio::v1::auth::IstioCertificateService;

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

std::string_view status_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK:
      return "OK";
    case grpc::CANCELLED:
      return "CANCELLED";
    case grpc::UNKNOWN:
      return "UNKNOWN";
    case grpc::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::ABORTED:
      return "ABORTED";
    case grpc::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::INTERNAL:
      return "INTERNAL";
    case grpc::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN_CODE";
  }
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

Result<std::shared_ptr<grpc::Channel>> GrpcCaProvider::channel() {
  std::string roots;
  if (tls_) {
    auto r = read_file(*options_.root_ca_path, "CA root");
    if (!r) return tl::unexpected(r.error());
    if (trim(*r).empty()) return failf("the CA root file {} is empty", *options_.root_ca_path);
    roots = std::move(*r);
  }
  std::lock_guard lock(mu_);
  if (channel_ && roots == channel_roots_) return channel_;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.max_reconnect_backoff.count()));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (tls_) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = roots;
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(target_, creds, args);
  channel_roots_ = std::move(roots);
  return channel_;
}

Result<std::vector<std::string>> GrpcCaProvider::create_certificate(const std::string& csr_pem,
                                                                    const tls::SpiffeId& identity,
                                                                    std::chrono::seconds validity) {
  const std::string& ca = options_.address;
  auto ch = channel();
  if (!ch) return tl::unexpected(wrap(ch.error(), "CA " + ca));

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + options_.timeout);
  if (options_.token_path) {
    auto token = read_file(*options_.token_path, "CA token");
    if (!token) return tl::unexpected(wrap(token.error(), "CA " + ca));
    auto t = trim(*token);
    if (t.empty()) return failf("CA {}: the token file {} is empty", ca, *options_.token_path);
    ctx.AddMetadata("authorization", fmt::format("Bearer {}", t));
  }
  if (!options_.cluster_id.empty()) ctx.AddMetadata("clusterid", options_.cluster_id);

  IstioCertificateRequest req;
  req.set_csr(csr_pem);
  req.set_validity_duration(validity.count());
  if (options_.impersonate) {
    (*req.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(
        identity.uri());
  }
  IstioCertificateResponse resp;
  auto stub = IstioCertificateService::NewStub(*ch);
  grpc::Status status = stub->CreateCertificate(&ctx, req, &resp);
  if (!status.ok()) {
    return failf("CA {}: CreateCertificate for {} failed: {} ({}): {}", ca, identity,
                 status_name(status.error_code()), static_cast<int>(status.error_code()),
                 status.error_message());
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
