#include "common/ca/provider_factory.h"

#include "common/base/log.h"
#include "common/identity/certificate_authority.h"

namespace zt::ca {

Result<std::shared_ptr<identity::CertificateProvider>> make_certificate_provider(ProviderChoice c) {
  if (c.ca_address) {
    c.grpc.address = *c.ca_address;
    auto p = GrpcCaProvider::create(std::move(c.grpc));
    if (!p) return tl::unexpected(wrap(p.error(), "CA_ADDRESS"));
    ZT_LOG_INFO("component=ca msg=\"certificates from {}\"", *c.ca_address);
    return std::shared_ptr<identity::CertificateProvider>(std::move(*p));
  }
  Result<identity::CertificateAuthority> ca = fail("unset");
  if (c.ca_cert_path && c.ca_key_path) {
    ca = identity::CertificateAuthority::load(*c.ca_cert_path, *c.ca_key_path);
    if (!ca) {
      return tl::unexpected(wrap(ca.error(), "loading the built-in CA (--ca-cert/--ca-key)"));
    }
  } else {
    ZT_LOG_INFO("component=ca msg=\"no --ca-cert/--ca-key: generated a CA key pair for {}\"",
                c.trust_domain);
    ca = identity::CertificateAuthority::generate(c.trust_domain);
    if (!ca) return tl::unexpected(ca.error());
  }
  return std::shared_ptr<identity::CertificateProvider>(
      std::make_shared<identity::BuiltinCaProvider>(std::move(*ca)));
}

}  // namespace zt::ca
