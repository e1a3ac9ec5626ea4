#include "common/hbone/request.h"

#include <gtest/gtest.h>

namespace zt::hbone {
namespace {

asio::ip::address ip(const char* text) { return asio::ip::make_address(text); }

struct Case {
  const char* name;
  const char* method;
  const char* authority;
  const char* arrived_at;
  int status;
  const char* reason_contains;
};

TEST(CheckConnectRequest, Decisions) {
  const Case cases[] = {
      {"connect to own pod ip", "CONNECT", "10.0.0.2:8080", "10.0.0.2", 200, ""},
      {"GET is not CONNECT", "GET", "10.0.0.2:8080", "10.0.0.2", 400, "method \"GET\" is not CONNECT"},
      {"lower-case connect", "connect", "10.0.0.2:8080", "10.0.0.2", 400, "not CONNECT"},
      {"malformed authority", "CONNECT", "10.0.0.2", "10.0.0.2", 400, "malformed authority"},
      {"garbage authority", "CONNECT", "!!", "10.0.0.2", 400, "malformed authority"},
      {"authority ip is another pod", "CONNECT", "10.0.0.3:8080", "10.0.0.2", 400,
       "ip mismatch: 10.0.0.2 != 10.0.0.3"},
      {"hostname passes the ip check", "CONNECT", "echo.default.svc.cluster.local:80", "10.0.0.2",
       200, ""},
      {"v6 own pod", "CONNECT", "[fd00::2]:8080", "fd00::2", 200, ""},
      {"v6 other pod", "CONNECT", "[fd00::3]:8080", "fd00::2", 400, "ip mismatch"},
      {"v4 authority on a dual-stack socket", "CONNECT", "10.0.0.2:8080", "::ffff:10.0.0.2", 200,
       ""},
      {"v6 authority for a v4 pod", "CONNECT", "[::1]:8080", "127.0.0.1", 400, "ip mismatch"},
  };
  for (const auto& c : cases) {
    ConnectRequest request{c.method, c.authority, {}};
    auto decision = check_connect_request(request, ip(c.arrived_at));
    EXPECT_EQ(decision.status, c.status) << c.name << ": " << decision.reason;
    EXPECT_NE(decision.reason.find(c.reason_contains), std::string::npos)
        << c.name << ": " << decision.reason;
    if (c.status == 200) {
      EXPECT_TRUE(decision.reason.empty()) << c.name;
      EXPECT_EQ(decision.authority.to_string(), c.authority) << c.name;
    }
  }
}

TEST(FindHeader, IgnoresCase) {
  ConnectRequest request{"CONNECT", "10.0.0.1:80", {{"Forwarded", "for=\"1.2.3.4:5\""}, {"x", "y"}}};
  EXPECT_EQ(find_header(request, "forwarded"), "for=\"1.2.3.4:5\"");
  EXPECT_EQ(find_header(request, "X"), "y");
  EXPECT_FALSE(find_header(request, "baggage"));
}

}  // namespace
}  // namespace zt::hbone
