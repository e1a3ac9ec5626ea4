#include "waypoint/server/binding.h"

#include <gtest/gtest.h>

#include "common/net/address.h"
#include "waypoint/http2/http2.h"

namespace zt::waypoint::server {
namespace {

using zt::state::GatewayAddress;
using zt::state::NamespacedHostname;
using zt::state::NetworkAddress;

asio::ip::address ip(const char* text) { return *net::parse_ip(text); }

proxy::Self self() {
  proxy::Self s;
  s.name = "wp";
  s.namespace_name = "shop";
  s.ips = {ip("10.0.0.50")};
  s.hostname = "wp.shop.svc.cluster.local";
  return s;
}

GatewayAddress by_ip(const char* a) { return GatewayAddress{NetworkAddress{"", ip(a)}}; }
GatewayAddress by_host(const char* ns, const char* host) {
  return GatewayAddress{NamespacedHostname{ns, host}};
}

std::shared_ptr<const zt::state::State> mesh() {
  std::vector<zt::state::Workload> workloads;
  zt::state::Workload bound_pod;
  bound_pod.uid = "c//Pod/shop/pod-a";
  bound_pod.name = "pod-a";
  bound_pod.namespace_name = "shop";
  bound_pod.workload_ips = {ip("10.1.0.1")};
  bound_pod.waypoint = by_ip("10.0.0.50");
  workloads.push_back(bound_pod);
  zt::state::Workload plain_pod = bound_pod;
  plain_pod.uid = "c//Pod/shop/pod-b";
  plain_pod.name = "pod-b";
  plain_pod.workload_ips = {ip("10.1.0.2")};
  plain_pod.waypoint.reset();
  workloads.push_back(plain_pod);

  std::vector<zt::state::Service> services;
  zt::state::Service reviews;
  reviews.name = "reviews";
  reviews.namespace_name = "shop";
  reviews.hostname = "reviews.shop.svc.cluster.local";
  reviews.vips = {NetworkAddress{"", ip("10.96.0.10")}};
  reviews.ports = {{9080, 9080}};
  reviews.waypoint = by_ip("10.0.0.50");
  services.push_back(reviews);
  zt::state::Service by_name = reviews;
  by_name.name = "ratings";
  by_name.hostname = "ratings.shop.svc.cluster.local";
  by_name.vips = {NetworkAddress{"", ip("10.96.0.11")}};
  by_name.waypoint = by_host("shop", "wp.shop.svc.cluster.local");
  services.push_back(by_name);
  zt::state::Service other = reviews;
  other.name = "other";
  other.hostname = "other.shop.svc.cluster.local";
  other.vips = {NetworkAddress{"", ip("10.96.0.12")}};
  other.waypoint = by_ip("10.0.0.99");
  services.push_back(other);
  zt::state::Service none = reviews;
  none.name = "none";
  none.hostname = "none.shop.svc.cluster.local";
  none.vips = {NetworkAddress{"", ip("10.96.0.13")}};
  none.waypoint.reset();
  services.push_back(none);
  auto st = zt::state::State::build(std::move(workloads), std::move(services), {});
  EXPECT_TRUE(st) << st.error().describe();
  return *st;
}

TEST(WaypointBinding, ServiceBoundByAddressOrHostname) {
  auto st = mesh();
  auto b = bind_target(*st, self(), ip("10.96.0.10"), 9080);
  EXPECT_EQ(b.status, 200) << b.reason;
  ASSERT_TRUE(b.service);
  EXPECT_EQ(b.service->name, "reviews");
  EXPECT_FALSE(b.workload);
  auto h = bind_target(*st, self(), ip("10.96.0.11"), 9080);
  EXPECT_EQ(h.status, 200) << h.reason;
  ASSERT_TRUE(h.service);
  EXPECT_EQ(h.service->name, "ratings");
  // v4-mapped authorities are the same address.
  auto m = bind_target(*st, self(), ip("::ffff:10.96.0.10"), 9080);
  EXPECT_EQ(m.status, 200) << m.reason;
}

TEST(WaypointBinding, ServiceOfAnotherWaypointOrNoneIsRefused) {
  auto st = mesh();
  auto other = bind_target(*st, self(), ip("10.96.0.12"), 9080);
  EXPECT_EQ(other.status, 401);
  EXPECT_NE(other.reason.find("shop/other.shop.svc.cluster.local"), std::string::npos)
      << other.reason;
  EXPECT_NE(other.reason.find("10.0.0.99"), std::string::npos) << other.reason;
  EXPECT_FALSE(other.service);
  auto none = bind_target(*st, self(), ip("10.96.0.13"), 9080);
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.reason.find("no waypoint"), std::string::npos) << none.reason;
}

TEST(WaypointBinding, UnknownPortOfABoundService) {
  auto b = bind_target(*mesh(), self(), ip("10.96.0.10"), 80);
  EXPECT_EQ(b.status, 503);
  EXPECT_NE(b.reason.find("no port 80"), std::string::npos) << b.reason;
}

TEST(WaypointBinding, Workloads) {
  auto st = mesh();
  auto b = bind_target(*st, self(), ip("10.1.0.1"), 8080);
  EXPECT_EQ(b.status, 200) << b.reason;
  ASSERT_TRUE(b.workload);
  EXPECT_EQ(b.workload->name, "pod-a");
  auto plain = bind_target(*st, self(), ip("10.1.0.2"), 8080);
  EXPECT_EQ(plain.status, 401);
  EXPECT_NE(plain.reason.find("shop/pod-b"), std::string::npos) << plain.reason;
  auto unknown = bind_target(*st, self(), ip("192.0.2.1"), 80);
  EXPECT_EQ(unknown.status, 503);
  EXPECT_NE(unknown.reason.find("no service or workload at 192.0.2.1"), std::string::npos);
}

TEST(WaypointBinding, AnotherNamespacesWaypointOfTheSameName) {
  auto st = mesh();
  auto s = self();
  s.namespace_name = "other";
  s.hostname = "wp.other.svc.cluster.local";
  s.ips.clear();
  auto b = bind_target(*st, s, ip("10.96.0.11"), 9080);
  EXPECT_EQ(b.status, 401) << b.reason;
}

TEST(WaypointSniff, Http2Preface) {
  std::string preface(http2::kClientPreface);
  EXPECT_EQ(sniff(preface), Sniffed::kHttp2);
  EXPECT_EQ(sniff(preface + "\x00\x00\x12\x04"), Sniffed::kHttp2);
  EXPECT_EQ(sniff("PRI * HT"), Sniffed::kNeedMore);
  EXPECT_EQ(sniff("PRI * HT", true), Sniffed::kOther);
}

TEST(WaypointSniff, Http1RequestLine) {
  EXPECT_EQ(sniff("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Sniffed::kHttp1);
  EXPECT_EQ(sniff("POST /x?y=1 HTTP/1.0\r\n"), Sniffed::kHttp1);
  EXPECT_EQ(sniff("GET /"), Sniffed::kNeedMore);
  EXPECT_EQ(sniff("GE"), Sniffed::kNeedMore);
  EXPECT_EQ(sniff("GET / HTTP/1"), Sniffed::kNeedMore);
  EXPECT_EQ(sniff("GET / HTTP/1.", true), Sniffed::kHttp1);
  // A request line that stalls or grows past the sniff limit still goes to the codec: raw TCP
  // would bypass L7 policy.
  EXPECT_EQ(sniff("GET /slow", true), Sniffed::kHttp1);
  EXPECT_EQ(sniff("GET /" + std::string(kMaxSniffBytes, 'a')), Sniffed::kHttp1);
}

TEST(WaypointSniff, OtherProtocols) {
  EXPECT_EQ(sniff("", true), Sniffed::kOther);
  EXPECT_EQ(sniff(""), Sniffed::kNeedMore);
  EXPECT_EQ(sniff(std::string("\x16\x03\x01\x02\x00", 5)), Sniffed::kOther);  // TLS
  EXPECT_EQ(sniff("SSH-2.0-OpenSSH_9.6\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff("GET / HTTP/2.0\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff("GET  / HTTP/1.1\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff("HELLO", true), Sniffed::kOther);
  EXPECT_EQ(sniff("GET /\r\n"), Sniffed::kOther);  // HTTP/0.9
}

}  // namespace
}  // namespace zt::waypoint::server
