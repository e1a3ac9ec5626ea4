// TLS for HBONE (DESIGN §4, facts §2.1 and §3.4): TLS 1.3 only, TLS_AES_256_GCM_SHA384 and
// TLS_AES_128_GCM_SHA256 only, ALPN "h2", no SNI, no session tickets and no resumption, mutual
// authentication required. Peers are identified by the SPIFFE URI SAN of their leaf certificate:
// the server (inbound) accepts any client whose chain verifies and whose identity is in the
// server's trust domain (who may connect is authorization's job); the client (outbound) verifies
// the chain in the handshake and then checks the SAN against the identities it expected with
// verify_peer_identity(), since it is the destination, not a host name, that fixes the identity.
#pragma once

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/tls/openssl.h"
#include "common/tls/spiffe.h"

namespace zt::tls {

// The workload's key and certificate chain as the CA issued them. Move-only (owns OpenSSL
// objects); shared between connections through the immutable WorkloadCredentials.
struct WorkloadCertificate {
  SpiffeId id;  // first SPIFFE URI SAN of the leaf
  EvpPkeyPtr key;
  std::vector<X509Ptr> chain;  // leaf first, then intermediates; never the roots
  std::vector<X509Ptr> roots;  // trust anchors for peers' chains
  std::chrono::system_clock::time_point not_before, not_after;  // of the leaf

  X509* leaf() const { return chain.empty() ? nullptr : chain.front().get(); }
  std::string serial() const;     // of the leaf, hex
  std::string chain_pem() const;  // leaf and intermediates
  std::string roots_pem() const;
  std::string key_pem() const;
};

// Builds a WorkloadCertificate from a PEM key and the chain the CA returned (Istio's
// IstioCertificateResponse.cert_chain: leaf first, root last; an element may hold several
// concatenated certificates and the last element may hold several roots, all trusted). With a
// single element its certificates are split the same way: first is the leaf, last is the root.
// Checks that the key matches the leaf, the leaf has a SPIFFE URI SAN and the chain leads to the
// roots. Validity dates are not checked here: deciding what to do with an expired certificate is
// the caller's business (the certificate manager refreshes it; tests present it on purpose).
Result<WorkloadCertificate> make_workload_certificate(std::string_view key_pem,
                                                      const std::vector<std::string>& chain_pem);
// The same with a key already in memory (the certificate manager generated it for the CSR).
Result<WorkloadCertificate> make_workload_certificate(EvpPkeyPtr key,
                                                      const std::vector<std::string>& chain_pem);

// The only cipher suites HBONE allows, in OpenSSL's TLS 1.3 syntax.
inline constexpr std::string_view kHboneCipherSuites = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256";
inline constexpr std::string_view kHboneAlpn = "h2";

// Server side of HBONE (the inbound listener on 15008). Requires a client certificate; the
// handshake fails when the client's chain does not verify against cert.roots, when its leaf's
// first SPIFFE URI SAN is missing or in another trust domain than cert.id, or when the client
// offers ALPN without "h2".
Result<std::shared_ptr<asio::ssl::context>> make_hbone_server_context(const WorkloadCertificate& cert);

// Client side of HBONE. Presents `cert`, verifies the server's chain against cert.roots, offers
// ALPN "h2"; sends no SNI and checks no host name. Call verify_peer_identity() after the handshake.
Result<std::shared_ptr<asio::ssl::context>> make_hbone_client_context(const WorkloadCertificate& cert);

using TlsStream = asio::ssl::stream<tcp::socket>;

// The first SPIFFE URI SAN of the peer's leaf certificate (after a completed handshake).
Result<SpiffeId> peer_identity(const SSL* ssl);

// Succeeds when the handshake verified the peer's chain and any URI SAN of the peer's leaf is one
// of `expected`; otherwise "peer did not present the expected SAN: got X, want one of [..]".
Status verify_peer_identity(const SSL* ssl, std::span<const SpiffeId> expected);

// "TLSv1.3 TLS_AES_256_GCM_SHA384 alpn=h2" (alpn=none when none was agreed), for logs.
std::string negotiated_summary(const SSL* ssl);

}  // namespace zt::tls
