// The Delta ADS client against a real gRPC server on loopback (FakeAds): what it sends, how it
// answers, how it reconnects and stops.
#include "common/xds/delta_client.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/async/asio.h"
#include "tests/integration/xds_client/fake_ads.h"
#include "tests/support/mesh.h"

namespace zt::xds {
namespace {

using namespace std::chrono_literals;
using testing::FakeAds;
using testing::make_response;

const std::string kAddress(kAddressType);
const std::string kAuthz(kAuthorizationType);

// Applies every resource whose name does not start with "bad"; remembers what it applied.
struct Applier {
  std::mutex mu;
  std::map<std::string, std::set<std::string>> applied;  // type -> names
  std::vector<DeltaUpdate> updates;

  std::vector<Rejection> operator()(const DeltaUpdate& u) {
    std::lock_guard lock(mu);
    updates.push_back(u);
    std::vector<Rejection> out;
    for (const auto& r : u.added) {
      if (r.name.starts_with("bad")) {
        out.push_back({r.name, "broken on purpose"});
      } else {
        applied[u.type_url].insert(r.name);
      }
    }
    for (const auto& n : u.removed) applied[u.type_url].erase(n);
    return out;
  }
  std::set<std::string> names(const std::string& type) {
    std::lock_guard lock(mu);
    return applied[type];
  }
  size_t update_count() {
    std::lock_guard lock(mu);
    return updates.size();
  }
};

DeltaClientOptions options_for(const FakeAds& ads) {
  DeltaClientOptions o;
  o.address = ads.address();
  o.cluster_id = "Kubernetes";
  o.node = make_ztunnel_node({.instance_ip = "10.0.0.7",
                              .pod_name = "ztunnel-abc",
                              .pod_namespace = "istio-system",
                              .node_name = "node-a",
                              .cluster_id = "Kubernetes",
                              .environment = {"ISTIO_META_DNS_CAPTURE=true", "HOME=/root"}});
  o.type_urls = {kAddress, kAuthz};
  return o;
}

std::unique_ptr<DeltaClient> start_client(DeltaClientOptions o, Applier& applier,
                                          DeltaClient::ReadyCallback on_ready = {}) {
  auto c = DeltaClient::create(
      std::move(o), [&applier](const DeltaUpdate& u) { return applier(u); }, std::move(on_ready));
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().describe());
  if (!c) return nullptr;
  (*c)->start();
  return std::move(*c);
}

std::string header(const testing::ReceivedRequest& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

TEST(ZtunnelNode, IdAndMetadataAsIstioSendsThem) {
  auto n = make_ztunnel_node(
      {.instance_ip = "",
       .pod_name = "zt-1",
       .pod_namespace = "istio-system",
       .node_name = "n1",
       .cluster_id = "c1",
       .environment = {"ISTIO_META_FOO=bar", "ISTIO_META_=x", "ISTIO_META_NAME=spoof", "OTHER=1"}});
  EXPECT_EQ(n.id, "ztunnel~1.1.1.1~zt-1.istio-system~istio-system.svc.cluster.local");
  EXPECT_EQ(n.metadata["FOO"], "bar");
  EXPECT_EQ(n.metadata["NAME"], "zt-1");  // explicit keys win
  EXPECT_EQ(n.metadata["NAMESPACE"], "istio-system");
  EXPECT_EQ(n.metadata["NODE_NAME"], "n1");
  EXPECT_EQ(n.metadata["CLUSTER_ID"], "c1");
  EXPECT_EQ(n.metadata.count("OTHER"), 0u);
  EXPECT_EQ(n.metadata.count(""), 0u);
}

TEST(Backoff, DoublesFromTenMillisecondsUpToFifteenSecondsAndResets) {
  Backoff b(10ms, 15s);
  std::vector<std::chrono::milliseconds> seen;
  for (int i = 0; i < 14; ++i) seen.push_back(b.next());
  EXPECT_EQ(seen[0], 10ms);
  EXPECT_EQ(seen[1], 20ms);
  EXPECT_EQ(seen[2], 40ms);
  EXPECT_EQ(seen[10], 10240ms);
  EXPECT_EQ(seen[11], 15s);
  EXPECT_EQ(seen[13], 15s);
  b.reset();
  EXPECT_EQ(b.next(), 10ms);
}

TEST(DeltaClientCreate, RejectsBadAddressesAndMissingFiles) {
  Applier a;
  auto handler = [&a](const DeltaUpdate& u) { return a(u); };
  DeltaClientOptions o;
  o.type_urls = {kAddress};
  o.address = "127.0.0.1:15010";
  auto c = DeltaClient::create(o, handler);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("http://"), std::string::npos) << c.error().message;
  o.address = "https://istiod:15012";
  o.root_ca_path = "/nonexistent/root.pem";
  c = DeltaClient::create(o, handler);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("/nonexistent/root.pem"), std::string::npos);
}

TEST(DeltaClient, InitialRequestPerTypeCarriesNodeMetadataAndHeaders) {
  FakeAds ads;
  testing::TempDir dir;
  testing::write_file(dir.path() / "token", "secret-token\n");
  auto o = options_for(ads);
  o.token_path = (dir.path() / "token").string();
  Applier applier;
  auto client = start_client(o, applier);
  ASSERT_TRUE(client);
  auto reqs = ads.wait_requests(2);
  ASSERT_TRUE(reqs);
  std::set<std::string> types;
  for (const auto& r : *reqs) {
    types.insert(r.request.type_url());
    EXPECT_EQ(r.stream, 1);
    EXPECT_EQ(r.request.node().id(),
              "ztunnel~10.0.0.7~ztunnel-abc.istio-system~istio-system.svc.cluster.local");
    const auto& md = r.request.node().metadata().fields();
    ASSERT_TRUE(md.contains("NAME"));
    EXPECT_EQ(md.at("NAME").string_value(), "ztunnel-abc");
    EXPECT_EQ(md.at("NAMESPACE").string_value(), "istio-system");
    EXPECT_EQ(md.at("INSTANCE_IPS").string_value(), "10.0.0.7");
    EXPECT_EQ(md.at("NODE_NAME").string_value(), "node-a");
    EXPECT_EQ(md.at("CLUSTER_ID").string_value(), "Kubernetes");
    EXPECT_EQ(md.at("DNS_CAPTURE").string_value(), "true");
    EXPECT_FALSE(md.contains("HOME"));
    EXPECT_EQ(r.request.resource_names_subscribe_size(), 0);  // wildcard
    EXPECT_TRUE(r.request.initial_resource_versions().empty());
    EXPECT_TRUE(r.request.response_nonce().empty());
    EXPECT_EQ(header(r, "authorization"), "Bearer secret-token");
    EXPECT_EQ(header(r, "clusterid"), "Kubernetes");
  }
  EXPECT_EQ(types, (std::set<std::string>{kAddress, kAuthz}));
  EXPECT_FALSE(client->ready());
  client->stop();
}

TEST(DeltaClient, AcksWithTheNonceAndReportsReadyOnceEveryTypeWasAnswered) {
  FakeAds ads;
  Applier applier;
  std::atomic<int> ready_calls{0};
  auto client = start_client(options_for(ads), applier, [&] { ++ready_calls; });
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_requests(2));

  ASSERT_TRUE(ads.push(make_response(kAddress, "nonce-1", {"w1", "w2"}, "v1")));
  auto reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  const auto& ack = reqs->back().request;
  EXPECT_EQ(ack.type_url(), kAddress);
  EXPECT_EQ(ack.response_nonce(), "nonce-1");
  EXPECT_FALSE(ack.has_error_detail());
  EXPECT_EQ(applier.names(kAddress), (std::set<std::string>{"w1", "w2"}));
  EXPECT_FALSE(client->ready());  // Authorization not received yet
  EXPECT_EQ(ready_calls.load(), 0);

  ASSERT_TRUE(ads.push(make_response(kAuthz, "nonce-2", {}, "v1")));
  ASSERT_TRUE(ads.wait_requests(4));
  EXPECT_TRUE(eventually([&] { return client->ready(); }));
  EXPECT_TRUE(eventually([&] { return ready_calls.load() == 1; }));

  // A later change with a removal: the handler sees it, the removed version is forgotten.
  ASSERT_TRUE(ads.push(make_response(kAddress, "nonce-3", {"w3"}, "v2", {"w1"})));
  reqs = ads.wait_requests(5);
  ASSERT_TRUE(reqs);
  EXPECT_EQ(reqs->back().request.response_nonce(), "nonce-3");
  EXPECT_EQ(applier.names(kAddress), (std::set<std::string>{"w2", "w3"}));
  auto versions = client->recorded_versions(kAddress);
  EXPECT_EQ(versions, (std::map<std::string, std::string>{{"w2", "v1"}, {"w3", "v2"}}));
  EXPECT_EQ(ready_calls.load(), 1);
  EXPECT_EQ(client->stats().acks.load(), 3u);
  client->stop();
}

TEST(DeltaClient, NacksNamingTheBadResourceWhileTheGoodOnesApply) {
  FakeAds ads;
  Applier applier;
  auto client = start_client(options_for(ads), applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_requests(2));
  ASSERT_TRUE(
      ads.push(make_response(kAddress, "n1", {"good-1", "bad-1", "good-2", "bad-2"}, "v7")));
  auto reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  const auto& nack = reqs->back().request;
  EXPECT_EQ(nack.type_url(), kAddress);
  EXPECT_EQ(nack.response_nonce(), "n1");
  ASSERT_TRUE(nack.has_error_detail());
  EXPECT_EQ(nack.error_detail().code(), 3);  // INVALID_ARGUMENT
  EXPECT_EQ(nack.error_detail().message(), "bad-1: broken on purpose; bad-2: broken on purpose");
  EXPECT_EQ(applier.names(kAddress), (std::set<std::string>{"good-1", "good-2"}));
  EXPECT_EQ(client->recorded_versions(kAddress),
            (std::map<std::string, std::string>{{"good-1", "v7"}, {"good-2", "v7"}}));
  EXPECT_EQ(client->stats().nacks.load(), 1u);

  // Readiness needs an ACK of every type: a NACKed Address response does not count.
  ASSERT_TRUE(ads.push(make_response(kAuthz, "n2", {"ns/p"}, "v1")));
  ASSERT_TRUE(ads.wait_requests(4));
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(client->ready());
  ASSERT_TRUE(ads.push(make_response(kAddress, "n3", {"good-3"}, "v8")));
  ASSERT_TRUE(ads.wait_requests(5));
  EXPECT_TRUE(eventually([&] { return client->ready(); }));
  client->stop();
}

TEST(DeltaClient, UnknownTypeUrlIsNackedWithoutReachingTheHandler) {
  FakeAds ads;
  Applier applier;
  auto client = start_client(options_for(ads), applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_requests(2));
  const std::string odd = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  ASSERT_TRUE(ads.push(make_response(odd, "n9", {"c1"}, "v1")));
  auto reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  const auto& nack = reqs->back().request;
  EXPECT_EQ(nack.type_url(), odd);
  EXPECT_EQ(nack.response_nonce(), "n9");
  EXPECT_NE(nack.error_detail().message().find("not subscribed"), std::string::npos);
  EXPECT_EQ(applier.update_count(), 0u);
  // The stream keeps working.
  ASSERT_TRUE(ads.push(make_response(kAddress, "n10", {"w1"}, "v1")));
  reqs = ads.wait_requests(4);
  ASSERT_TRUE(reqs);
  EXPECT_FALSE(reqs->back().request.has_error_detail());
  EXPECT_EQ(reqs->back().request.response_nonce(), "n10");
  EXPECT_EQ(reqs->back().stream, 1);
  client->stop();
}

TEST(DeltaClient, HandlerExceptionNacksTheWholeUpdateInsteadOfCrashing) {
  FakeAds ads;
  DeltaClientOptions o = options_for(ads);
  auto c = DeltaClient::create(o, [](const DeltaUpdate&) -> std::vector<Rejection> {
    throw std::runtime_error("applier exploded");
  });
  ASSERT_TRUE(c);
  (*c)->start();
  ASSERT_TRUE(ads.wait_requests(2));
  ASSERT_TRUE(ads.push(make_response(kAddress, "n1", {"a", "b"}, "v1")));
  auto reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  EXPECT_EQ(reqs->back().request.error_detail().message(),
            "a: applier exploded; b: applier exploded");
  EXPECT_TRUE((*c)->recorded_versions(kAddress).empty());
  (*c)->stop();
}

TEST(DeltaClient, ReconnectsAfterADroppedStreamWithInitialResourceVersions) {
  FakeAds ads;
  testing::TempDir dir;
  testing::write_file(dir.path() / "token", "token-1");
  auto o = options_for(ads);
  o.token_path = (dir.path() / "token").string();
  Applier applier;
  auto client = start_client(o, applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_requests(2));
  ASSERT_TRUE(ads.push(make_response(kAddress, "n1", {"w1", "bad-w2"}, "v3")));
  ASSERT_TRUE(ads.wait_requests(3));
  ASSERT_TRUE(ads.push(make_response(kAuthz, "n2", {"ns/p1"}, "v4")));
  ASSERT_TRUE(ads.wait_requests(4));
  EXPECT_FALSE(client->ready());  // Address was only NACKed so far

  // The token is re-read for the next connection.
  testing::write_file(dir.path() / "token", "token-2");
  ads.drop();
  auto reqs = ads.wait_requests(6);
  ASSERT_TRUE(reqs);
  std::map<std::string, const testing::ReceivedRequest*> by_type;
  for (const auto& r : *reqs) {
    if (r.stream == 2) by_type[r.request.type_url()] = &r;
  }
  ASSERT_EQ(by_type.size(), 2u);
  const auto& addr = by_type[kAddress]->request;
  // Only the accepted resource's version is offered back; the rejected one is not.
  EXPECT_EQ(addr.initial_resource_versions().size(), 1u);
  EXPECT_EQ(addr.initial_resource_versions().at("w1"), "v3");
  EXPECT_FALSE(addr.initial_resource_versions().contains("bad-w2"));
  const auto& authz = by_type[kAuthz]->request;
  EXPECT_EQ(authz.initial_resource_versions().size(), 1u);
  EXPECT_EQ(authz.initial_resource_versions().at("ns/p1"), "v4");
  EXPECT_TRUE(addr.response_nonce().empty());
  EXPECT_TRUE(addr.has_node());
  EXPECT_EQ(header(*by_type[kAddress], "authorization"), "Bearer token-2");

  // The new stream works like the first.
  ASSERT_TRUE(ads.push(make_response(kAddress, "n3", {"w4"}, "v5")));
  reqs = ads.wait_requests(7);
  ASSERT_TRUE(reqs);
  EXPECT_EQ(reqs->back().stream, 2);
  EXPECT_EQ(reqs->back().request.response_nonce(), "n3");
  EXPECT_TRUE(eventually([&] { return client->ready(); }));
  client->stop();
}

TEST(DeltaClient, BackoffDoublesBetweenFailedAttemptsAndResetsAfterAResponse) {
  FakeAds ads;
  ads.refuse_next(7);
  Applier applier;
  auto client = start_client(options_for(ads), applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_streams(8));
  ASSERT_TRUE(ads.wait_requests(2));
  auto t = ads.stream_times();
  // Gaps after refusals 1..7 are the backoff: 10, 20, 40, ... 640 ms (plus connection time).
  for (size_t i = 1; i < 8; ++i) {
    auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(t[i] - t[i - 1]);
    auto expected = std::chrono::milliseconds(10 << (i - 1));
    EXPECT_GE(gap, expected) << "gap " << i;
    EXPECT_LT(gap, expected + 400ms) << "gap " << i;
  }
  // A stream that delivered a response resets the backoff: the next attempt comes after ~10 ms,
  // not 1280 ms.
  ASSERT_TRUE(ads.push(make_response(kAddress, "n1", {"w1"}, "v1")));
  ASSERT_TRUE(ads.wait_requests(3));
  auto dropped_at = std::chrono::steady_clock::now();
  ads.drop();
  ASSERT_TRUE(ads.wait_streams(9));
  auto gap = ads.stream_times()[8] - dropped_at;
  EXPECT_LT(gap, 600ms);
  client->stop();
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DeltaClient, HttpsVerifiesTheServerAgainstTheRootCaFile) {
  testing::TempDir dir;
  auto [rc, out] = testing::run_command(fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout {0}/key.pem "
      "-out {0}/cert.pem 2>&1",
      dir.path().string()));
  ASSERT_EQ(rc, 0) << out;
  grpc::SslServerCredentialsOptions tls;
  tls.pem_key_cert_pairs.push_back(
      {read_text(dir.path() / "key.pem"), read_text(dir.path() / "cert.pem")});
  FakeAds ads(grpc::SslServerCredentials(tls));

  auto o = options_for(ads);
  o.address = "https://127.0.0.1:" + std::to_string(ads.port());
  o.root_ca_path = (dir.path() / "cert.pem").string();
  Applier applier;
  auto client = start_client(o, applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(ads.wait_requests(2));
  ASSERT_TRUE(ads.push(make_response(kAddress, "n1", {"w1"}, "v1")));
  auto reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  EXPECT_EQ(reqs->back().request.response_nonce(), "n1");
  client->stop();

  // Another root: the handshake fails and nothing reaches the server's handler.
  testing::TempDir other;
  std::tie(rc, out) = testing::run_command(fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout {0}/key.pem "
      "-out {0}/cert.pem 2>&1",
      other.path().string()));
  ASSERT_EQ(rc, 0) << out;
  FakeAds ads2(grpc::SslServerCredentials(tls));
  o.address = "https://127.0.0.1:" + std::to_string(ads2.port());
  o.root_ca_path = (other.path() / "cert.pem").string();
  Applier applier2;
  auto untrusting = start_client(o, applier2);
  ASSERT_TRUE(untrusting);
  ASSERT_TRUE(eventually([&] { return untrusting->stats().connect_attempts.load() >= 3; }));
  EXPECT_TRUE(ads2.stream_times().empty());
  untrusting->stop();
}

TEST(DeltaClient, StopReturnsPromptlyWhileConnectingToAServerThatNeverAnswers) {
  // A TCP listener that never accepts: the TCP handshake completes (backlog) but HTTP/2 never
  // does, so the client sits in "connecting".
  asio::io_context io;
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  DeltaClientOptions o;
  o.address = "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  o.type_urls = {kAddress, kAuthz};
  Applier applier;
  auto client = start_client(o, applier);
  ASSERT_TRUE(client);
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  client->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  EXPECT_FALSE(client->ready());
}

TEST(DeltaClient, StopReturnsPromptlyDuringBackoffToARefusedAddress) {
  // Bind then close to get a port nobody listens on.
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port = a.local_endpoint().port();
  }
  DeltaClientOptions o;
  o.address = "http://127.0.0.1:" + std::to_string(port);
  o.type_urls = {kAddress};
  Applier applier;
  auto client = start_client(o, applier);
  ASSERT_TRUE(client);
  ASSERT_TRUE(eventually([&] { return client->stats().connect_attempts.load() >= 4; }));
  auto t0 = std::chrono::steady_clock::now();
  client->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
}

}  // namespace
}  // namespace zt::xds
