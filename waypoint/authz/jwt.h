// JSON Web Tokens as a RequestAuthentication jwtRule checks them (RFC 7515/7517/7519): a key set
// (JWKS) read once per configuration, and a token decoded and verified against it. Pure functions
// of (token, keys, issuer, audiences, now); OpenSSL does the cryptography.
//
// - Algorithms: RS256/384/512, PS256/384/512 (RSA keys), ES256/384/512 (EC P-256/384/521),
//   EdDSA (OKP Ed25519), HS256/384/512 (oct keys). "none" and anything else are refused.
// - Key choice: with a "kid" in the token's header, the keys with that kid or none; else every
//   key. A key whose "alg" is set must name the token's algorithm; its type must fit it.
// - Time: "exp" and "nbf" (seconds, numbers) with 60 s of clock skew, as Envoy's default; a token
//   without "exp" does not expire.
// - Audiences: with a non-empty list, the token's "aud" (a string or a list) must name one.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace zt::waypoint::authz {

// A jwksUri meshd may fetch: http:// or https:// (any case), a host without credentials, and
// only visible ASCII (no space or control character that could split the request). Returns the
// error, or "" when fine.
std::string jwks_uri_problem(std::string_view uri);

// Decodes base64url (RFC 4648 §5) with or without padding; nullopt on any other character.
std::optional<std::string> base64url_decode(std::string_view in);

class Jwks {
 public:
  struct Key {
    std::string kid;                 // "" when the JWK has none
    std::string alg;                 // "" when the JWK has none
    std::string kty;                 // RSA | EC | OKP | oct
    std::string crv;                 // EC / OKP curve
    std::shared_ptr<EVP_PKEY> pkey;  // RSA, EC, OKP
    std::string secret;              // oct
  };

  // `json`: {"keys": [JWK, ...]}. Keys of a type or curve we cannot use are skipped (listed in
  // skipped()); a set with no usable key, or text that is not a JWKS, is an error.
  static Result<Jwks> parse(std::string_view json);

  const std::vector<Key>& keys() const { return keys_; }
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  std::vector<Key> keys_;
  std::vector<std::string> skipped_;
};

// Why a token was refused; message() is Envoy's text for the same failure (the 401's body).
enum class JwtStatus {
  kOk,
  kBadFormat,
  kHeaderBadBase64,
  kHeaderBadJson,
  kHeaderBadAlg,
  kHeaderUnsupportedAlg,
  kHeaderBadKid,
  kPayloadBadBase64,
  kPayloadBadJson,
  kPayloadBadIss,
  kPayloadBadSub,
  kPayloadBadAud,
  kPayloadBadExp,
  kPayloadBadNbf,
  kPayloadBadIat,
  kSignatureBadBase64,
  kExpired,
  kNotYetValid,
  kAudienceNotAllowed,
  kNoMatchingKey,
  kVerificationFailed,
  kUnknownIssuer,
  kJwksUnavailable,
};
std::string_view message(JwtStatus s);

struct Jwt {
  std::string alg, kid;
  nlohmann::json payload;     // an object
  std::string payload_b64;    // as in the token (outputPayloadToHeader)
  std::string signing_input;  // "<header>.<payload>"
  std::string signature;      // decoded
  std::string issuer() const;
};

// Splits and decodes (no verification). The registered claims must have their types: iss and sub
// strings, aud a string or a list of strings, exp/nbf/iat non-negative integers.
tl::expected<Jwt, JwtStatus> decode_jwt(std::string_view token);

// The checks that need no key, in Envoy's order: time, then audiences.
JwtStatus check_claims(const Jwt& jwt, const std::vector<std::string>& audiences,
                       std::chrono::system_clock::time_point now);

// check_claims(), then the signature with `keys`.
JwtStatus verify_jwt(const Jwt& jwt, const Jwks& keys, const std::vector<std::string>& audiences,
                     std::chrono::system_clock::time_point now);

}  // namespace zt::waypoint::authz
