#include "common/tls/spiffe.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace zt::tls {
namespace {

struct GoodCase {
  std::string uri;
  SpiffeId want;
};

TEST(SpiffeId, ParsesWellFormedIds) {
  const GoodCase cases[] = {
      {"spiffe://cluster.local/ns/default/sa/default", {"cluster.local", "default", "default"}},
      {"spiffe://td/ns/my-ns/sa/my_sa.v1", {"td", "my-ns", "my_sa.v1"}},
      {"spiffe://example.org/ns/istio-system/sa/ztunnel", {"example.org", "istio-system", "ztunnel"}},
      {"spiffe://a/ns/b/sa/c", {"a", "b", "c"}},
  };
  for (const auto& c : cases) {
    auto id = SpiffeId::parse(c.uri);
    ASSERT_TRUE(id) << c.uri << ": " << id.error().message;
    EXPECT_EQ(*id, c.want) << c.uri;
    EXPECT_EQ(id->uri(), c.uri);
  }
}

struct BadCase {
  std::string uri;
  std::string error_contains;
};

TEST(SpiffeId, RejectsMalformedIdsWithAReason) {
  const BadCase cases[] = {
      {"", "does not start with spiffe://"},
      {"cluster.local/ns/a/sa/b", "does not start with spiffe://"},
      {"http://cluster.local/ns/a/sa/b", "does not start with spiffe://"},
      {"SPIFFE://cluster.local/ns/a/sa/b", "does not start with spiffe://"},
      {"spiffe://", "has 1 '/'-separated parts after spiffe://, want 5"},
      {"spiffe://cluster.local", "has 1 '/'-separated parts"},
      {"spiffe://cluster.local/ns/a/sa", "has 4 '/'-separated parts"},
      {"spiffe://cluster.local/ns/a/sa/b/c", "more than 5"},
      {"spiffe://cluster.local/ns/a/sa/b/", "more than 5"},
      {"spiffe://cluster.local/NS/a/sa/b", "second part is 'NS', want 'ns'"},
      {"spiffe://cluster.local/namespace/a/sa/b", "want 'ns'"},
      {"spiffe://cluster.local/ns/a/SA/b", "fourth part is 'SA', want 'sa'"},
      {"spiffe:///ns/a/sa/b", "trust domain is empty"},
      {"spiffe://td/ns//sa/b", "namespace is empty"},
      {"spiffe://td/ns/a/sa/", "service account is empty"},
      {"spiffe://td/ns/a b/sa/c", "contains ' '"},
      {"spiffe://td/ns/a/sa/b?x=1", "contains '?'"},
      {"spiffe://td/ns/a/sa/b#frag", "contains '#'"},
      {"spiffe://td:8080/ns/a/sa/b", "contains ':'"},
      {"spiffe://user@td/ns/a/sa/b", "contains '@'"},
      {"spiffe://td/ns/../sa/b", "'..' is not allowed"},
      {"spiffe://td/ns/./sa/b", "'.' is not allowed"},
      {std::string("spiffe://td/ns/a\0b/sa/c", 24), "non-printable character (0x00)"},
      {"spiffe://td/ns/a\x01/sa/c", "non-printable character (0x01)"},
      {"spiffe://td/ns/caf\xc3\xa9/sa/c", "non-printable character (0xc3)"},
  };
  for (const auto& c : cases) {
    auto id = SpiffeId::parse(c.uri);
    ASSERT_FALSE(id) << "accepted '" << c.uri << "'";
    EXPECT_NE(id.error().message.find(c.error_contains), std::string::npos)
        << "input '" << c.uri << "': error '" << id.error().message << "' lacks '" << c.error_contains << "'";
    // Errors name the expected shape, so a user sees what to write instead.
    EXPECT_NE(id.error().message.find("want spiffe://<trust domain>/ns/<namespace>/sa/<service account>"),
              std::string::npos);
  }
}

TEST(SpiffeId, ErrorMessagesEscapeControlBytes) {
  auto id = SpiffeId::parse("spiffe://td/ns/a\n/sa/b");
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().message.find('\n'), std::string::npos) << id.error().message;
  EXPECT_NE(id.error().message.find("\\x0a"), std::string::npos) << id.error().message;
}

TEST(SpiffeId, FormatsUriAndPrincipal) {
  SpiffeId id{"cluster.local", "bookinfo", "reviews"};
  EXPECT_EQ(id.uri(), "spiffe://cluster.local/ns/bookinfo/sa/reviews");
  EXPECT_EQ(id.principal(), "cluster.local/ns/bookinfo/sa/reviews");
  EXPECT_EQ(fmt::format("{}", id), "spiffe://cluster.local/ns/bookinfo/sa/reviews");
  auto round_trip = SpiffeId::parse(id.uri());
  ASSERT_TRUE(round_trip);
  EXPECT_EQ(*round_trip, id);
}

TEST(SpiffeId, ComparesAndHashesByAllThreeParts) {
  SpiffeId a{"td", "ns1", "sa"};
  SpiffeId b{"td", "ns1", "sa"};
  SpiffeId c{"td", "ns2", "sa"};
  SpiffeId d{"other", "ns1", "sa"};
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  // Parts are not concatenated: ("ab","c") and ("a","bc") differ.
  EXPECT_NE((SpiffeId{"td", "ab", "c"}), (SpiffeId{"td", "a", "bc"}));

  // Ordered by trust domain, then namespace, then service account.
  std::map<SpiffeId, int> ordered{{c, 3}, {a, 1}, {d, 4}};
  std::vector<SpiffeId> keys;
  for (const auto& [k, v] : ordered) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<SpiffeId>{d, a, c}));

  std::unordered_set<SpiffeId, SpiffeIdHash> set{a, b, c, d};
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.count(SpiffeId{"td", "ns1", "sa"}), 1u);
}

TEST(SpiffeId, ChecksTrustDomainAlone) {
  EXPECT_TRUE(SpiffeId::check_trust_domain("cluster.local"));
  EXPECT_FALSE(SpiffeId::check_trust_domain(""));
  EXPECT_FALSE(SpiffeId::check_trust_domain("cluster/local"));
  EXPECT_FALSE(SpiffeId::check_trust_domain("cluster local"));
}

}  // namespace
}  // namespace zt::tls
