#include "common/hbone/authority.h"

#include <gtest/gtest.h>

namespace zt::hbone {
namespace {

struct GoodCase {
  const char* text;
  const char* ip;  // nullptr for host names
  const char* host;
  uint16_t port;
};

TEST(ParseAuthority, AcceptsIpAndHostnameForms) {
  const GoodCase cases[] = {
      {"10.0.0.1:80", "10.0.0.1", "", 80},
      {"[::1]:80", "::1", "", 80},
      {"[fd00::2]:65535", "fd00::2", "", 65535},
      {"name.ns.svc.cluster.local:80", nullptr, "name.ns.svc.cluster.local", 80},
      {"localhost:1", nullptr, "localhost", 1},
      {"Example.COM:8080", nullptr, "Example.COM", 8080},
  };
  for (const auto& c : cases) {
    auto a = parse_authority(c.text);
    ASSERT_TRUE(a) << c.text << ": " << a.error().message;
    if (c.ip) {
      ASSERT_TRUE(a->ip) << c.text;
      EXPECT_EQ(a->ip->to_string(), c.ip);
      EXPECT_TRUE(a->host.empty());
    } else {
      EXPECT_FALSE(a->ip) << c.text;
      EXPECT_EQ(a->host, c.host);
    }
    EXPECT_EQ(a->port, c.port);
    EXPECT_EQ(a->to_string(), c.text);  // round trip
  }
}

TEST(ParseAuthority, RejectsMalformed) {
  const char* cases[] = {
      "",                       // empty
      "10.0.0.1",               // no port
      "10.0.0.1:",              // empty port
      "10.0.0.1:0",             // port 0
      "10.0.0.1:65536",         // out of range
      "10.0.0.1:080",           // leading zero
      "10.0.0.1:+80",           // sign
      "10.0.0.1:8 0",           // space
      "::1:80",                 // v6 without brackets
      "[::1]",                  // no port
      "[10.0.0.1]:80",          // v4 in brackets
      "[fe80::1%eth0]:80",      // zone id
      "[fe80::1%25eth0]:80",    // url-encoded zone id
      "010.0.0.1:80",           // leading-zero octet (octal to some parsers)
      "1.2.3:80",               // short dotted form
      "host_name:80",           // underscore
      "exa mple.com:80",        // space
      "example.com.:80",        // trailing dot
      "-bad.com:80",            // leading hyphen
      "user@host:80",           // userinfo
      "host:80/path",           // path
      ":80",                    // empty host
      "http://host:80",         // scheme
  };
  for (const char* text : cases) {
    auto a = parse_authority(text);
    EXPECT_FALSE(a) << text << " parsed as " << (a ? a->to_string() : "");
  }
  EXPECT_FALSE(parse_authority(std::string_view("10.0.0.1:80\0", 12)));
}

}  // namespace
}  // namespace zt::hbone
