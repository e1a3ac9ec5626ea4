// L7 authorization: path normalisation as Istio's defaults do it, Istio's string and path
// matching, and CUSTOM -> DENY -> ALLOW evaluation of AuthorizationPolicies parsed from YAML.
#include <string>

#include <gtest/gtest.h>

#include "waypoint/authz/normalize.h"
#include "waypoint/authz/parse.h"
#include "waypoint/authz/policy.h"

namespace zt::waypoint::authz {
namespace {

struct NormCase {
  const char* input;
  PathNormalization mode;
  std::optional<EscapedSlashes> slashes;
  const char* want;  // nullptr = 400
};

TEST(NormalizeTest, IstioPathNormalization) {
  using P = PathNormalization;
  using E = EscapedSlashes;
  const std::vector<NormCase> cases = {
      {"/a/../admin", P::kBase, {}, "/admin"},
      {"/a/b/../../admin", P::kBase, {}, "/admin"},
      {"/../admin", P::kBase, {}, "/admin"},
      {"/a/./b/.", P::kBase, {}, "/a/b/"},
      {"/a/b/..", P::kBase, {}, "/a/"},
      {"/..", P::kBase, {}, "/"},
      {"/a/%2e%2e/admin", P::kBase, {}, "/admin"},
      {"/a/%2E%2e/admin", P::kBase, {}, "/admin"},
      {"/a/.%2e/admin", P::kBase, {}, "/admin"},
      {"/%61dmin", P::kBase, {}, "/admin"},
      {"/%7Euser/%2D%5f", P::kBase, {}, "/~user/-_"},
      {"/a%3fb", P::kBase, {}, "/a%3Fb"},  // reserved stays encoded, hex upper-cased
      {"/a%20b", P::kBase, {}, "/a%20b"},
      {"/a\\..\\admin", P::kBase, {}, "/admin"},  // backslash is a slash
      {"//admin", P::kBase, {}, "//admin"},
      {"//admin", P::kMergeSlashes, {}, "/admin"},
      {"//a///b", P::kMergeSlashes, {}, "/a/b"},
      {"/a//../admin", P::kMergeSlashes, {}, "/a/admin"},  // Envoy: dot segments, then merging
      {"/some%2fdata", P::kBase, {}, "/some%2Fdata"},
      {"/some%2Fdata", P::kMergeSlashes, {}, "/some%2Fdata"},
      {"/some%2fdata", P::kDecodeAndMergeSlashes, {}, "/some/data"},
      {"/a/..%2fadmin", P::kDecodeAndMergeSlashes, {}, "/admin"},
      {"/a%5cb", P::kDecodeAndMergeSlashes, {}, "/a/b"},
      {"/a%5Cb", P::kBase, {}, "/a%5Cb"},
      {"/%2F%2Fadmin", P::kDecodeAndMergeSlashes, {}, "/admin"},
      {"/a%2Fb", P::kBase, E::kReject, nullptr},
      {"/a%5cb", P::kBase, E::kReject, nullptr},
      {"/a%2Fb", P::kBase, E::kDecode, "/a/b"},
      {"/a%00b", P::kBase, {}, nullptr},
      {"/a%00b", P::kDecodeAndMergeSlashes, {}, nullptr},
      {"/a/../b?x=/../y&z=%2e", P::kBase, {}, "/b?x=/../y&z=%2e"},  // query untouched
      {"/a%zzb", P::kBase, {}, "/a%zzb"},  // a '%' that starts no escape stays (as in Envoy)
      {"/a%2", P::kBase, {}, "/a%2"},
      {"/a%", P::kBase, {}, "/a%"},
      {"/100%/x", P::kBase, {}, "/100%/x"},
      {"/a%%41", P::kBase, {}, "/a%A"},
      {"/a%%4141", P::kBase, {}, "/a%25A41"},  // "%A4" would read as an escape
      // Decoding never makes a new escape: "%%32%65" is not "%2e", so no hidden dot segment.
      {"/a/%%32%65%%32%65/admin", P::kBase, {}, "/a/%252e%252e/admin"},
      {"/a/%%32%65%%32%65/admin", P::kDecodeAndMergeSlashes, {}, "/a/%252e%252e/admin"},
      {"/%%35%43..%%35%43admin", P::kDecodeAndMergeSlashes, {}, "/%255C..%255Cadmin"},
      {"/a/../admin", P::kNone, {}, "/a/../admin"},
      {"*", P::kBase, {}, "*"},
  };
  for (const auto& c : cases) {
    auto got = normalize_target(c.input, NormalizeOptions{c.mode, c.slashes});
    if (!c.want) {
      ASSERT_FALSE(got) << c.input << " gave " << *got;
      EXPECT_EQ(got.error().status, 400);
    } else {
      ASSERT_TRUE(got) << c.input << ": " << got.error().reason;
      EXPECT_EQ(*got, c.want) << c.input;
    }
  }
  EXPECT_EQ(remove_dot_segments("/a/b/c/./../../g"), "/a/g");  // RFC 3986 §5.2.4 example
  EXPECT_EQ(remove_dot_segments("mid/content=5/../6"), "mid/6");
}

TEST(MatchTest, IstioStringRules) {
  struct Case {
    const char* pattern;
    const char* input;
    bool match;
  };
  const Case cases[] = {
      {"abc", "abc", true},      {"abc", "abcd", false},
      {"abc*", "abcd", true},    {"*bcd", "abcd", true},
      {"*", "x", true},          {"*", "", false},
      {"a*b", "a*b", true},      {"a*b", "axb", false},
      {"*a*", "xa*", true},      {"/foo/*", "/foo/bar/baz", true},
      {"/foo/*", "/foo", false}, {"*.js", "/x/y.js", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(StringMatch::parse(c.pattern).matches(c.input), c.match)
        << c.pattern << " ~ " << c.input;
  }
  EXPECT_TRUE(StringMatch::parse("Example.COM").matches("example.com", true));
}

TEST(MatchTest, PathTemplates) {
  struct Case {
    const char* pattern;
    const char* path;
    bool match;
  };
  const Case cases[] = {
      {"/foo/{*}", "/foo/bar", true},
      {"/foo/{*}", "/foo/bar/baz", false},
      {"/foo/{*}", "/foo/", false},
      {"/foo/{**}/", "/foo/bar/", true},
      {"/foo/{**}/", "/foo//", true},
      {"/foo/{**}/", "/foo/bar", false},
      {"/foo/{*}/bar/{**}", "/foo/buzz/bar/", true},
      {"/foo/{*}/bar/{**}", "/foo/buzz/bar/baz", true},
      {"/foo/{*}/bar/{**}", "/foo/buzz/baz/bar/x", false},
      {"/{*}/admin", "/v1/admin", true},
      {"/{*}/admin", "/admin", false},
  };
  for (const auto& c : cases) {
    auto p = PathPattern::parse(c.pattern);
    ASSERT_TRUE(p) << c.pattern << ": " << p.error().message;
    EXPECT_EQ(p->matches(c.path), c.match) << c.pattern << " ~ " << c.path;
  }
  for (const char* bad : {"/{**}/foo/{*}", "/foo/{*}.txt", "/*/baz/{*}", "foo/{*}"}) {
    EXPECT_FALSE(PathPattern::parse(bad)) << bad;
  }
}

std::vector<Policy> policies(const std::string& yaml) {
  auto p = parse_authorization_policies(yaml);
  EXPECT_TRUE(p) << (p ? "" : p.error().message);
  return p ? *p : std::vector<Policy>{};
}

struct Req {
  std::string method = "GET";
  std::string path = "/";
  std::string host = "reviews.default.svc.cluster.local";
  http::HeaderList headers;
  std::optional<std::string> principal = "cluster.local/ns/default/sa/productpage";
  std::string source_ip = "10.0.0.5";
};

Decision check(const std::vector<Policy>& ps, const Req& r, const CustomCheck& custom = {}) {
  RequestInfo info;
  info.method = r.method;
  info.path = r.path;
  info.host = r.host;
  info.destination_port = 9080;
  info.headers = &r.headers;
  info.principal = r.principal;
  info.source_ip = *net::parse_ip(r.source_ip);
  info.destination_ip = *net::parse_ip("10.96.0.10");
  return evaluate(ps, info, custom);
}

constexpr const char* kAllowGetFromProductpage = R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/productpage"]}
    to:
    - operation: {methods: ["GET"], paths: ["/reviews/*", "/healthz"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  targetRefs: [{kind: Service, name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
)";

TEST(EvaluateTest, AllowAndDenyByPathMethodPrincipal) {
  const auto ps = policies(kAllowGetFromProductpage);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].target_refs[0].namespace_name, "default");
  struct Case {
    Req req;
    bool allowed;
    const char* policy;
  };
  Req get;
  get.path = "/reviews/1";
  Req post = get;
  post.method = "POST";
  Req other = get;
  other.principal = "cluster.local/ns/default/sa/ratings";
  Req plaintext = get;
  plaintext.principal.reset();
  Req admin = get;
  admin.path = "/admin";
  Req admin_sub = get;
  admin_sub.path = "/admin/users?x=1";
  Req health = get;
  health.path = "/healthz?full=1";  // paths compare without the query
  const std::vector<Case> cases = {
      {get, true, "default/reviews-viewer"},
      {post, false, ""},
      {other, false, ""},
      {plaintext, false, ""},
      {admin, false, "default/no-admin"},
      {admin_sub, false, "default/no-admin"},
      {health, true, "default/reviews-viewer"},
  };
  for (const auto& c : cases) {
    auto d = check(ps, c.req);
    EXPECT_EQ(d.allowed(), c.allowed) << c.req.method << " " << c.req.path;
    EXPECT_EQ(d.policy, c.policy) << c.req.method << " " << c.req.path;
    EXPECT_EQ(d.status(), c.allowed ? 200 : 403);
  }
  EXPECT_EQ(check(ps, post).outcome, Decision::Outcome::kNoAllowMatched);
  EXPECT_EQ(check(ps, admin).outcome, Decision::Outcome::kDenied);
}

TEST(EvaluateTest, NormalisationClosesBypasses) {
  const auto ps = policies(kAllowGetFromProductpage);
  const NormalizeOptions merge{PathNormalization::kMergeSlashes, {}};
  for (const char* attempt : {"/reviews/../admin", "/reviews/%2e%2e/admin", "/%61dmin",
                              "/reviews/..\\admin", "//admin"}) {
    auto normalized = normalize_target(attempt, merge);
    ASSERT_TRUE(normalized) << attempt;
    Req r;
    r.path = *normalized;
    EXPECT_EQ(check(ps, r).outcome, Decision::Outcome::kDenied) << attempt << " -> " << *normalized;
  }
  // With the default BASE mode "//admin" stays as is and no longer matches "/admin" (why Istio
  // offers MERGE_SLASHES); it is then not allowed either, since no ALLOW rule matches it.
  Req doubled;
  doubled.path = *normalize_target("//admin");
  EXPECT_EQ(check(ps, doubled).outcome, Decision::Outcome::kNoAllowMatched);
  // An encoded slash can be refused outright.
  EXPECT_FALSE(normalize_target("/reviews%2F..%2Fadmin",
                                {PathNormalization::kBase, EscapedSlashes::kReject}));
}

TEST(EvaluateTest, StructuralRules) {
  Req r;
  // No policies: allow.
  EXPECT_EQ(check({}, r).outcome, Decision::Outcome::kNoAllowPolicies);
  // ALLOW with no rules (spec: {}): allow nothing.
  auto nothing = policies("kind: AuthorizationPolicy\nmetadata: {name: n}\nspec: {}\n");
  EXPECT_EQ(check(nothing, r).outcome, Decision::Outcome::kNoAllowMatched);
  // rules: [{}]: allow everything.
  auto all = policies("kind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{}]}\n");
  EXPECT_EQ(check(all, r).outcome, Decision::Outcome::kAllowed);
  // DENY beats ALLOW.
  auto deny_all = policies(
      "kind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{}]}\n---\n"
      "kind: AuthorizationPolicy\nmetadata: {name: d}\nspec: {action: DENY, rules: [{}]}\n");
  auto d = check(deny_all, r);
  EXPECT_EQ(d.outcome, Decision::Outcome::kDenied);
  EXPECT_EQ(d.policy, "default/d");
  // AUDIT decides nothing.
  auto audit = policies(
      "kind: AuthorizationPolicy\nmetadata: {name: au}\nspec: {action: AUDIT, rules: [{}]}\n");
  EXPECT_EQ(check(audit, r).outcome, Decision::Outcome::kNoAllowPolicies);
}

TEST(EvaluateTest, CustomComesFirst) {
  auto ps = policies(R"(
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: ["/secure/*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec: {rules: [{}]}
)");
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].provider, "my-ext-authz");
  Req secure;
  secure.path = "/secure/x";
  Req open;
  open.path = "/open";
  int asked = 0;
  auto deny = [&](const Policy& p) {
    ++asked;
    EXPECT_EQ(p.provider, "my-ext-authz");
    return false;
  };
  auto d = check(ps, secure, deny);
  EXPECT_EQ(d.outcome, Decision::Outcome::kDeniedByCustom);
  EXPECT_EQ(d.policy, "default/ext");
  EXPECT_EQ(check(ps, secure, [](const Policy&) { return true; }).outcome,
            Decision::Outcome::kAllowed);
  EXPECT_EQ(check(ps, secure).outcome, Decision::Outcome::kDeniedByCustom);  // no provider: closed
  EXPECT_EQ(check(ps, open, deny).outcome, Decision::Outcome::kAllowed);
  EXPECT_EQ(asked, 1);  // only asked when the CUSTOM policy matched
  RequestInfo info;
  info.path = "/secure/a";
  EXPECT_EQ(matching_custom_policy(ps, info), &ps[0]);
}

TEST(EvaluateTest, SourcesHostsHeadersAndConditions) {
  auto ps = policies(R"(
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  rules:
  - from:
    - source: {namespaces: ["front*"], notPrincipals: ["*/sa/blocked"]}
    - source: {ipBlocks: ["192.168.0.0/16"]}
    to:
    - operation: {hosts: ["Reviews.example.com", "reviews.example.com:*"], notMethods: ["DELETE"]}
    when:
    - key: request.headers[X-Version]
      values: ["v1*"]
    - key: source.ip
      notValues: ["192.168.9.0/24"]
)");
  ASSERT_EQ(ps.size(), 1u);
  Req base;
  base.host = "reviews.EXAMPLE.com";
  base.principal = "cluster.local/ns/frontend/sa/web";
  base.headers = {{"x-version", "v1.2"}};
  EXPECT_TRUE(check(ps, base).allowed());
  Req port = base;
  port.host = "reviews.example.com:8080";
  EXPECT_TRUE(check(ps, port).allowed());
  Req wrong_host = base;
  wrong_host.host = "ratings.example.com";
  EXPECT_FALSE(check(ps, wrong_host).allowed());
  Req blocked = base;
  blocked.principal = "cluster.local/ns/frontend/sa/blocked";
  EXPECT_FALSE(check(ps, blocked).allowed());
  Req other_ns = base;
  other_ns.principal = "cluster.local/ns/backend/sa/web";
  EXPECT_FALSE(check(ps, other_ns).allowed());
  Req by_ip = other_ns;
  by_ip.principal.reset();
  by_ip.source_ip = "192.168.1.1";
  EXPECT_TRUE(check(ps, by_ip).allowed());  // second source: plaintext from an allowed block
  Req excluded_ip = by_ip;
  excluded_ip.source_ip = "192.168.9.1";
  EXPECT_FALSE(check(ps, excluded_ip).allowed());  // when notValues
  Req deleting = base;
  deleting.method = "DELETE";
  EXPECT_FALSE(check(ps, deleting).allowed());
  Req no_header = base;
  no_header.headers.clear();
  EXPECT_FALSE(check(ps, no_header).allowed());
  Req repeated = base;
  repeated.headers = {{"X-Version", "v1"}, {"x-version", "v2"}};  // joined: "v1,v2" starts with v1
  EXPECT_TRUE(check(ps, repeated).allowed());
}

TEST(EvaluateTest, ServiceAccountsAndDryRun) {
  auto ps = policies(R"(
kind: AuthorizationPolicy
metadata:
  name: dry
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec: {action: DENY, rules: [{}]}
---
kind: AuthorizationPolicy
metadata: {name: sa, namespace: default}
spec:
  rules: [{from: [{source: {serviceAccounts: ["productpage", "other/bot"]}}]}]
)");
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_TRUE(ps[0].dry_run);
  Req r;
  auto d = check(ps, r);
  EXPECT_TRUE(d.allowed());  // the dry-run DENY does not enforce
  ASSERT_EQ(d.dry_run.size(), 1u);
  EXPECT_EQ(d.dry_run[0], "dry-run deny matched: default/dry");
  Req bot;
  bot.principal = "other-td/ns/other/sa/bot";
  EXPECT_TRUE(check(ps, bot).allowed());
  Req stranger;
  stranger.principal = "cluster.local/ns/x/sa/productpage";
  EXPECT_FALSE(check(ps, stranger).allowed());
}

TEST(ParseTest, DryRunIsAGoBoolean) {
  for (const char* v : {"1", "t", "T", "TRUE", "true", "True"}) EXPECT_EQ(parse_go_bool(v), true);
  for (const char* v : {"0", "f", "F", "FALSE", "false", "False"}) {
    EXPECT_EQ(parse_go_bool(v), false);
  }
  for (const char* v : {"", "yes", "tRuE", " true"}) EXPECT_EQ(parse_go_bool(v), std::nullopt);
  auto ps = policies(
      "kind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: '1'}}\n");
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_TRUE(ps[0].dry_run);
}

TEST(ParseTest, ErrorsNameTheField) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  const Case cases[] = {
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: MAYBE}\n",
       "spec.action: unknown action \"MAYBE\""},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: CUSTOM, rules: [{}]}\n",
       "spec.provider: CUSTOM needs provider.name"},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{when: [{key: "
       "request.size, values: [\"1\"]}]}]\n",
       "spec.rules[0].when[0].key: unsupported key \"request.size\""},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{to: [{operation: {paths: "
       "[\"/a\", \"/{**}/b/{*}\"]}}]}]\n",
       "spec.rules[0].to[0].operation.paths[1]: path template"},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{from: [{source: "
       "{ipBlocks: [\"10.0.0.0/33\"]}}]}]\n",
       "spec.rules[0].from[0].source.ipBlocks[0]"},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{from: [{source: "
       "{serviceAccounts: [a], principals: [b]}}]}]\n",
       "spec.rules[0].from[0].source: serviceAccounts cannot be combined"},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{from: [{source: {}}]}]\n",
       "spec.rules[0].from[0].source: a source must set at least one field"},
      {"kind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules: [{to: [{operation: {verbs: "
       "[GET]}}]}]\n",
       "spec.rules[0].to[0].operation.verbs: unknown or unsupported field"},
      // yaml-cpp 0.7's LoadAll looped on this until memory ran out.
      {",\n", "invalid YAML at line 1, column 1"},
      // Istio's CRD refuses a targetRef into another namespace.
      {"kind: AuthorizationPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  targetRefs: "
       "[{kind: Service, name: s, namespace: b}]\n",
       "spec.targetRefs[0].namespace: cross-namespace references are not supported"},
      // Istio reads the dry-run annotation as a Go boolean.
      {"kind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: yes}}\n",
       "metadata.annotations[istio.io/dry-run]: must be true or false, got \"yes\""},
  };
  for (const auto& c : cases) {
    auto p = parse_authorization_policies(c.yaml);
    ASSERT_FALSE(p) << c.yaml;
    EXPECT_NE(p.error().message.find(c.expected), std::string::npos)
        << "got: " << p.error().message << "\nwant: " << c.expected;
  }
  auto selector = policies(
      "kind: AuthorizationPolicy\nmetadata: {name: s}\nspec: {selector: {matchLabels: {app: "
      "x}}}\n");
  ASSERT_EQ(selector.size(), 1u);
  EXPECT_TRUE(selector[0].has_selector);
}

}  // namespace
}  // namespace zt::waypoint::authz
