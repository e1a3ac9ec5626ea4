// The Delta ADS server over real gRPC on loopback: full set on subscribe, only the difference on
// publish, NACK handling, reconnect with initial_resource_versions, several clients at once.
#include "meshd/xds/delta_server.h"

#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "tests/integration/meshd/ads_test_client.h"
#include "tests/support/grpc_library.h"

namespace zt::meshd {
namespace {

using namespace std::chrono_literals;
using testing::AdsTestClient;
using testing::DeltaDiscoveryRequest;
using testing::kAddressUrl;
using testing::kAuthorizationUrl;

std::string uid(const std::string& name) { return fmt::format("Kubernetes//Pod/default/{}", name); }

istio::workload::Address workload(const std::string& name, const std::string& sa = "default") {
  istio::workload::Address a;
  auto* w = a.mutable_workload();
  w->set_uid(uid(name));
  w->set_name(name);
  w->set_namespace_("default");
  w->set_service_account(sa);
  w->set_trust_domain("cluster.local");
  return a;
}

istio::workload::Address service(const std::string& name) {
  istio::workload::Address a;
  auto* s = a.mutable_service();
  s->set_name(name);
  s->set_namespace_("default");
  s->set_hostname(fmt::format("{}.default.svc.cluster.local", name));
  return a;
}

istio::security::Authorization policy(const std::string& name) {
  istio::security::Authorization p;
  p.set_name(name);
  p.set_namespace_("default");
  p.set_action(istio::security::DENY);
  return p;
}

MeshSnapshot base_snapshot() {
  MeshSnapshot s;
  for (const char* n : {"w1", "w2", "w3"}) s.addresses[uid(n)] = workload(n);
  s.addresses["default/svc.default.svc.cluster.local"] = service("svc");
  s.authorizations["default/deny-all"] = policy("deny-all");
  return s;
}

std::shared_ptr<const MeshSnapshot> share(MeshSnapshot s) {
  return std::make_shared<const MeshSnapshot>(std::move(s));
}

std::set<std::string> names_of(const envoy::service::discovery::v3::DeltaDiscoveryResponse& r) {
  std::set<std::string> out;
  for (const auto& res : r.resources()) out.insert(res.name());
  return out;
}

std::set<std::string> removed_of(const envoy::service::discovery::v3::DeltaDiscoveryResponse& r) {
  return {r.removed_resources().begin(), r.removed_resources().end()};
}

class DeltaServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(xds::DeltaServerOptions options) {
    ads_ = std::make_unique<xds::DeltaAdsServer>(options);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(ads_.get());
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (server_) {
      ads_->close_all_streams();
      server_->Shutdown(std::chrono::system_clock::now() + 2s);
      server_->Wait();
    }
  }

  std::string target() const { return fmt::format("127.0.0.1:{}", port_); }

  // Subscribes to both types and applies the full set; returns once both have arrived.
  void sync_full(AdsTestClient& c, size_t addresses, size_t policies) {
    ASSERT_TRUE(c.subscribe(kAddressUrl));
    auto a = c.next();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->type_url(), kAddressUrl);
    EXPECT_EQ(static_cast<size_t>(a->resources_size()), addresses);
    c.apply(*a);
    ASSERT_TRUE(c.subscribe(kAuthorizationUrl));
    auto p = c.next();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->type_url(), kAuthorizationUrl);
    EXPECT_EQ(static_cast<size_t>(p->resources_size()), policies);
    c.apply(*p);
  }

  std::unique_ptr<xds::DeltaAdsServer> ads_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(DeltaServerTest, WildcardSubscriptionReceivesTheFullSetWithVersionsAndNonce) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "ztunnel~10.0.0.1~zt-a.istio-system~istio-system.svc.cluster.local");
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type_url(), kAddressUrl);
  EXPECT_FALSE(r->nonce().empty());
  EXPECT_EQ(names_of(*r), (std::set<std::string>{uid("w1"), uid("w2"), uid("w3"),
                                                 "default/svc.default.svc.cluster.local"}));
  for (const auto& res : r->resources()) {
    EXPECT_EQ(res.resource().type_url(), kAddressUrl);
    EXPECT_FALSE(res.version().empty());
    istio::workload::Address decoded;
    ASSERT_TRUE(res.resource().UnpackTo(&decoded));
    EXPECT_EQ(res.version(), xds::DeltaAdsServer::version_of(decoded));
  }
  EXPECT_TRUE(r->removed_resources().empty());
  c.apply(*r);
  ASSERT_TRUE(c.subscribe(kAuthorizationUrl));
  auto p = c.next();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type_url(), kAuthorizationUrl);
  EXPECT_EQ(names_of(*p), std::set<std::string>{"default/deny-all"});
  EXPECT_NE(p->nonce(), r->nonce());
}

TEST_F(DeltaServerTest, EmptyTypeIsStillAnsweredSoClientsCanBecomeReady) {
  MeshSnapshot s = base_snapshot();
  s.authorizations.clear();
  ads_->publish(share(s));
  AdsTestClient c(target(), "node-empty");
  ASSERT_TRUE(c.subscribe(kAuthorizationUrl));
  auto p = c.next();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type_url(), kAuthorizationUrl);
  EXPECT_EQ(p->resources_size(), 0);
  EXPECT_EQ(p->removed_resources_size(), 0);
}

TEST_F(DeltaServerTest, PublishSendsOnlyWhatChangedWithRemovals) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "node-a");
  sync_full(c, 4, 1);

  MeshSnapshot s = base_snapshot();
  s.addresses[uid("w1")] = workload("w1", "changed-sa");
  s.addresses.erase(uid("w2"));
  s.addresses[uid("w4")] = workload("w4");
  ads_->publish(share(s));

  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type_url(), kAddressUrl);
  EXPECT_EQ(names_of(*r), (std::set<std::string>{uid("w1"), uid("w4")}));
  EXPECT_EQ(removed_of(*r), std::set<std::string>{uid("w2")});
  c.apply(*r);
  // Authorizations did not change: nothing for that type.
  EXPECT_FALSE(c.next(300ms));

  // The same content published again has the same versions: nothing is sent.
  ads_->publish(share(s));
  EXPECT_FALSE(c.next(300ms));

  // A policy change goes out alone.
  s.authorizations["default/deny-all"].set_dry_run(true);
  ads_->publish(share(s));
  auto p = c.next();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type_url(), kAuthorizationUrl);
  EXPECT_EQ(names_of(*p), std::set<std::string>{"default/deny-all"});
}

TEST_F(DeltaServerTest, NackIsLoggedWithNodeAndReasonAndTheVersionIsNotResent) {
  std::ostringstream log_text;
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));

  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "ztunnel~10.0.0.7~nack-node");
  sync_full(c, 4, 1);

  MeshSnapshot s = base_snapshot();
  s.addresses[uid("w1")] = workload("w1", "bad-sa");
  ads_->publish(share(s));
  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(names_of(*r), std::set<std::string>{uid("w1")});
  ASSERT_TRUE(c.nack(*r, fmt::format("{}: service account is bad", uid("w1"))));

  // The NACK arrives asynchronously; wait for the counter.
  for (int i = 0; i < 100 && ads_->stats().nacks == 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(ads_->stats().nacks, 1u);
  spdlog::default_logger()->flush();
  std::string text = log_text.str();
  EXPECT_NE(text.find("ztunnel~10.0.0.7~nack-node"), std::string::npos) << text;
  EXPECT_NE(text.find("service account is bad"), std::string::npos) << text;

  // Republishing the rejected content does not resend it.
  ads_->publish(share(s));
  EXPECT_FALSE(c.next(300ms));
  // Another change carries only the other resource.
  s.addresses[uid("w3")] = workload("w3", "other");
  ads_->publish(share(s));
  auto r2 = c.next();
  ASSERT_TRUE(r2);
  EXPECT_EQ(names_of(*r2), std::set<std::string>{uid("w3")});
  c.apply(*r2);
  // Once the rejected resource changes again, it is sent.
  s.addresses[uid("w1")] = workload("w1", "fixed-sa");
  ads_->publish(share(s));
  auto r3 = c.next();
  ASSERT_TRUE(r3);
  EXPECT_EQ(names_of(*r3), std::set<std::string>{uid("w1")});

  spdlog::set_default_logger(previous);
}

TEST_F(DeltaServerTest, ReconnectWithInitialVersionsReceivesOnlyTheDifferenceAndRemovals) {
  ads_->publish(share(base_snapshot()));
  std::map<std::string, std::string> held_addresses, held_policies;
  {
    AdsTestClient c(target(), "node-r");
    sync_full(c, 4, 1);
    held_addresses = c.held(kAddressUrl);
    held_policies = c.held(kAuthorizationUrl);
  }
  ASSERT_EQ(held_addresses.size(), 4u);

  MeshSnapshot s = base_snapshot();
  s.addresses[uid("w1")] = workload("w1", "new-sa");
  s.addresses.erase(uid("w2"));
  s.addresses[uid("w5")] = workload("w5");
  ads_->publish(share(s));

  held_addresses["Kubernetes//Pod/default/ghost"] = "0123456789abcdef";
  AdsTestClient c(target(), "node-r");
  ASSERT_TRUE(c.subscribe(kAddressUrl, held_addresses));
  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(names_of(*r), (std::set<std::string>{uid("w1"), uid("w5")}));
  EXPECT_EQ(removed_of(*r), (std::set<std::string>{uid("w2"), "Kubernetes//Pod/default/ghost"}));
  c.ack(*r);
  // Unchanged policies: the server still answers (empty) so the client knows it is in sync.
  ASSERT_TRUE(c.subscribe(kAuthorizationUrl, held_policies));
  auto p = c.next();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->resources_size(), 0);
  EXPECT_EQ(p->removed_resources_size(), 0);
  EXPECT_FALSE(c.next(300ms));
}

TEST_F(DeltaServerTest, TwoClientsAtOnceEachGetTheirUpdates) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient a(target(), "node-a");
  AdsTestClient b(target(), "node-b");
  sync_full(a, 4, 1);
  sync_full(b, 4, 1);
  EXPECT_EQ(ads_->stats().streams_active, 2u);

  MeshSnapshot s = base_snapshot();
  s.addresses.erase(uid("w3"));
  ads_->publish(share(s));
  for (AdsTestClient* c : {&a, &b}) {
    auto r = c->next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->resources_size(), 0);
    EXPECT_EQ(removed_of(*r), std::set<std::string>{uid("w3")});
  }
}

TEST_F(DeltaServerTest, ManyConcurrentClientsConvergeAndCloseOnShutdown) {
  ads_->publish(share(base_snapshot()));
  constexpr int kClients = 30;
  std::vector<std::unique_ptr<AdsTestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<AdsTestClient>(target(), fmt::format("node-{}", i)));
    ASSERT_TRUE(clients.back()->subscribe(kAddressUrl));
  }
  for (auto& c : clients) {
    auto r = c->next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->resources_size(), 4);
    c->apply(*r);
  }
  MeshSnapshot s = base_snapshot();
  s.addresses[uid("w9")] = workload("w9");
  ads_->publish(share(s));
  for (auto& c : clients) {
    auto r = c->next();
    ASSERT_TRUE(r);
    EXPECT_EQ(names_of(*r), std::set<std::string>{uid("w9")});
  }
  EXPECT_EQ(ads_->stats().streams_active, static_cast<uint64_t>(kClients));
  ads_->close_all_streams();
  for (auto& c : clients) {
    EXPECT_FALSE(c->next(5s));
    EXPECT_TRUE(c->closed());
  }
}

TEST_F(DeltaServerTest, RapidPublishesCoalesceAndConvergeOnTheLatest) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "node-slow");
  sync_full(c, 4, 1);
  auto before = ads_->stats().pushes;
  MeshSnapshot s = base_snapshot();
  constexpr int kPublishes = 200;
  for (int i = 0; i < kPublishes; ++i) {
    s.addresses[uid("w1")] = workload("w1", fmt::format("sa-{}", i));
    ads_->publish(share(s));
  }
  // Drain until the client holds the latest version.
  auto want = xds::DeltaAdsServer::version_of(s.addresses[uid("w1")]);
  int responses = 0;
  while (c.held(kAddressUrl)[uid("w1")] != want) {
    auto r = c.next();
    ASSERT_TRUE(r) << "never converged";
    c.apply(*r);
    ++responses;
  }
  EXPECT_FALSE(c.next(200ms));
  EXPECT_LE(ads_->stats().pushes - before, static_cast<uint64_t>(kPublishes));
  EXPECT_GE(responses, 1);
}

TEST_F(DeltaServerTest, UnknownTypeIsIgnoredAndTheStreamKeepsWorking) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "node-u");
  ASSERT_TRUE(c.subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster"));
  EXPECT_FALSE(c.next(300ms));
  EXPECT_EQ(ads_->stats().unknown_type_requests, 1u);
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->resources_size(), 4);
}

TEST_F(DeltaServerTest, ExplicitSubscriptionsAndWildcardUnsubscribe) {
  ads_->publish(share(base_snapshot()));
  AdsTestClient c(target(), "node-od");
  // On-demand style: subscribe "*" and drop it again, then ask for one name.
  DeltaDiscoveryRequest req;
  req.set_type_url(kAddressUrl);
  req.add_resource_names_subscribe("*");
  req.add_resource_names_unsubscribe("*");
  ASSERT_TRUE(c.send(req));
  auto r = c.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->resources_size(), 0);
  DeltaDiscoveryRequest one;
  one.set_type_url(kAddressUrl);
  one.add_resource_names_subscribe(uid("w2"));
  ASSERT_TRUE(c.send(one));
  auto r2 = c.next();
  ASSERT_TRUE(r2);
  EXPECT_EQ(names_of(*r2), std::set<std::string>{uid("w2")});
  c.apply(*r2);
  // Changes to resources not subscribed are not sent.
  MeshSnapshot s = base_snapshot();
  s.addresses[uid("w1")] = workload("w1", "x");
  ads_->publish(share(s));
  EXPECT_FALSE(c.next(300ms));
}

TEST_F(DeltaServerTest, LargeSetsAreSplitAcrossResponses) {
  TearDown();
  start(xds::DeltaServerOptions{.max_response_bytes = 2000});
  MeshSnapshot s;
  for (int i = 0; i < 200; ++i) {
    auto n = fmt::format("w{}", i);
    s.addresses[uid(n)] = workload(n);
  }
  ads_->publish(share(s));
  AdsTestClient c(target(), "node-big");
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  int responses = 0;
  while (c.held(kAddressUrl).size() < 200) {
    auto r = c.next();
    ASSERT_TRUE(r);
    EXPECT_LE(r->ByteSizeLong(), 4000u);
    c.apply(*r);
    ++responses;
  }
  EXPECT_GT(responses, 5);
  EXPECT_FALSE(c.next(200ms));
  auto st = ads_->stats();
  EXPECT_EQ(st.resources_sent, 200u);
  EXPECT_EQ(st.pushes, static_cast<uint64_t>(responses));
  EXPECT_GT(st.bytes_sent, 0u);
}

}  // namespace
}  // namespace zt::meshd
