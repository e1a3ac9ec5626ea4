#include "waypoint/authz/jwt.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "common/tls/openssl.h"
#include "waypoint/base/strings.h"

namespace zt::waypoint::authz {
namespace {

using nlohmann::json;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, tls::OpensslDeleter<&OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, tls::OpensslDeleter<&OSSL_PARAM_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, tls::OpensslDeleter<&EVP_MD_CTX_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, tls::OpensslDeleter<&ECDSA_SIG_free>>;

constexpr auto kClockSkew = std::chrono::seconds(60);

std::shared_ptr<EVP_PKEY> shared_key(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

// A JWK member that must be a non-empty base64url string.
Result<std::string> member_bytes(const json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) return failf("\"{}\" is missing", name);
  auto bytes = base64url_decode(it->get<std::string>());
  if (!bytes || bytes->empty()) return failf("\"{}\" is not base64url", name);
  return *bytes;
}

tls::BignumPtr bignum(const std::string& bytes) {
  return tls::BignumPtr(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()), nullptr));
}

Result<std::shared_ptr<EVP_PKEY>> from_params(const char* type, OSSL_PARAM_BLD* bld) {
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  tls::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    return tls::fail_openssl(fmt::format("{} key", type));
  }
  return shared_key(key);
}

Result<std::shared_ptr<EVP_PKEY>> rsa_key(const json& jwk) {
  auto n = member_bytes(jwk, "n");
  if (!n) return tl::unexpected(n.error());
  auto e = member_bytes(jwk, "e");
  if (!e) return tl::unexpected(e.error());
  auto bn_n = bignum(*n), bn_e = bignum(*e);
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get())) {
    return tls::fail_openssl("RSA key");
  }
  return from_params("RSA", bld.get());
}

// The curve's OpenSSL group name and coordinate size in bytes.
std::optional<std::pair<const char*, size_t>> ec_curve(std::string_view crv) {
  if (crv == "P-256") return std::pair{"prime256v1", size_t{32}};
  if (crv == "P-384") return std::pair{"secp384r1", size_t{48}};
  if (crv == "P-521") return std::pair{"secp521r1", size_t{66}};
  return std::nullopt;
}

Result<std::shared_ptr<EVP_PKEY>> ec_key(const json& jwk, std::string_view crv) {
  auto curve = ec_curve(crv);
  if (!curve) return failf("unsupported curve \"{}\"", crv);
  auto x = member_bytes(jwk, "x");
  if (!x) return tl::unexpected(x.error());
  auto y = member_bytes(jwk, "y");
  if (!y) return tl::unexpected(y.error());
  if (x->size() != curve->second || y->size() != curve->second) {
    return failf("\"x\" and \"y\" must be {} bytes for {}", curve->second, crv);
  }
  std::string point = "\x04" + *x + *y;  // uncompressed
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve->first, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size())) {
    return tls::fail_openssl("EC key");
  }
  return from_params("EC", bld.get());
}

Result<std::shared_ptr<EVP_PKEY>> okp_key(const json& jwk, std::string_view crv) {
  if (crv != "Ed25519") return failf("unsupported curve \"{}\"", crv);
  auto x = member_bytes(jwk, "x");
  if (!x) return tl::unexpected(x.error());
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x->data()), x->size());
  if (!key) return tls::fail_openssl("Ed25519 key");
  return shared_key(key);
}

struct AlgSpec {
  std::string_view name;
  std::string_view kty;
  const EVP_MD* (*md)();  // null for EdDSA
  bool pss = false;
  size_t ec_size = 0;  // ES*: bytes of r (and of s)
};

const AlgSpec* alg_spec(std::string_view alg) {
  static const std::array<AlgSpec, 13> kAlgs{{
      {"RS256", "RSA", &EVP_sha256},
      {"RS384", "RSA", &EVP_sha384},
      {"RS512", "RSA", &EVP_sha512},
      {"PS256", "RSA", &EVP_sha256, true},
      {"PS384", "RSA", &EVP_sha384, true},
      {"PS512", "RSA", &EVP_sha512, true},
      {"ES256", "EC", &EVP_sha256, false, 32},
      {"ES384", "EC", &EVP_sha384, false, 48},
      {"ES512", "EC", &EVP_sha512, false, 66},
      {"EdDSA", "OKP", nullptr},
      {"HS256", "oct", &EVP_sha256},
      {"HS384", "oct", &EVP_sha384},
      {"HS512", "oct", &EVP_sha512},
  }};
  for (const auto& a : kAlgs) {
    if (a.name == alg) return &a;
  }
  return nullptr;
}

// The ES curve each algorithm is defined for (RFC 7518 §3.4).
std::string_view es_curve(std::string_view alg) {
  return alg == "ES256" ? "P-256" : alg == "ES384" ? "P-384" : "P-521";
}

bool verify_with(const Jwks::Key& key, const AlgSpec& a, const Jwt& jwt) {
  const auto* data = reinterpret_cast<const unsigned char*>(jwt.signing_input.data());
  const auto* sig = reinterpret_cast<const unsigned char*>(jwt.signature.data());
  if (a.kty == "oct") {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int len = 0;
    if (!HMAC(a.md(), key.secret.data(), static_cast<int>(key.secret.size()), data,
              jwt.signing_input.size(), mac.data(), &len)) {
      return false;
    }
    return len == jwt.signature.size() && CRYPTO_memcmp(mac.data(), sig, len) == 0;
  }
  std::string der;
  if (a.ec_size) {
    // JWS carries r || s; OpenSSL verifies DER.
    if (key.crv != es_curve(a.name) || jwt.signature.size() != 2 * a.ec_size) return false;
    EcdsaSigPtr es(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(sig, static_cast<int>(a.ec_size), nullptr);
    BIGNUM* s = BN_bin2bn(sig + a.ec_size, static_cast<int>(a.ec_size), nullptr);
    if (!es || !r || !s || !ECDSA_SIG_set0(es.get(), r, s)) {
      BN_free(r);
      BN_free(s);
      return false;
    }
    unsigned char* out = nullptr;
    const int len = i2d_ECDSA_SIG(es.get(), &out);
    if (len <= 0) return false;
    der.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    sig = reinterpret_cast<const unsigned char*>(der.data());
  }
  const size_t sig_len = a.ec_size ? der.size() : jwt.signature.size();
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, a.md ? a.md() : nullptr, nullptr,
                                   key.pkey.get()) <= 0) {
    return false;
  }
  if (a.pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0)) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), sig, sig_len, data, jwt.signing_input.size()) == 1;
}

// A time claim: a non-negative integer (a whole number written with a fraction, 1.7e9, too),
// capped so that adding the skew cannot overflow; nullopt for anything else.
std::optional<int64_t> numeric_time(const json& v) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 2;
  if (v.is_number_unsigned())
    return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), kMax));
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    return i < 0 ? std::nullopt : std::optional<int64_t>(std::min(i, kMax));
  }
  if (!v.is_number_float()) return std::nullopt;
  const double d = v.get<double>();
  if (!(d >= 0) || d != std::floor(d)) return std::nullopt;
  return d >= static_cast<double>(kMax) ? kMax : static_cast<int64_t>(d);
}

std::optional<int64_t> numeric_claim(const json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::nullopt;
  return numeric_time(*it);
}

}  // namespace

std::string jwks_uri_problem(std::string_view uri) {
  for (char c : uri) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return "must be visible ASCII (no spaces or control characters)";
  }
  const size_t scheme = uri.find("://");
  const std::string lower = scheme == uri.npos ? std::string() : to_lower(uri.substr(0, scheme));
  if (lower != "http" && lower != "https") return "must be an http:// or https:// URL";
  const std::string_view rest = uri.substr(scheme + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) return "has no host";
  if (authority.find('@') != authority.npos) return "must not carry credentials (user@host)";
  return {};
}

std::optional<std::string> base64url_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '-') {
      v = 62;
    } else if (c == '_') {
      v = 63;
    } else {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

Result<Jwks> Jwks::parse(std::string_view text) {
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return fail("the JWKS is not a JSON object");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) return fail("the JWKS has no \"keys\" list");
  Jwks out;
  for (size_t i = 0; i < keys->size(); ++i) {
    const json& jwk = (*keys)[i];
    auto str = [&](const char* name) {
      auto it = jwk.is_object() ? jwk.find(name) : jwk.end();
      return jwk.is_object() && it != jwk.end() && it->is_string() ? it->get<std::string>()
                                                                   : std::string();
    };
    Key key{str("kid"), str("alg"), str("kty"), str("crv"), nullptr, {}};
    const std::string what =
        fmt::format("key {}{}", i, key.kid.empty() ? "" : " (" + key.kid + ")");
    if (auto use = str("use"); !use.empty() && use != "sig") {
      out.skipped_.push_back(fmt::format("{}: \"use\" is \"{}\", not \"sig\"", what, use));
      continue;
    }
    Result<std::shared_ptr<EVP_PKEY>> pkey = fail("");
    if (key.kty == "RSA") {
      pkey = rsa_key(jwk);
    } else if (key.kty == "EC") {
      pkey = ec_key(jwk, key.crv);
    } else if (key.kty == "OKP") {
      pkey = okp_key(jwk, key.crv);
    } else if (key.kty == "oct") {
      auto k = member_bytes(jwk, "k");
      if (!k) {
        out.skipped_.push_back(fmt::format("{}: {}", what, k.error().describe()));
        continue;
      }
      key.secret = std::move(*k);
      out.keys_.push_back(std::move(key));
      continue;
    } else {
      out.skipped_.push_back(fmt::format("{}: unsupported key type \"{}\"", what, key.kty));
      continue;
    }
    if (!pkey) {
      out.skipped_.push_back(fmt::format("{}: {}", what, pkey.error().describe()));
      continue;
    }
    key.pkey = std::move(*pkey);
    out.keys_.push_back(std::move(key));
  }
  if (out.keys_.empty()) {
    std::string why;
    for (const auto& s : out.skipped_) why += "; " + s;
    return failf("the JWKS has no usable key{}", why);
  }
  return out;
}

std::string_view message(JwtStatus s) {
  switch (s) {
    case JwtStatus::kOk:
      return "OK";
    case JwtStatus::kBadFormat:
      return "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
    case JwtStatus::kHeaderBadBase64:
      return "Jwt header is an invalid Base64url encoded";
    case JwtStatus::kHeaderBadJson:
      return "Jwt header is an invalid JSON";
    case JwtStatus::kHeaderBadAlg:
      return "Jwt header [alg] field is required and must be a string";
    case JwtStatus::kHeaderUnsupportedAlg:
      return "Jwt header [alg] is not supported";
    case JwtStatus::kHeaderBadKid:
      return "Jwt header [kid] field is not a string";
    case JwtStatus::kPayloadBadIss:
      return "Jwt payload [iss] field is not a string";
    case JwtStatus::kPayloadBadSub:
      return "Jwt payload [sub] field is not a string";
    case JwtStatus::kPayloadBadAud:
      return "Jwt payload [aud] field is not a string or string list";
    case JwtStatus::kPayloadBadExp:
      return "Jwt payload [exp] field is not an integer";
    case JwtStatus::kPayloadBadNbf:
      return "Jwt payload [nbf] field is not an integer";
    case JwtStatus::kPayloadBadIat:
      return "Jwt payload [iat] field is not an integer";
    case JwtStatus::kPayloadBadBase64:
      return "Jwt payload is an invalid Base64url encoded";
    case JwtStatus::kPayloadBadJson:
      return "Jwt payload is an invalid JSON";
    case JwtStatus::kSignatureBadBase64:
      return "Jwt signature is an invalid Base64url encoded";
    case JwtStatus::kExpired:
      return "Jwt is expired";
    case JwtStatus::kNotYetValid:
      return "Jwt not yet valid";
    case JwtStatus::kAudienceNotAllowed:
      return "Audiences in Jwt are not allowed";
    case JwtStatus::kNoMatchingKey:
      return "Jwks doesn't have key to match kid or alg from Jwt";
    case JwtStatus::kVerificationFailed:
      return "Jwt verification fails";
    case JwtStatus::kUnknownIssuer:
      return "Jwt issuer is not configured";
    case JwtStatus::kJwksUnavailable:
      return "Jwks remote fetch is failed";
  }
  return "Jwt verification fails";
}

std::string Jwt::issuer() const {
  auto it = payload.find("iss");
  return it != payload.end() && it->is_string() ? it->get<std::string>() : std::string();
}

tl::expected<Jwt, JwtStatus> decode_jwt(std::string_view token) {
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == token.npos ? token.npos : token.find('.', d1 + 1);
  if (d2 == token.npos || token.find('.', d2 + 1) != token.npos) {
    return tl::unexpected(JwtStatus::kBadFormat);
  }
  Jwt jwt;
  auto header_text = base64url_decode(token.substr(0, d1));
  if (!header_text) return tl::unexpected(JwtStatus::kHeaderBadBase64);
  auto header = json::parse(*header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return tl::unexpected(JwtStatus::kHeaderBadJson);
  }
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return tl::unexpected(JwtStatus::kHeaderBadAlg);
  jwt.alg = alg->get<std::string>();
  if (!alg_spec(jwt.alg)) return tl::unexpected(JwtStatus::kHeaderUnsupportedAlg);
  if (auto kid = header.find("kid"); kid != header.end()) {
    if (!kid->is_string()) return tl::unexpected(JwtStatus::kHeaderBadKid);
    jwt.kid = kid->get<std::string>();
  }
  jwt.payload_b64 = std::string(token.substr(d1 + 1, d2 - d1 - 1));
  auto payload_text = base64url_decode(jwt.payload_b64);
  if (!payload_text) return tl::unexpected(JwtStatus::kPayloadBadBase64);
  jwt.payload = json::parse(*payload_text, nullptr, false);
  if (jwt.payload.is_discarded() || !jwt.payload.is_object()) {
    return tl::unexpected(JwtStatus::kPayloadBadJson);
  }
  const json& p = jwt.payload;
  auto wrong = [&](const char* name, auto&& fits) {
    auto it = p.find(name);
    return it != p.end() && !fits(*it);
  };
  auto is_string = [](const json& v) { return v.is_string(); };
  auto is_time = [](const json& v) { return numeric_time(v).has_value(); };
  if (wrong("iss", is_string)) return tl::unexpected(JwtStatus::kPayloadBadIss);
  if (wrong("sub", is_string)) return tl::unexpected(JwtStatus::kPayloadBadSub);
  if (wrong("aud", [](const json& v) {
        return v.is_string() || (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) {
                                   return e.is_string();
                                 }));
      })) {
    return tl::unexpected(JwtStatus::kPayloadBadAud);
  }
  if (wrong("exp", is_time)) return tl::unexpected(JwtStatus::kPayloadBadExp);
  if (wrong("nbf", is_time)) return tl::unexpected(JwtStatus::kPayloadBadNbf);
  if (wrong("iat", is_time)) return tl::unexpected(JwtStatus::kPayloadBadIat);
  auto signature = base64url_decode(token.substr(d2 + 1));
  if (!signature) return tl::unexpected(JwtStatus::kSignatureBadBase64);
  jwt.signature = std::move(*signature);
  jwt.signing_input = std::string(token.substr(0, d2));
  return jwt;
}

JwtStatus check_claims(const Jwt& jwt, const std::vector<std::string>& audiences,
                       std::chrono::system_clock::time_point now) {
  const int64_t t =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t skew = kClockSkew.count();
  if (auto exp = numeric_claim(jwt.payload, "exp"); exp && t > *exp + skew) {
    return JwtStatus::kExpired;
  }
  if (auto nbf = numeric_claim(jwt.payload, "nbf"); nbf && t + skew < *nbf) {
    return JwtStatus::kNotYetValid;
  }
  if (audiences.empty()) return JwtStatus::kOk;
  std::vector<std::string> aud;
  if (auto it = jwt.payload.find("aud"); it != jwt.payload.end()) {
    if (it->is_string()) aud.push_back(it->get<std::string>());
    if (it->is_array()) {
      for (const auto& v : *it) {
        if (v.is_string()) aud.push_back(v.get<std::string>());
      }
    }
  }
  for (const auto& want : audiences) {
    if (std::find(aud.begin(), aud.end(), want) != aud.end()) return JwtStatus::kOk;
  }
  return JwtStatus::kAudienceNotAllowed;
}

JwtStatus verify_jwt(const Jwt& jwt, const Jwks& keys, const std::vector<std::string>& audiences,
                     std::chrono::system_clock::time_point now) {
  const AlgSpec* a = alg_spec(jwt.alg);
  if (!a) return JwtStatus::kHeaderUnsupportedAlg;
  if (auto s = check_claims(jwt, audiences, now); s != JwtStatus::kOk) return s;
  bool candidate = false, verified = false;
  for (const auto& key : keys.keys()) {
    // (a kid on both sides must agree; a key without one may sign any token)
    if (!jwt.kid.empty() && !key.kid.empty() && key.kid != jwt.kid) continue;
    if (!key.alg.empty() && key.alg != jwt.alg) continue;
    if (key.kty != a->kty) continue;
    candidate = true;
    if (verify_with(key, *a, jwt)) {
      verified = true;
      break;
    }
  }
  // A failed verification leaves errors on this thread's OpenSSL queue: none may reach the
  // next unrelated OpenSSL error message.
  ERR_clear_error();
  if (!candidate) return JwtStatus::kNoMatchingKey;
  return verified ? JwtStatus::kOk : JwtStatus::kVerificationFailed;
}

}  // namespace zt::waypoint::authz
