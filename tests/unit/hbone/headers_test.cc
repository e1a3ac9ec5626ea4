#include "common/hbone/headers.h"

#include <regex>
#include <set>

#include <gtest/gtest.h>

namespace zt::hbone {
namespace {

tcp::endpoint ep(const char* ip, uint16_t port) {
  return tcp::endpoint(asio::ip::make_address(ip), port);
}

TEST(Forwarded, MakeQuotesTheNodeAndBracketsV6) {
  EXPECT_EQ(make_forwarded(ep("10.0.0.1", 1234)), "for=\"10.0.0.1:1234\"");
  EXPECT_EQ(make_forwarded(ep("fd00::1", 1234)), "for=\"[fd00::1]:1234\"");
  EXPECT_EQ(make_forwarded(ep("10.0.0.1", 1234), "echo.default.svc.cluster.local"),
            "for=\"10.0.0.1:1234\";host=echo.default.svc.cluster.local");
}

TEST(Forwarded, ParseRoundTripsAndToleratesVariants) {
  for (auto e : {ep("10.0.0.1", 1234), ep("fd00::1", 80), ep("::1", 65535)}) {
    EXPECT_EQ(parse_forwarded_for(make_forwarded(e)), e);
    EXPECT_EQ(parse_forwarded_for(make_forwarded(e, "svc.ns")), e);
  }
  EXPECT_EQ(parse_forwarded_for("for=10.0.0.1"), ep("10.0.0.1", 0));
  EXPECT_EQ(parse_forwarded_for("For=\"[::1]\""), ep("::1", 0));
  EXPECT_EQ(parse_forwarded_for("proto=https; for=\"10.0.0.9:7\";by=x"), ep("10.0.0.9", 7));
  EXPECT_EQ(parse_forwarded_for("for=\"10.0.0.1:1\", for=\"10.0.0.2:2\""), ep("10.0.0.1", 1));
  EXPECT_EQ(parse_forwarded_host("for=\"10.0.0.1:1\";host=a.b"), "a.b");
  EXPECT_EQ(parse_forwarded_host("for=\"10.0.0.1:1\";host=\"a;b\""), "a;b");
  EXPECT_FALSE(parse_forwarded_host("for=\"10.0.0.1:1\""));
}

TEST(Forwarded, ParseRejectsGarbage) {
  for (const char* bad : {"", "for=", "for=unknown", "for=_hidden", "for=\"_x:1\"", "by=1.2.3.4",
                          "for=\"10.0.0.1:1", "for=::1", "for=\"::1:80\"", "for=\"[::1]:x\"",
                          "for=10.0.0.1:99999", "for=\"\\", "\"\"\"", ";;;,,,", "for=host.name"}) {
    EXPECT_FALSE(parse_forwarded_for(bad)) << bad;
  }
}

TEST(Traceparent, W3cFormatRandomAndValid) {
  std::mt19937_64 rng(42);
  std::regex format("^00-[0-9a-f]{32}-[0-9a-f]{16}-00$");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = make_traceparent(rng);
    EXPECT_TRUE(std::regex_match(t, format)) << t;
    EXPECT_TRUE(is_valid_traceparent(t)) << t;
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Traceparent, ValidationTable) {
  EXPECT_TRUE(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  for (const char* bad : {"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    EXPECT_FALSE(is_valid_traceparent(bad)) << bad;
  }
}

TEST(Baggage, MakeOmitsEmptyValues) {
  BaggageFields f{.cluster = "Kubernetes",
                  .namespace_name = "default",
                  .workload_type = "deployment",
                  .workload_name = "echo",
                  .service_name = "echo",
                  .service_version = "v1",
                  .region = "",
                  .zone = ""};
  EXPECT_EQ(make_baggage(f),
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=echo,"
            "service.name=echo,service.version=v1");
  EXPECT_EQ(make_baggage(BaggageFields{}), "");
  EXPECT_EQ(make_baggage(BaggageFields{.namespace_name = "ns", .workload_type = "pod",
                                       .workload_name = "p"}),
            "k8s.namespace.name=ns,k8s.pod.name=p");
  EXPECT_EQ(make_baggage(BaggageFields{.workload_name = "w"}), "k8s.deployment.name=w");
  EXPECT_EQ(make_baggage(BaggageFields{.region = "eu west", .zone = "a,b"}),
            "cloud.region=eu%20west,cloud.availability_zone=a%2Cb");
}

TEST(Baggage, ParseRoundTrips) {
  BaggageFields f{.cluster = "c1",
                  .namespace_name = "ns",
                  .workload_type = "job",
                  .workload_name = "j",
                  .service_name = "svc",
                  .service_version = "v2",
                  .region = "r 1",
                  .zone = "z;1"};
  EXPECT_EQ(parse_baggage(make_baggage(f)), f);
  auto parsed = parse_baggage(" k8s.namespace.name = a ;prop=1, unknown=x, broken, k8s.cronjob.name=c");
  EXPECT_EQ(parsed.namespace_name, "a");
  EXPECT_EQ(parsed.workload_type, "cronjob");
  EXPECT_EQ(parsed.workload_name, "c");
  EXPECT_EQ(parse_baggage("%").cluster, "");
}

}  // namespace
}  // namespace zt::hbone
