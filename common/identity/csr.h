// Workload keys and certificate signing requests in the shape Istio's CA expects (facts §3.2):
// ECDSA P-256, SHA-256 signature, empty subject, one critical subjectAltName holding exactly one
// URI, the SPIFFE id.
#pragma once

#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/tls/openssl.h"
#include "common/tls/spiffe.h"

namespace zt::identity {

Result<tls::EvpPkeyPtr> generate_p256_key();

// PEM "CERTIFICATE REQUEST" for `id`, signed by `key` (which must be an EC P-256 key).
Result<std::string> make_csr_pem(EVP_PKEY* key, const tls::SpiffeId& id);

struct ParsedCsr {
  tls::X509ReqPtr req;
  tls::EvpPkeyPtr public_key;
  std::string uri;   // the single URI SAN as written
  tls::SpiffeId id;  // the same, parsed
};

// Decodes a PEM CSR, verifies its self-signature and extracts its subjectAltName, which must hold
// exactly one entry, a SPIFFE URI. Anything else (bad PEM, bad signature, no SAN, several SANs,
// a DNS SAN, a non-SPIFFE URI) is an error saying which.
Result<ParsedCsr> parse_csr_pem(std::string_view pem);

// A subjectAltName extension holding exactly `uri`, marked critical (the subject is empty, so
// RFC 5280 requires that). Shared by the CSR and the certificates the CA issues.
Result<tls::X509ExtensionPtr> make_uri_san_extension(std::string_view uri);

}  // namespace zt::identity
