// Keys and signed JWTs for tests of RequestAuthentication: a fresh key of each kind the waypoint
// verifies, its public JWK (and a JWKS), and tokens signed with it (OpenSSL).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

typedef struct evp_pkey_st EVP_PKEY;

namespace zt::testing {

std::string base64url(std::string_view bytes);

class JwtSigner {
 public:
  enum class Kind { kRsa, kEcP256, kEcP384, kEcP521, kEd25519, kHmac };
  // A new key; `kid` goes in its JWK and in every token's header ("" for none).
  JwtSigner(Kind kind, std::string kid);

  // The JWK (public part; the secret for kHmac) as a JSON object.
  nlohmann::json jwk() const;
  // {"keys": [jwk()]} as text.
  std::string jwks() const;
  // A token for `payload`; `alg` defaults to RS256, ES256/384/512, EdDSA or HS256 by kind (an
  // RSA key also signs RS384/512 and PS256/384/512, an oct key HS384/512).
  std::string sign(const nlohmann::json& payload, std::string alg = "") const;

 private:
  Kind kind_;
  std::string kid_;
  std::shared_ptr<EVP_PKEY> key_;
  std::string secret_;
};

// {"keys": [...]} of several signers' JWKs.
std::string jwks_of(const std::vector<const JwtSigner*>& signers);

}  // namespace zt::testing
