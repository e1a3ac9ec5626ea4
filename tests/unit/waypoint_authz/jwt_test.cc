// RequestAuthentication at the waypoint: JWKS reading, JWT verification with real keys of every
// kind (OpenSSL), where tokens are taken from, what a verified token does to the request, and
// the request.auth.* attributes AuthorizationPolicy sees.
#include "waypoint/authz/jwt.h"

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/jwt_signer.h"
#include "waypoint/authz/parse.h"
#include "waypoint/authz/policy.h"
#include "waypoint/authz/request_authn.h"

namespace zt::waypoint::authz {
namespace {

using nlohmann::json;
using testing::JwtSigner;
using Clock = std::chrono::system_clock;

int64_t seconds(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

JwtStatus check(const std::string& token, const std::string& jwks,
                const std::vector<std::string>& audiences = {},
                Clock::time_point now = Clock::now()) {
  auto jwt = decode_jwt(token);
  if (!jwt) return jwt.error();
  auto keys = Jwks::parse(jwks);
  EXPECT_TRUE(keys) << keys.error().describe();
  return verify_jwt(*jwt, *keys, audiences, now);
}

TEST(Jwt, EveryKindOfKeyVerifiesItsTokensAndNoOtherKeys) {
  const JwtSigner rsa(JwtSigner::Kind::kRsa, "rsa");
  const JwtSigner ec(JwtSigner::Kind::kEcP256, "ec");
  const JwtSigner ec384(JwtSigner::Kind::kEcP384, "ec384");
  const JwtSigner ec521(JwtSigner::Kind::kEcP521, "ec521");
  const JwtSigner ed(JwtSigner::Kind::kEd25519, "");
  const JwtSigner hs(JwtSigner::Kind::kHmac, "hs");
  const json payload{{"iss", "https://issuer.example"}, {"sub", "alice"}};
  const std::string all = testing::jwks_of({&rsa, &ec, &ec384, &ec521, &ed, &hs});
  for (auto [signer, alg] : std::vector<std::pair<const JwtSigner*, std::string>>{
           {&rsa, "RS256"},
           {&rsa, "RS384"},
           {&rsa, "RS512"},
           {&rsa, "PS256"},
           {&rsa, "PS384"},
           {&rsa, "PS512"},
           {&ec, "ES256"},
           {&ec384, "ES384"},
           {&ec521, "ES512"},  // r || s of 66 bytes each
           {&ed, "EdDSA"},
           {&hs, "HS256"},
           {&hs, "HS384"},
           {&hs, "HS512"}}) {
    const auto token = signer->sign(payload, alg);
    EXPECT_EQ(check(token, all), JwtStatus::kOk) << alg << " " << token;
    EXPECT_EQ(check(token, signer->jwks()), JwtStatus::kOk) << alg;
    // The same signature under another algorithm of the key's type does not verify.
    const std::string other =
        alg.ends_with("256") ? alg.substr(0, 2) + "384" : alg.substr(0, 2) + "256";
    if (alg != "EdDSA") {
      auto h = json{{"alg", other}, {"kid", signer->jwk().value("kid", "")}};
      auto relabelled = testing::base64url(h.dump()) + token.substr(token.find('.'));
      EXPECT_NE(check(relabelled, all), JwtStatus::kOk) << alg << " as " << other;
    }
  }
  // A key without a kid verifies tokens that name one (jwt_verify_lib's rule).
  const JwtSigner anonymous(JwtSigner::Kind::kEcP256, "");
  auto anonymous_jwk = anonymous.jwk();
  const JwtSigner named(JwtSigner::Kind::kEcP256, "some-kid");
  auto token_with_kid = named.sign(payload);
  auto named_jwk = named.jwk();
  named_jwk.erase("kid");
  EXPECT_EQ(check(token_with_kid, json{{"keys", {named_jwk}}}.dump()), JwtStatus::kOk);
  EXPECT_EQ(check(token_with_kid, json{{"keys", {anonymous_jwk}}}.dump()),
            JwtStatus::kVerificationFailed);
  // A key of another signer with the same kid: the signature does not verify.
  const JwtSigner other_rsa(JwtSigner::Kind::kRsa, "rsa");
  EXPECT_EQ(check(rsa.sign(payload), other_rsa.jwks()), JwtStatus::kVerificationFailed);
  // No key with the token's kid, or none of a type for its algorithm.
  EXPECT_EQ(check(rsa.sign(payload), ec.jwks()), JwtStatus::kNoMatchingKey);
  EXPECT_EQ(check(ed.sign(payload), rsa.jwks()), JwtStatus::kNoMatchingKey);
  // An EC signature verified as HS256 with the same kid: a key's type must fit the algorithm.
  auto hs_as_ec = JwtSigner(JwtSigner::Kind::kHmac, "ec").sign(payload);
  EXPECT_EQ(check(hs_as_ec, ec.jwks()), JwtStatus::kNoMatchingKey);
}

TEST(Jwt, ATamperedOrMalformedTokenIsRefusedWithEnvoysReason) {
  const JwtSigner rsa(JwtSigner::Kind::kRsa, "k1");
  const auto token = rsa.sign({{"iss", "i"}, {"sub", "alice"}});
  const size_t d1 = token.find('.'), d2 = token.rfind('.');
  // The payload swapped for another (sub bob), the signature kept.
  const auto forged =
      token.substr(0, d1 + 1) + testing::base64url(R"({"iss":"i","sub":"bob"})") + token.substr(d2);
  EXPECT_EQ(check(forged, rsa.jwks()), JwtStatus::kVerificationFailed);
  EXPECT_EQ(message(JwtStatus::kVerificationFailed), "Jwt verification fails");

  EXPECT_EQ(check("abc", rsa.jwks()), JwtStatus::kBadFormat);
  EXPECT_EQ(check("a.b.c.d", rsa.jwks()), JwtStatus::kBadFormat);
  EXPECT_EQ(check("!!." + token.substr(d1 + 1), rsa.jwks()), JwtStatus::kHeaderBadBase64);
  EXPECT_EQ(check(testing::base64url("{") + token.substr(d1), rsa.jwks()),
            JwtStatus::kHeaderBadJson);
  EXPECT_EQ(check(testing::base64url(R"({"typ":"JWT"})") + token.substr(d1), rsa.jwks()),
            JwtStatus::kHeaderBadAlg);
  // "none" is never accepted, with or without a signature.
  const auto none = testing::base64url(R"({"alg":"none"})") + "." +
                    testing::base64url(R"({"iss":"i","sub":"x"})") + ".";
  EXPECT_EQ(check(none, rsa.jwks()), JwtStatus::kHeaderUnsupportedAlg);
  EXPECT_EQ(check(token.substr(0, d1 + 1) + "e30" + token.substr(d2), rsa.jwks()),
            JwtStatus::kVerificationFailed);  // payload {} (valid JSON, wrong signature)
  EXPECT_EQ(check(token.substr(0, d1 + 1) + "W10" + token.substr(d2), rsa.jwks()),
            JwtStatus::kPayloadBadJson);  // payload [] is not an object
  EXPECT_EQ(check(token.substr(0, d2 + 1) + "*", rsa.jwks()), JwtStatus::kSignatureBadBase64);
}

TEST(Jwt, ExpiryAndNotBeforeAllowSixtySecondsOfSkew) {
  const JwtSigner ec(JwtSigner::Kind::kEcP256, "k");
  const auto now = Clock::now();
  const int64_t t = seconds(now);
  auto at = [&](const char* claim, int64_t v) {
    return check(ec.sign({{"iss", "i"}, {claim, v}}), ec.jwks(), {}, now);
  };
  EXPECT_EQ(at("exp", t + 10), JwtStatus::kOk);
  EXPECT_EQ(at("exp", t - 30), JwtStatus::kOk);
  EXPECT_EQ(at("exp", t - 61), JwtStatus::kExpired);
  EXPECT_EQ(at("nbf", t + 30), JwtStatus::kOk);
  EXPECT_EQ(at("nbf", t + 120), JwtStatus::kNotYetValid);
  // The time is checked before the keys, as Envoy does: an expired token is "expired" whoever
  // signed it.
  const JwtSigner other(JwtSigner::Kind::kEcP256, "k");
  EXPECT_EQ(check(other.sign({{"exp", t - 1000}}), ec.jwks(), {}, now), JwtStatus::kExpired);
  // Claims of the wrong type are refused, not read as absent (a token that never expires).
  EXPECT_EQ(at("exp", -5), JwtStatus::kPayloadBadExp);
  EXPECT_EQ(check(ec.sign({{"exp", "4102444800"}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadExp);
  EXPECT_EQ(check(ec.sign({{"exp", 1.5}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadExp);
  EXPECT_EQ(check(ec.sign({{"exp", static_cast<double>(t + 10)}}), ec.jwks(), {}, now),
            JwtStatus::kOk);  // a whole number written as a double
  EXPECT_EQ(check(ec.sign({{"nbf", true}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadNbf);
  EXPECT_EQ(check(ec.sign({{"iat", "x"}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadIat);
  EXPECT_EQ(check(ec.sign({{"sub", 7}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadSub);
  EXPECT_EQ(check(ec.sign({{"iss", json::array()}}), ec.jwks(), {}, now),
            JwtStatus::kPayloadBadIss);
  EXPECT_EQ(check(ec.sign({{"aud", {"a", 1}}}), ec.jwks(), {}, now), JwtStatus::kPayloadBadAud);
  EXPECT_EQ(message(JwtStatus::kPayloadBadExp), "Jwt payload [exp] field is not an integer");
}

TEST(Jwt, AudiencesMustNameOneAllowedWhenTheRuleListsThem) {
  const JwtSigner hs(JwtSigner::Kind::kHmac, "");
  EXPECT_EQ(check(hs.sign({{"aud", "a"}}), hs.jwks(), {"a", "b"}), JwtStatus::kOk);
  EXPECT_EQ(check(hs.sign({{"aud", json::array({"x", "b"})}}), hs.jwks(), {"a", "b"}),
            JwtStatus::kOk);
  EXPECT_EQ(check(hs.sign({{"aud", "c"}}), hs.jwks(), {"a", "b"}), JwtStatus::kAudienceNotAllowed);
  EXPECT_EQ(check(hs.sign({{"sub", "s"}}), hs.jwks(), {"a"}), JwtStatus::kAudienceNotAllowed);
  EXPECT_EQ(check(hs.sign({{"aud", "c"}}), hs.jwks(), {}), JwtStatus::kOk);
}

TEST(Jwt, AKeySetSaysWhichKeysItCannotUse) {
  EXPECT_FALSE(Jwks::parse("not json"));
  EXPECT_FALSE(Jwks::parse(R"({"keys": {}})"));
  auto none = Jwks::parse(R"({"keys": [{"kty": "RSA", "kid": "a"}, {"kty": "XYZ"}]})");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().describe().find("key 0 (a): \"n\" is missing"), std::string::npos)
      << none.error().describe();
  EXPECT_NE(none.error().describe().find("unsupported key type \"XYZ\""), std::string::npos);
  const JwtSigner ec(JwtSigner::Kind::kEcP256, "ec");
  auto enc = ec.jwk();
  enc["use"] = "enc";
  auto bad_curve = ec.jwk();
  bad_curve["crv"] = "P-384";  // x and y of P-256 do not fit
  auto mixed = Jwks::parse(json{{"keys", {enc, bad_curve, ec.jwk()}}}.dump());
  ASSERT_TRUE(mixed) << mixed.error().describe();
  EXPECT_EQ(mixed->keys().size(), 1u);
  EXPECT_EQ(mixed->skipped().size(), 2u);
  EXPECT_EQ(base64url_decode("YWJj"), "abc");
  EXPECT_EQ(base64url_decode("YWI="), "ab");
  EXPECT_EQ(base64url_decode("_-8"), std::string("\xff\xef", 2));
  EXPECT_FALSE(base64url_decode("YW+j"));
  EXPECT_FALSE(base64url_decode("Y"));
}

// --- RequestAuthentication ------------------------------------------------------------------

std::vector<RequestAuthentication> authns(const std::string& yaml) {
  auto a = parse_request_authentications(yaml);
  EXPECT_TRUE(a) << (a ? "" : a.error().describe());
  return a ? *a : std::vector<RequestAuthentication>{};
}

// One policy for Service reviews with one rule for https://issuer.example; `keys` is the rule's
// jwks or jwksUri line.
std::string keys_yaml(const std::string& keys, const std::string& extra = "") {
  return "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
         "metadata: {name: jwt, namespace: default}\n"
         "spec:\n  targetRefs: [{kind: Service, group: \"\", name: reviews}]\n"
         "  jwtRules:\n  - issuer: https://issuer.example\n    " +
         keys + "\n" + extra;
}

std::string policy_yaml(const std::string& jwks, const std::string& extra = "") {
  return keys_yaml("jwks: '" + jwks + "'", extra);
}

struct Authn {
  std::vector<RequestAuthentication> policies;
  http::RequestHead head;
  AuthnResult run() {
    std::vector<const RequestAuthentication*> ps;
    for (const auto& p : policies) ps.push_back(&p);
    return authenticate(ps, head, Clock::now());
  }
};

http::RequestHead head(const std::string& target, http::HeaderList headers) {
  http::RequestHead h;
  h.method = "GET";
  h.target = target;
  h.authority = "reviews:9080";
  h.headers = std::move(headers);
  return h;
}

TEST(RequestAuthn, ABearerTokenGivesThePrincipalAndIsNotForwarded) {
  const JwtSigner rsa(JwtSigner::Kind::kRsa, "k1");
  Authn a{authns(policy_yaml(rsa.jwks())), {}};
  ASSERT_EQ(a.policies.size(), 1u);
  EXPECT_EQ(a.policies[0].target_refs.size(), 1u);

  // No token: no identity, nothing refused.
  a.head = head("/", {{"x-other", "1"}});
  auto none = a.run();
  EXPECT_FALSE(none.rejected);
  EXPECT_FALSE(none.identity);
  // "Authorization: Basic ...": not a bearer token, left alone.
  a.head = head("/", {{"authorization", "Basic YTpi"}});
  EXPECT_FALSE(a.run().identity);
  EXPECT_TRUE(http::find_header(a.head.headers, "authorization"));

  const auto token = rsa.sign({{"iss", "https://issuer.example"}, {"sub", "alice"}});
  a.head = head("/", {{"authorization", "Bearer " + token}, {"x-other", "1"}});
  auto ok = a.run();
  ASSERT_FALSE(ok.rejected) << ok.reason;
  ASSERT_TRUE(ok.identity);
  EXPECT_EQ(ok.identity->principal, "https://issuer.example/alice");
  EXPECT_FALSE(http::find_header(a.head.headers, "authorization"));
  EXPECT_TRUE(http::find_header(a.head.headers, "x-other"));

  // The default places also take ?access_token=, its name and value percent-decoded.
  a.head = head("/p?a=1&access_token=" + token, {});
  EXPECT_TRUE(a.run().identity);
  std::string escaped;
  for (char ch : token) escaped += ch == '.' ? std::string("%2E") : std::string(1, ch);
  a.head = head("/p?access%5Ftoken=" + escaped, {});
  EXPECT_TRUE(a.run().identity);
  // As Envoy reads the header: the token after "Bearer " up to the first other character; the
  // prefix is case-sensitive.
  a.head = head("/", {{"Authorization", "Bearer " + token + ", other"}});
  EXPECT_TRUE(a.run().identity);
  a.head = head("/", {{"Authorization", "bearer " + token}});
  EXPECT_FALSE(a.run().identity);
  a.head = head("/", {{"Authorization", "Bearer  \"" + token + "\""}});  // skipped to the token
  EXPECT_TRUE(a.run().identity);
  // The prefix with no token after it, or an empty access_token: a token that fails, not none.
  a.head = head("/", {{"Authorization", "Bearer "}});
  EXPECT_TRUE(a.run().rejected);
  a.head = head("/?access_token=", {});
  EXPECT_TRUE(a.run().rejected);
  // Only the first access_token counts.
  a.head = head("/?access_token=" + token + "&access_token=garbage", {});
  EXPECT_TRUE(a.run().identity);
}

TEST(RequestAuthn, AnyBadTokenIsRefusedEvenBesideAGoodOne) {
  const JwtSigner rsa(JwtSigner::Kind::kRsa, "k1");
  const JwtSigner stranger(JwtSigner::Kind::kRsa, "k1");
  Authn a{authns(policy_yaml(rsa.jwks())), {}};
  const json claims{{"iss", "https://issuer.example"}, {"sub", "alice"}};

  a.head = head("/", {{"authorization", "Bearer " + stranger.sign(claims)}});
  auto bad = a.run();
  EXPECT_TRUE(bad.rejected);
  EXPECT_EQ(bad.reason, "Jwt verification fails");

  // An issuer no rule names: refused, not ignored (allow_missing admits only no token).
  a.head = head("/", {{"authorization", "Bearer " + rsa.sign({{"iss", "other"}, {"sub", "a"}})}});
  bad = a.run();
  EXPECT_TRUE(bad.rejected);
  EXPECT_EQ(bad.reason, "Jwt issuer is not configured");

  a.head = head("/?access_token=garbage", {{"authorization", "Bearer " + rsa.sign(claims)}});
  bad = a.run();
  EXPECT_TRUE(bad.rejected);
  EXPECT_EQ(bad.reason, message(JwtStatus::kBadFormat));

  auto expired = claims;
  expired["exp"] = seconds(Clock::now()) - 3600;
  a.head = head("/", {{"authorization", "Bearer " + rsa.sign(expired)}});
  EXPECT_EQ(a.run().reason, "Jwt is expired");
}

TEST(RequestAuthn, ConfiguredPlacesReplaceTheDefaultsAndOutputHeadersCannotBeForged) {
  const JwtSigner ec(JwtSigner::Kind::kEcP256, "e");
  Authn a{
      authns(policy_yaml(ec.jwks(), R"(    fromHeaders: [{name: X-Jwt-Assertion, prefix: "Tok "}]
    fromCookies: [session]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {header: x-jwt-group, claim: group}
    - {header: x-jwt-level, claim: level}
    - {header: x-jwt-note, claim: note}
)")),
      {}};
  ASSERT_EQ(a.policies.size(), 1u);
  const auto token = ec.sign({{"iss", "https://issuer.example"},
                              {"sub", "bob"},
                              {"group", "admins"},
                              {"level", 3},
                              {"note", "a\r\nx-injected: 1"}});
  // The default places are not used any more.
  a.head = head("/?access_token=" + token, {{"authorization", "Bearer " + token}});
  EXPECT_FALSE(a.run().identity);

  // Forged output headers are removed from a request without a token.
  a.head = head("/", {{"x-jwt-group", "admins"}, {"x-jwt-payload", "e30"}});
  EXPECT_FALSE(a.run().identity);
  EXPECT_FALSE(http::find_header(a.head.headers, "x-jwt-group"));
  EXPECT_FALSE(http::find_header(a.head.headers, "x-jwt-payload"));

  a.head = head("/", {{"x-jwt-assertion", "Tok " + token}, {"x-jwt-group", "forged"}});
  auto ok = a.run();
  ASSERT_TRUE(ok.identity) << ok.reason;
  EXPECT_EQ(ok.identity->principal, "https://issuer.example/bob");
  EXPECT_EQ(http::find_header(a.head.headers, "x-jwt-assertion"), "Tok " + token);  // forwarded
  EXPECT_EQ(http::find_header(a.head.headers, "x-jwt-group"), "admins");
  EXPECT_EQ(http::find_header(a.head.headers, "x-jwt-level"), "3");
  EXPECT_FALSE(http::find_header(a.head.headers, "x-jwt-note"));  // a line break: not set
  EXPECT_EQ(http::find_header(a.head.headers, "x-jwt-payload"),
            token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1));

  a.head = head("/", {{"cookie", "a=1; session=" + token + "; b=2"}});
  EXPECT_TRUE(a.run().identity);
}

TEST(RequestAuthn, ARuleWithOnlyAJwksUriFailsItsIssuersTokens) {
  auto ps = authns(keys_yaml("jwksUri: https://issuer.example/jwks.json"));
  ASSERT_EQ(ps.size(), 1u);
  const JwtSigner rsa(JwtSigner::Kind::kRsa, "k1");
  Authn a{ps, head("/",
                   {{"authorization", "Bearer " + rsa.sign({{"iss", "https://issuer.example"}})}})};
  auto r = a.run();
  EXPECT_TRUE(r.rejected);
  EXPECT_EQ(r.reason, "Jwks remote fetch is failed");
}

TEST(RequestAuthn, BadPoliciesAreRefusedWithTheirField) {
  struct Bad {
    std::string yaml;
    std::string error;
  };
  const std::string head =
      "kind: RequestAuthentication\nmetadata: {name: r, namespace: default}\nspec:\n";
  const std::vector<Bad> cases = {
      {head + "  jwtRules: [{jwks: '{}'}]", "jwtRules[0]: missing required field \"issuer\""},
      {head + "  jwtRules: [{issuer: i}]", "jwtRules[0]: needs jwks or jwksUri"},
      {head + "  jwtRules: [{issuer: i, jwks: '{\"keys\": []}'}]",
       "jwtRules[0].jwks: the JWKS has no usable key"},
      {head + "  jwtRules: [{issuer: i, jwksUri: u, jwks: '{}'}]", "not both"},
      {head + "  jwtRules: [{issuer: i, jwksUri: u, fromHeaders: [{name: 'a b'}]}]",
       "fromHeaders[0].name: must be an HTTP header name"},
      {head + "  jwtRules: [{issuer: i, jwksUri: u, outputClaimToHeaders: [{header: h}]}]",
       "needs header and claim"},
      {head + "  jwtRules: [{issuer: i, jwksUri: u, forwardOriginalToken: yes}]",
       "must be true or false"},
      {head + "  jwtRules: [{issuer: i, jwksUri: u, bogus: 1}]", "unknown or unsupported field"},
      {head + "  jwtRules: [{issuer: i, jwksUri: 'ftp://keys/k'}]",
       "jwksUri: must be an http:// or https:// URL"},
      // A jwksUri that would split meshd's request to the issuer.
      {head + "  jwtRules: [{issuer: i, jwksUri: \"http://keys/k HTTP/1.1\\r\\nX: y\"}]",
       "jwksUri: must be visible ASCII"},
      {head + "  jwtRules: [{issuer: i, jwksUri: 'https:///k'}]", "jwksUri: has no host"},
      {head + "  jwtRules: [{issuer: i, jwksUri: 'https://u:p@keys/k'}]",
       "jwksUri: must not carry credentials"},
      {head + "  targetRefs: [{kind: Service, name: s, namespace: other}]",
       "cross-namespace references are not supported"},
  };
  for (const auto& c : cases) {
    auto r = parse_request_authentications(c.yaml);
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_NE(r.error().describe().find(c.error), std::string::npos)
        << c.yaml << "\n -> " << r.error().describe();
  }
}

// --- request.auth.* in AuthorizationPolicy ----------------------------------------------------

TEST(RequestAuthn, AuthorizationSeesThePrincipalClaimsAudiencesAndPresenter) {
  auto ps = parse_authorization_policies(R"(
kind: AuthorizationPolicy
metadata: {name: admins, namespace: default}
spec:
  targetRefs: [{kind: Service, name: reviews}]
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [admins]}
    - {key: "request.auth.claims[org][team]", values: ["mesh-*"]}
    - {key: request.auth.audiences, values: [reviews]}
    - {key: request.auth.presenter, values: [web]}
    - {key: "request.auth.claims[groups]", notValues: [banned]}
)");
  ASSERT_TRUE(ps) << ps.error().describe();
  auto decide = [&](const json& claims) {
    JwtIdentity id{claims.value("iss", "") + "/" + claims.value("sub", ""), claims};
    RequestInfo info;
    info.method = "GET";
    info.path = "/";
    info.request_principal = id.principal;
    info.jwt = &id;
    return evaluate(*ps, info).allowed();
  };
  const json good{{"iss", "https://issuer.example"}, {"sub", "alice"},
                  {"groups", {"users", "admins"}},   {"org", {{"team", "mesh-core"}}},
                  {"aud", {"reviews", "ratings"}},   {"azp", "web"}};
  EXPECT_TRUE(decide(good));
  auto changed = [&](const char* key, json value) {
    json c = good;
    c[key] = std::move(value);
    return decide(c);
  };
  EXPECT_FALSE(changed("groups", json::array({"users"})));
  EXPECT_FALSE(changed("groups", json::array({"admins", "banned"})));
  EXPECT_TRUE(changed("groups", "admins"));  // a string claim
  EXPECT_FALSE(changed("org", json{{"team", "web"}}));
  EXPECT_FALSE(changed("aud", "ratings"));
  EXPECT_FALSE(changed("azp", "cli"));
  EXPECT_FALSE(changed("iss", "https://other.example"));

  // Without a JWT every request.auth condition fails.
  RequestInfo anonymous;
  anonymous.method = "GET";
  anonymous.path = "/";
  EXPECT_FALSE(evaluate(*ps, anonymous).allowed());

  auto bad = parse_authorization_policies(
      "kind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - when:\n"
      "    - {key: 'request.auth.claims[a]b', values: [x]}\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().describe().find("claims[name] or claims[a][b]"), std::string::npos)
      << bad.error().describe();
}

}  // namespace
}  // namespace zt::waypoint::authz
