#include "tests/support/jwt_signer.h"

#include <stdexcept>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

namespace zt::testing {
namespace {

std::string bn_bytes(const EVP_PKEY* key, const char* param) {
  BIGNUM* bn = nullptr;
  if (!EVP_PKEY_get_bn_param(key, param, &bn)) throw std::runtime_error("EVP_PKEY_get_bn_param");
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::string digest_sign(EVP_PKEY* key, const EVP_MD* md, bool pss, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  size_t len = 0;
  std::string sig;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  bool ok = EVP_DigestSignInit(ctx, &pctx, md, nullptr, key) > 0 &&
            (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
                      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0)) &&
            EVP_DigestSign(ctx, nullptr, &len, in, data.size()) > 0;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) >
         0;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("EVP_DigestSign");
  return sig;
}

// DER ECDSA signature -> JWS r || s, each `size` bytes.
std::string raw_ecdsa(const std::string& der, size_t size) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (!sig) throw std::runtime_error("d2i_ECDSA_SIG");
  std::string out(2 * size, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(out.data()),
               static_cast<int>(size));
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(out.data() + size),
               static_cast<int>(size));
  ECDSA_SIG_free(sig);
  return out;
}

size_t coordinate_size(JwtSigner::Kind kind) {
  return kind == JwtSigner::Kind::kEcP256 ? 32 : kind == JwtSigner::Kind::kEcP384 ? 48 : 66;
}

}  // namespace

std::string base64url(std::string_view bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

JwtSigner::JwtSigner(Kind kind, std::string kid) : kind_(kind), kid_(std::move(kid)) {
  EVP_PKEY* key = nullptr;
  switch (kind) {
    case Kind::kRsa:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
      break;
    case Kind::kEcP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case Kind::kEcP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case Kind::kEcP521:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
      break;
    case Kind::kEd25519:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
    case Kind::kHmac:
      secret_.resize(32);
      RAND_bytes(reinterpret_cast<unsigned char*>(secret_.data()), 32);
      return;
  }
  if (!key) throw std::runtime_error("EVP_PKEY_Q_keygen");
  key_ = std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

nlohmann::json JwtSigner::jwk() const {
  nlohmann::json j;
  if (!kid_.empty()) j["kid"] = kid_;
  switch (kind_) {
    case Kind::kRsa:
      j["kty"] = "RSA";
      j["n"] = base64url(bn_bytes(key_.get(), OSSL_PKEY_PARAM_RSA_N));
      j["e"] = base64url(bn_bytes(key_.get(), OSSL_PKEY_PARAM_RSA_E));
      break;
    case Kind::kEcP256:
    case Kind::kEcP384:
    case Kind::kEcP521: {
      const size_t n = coordinate_size(kind_);
      std::string point(1 + 2 * n, '\0');
      size_t len = 0;
      EVP_PKEY_get_octet_string_param(key_.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                      reinterpret_cast<unsigned char*>(point.data()), point.size(),
                                      &len);
      if (len != point.size() || point[0] != 4) throw std::runtime_error("EC public key");
      j["kty"] = "EC";
      j["crv"] = kind_ == Kind::kEcP256 ? "P-256" : kind_ == Kind::kEcP384 ? "P-384" : "P-521";
      j["x"] = base64url(point.substr(1, n));
      j["y"] = base64url(point.substr(1 + n, n));
      break;
    }
    case Kind::kEd25519: {
      std::string raw(32, '\0');
      size_t len = raw.size();
      EVP_PKEY_get_raw_public_key(key_.get(), reinterpret_cast<unsigned char*>(raw.data()), &len);
      j["kty"] = "OKP";
      j["crv"] = "Ed25519";
      j["x"] = base64url(raw);
      break;
    }
    case Kind::kHmac:
      j["kty"] = "oct";
      j["k"] = base64url(secret_);
      break;
  }
  return j;
}

std::string JwtSigner::jwks() const { return jwks_of({this}); }

std::string JwtSigner::sign(const nlohmann::json& payload, std::string alg) const {
  if (alg.empty()) {
    alg = kind_ == Kind::kRsa       ? "RS256"
          : kind_ == Kind::kEcP256  ? "ES256"
          : kind_ == Kind::kEcP384  ? "ES384"
          : kind_ == Kind::kEcP521  ? "ES512"
          : kind_ == Kind::kEd25519 ? "EdDSA"
                                    : "HS256";
  }
  // The digest the algorithm names (RS256, PS384, ES512, HS256, ...).
  const EVP_MD* md = alg.ends_with("384")   ? EVP_sha384()
                     : alg.ends_with("512") ? EVP_sha512()
                                            : EVP_sha256();
  nlohmann::json header{{"alg", alg}, {"typ", "JWT"}};
  if (!kid_.empty()) header["kid"] = kid_;
  const std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
  std::string sig;
  if (kind_ == Kind::kHmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(md, secret_.data(), static_cast<int>(secret_.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    sig.assign(reinterpret_cast<const char*>(mac), len);
  } else if (kind_ == Kind::kEd25519) {
    sig = digest_sign(key_.get(), nullptr, false, input);
  } else if (kind_ == Kind::kRsa) {
    sig = digest_sign(key_.get(), md, alg.starts_with("PS"), input);
  } else {
    sig = raw_ecdsa(digest_sign(key_.get(), md, false, input), coordinate_size(kind_));
  }
  return input + "." + base64url(sig);
}

std::string jwks_of(const std::vector<const JwtSigner*>& signers) {
  nlohmann::json keys = nlohmann::json::array();
  for (const auto* s : signers) keys.push_back(s->jwk());
  return nlohmann::json{{"keys", keys}}.dump();
}

}  // namespace zt::testing
