#include "common/net/address.h"

#include <gtest/gtest.h>

namespace zt::net {
namespace {

TEST(ParseIp, AcceptsPlainV4AndV6) {
  EXPECT_EQ(parse_ip("10.0.0.1")->to_string(), "10.0.0.1");
  EXPECT_EQ(parse_ip("::1")->to_string(), "::1");
  EXPECT_EQ(parse_ip("fd00::a:1")->to_string(), "fd00::a:1");
}

TEST(ParseIp, RejectsAmbiguousOrDecoratedForms) {
  for (const char* bad : {"", "010.0.0.1", "1.2.3", "1.2.3.4.5", "fe80::1%eth0", "::1%1", "[::1]",
                          " 1.2.3.4", "1.2.3.4 ", "0x1.2.3.4", "abc", "256.0.0.1"}) {
    auto r = parse_ip(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("is not an IP address"), std::string::npos);
    }
  }
  EXPECT_FALSE(parse_ip(std::string_view("1.2.3.4\0x", 9)));  // no truncation at NUL
}

TEST(ParseEndpoint, BracketsV6AndNotV4) {
  auto v4 = parse_endpoint("10.0.0.1:80");
  ASSERT_TRUE(v4);
  EXPECT_EQ(*v4, tcp::endpoint(asio::ip::make_address("10.0.0.1"), 80));
  auto v6 = parse_endpoint("[::1]:15008");
  ASSERT_TRUE(v6);
  EXPECT_EQ(*v6, tcp::endpoint(asio::ip::make_address("::1"), 15008));
  EXPECT_TRUE(parse_endpoint("0.0.0.0:0"));  // listeners bind port 0 in tests

  for (const char* bad : {"10.0.0.1", "::1:80", "[10.0.0.1]:80", "[::1]", "[::1]80", "10.0.0.1:",
                          "10.0.0.1:65536", "10.0.0.1:080", "10.0.0.1:-1", "10.0.0.1:+80",
                          "host:80", ":80", "[fe80::1%eth0]:80"}) {
    EXPECT_FALSE(parse_endpoint(bad)) << bad;
  }
}

TEST(FormatEndpoint, RoundTrips) {
  for (const char* text : {"10.0.0.1:80", "[::1]:80", "[fd00::1]:65535", "0.0.0.0:0"}) {
    EXPECT_EQ(format_endpoint(*parse_endpoint(text)), text);
  }
}

TEST(Unmap, TurnsV4MappedIntoV4) {
  EXPECT_EQ(unmap(asio::ip::make_address("::ffff:10.0.0.1")), asio::ip::make_address("10.0.0.1"));
  EXPECT_EQ(unmap(asio::ip::make_address("::1")), asio::ip::make_address("::1"));
}

TEST(ValidateHostname, Table) {
  for (const char* good : {"a", "example.com", "name.ns.svc.cluster.local", "x-1.y2", "A.B"}) {
    EXPECT_TRUE(validate_hostname(good)) << good;
  }
  for (const char* bad : {"", ".", "a..b", "a.", ".a", "-a.b", "a-.b", "a_b", "a b", "1.2.3",
                          "010.0.0.1", "123", "a.123", "ex%ample"}) {
    EXPECT_FALSE(validate_hostname(bad)) << bad;
  }
  EXPECT_FALSE(validate_hostname(std::string(64, 'a')));
  EXPECT_TRUE(validate_hostname(std::string(63, 'a')));
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  long_name += "d";
  EXPECT_FALSE(validate_hostname(long_name));
}

TEST(Cidr, ParseAndContains) {
  auto net8 = Cidr::parse("10.0.0.0/8");
  ASSERT_TRUE(net8);
  EXPECT_TRUE(net8->contains(asio::ip::make_address("10.200.1.1")));
  EXPECT_TRUE(net8->contains(asio::ip::make_address("::ffff:10.1.1.1")));
  EXPECT_FALSE(net8->contains(asio::ip::make_address("11.0.0.1")));
  EXPECT_FALSE(net8->contains(asio::ip::make_address("::1")));

  auto host = Cidr::parse("10.0.0.1");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->prefix, 32);
  EXPECT_TRUE(host->contains(asio::ip::make_address("10.0.0.1")));
  EXPECT_FALSE(host->contains(asio::ip::make_address("10.0.0.2")));

  auto v6 = Cidr::parse("fd00::/12");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(asio::ip::make_address("fd0f::1")));
  EXPECT_FALSE(v6->contains(asio::ip::make_address("fd10::1")));

  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(asio::ip::make_address("1.2.3.4")));
  EXPECT_EQ(all->to_string(), "0.0.0.0/0");

  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "x/8", "/8",
                          "10.0.0.0/-1"}) {
    EXPECT_FALSE(Cidr::parse(bad)) << bad;
  }
}

TEST(Quote, EscapesAndTruncates) {
  EXPECT_EQ(quote("abc"), "\"abc\"");
  EXPECT_EQ(quote(std::string_view("a\0\"\n", 4)), "\"a\\x00\\\"\\x0a\"");
  EXPECT_EQ(quote(std::string(100, 'x')), "\"" + std::string(64, 'x') + "...\"");
}

}  // namespace
}  // namespace zt::net
