#include "common/tls/context.h"

#include <openssl/err.h>

#include <cstring>

#include "common/base/log.h"
#include "common/tls/certs.h"

namespace zt::tls {
namespace {

// Key exchange groups, in preference order; the same set rustls (Istio's ztunnel) offers by default.
constexpr const char* kGroups = "X25519:P-256:P-384";

Status check_ssl(int rc, std::string_view what) {
  if (rc == 1) return {};
  return fail_openssl(what);
}

// Accepts only "h2". Without this callback OpenSSL would carry on without ALPN when the client's
// list has no match; HBONE is HTTP/2 only, so such a client is refused in the handshake.
int select_h2(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned int inlen, void* /*arg*/) {
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;  // malformed list
    if (len == kHboneAlpn.size() && std::memcmp(in + i + 1, kHboneAlpn.data(), len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Settings both sides share: protocol, ciphers, no resumption, our certificate, the trust roots.
Result<std::shared_ptr<asio::ssl::context>> make_base_context(const WorkloadCertificate& cert) {
  ERR_clear_error();
  if (cert.leaf() == nullptr || !cert.key) return fail("workload certificate has no leaf or no key");
  if (cert.roots.empty()) return fail("workload certificate has no trust roots");

  std::shared_ptr<asio::ssl::context> ctx;
  try {
    ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls);
  } catch (const std::exception& e) {
    // Only out-of-memory-like conditions get here; still an error value for the caller.
    return failf("creating SSL_CTX: {} ({})", e.what(), openssl_errors());
  }
  SSL_CTX* c = ctx->native_handle();

  if (auto s = check_ssl(SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION), "setting TLS 1.3 minimum"); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = check_ssl(SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION), "setting TLS 1.3 maximum"); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = check_ssl(SSL_CTX_set_ciphersuites(c, std::string(kHboneCipherSuites).c_str()),
                         "setting TLS 1.3 cipher suites");
      !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = check_ssl(SSL_CTX_set1_groups_list(c, kGroups), "setting key exchange groups"); !s) {
    return tl::unexpected(s.error());
  }
  // No resumption at all: every connection authenticates with the current certificate, so a
  // rotated or revoked identity never outlives its certificate through a ticket.
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (auto s = check_ssl(SSL_CTX_set_num_tickets(c, 0), "disabling session tickets"); !s) {
    return tl::unexpected(s.error());
  }
  // Send exactly the chain the CA gave us (leaf + intermediates), never one OpenSSL assembles
  // from the trust store.
  SSL_CTX_set_mode(c, SSL_MODE_NO_AUTO_CHAIN);

  if (auto s = check_ssl(SSL_CTX_use_certificate(c, cert.leaf()), "installing the leaf certificate"); !s) {
    return tl::unexpected(s.error());
  }
  for (size_t i = 1; i < cert.chain.size(); ++i) {
    if (auto s = check_ssl(static_cast<int>(SSL_CTX_add1_chain_cert(c, cert.chain[i].get())),
                           "installing an intermediate certificate");
        !s) {
      return tl::unexpected(s.error());
    }
  }
  if (auto s = check_ssl(SSL_CTX_use_PrivateKey(c, cert.key.get()), "installing the private key"); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = check_ssl(SSL_CTX_check_private_key(c), "checking the private key against the leaf"); !s) {
    return tl::unexpected(s.error());
  }

  X509_STORE* store = SSL_CTX_get_cert_store(c);
  for (const auto& root : cert.roots) {
    if (auto s = check_ssl(X509_STORE_add_cert(store, root.get()), "adding a trust root"); !s) {
      return tl::unexpected(s.error());
    }
  }
  // A root from the CA is a trust anchor even when it is not self-signed (an intermediate the
  // mesh was told to trust), as in Istio's verifiers.
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  return ctx;
}

std::string describe_verify_failure(X509_STORE_CTX* sc) {
  int err = X509_STORE_CTX_get_error(sc);
  int depth = X509_STORE_CTX_get_error_depth(sc);
  X509* cert = X509_STORE_CTX_get_current_cert(sc);
  return fmt::format("{} at depth {} (serial {}, SANs [{}])", X509_verify_cert_error_string(err), depth,
                     serial_hex(cert), fmt::join(uri_sans(cert), ", "));
}

}  // namespace

std::string WorkloadCertificate::serial() const { return serial_hex(leaf()); }

std::string WorkloadCertificate::chain_pem() const { return certs_to_pem(chain); }

std::string WorkloadCertificate::roots_pem() const { return certs_to_pem(roots); }

std::string WorkloadCertificate::key_pem() const { return key_to_pem(key.get()); }

Result<WorkloadCertificate> make_workload_certificate(std::string_view key_pem,
                                                      const std::vector<std::string>& chain_pem) {
  auto key = parse_pem_key(key_pem);
  if (!key) return tl::unexpected(wrap(key.error(), "reading the workload private key"));
  return make_workload_certificate(std::move(*key), chain_pem);
}

Result<WorkloadCertificate> make_workload_certificate(EvpPkeyPtr key,
                                                      const std::vector<std::string>& chain_pem) {
  WorkloadCertificate out;
  if (!key) return fail("no workload private key");
  out.key = std::move(key);

  if (chain_pem.empty()) return fail("empty certificate chain");
  std::vector<std::vector<X509Ptr>> parts;
  for (size_t i = 0; i < chain_pem.size(); ++i) {
    auto certs = parse_pem_certs(chain_pem[i]);
    if (!certs) {
      return tl::unexpected(wrap(certs.error(), fmt::format("certificate chain element #{}", i + 1)));
    }
    parts.push_back(std::move(*certs));
  }
  if (parts.size() == 1) {
    auto& only = parts.front();
    if (only.size() < 2) {
      return fail("certificate chain has a single certificate: need the leaf and at least one root");
    }
    out.roots.push_back(std::move(only.back()));
    only.pop_back();
    out.chain = std::move(only);
  } else {
    out.roots = std::move(parts.back());
    parts.pop_back();
    for (auto& p : parts) {
      for (auto& c : p) out.chain.push_back(std::move(c));
    }
  }

  X509* leaf = out.leaf();
  ERR_clear_error();
  if (X509_check_private_key(leaf, out.key.get()) != 1) {
    return fail_openssl("the private key does not match the leaf certificate");
  }
  auto id = spiffe_id_of(leaf);
  if (!id) return tl::unexpected(wrap(id.error(), "leaf certificate"));
  out.id = std::move(*id);
  out.not_before = not_before(leaf);
  out.not_after = not_after(leaf);

  // The chain must lead to the roots we will also use to verify peers; a CA answer that mixes up
  // certificates would otherwise only show up as handshake failures on other nodes.
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr sc(X509_STORE_CTX_new());
  if (!store || !untrusted || !sc) return fail_openssl("allocating a certificate store");
  for (const auto& root : out.roots) {
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) return fail_openssl("adding a trust root");
  }
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
  for (size_t i = 1; i < out.chain.size(); ++i) {
    X509Ptr ref = up_ref(out.chain[i].get());
    if (!ref || sk_X509_push(untrusted.get(), ref.get()) == 0) return fail_openssl("building the chain");
    ref.release();  // now owned by the stack
  }
  if (X509_STORE_CTX_init(sc.get(), store.get(), leaf, untrusted.get()) != 1) {
    return fail_openssl("initialising chain verification");
  }
  if (X509_verify_cert(sc.get()) != 1) {
    std::string why = describe_verify_failure(sc.get());
    ERR_clear_error();
    return failf("certificate chain for {} does not lead to its roots: {}", out.id, why);
  }
  return out;
}

Result<std::shared_ptr<asio::ssl::context>> make_hbone_server_context(const WorkloadCertificate& cert) {
  auto ctx = make_base_context(cert);
  if (!ctx) return tl::unexpected(wrap(ctx.error(), "building the HBONE server TLS context"));
  SSL_CTX_set_alpn_select_cb((*ctx)->native_handle(), select_h2, nullptr);

  boost::system::error_code ec;
  (*ctx)->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return failf("building the HBONE server TLS context: setting verify mode: {}", ec.message());
  // The first SPIFFE SAN is the identity authorization and telemetry will see, so that is the
  // one whose trust domain must be ours.
  (*ctx)->set_verify_callback(
      [trust_domain = cert.id.trust_domain](bool preverified, asio::ssl::verify_context& vc) {
        X509_STORE_CTX* sc = vc.native_handle();
        if (!preverified) {
          ZT_LOG_DEBUG("component=tls rejecting client certificate: {}", describe_verify_failure(sc));
          return false;
        }
        if (X509_STORE_CTX_get_error_depth(sc) != 0) return true;
        X509* leaf = X509_STORE_CTX_get_current_cert(sc);
        auto id = spiffe_id_of(leaf);
        if (!id) {
          ZT_LOG_DEBUG("component=tls rejecting client certificate: {}", id.error().message);
          X509_STORE_CTX_set_error(sc, X509_V_ERR_APPLICATION_VERIFICATION);
          return false;
        }
        if (id->trust_domain != trust_domain) {
          ZT_LOG_DEBUG("component=tls rejecting client certificate: identity {} is not in trust domain {}",
                       *id, trust_domain);
          X509_STORE_CTX_set_error(sc, X509_V_ERR_APPLICATION_VERIFICATION);
          return false;
        }
        return true;
      },
      ec);
  if (ec) return failf("building the HBONE server TLS context: setting verify callback: {}", ec.message());
  return ctx;
}

Result<std::shared_ptr<asio::ssl::context>> make_hbone_client_context(const WorkloadCertificate& cert) {
  auto ctx = make_base_context(cert);
  if (!ctx) return tl::unexpected(wrap(ctx.error(), "building the HBONE client TLS context"));
  static constexpr unsigned char kAlpnWire[] = {2, 'h', '2'};
  // Note the inverted convention: 0 is success for this one.
  if (SSL_CTX_set_alpn_protos((*ctx)->native_handle(), kAlpnWire, sizeof(kAlpnWire)) != 0) {
    return fail_openssl("building the HBONE client TLS context: setting ALPN");
  }
  boost::system::error_code ec;
  (*ctx)->set_verify_mode(asio::ssl::verify_peer, ec);
  if (ec) return failf("building the HBONE client TLS context: setting verify mode: {}", ec.message());
  (*ctx)->set_verify_callback(
      [](bool preverified, asio::ssl::verify_context& vc) {
        if (!preverified) {
          ZT_LOG_DEBUG("component=tls rejecting server certificate: {}",
                       describe_verify_failure(vc.native_handle()));
        }
        return preverified;
      },
      ec);
  if (ec) return failf("building the HBONE client TLS context: setting verify callback: {}", ec.message());
  return ctx;
}

Result<SpiffeId> peer_identity(const SSL* ssl) {
  if (ssl == nullptr) return fail("no TLS connection");
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return fail("peer presented no certificate");
  auto id = spiffe_id_of(peer);
  if (!id) return tl::unexpected(wrap(id.error(), "peer certificate"));
  return id;
}

Status verify_peer_identity(const SSL* ssl, std::span<const SpiffeId> expected) {
  if (ssl == nullptr) return fail("no TLS connection");
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return fail("peer presented no certificate");
  if (long vr = SSL_get_verify_result(ssl); vr != X509_V_OK) {
    return failf("peer certificate chain did not verify: {}", X509_verify_cert_error_string(vr));
  }
  auto sans = uri_sans(peer);
  for (const auto& san : sans) {
    auto id = SpiffeId::parse(san);
    if (!id) continue;
    for (const auto& want : expected) {
      if (*id == want) return {};
    }
  }
  std::vector<std::string> want;
  want.reserve(expected.size());
  for (const auto& e : expected) want.push_back(e.uri());
  return failf("peer did not present the expected SAN: got {}, want one of [{}]",
               sans.empty() ? std::string("no URI SAN") : fmt::format("{}", fmt::join(sans, ", ")),
               fmt::join(want, ", "));
}

std::string negotiated_summary(const SSL* ssl) {
  if (ssl == nullptr) return "no TLS connection";
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  return fmt::format("{} {} alpn={}", SSL_get_version(ssl),
                     cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "none",
                     alpn_len > 0 ? std::string_view(reinterpret_cast<const char*>(alpn), alpn_len)
                                  : std::string_view("none"));
}

}  // namespace zt::tls
