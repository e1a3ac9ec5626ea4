#include "ztunnel/xds/resource_cache.h"

#include <chrono>
#include <cstdio>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>
#include <time.h>

#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"

namespace zt::xds {
namespace {

namespace pb = istio::workload;
namespace sec = istio::security;

// Any::PackFrom(const Message&) would build the message's descriptor, which the test
// XdsResourceCache.DecodingBuildsNoDescriptors checks the cache never does: pack by hand.
void pack(google::protobuf::Any& any, const pb::Address& a) {
  any.set_type_url(std::string(kAddressType));
  any.set_value(a.SerializeAsString());
}
void pack(google::protobuf::Any& any, const sec::Authorization& a) {
  any.set_type_url(std::string(kAuthorizationType));
  any.set_value(a.SerializeAsString());
}

asio::ip::address ip(std::string_view text) { return net::parse_ip(text).value(); }

std::string raw(std::string_view text) {
  auto a = ip(text);
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return std::string(b.begin(), b.end());
  }
  auto b = a.to_v6().to_bytes();
  return std::string(b.begin(), b.end());
}

pb::Workload workload(std::string_view name, std::vector<std::string_view> ips,
                      std::string_view network = "") {
  pb::Workload w;
  w.set_uid(fmt::format("cluster1//v1/Pod/default/{}", name));
  w.set_name(std::string(name));
  w.set_namespace_("default");
  w.set_network(std::string(network));
  for (auto text : ips) w.add_addresses(raw(text));
  return w;
}

Resource resource(const pb::Workload& w, std::string name = {}) {
  pb::Address a;
  *a.mutable_workload() = w;
  Resource r{name.empty() ? w.uid() : std::move(name), "v1", {}};
  pack(r.body, a);
  return r;
}

pb::Service service(std::string_view name, std::string_view vip) {
  pb::Service s;
  s.set_name(std::string(name));
  s.set_namespace_("default");
  s.set_hostname(fmt::format("{}.default.svc.cluster.local", name));
  auto* a = s.add_addresses();
  a->set_address(raw(vip));
  auto* p = s.add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  return s;
}

Resource resource(const pb::Service& s, std::string name = {}) {
  pb::Address a;
  *a.mutable_service() = s;
  Resource r{name.empty() ? fmt::format("{}/{}", s.namespace_(), s.hostname()) : std::move(name),
             "v1",
             {}};
  pack(r.body, a);
  return r;
}

sec::Authorization policy(std::string_view name, uint32_t port) {
  sec::Authorization a;
  a.set_name(std::string(name));
  a.set_namespace_("default");
  a.set_scope(sec::NAMESPACE);
  a.add_rules()->add_clauses()->add_matches()->add_destination_ports(port);
  return a;
}

Resource resource(const sec::Authorization& a, std::string name = {}) {
  Resource r{
      name.empty() ? fmt::format("{}/{}", a.namespace_(), a.name()) : std::move(name), "v1", {}};
  pack(r.body, a);
  return r;
}

DeltaUpdate addresses(std::vector<Resource> added, std::vector<std::string> removed = {}) {
  return DeltaUpdate{std::string(kAddressType), std::move(added), std::move(removed)};
}

DeltaUpdate policies(std::vector<Resource> added, std::vector<std::string> removed = {}) {
  return DeltaUpdate{std::string(kAuthorizationType), std::move(added), std::move(removed)};
}

std::string uid(std::string_view name) { return fmt::format("cluster1//v1/Pod/default/{}", name); }

TEST(XdsResourceCache, StartsEmpty) {
  XdsResourceCache cache;
  EXPECT_EQ(cache.generation(), 0u);
  auto s = cache.snapshot();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->workloads().empty());
}

TEST(XdsResourceCache, AddedResourcesAreFoundInTheSnapshot) {
  XdsResourceCache cache;
  auto w = workload("a", {"10.0.0.1"});
  (*w.mutable_services())["default/svc.default.svc.cluster.local"].add_ports()->set_service_port(
      80);
  auto r = cache.apply(addresses({resource(w), resource(service("svc", "10.96.0.1"))}));
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(cache.apply(policies({resource(policy("p", 80))})).empty());
  EXPECT_EQ(cache.generation(), 2u);

  auto s = cache.snapshot();
  auto found = s->find_workload("", ip("10.0.0.1"));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->uid, uid("a"));
  EXPECT_EQ(s->find_workload_by_uid(uid("a")), found);
  auto svc = s->find_service("", ip("10.96.0.1"));
  ASSERT_TRUE(svc);
  EXPECT_EQ(svc->key(), "default/svc.default.svc.cluster.local");
  EXPECT_EQ(s->find_service("default", "svc.default.svc.cluster.local"), svc);
  ASSERT_EQ(s->endpoints(svc->key()).size(), 1u);
  EXPECT_EQ(s->endpoints(svc->key())[0].workload, found);
  auto p = s->find_policy("default/p");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->rules[0][0][0].destination_ports, std::vector<uint16_t>{80});
}

TEST(XdsResourceCache, SnapshotIsRebuiltOnlyWhenSomethingChanged) {
  XdsResourceCache cache;
  cache.apply(addresses({resource(workload("a", {"10.0.0.1"}))}));
  auto first = cache.snapshot();
  EXPECT_EQ(cache.snapshot(), first);
  // An update that changes nothing (all rejected, unknown removals) keeps the generation.
  auto gen = cache.generation();
  cache.apply(addresses({resource(workload("b", {"10.0.0.1"}))}, {"nope"}));
  EXPECT_EQ(cache.generation(), gen);
  EXPECT_EQ(cache.snapshot(), first);
  cache.apply(addresses({resource(workload("b", {"10.0.0.2"}))}));
  EXPECT_GT(cache.generation(), gen);
  auto second = cache.snapshot();
  EXPECT_NE(second, first);
  // Unchanged objects are shared between snapshots, not copied.
  EXPECT_EQ(second->find_workload_by_uid(uid("a")), first->find_workload_by_uid(uid("a")));
}

TEST(XdsResourceCache, ChangedWorkloadReplacesTheOldVersion) {
  XdsResourceCache cache;
  cache.apply(addresses({resource(workload("a", {"10.0.0.1"}))}));
  auto r = cache.apply(addresses({resource(workload("a", {"10.0.0.2"}))}));
  EXPECT_TRUE(r.empty());
  auto s = cache.snapshot();
  EXPECT_FALSE(s->find_workload("", ip("10.0.0.1")));
  ASSERT_TRUE(s->find_workload("", ip("10.0.0.2")));
  EXPECT_EQ(s->workloads().size(), 1u);
  // The released IP can be taken by another workload.
  EXPECT_TRUE(cache.apply(addresses({resource(workload("b", {"10.0.0.1"}))})).empty());
  EXPECT_EQ(cache.snapshot()->find_workload("", ip("10.0.0.1"))->uid, uid("b"));
}

TEST(XdsResourceCache, RemovalDropsTheResourceAndUnknownNamesAreIgnored) {
  XdsResourceCache cache;
  cache.apply(
      addresses({resource(workload("a", {"10.0.0.1"})), resource(service("svc", "10.96.0.1"))}));
  cache.apply(policies({resource(policy("p", 80))}));
  auto r =
      cache.apply(addresses({}, {uid("a"), "default/svc.default.svc.cluster.local", "never/seen"}));
  EXPECT_TRUE(r.empty());
  r = cache.apply(policies({}, {"default/p", "default/unknown"}));
  EXPECT_TRUE(r.empty());
  auto s = cache.snapshot();
  EXPECT_TRUE(s->workloads().empty());
  EXPECT_TRUE(s->services().empty());
  EXPECT_TRUE(s->policies().empty());
  auto gen = cache.generation();
  cache.apply(addresses({}, {"still/unknown"}));
  EXPECT_EQ(cache.generation(), gen);
  // The removed workload's IP is free again.
  EXPECT_TRUE(cache.apply(addresses({resource(workload("b", {"10.0.0.1"}))})).empty());
}

TEST(XdsResourceCache, RemovalBeforeAddInOneUpdateMovesAnIp) {
  XdsResourceCache cache;
  cache.apply(addresses({resource(workload("a", {"10.0.0.1"}))}));
  auto r = cache.apply(addresses({resource(workload("b", {"10.0.0.1"}))}, {uid("a")}));
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(cache.snapshot()->find_workload("", ip("10.0.0.1"))->uid, uid("b"));
}

TEST(XdsResourceCache, BadResourceIsRejectedAloneAndTheOldVersionStays) {
  XdsResourceCache cache;
  cache.apply(addresses({resource(workload("a", {"10.0.0.1"}))}));
  auto bad = workload("a", {"10.0.0.2"});
  bad.add_addresses("12345");
  auto r = cache.apply(addresses({resource(bad), resource(workload("b", {"10.0.0.3"}))}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, uid("a"));
  EXPECT_EQ(r[0].reason, "addresses[1]: 5 bytes is not an IPv4 or IPv6 address");
  auto s = cache.snapshot();
  ASSERT_TRUE(s->find_workload("", ip("10.0.0.1")));  // the accepted version of "a"
  EXPECT_FALSE(s->find_workload("", ip("10.0.0.2")));
  EXPECT_TRUE(s->find_workload("", ip("10.0.0.3")));  // the good one in the same update

  // Same for policies.
  cache.apply(policies({resource(policy("p", 80))}));
  auto bad_policy = policy("p", 90);
  bad_policy.mutable_rules(0)->mutable_clauses(0)->mutable_matches(0)->add_destination_ports(99999);
  r = cache.apply(policies({resource(bad_policy)}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, "default/p");
  EXPECT_EQ(r[0].reason.rfind("rules[0].clauses[0].matches[0].destination_ports[1]: ", 0), 0u)
      << r[0].reason;
  EXPECT_EQ(cache.snapshot()->find_policy("default/p")->rules[0][0][0].destination_ports,
            std::vector<uint16_t>{80});
}

TEST(XdsResourceCache, ResourceNameMustMatchTheObject) {
  XdsResourceCache cache;
  auto r = cache.apply(addresses({resource(workload("a", {"10.0.0.1"}), "wrong"),
                                  resource(service("svc", "10.96.0.1"), "default/other"),
                                  resource(workload("b", {"10.0.0.2"}))}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].name, "wrong");
  EXPECT_EQ(r[0].reason,
            "resource name does not match the workload uid \"cluster1//v1/Pod/default/a\"");
  EXPECT_EQ(r[1].name, "default/other");
  EXPECT_EQ(r[1].reason,
            "resource name does not match the service namespace/hostname "
            "\"default/svc.default.svc.cluster.local\"");
  r = cache.apply(policies({resource(policy("p", 80), "default/q")}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].reason, "resource name does not match the policy namespace/name \"default/p\"");
  auto s = cache.snapshot();
  EXPECT_EQ(s->workloads().size(), 1u);
  EXPECT_TRUE(s->services().empty());
  EXPECT_TRUE(s->policies().empty());
}

TEST(XdsResourceCache, EmptyAddressAndWrongBodiesAreRejected) {
  XdsResourceCache cache;
  Resource empty{"x", "v1", {}};
  pack(empty.body, pb::Address{});
  Resource wrong_type{"y", "v1", {}};
  pack(wrong_type.body, policy("p", 80));
  Resource garbage{"z", "v1", {}};
  garbage.body.set_type_url("type.googleapis.com/istio.workload.Address");
  garbage.body.set_value("\xff\xff\xff");
  auto r = cache.apply(addresses({empty, wrong_type, garbage}));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].reason, "Address has neither a workload nor a service");
  EXPECT_EQ(r[1].reason,
            "body is \"type.googleapis.com/istio.security.Authorization\", not "
            "istio.workload.Address");
  EXPECT_EQ(r[2].reason, "cannot decode istio.workload.Address");

  Resource not_policy = resource(workload("a", {"10.0.0.1"}));
  r = cache.apply(policies({not_policy}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].reason.rfind("body is \"type.googleapis.com/istio.workload.Address\"", 0), 0u);

  r = cache.apply(DeltaUpdate{"type.googleapis.com/other", {not_policy}, {uid("a")}});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].reason, "unsupported type \"type.googleapis.com/other\"");
  EXPECT_EQ(cache.generation(), 0u);
}

// Decoding checks the type URL by name and parses the bytes: it never builds the protobuf
// descriptors of the workload or security API, which would load the generated descriptor pool
// (heap that stays allocated, code pages that stay resident; issue 7's ztunnel RSS target).
TEST(XdsResourceCache, DecodingBuildsNoDescriptors) {
  XdsResourceCache cache;
  auto added =
      addresses({resource(workload("a", {"10.0.0.1"})), resource(service("svc", "10.96.0.1"))});
  EXPECT_TRUE(cache.apply(added).empty());
  EXPECT_TRUE(cache.apply(policies({resource(policy("p", 80))})).empty());
  ASSERT_TRUE(cache.snapshot()->find_workload_by_uid(uid("a")));
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  EXPECT_FALSE(pool->InternalIsFileLoaded("istio/workload/workload.proto"));
  EXPECT_FALSE(pool->InternalIsFileLoaded("istio/security/authorization.proto"));
}

TEST(XdsResourceCache, IpCollisionIsRejectedNamingTheOtherWorkload) {
  XdsResourceCache cache;
  cache.apply(addresses({resource(workload("a", {"10.0.0.1", "fd00::1"}))}));
  auto r = cache.apply(addresses({resource(workload("b", {"10.0.0.9", "fd00::1"}))}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, uid("b"));
  EXPECT_EQ(r[0].reason,
            "address fd00::1 on network \"\" is already used by workload "
            "\"cluster1//v1/Pod/default/a\"");
  EXPECT_FALSE(cache.snapshot()->find_workload("", ip("10.0.0.9")));

  // A v4-mapped address is the same IPv4 address, as State looks it up.
  r = cache.apply(addresses({resource(workload("c", {"::ffff:10.0.0.1"}))}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(r[0].reason.find("already used by workload \"cluster1//v1/Pod/default/a\""),
            std::string::npos);

  // The same IP on another network, or on a host-network workload, is no collision.
  EXPECT_TRUE(cache.apply(addresses({resource(workload("d", {"10.0.0.1"}, "net2"))})).empty());
  auto host = workload("e", {"10.0.0.1"});
  host.set_network_mode(pb::HOST_NETWORK);
  EXPECT_TRUE(cache.apply(addresses({resource(host)})).empty());

  // Within one update the first one wins, and a workload may not list an IP twice.
  r = cache.apply(
      addresses({resource(workload("f", {"10.0.0.5"})), resource(workload("g", {"10.0.0.5"})),
                 resource(workload("h", {"10.0.0.6", "10.0.0.6"}))}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].name, uid("g"));
  EXPECT_EQ(r[1].reason, "address 10.0.0.6 on network \"\" is listed twice");

  auto s = cache.snapshot();
  EXPECT_EQ(s->find_workload("", ip("10.0.0.1"))->uid, uid("a"));
  EXPECT_EQ(s->find_workload("net2", ip("10.0.0.1"))->uid, uid("d"));
  EXPECT_EQ(s->find_workload("", ip("10.0.0.5"))->uid, uid("f"));
  EXPECT_EQ(s->workloads().size(), 4u);  // a, d, e, f
}

TEST(XdsResourceCache, AnAddressNameCanChangeFromServiceToWorkload) {
  XdsResourceCache cache;
  auto svc = service("svc", "10.96.0.1");
  cache.apply(addresses({resource(svc)}));
  // A workload whose uid happens to be the same name replaces the service.
  auto w = workload("a", {"10.0.0.1"});
  w.set_uid("default/svc.default.svc.cluster.local");
  EXPECT_TRUE(cache.apply(addresses({resource(w)})).empty());
  auto s = cache.snapshot();
  EXPECT_TRUE(s->services().empty());
  EXPECT_EQ(s->workloads().size(), 1u);
  EXPECT_TRUE(cache.apply(addresses({resource(svc)})).empty());
  s = cache.snapshot();
  EXPECT_TRUE(s->workloads().empty());
  EXPECT_EQ(s->services().size(), 1u);
  // and the workload's IP was released with it
  EXPECT_TRUE(cache.apply(addresses({resource(workload("b", {"10.0.0.1"}))})).empty());
}

TEST(XdsResourceCache, ServicesMayShareAVip) {
  XdsResourceCache cache;
  auto other = service("svc", "10.96.0.1");
  other.set_namespace_("other");
  auto r = cache.apply(addresses({resource(service("svc", "10.96.0.1")), resource(other)}));
  EXPECT_TRUE(r.empty());
  auto s = cache.snapshot();
  EXPECT_EQ(s->services().size(), 2u);
  EXPECT_EQ(s->find_service("", ip("10.96.0.1"), "other")->namespace_name, "other");
}

// Not an assertion: a rough number for the issue (10k workloads, 1k services, 500 policies,
// then single-pod updates each followed by a snapshot).
TEST(XdsResourceCache, SnapshotTimingAtScale) {
  XdsResourceCache cache;
  std::vector<Resource> added;
  for (int i = 0; i < 1000; ++i) {
    added.push_back(resource(
        service(fmt::format("svc{}", i), fmt::format("10.96.{}.{}", i / 250, i % 250 + 1))));
  }
  for (int i = 0; i < 10000; ++i) {
    auto w = workload(fmt::format("pod{}", i), {});
    w.add_addresses(raw(fmt::format("10.1.{}.{}", i / 250, i % 250 + 1)));
    auto& ports =
        (*w.mutable_services())[fmt::format("default/svc{}.default.svc.cluster.local", i % 1000)];
    auto* p = ports.add_ports();
    p->set_service_port(80);
    p->set_target_port(8080);
    added.push_back(resource(w));
  }
  // Thread CPU time, not wall time: the machine running the tests may be busy.
  auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  };
  auto t0 = cpu_ms();
  ASSERT_TRUE(cache.apply(addresses(std::move(added))).empty());
  std::vector<Resource> policy_list;
  for (int i = 0; i < 500; ++i) policy_list.push_back(resource(policy(fmt::format("p{}", i), 80)));
  ASSERT_TRUE(cache.apply(policies(std::move(policy_list))).empty());
  auto t1 = cpu_ms();
  auto s = cache.snapshot();
  auto t2 = cpu_ms();
  ASSERT_EQ(s->workloads().size(), 10000u);
  ASSERT_EQ(s->services().size(), 1000u);
  ASSERT_EQ(s->policies().size(), 500u);

  constexpr int kUpdates = 50;
  double apply_ms = 0;
  double snapshot_ms = 0;
  double release_ms = 0;
  for (int i = 0; i < kUpdates; ++i) {
    auto w = workload(fmt::format("pod{}", i), {});
    w.add_addresses(raw(fmt::format("10.2.0.{}", i + 1)));
    auto update = addresses({resource(w)});
    auto a = cpu_ms();
    ASSERT_TRUE(cache.apply(update).empty());
    auto b = cpu_ms();
    auto next = cache.snapshot();
    auto c = cpu_ms();
    s = std::move(next);  // the previous snapshot is freed here
    auto d = cpu_ms();
    apply_ms += b - a;
    snapshot_ms += c - b;
    release_ms += d - c;
  }
  EXPECT_TRUE(s->find_workload("", ip("10.2.0.1")));
  std::printf(
      "[timing] CPU ms: apply 10k workloads + 1k services + 500 policies %.1f; first snapshot "
      "%.1f; per single-pod update (avg of %d): apply %.3f, snapshot %.2f, freeing the previous "
      "snapshot %.2f\n",
      t1 - t0, t2 - t1, kUpdates, apply_ms / kUpdates, snapshot_ms / kUpdates,
      release_ms / kUpdates);
}

}  // namespace
}  // namespace zt::xds
