// The Istio CA client against a real gRPC IstioCertificateService on loopback. The server in this
// file signs with the built-in CertificateAuthority (the seam: meshd's CA server is tested on its
// own); it records what it was sent and can be told to misbehave, go down and come back.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "common/ca/grpc_ca_provider.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/csr.h"
#include "common/net/address.h"
#include "common/tls/certs.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "tests/support/grpc_library.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::ca {
namespace {

using namespace std::chrono_literals;
using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
using istio::v1::auth::IstioCertificateService;
using std::chrono::system_clock;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// A self-signed TLS certificate for the CA server (SAN IP:127.0.0.1 and DNS:localhost); being
// self-signed and CA:TRUE it is also the root the client trusts.
using ServerTls = testing::ServerCert;

ServerTls make_server_tls() {
  return testing::self_signed_server_cert("IP:127.0.0.1,DNS:localhost", "test istiod");
}

// What the server saw in one request.
struct Seen {
  std::string csr;
  int64_t validity = 0;
  std::optional<std::string> impersonated;
  std::string authorization, clusterid;
};

class TestCa final : public IstioCertificateService::Service {
 public:
  explicit TestCa(identity::CertificateAuthority ca) : ca_(std::move(ca)) {}

  grpc::Status CreateCertificate(grpc::ServerContext* ctx, const IstioCertificateRequest* req,
                                 IstioCertificateResponse* resp) override {
    int now_in = ++in_flight;
    for (int m = max_in_flight.load();
         now_in > m && !max_in_flight.compare_exchange_weak(m, now_in);) {
    }
    ++calls;
    Seen s;
    s.csr = req->csr();
    s.validity = req->validity_duration();
    auto& f = req->metadata().fields();
    if (auto it = f.find("ImpersonatedIdentity"); it != f.end())
      s.impersonated = it->second.string_value();
    auto header = [&](const char* k) {
      auto it = ctx->client_metadata().find(k);
      return it == ctx->client_metadata().end() ? std::string()
                                                : std::string(it->second.data(), it->second.size());
    };
    s.authorization = header("authorization");
    s.clusterid = header("clusterid");
    {
      std::lock_guard lock(mu_);
      seen_.push_back(s);
    }
    if (delay.load().count() > 0) std::this_thread::sleep_for(delay.load());
    auto status = sign(*req, resp);
    --in_flight;
    return status;
  }

  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  const identity::CertificateAuthority& ca() const { return ca_; }

  std::atomic<int> calls{0}, in_flight{0}, max_in_flight{0};
  std::atomic<std::chrono::milliseconds> delay{0ms};
  std::atomic<bool> drop_root{false};
  std::optional<tls::SpiffeId> wrong_identity;  // set before the calls that use it

 private:
  grpc::Status sign(const IstioCertificateRequest& req, IstioCertificateResponse* resp) {
    auto csr = identity::parse_csr_pem(req.csr());
    if (!csr) return {grpc::INVALID_ARGUMENT, csr.error().message};
    // Dated from one second ago so that short validities make short half-lives.
    auto now = system_clock::now();
    auto chain = ca_.issue(csr->public_key.get(), wrong_identity ? *wrong_identity : csr->id,
                           now - 1s, now + std::chrono::seconds(req.validity_duration()));
    if (!chain) return {grpc::INTERNAL, chain.error().message};
    if (drop_root) chain->pop_back();
    for (auto& pem : *chain) resp->add_cert_chain(pem);
    return grpc::Status::OK;
  }

  identity::CertificateAuthority ca_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

// The gRPC server around a TestCa; can stop and start again on the same port.
class CaServer {
 public:
  explicit CaServer(std::optional<ServerTls> tls = std::nullopt) : tls_(std::move(tls)) {
    auto ca = identity::CertificateAuthority::generate("cluster.local");
    if (!ca) throw std::runtime_error(ca.error().message);
    service_ = std::make_unique<TestCa>(std::move(*ca));
    start();
  }
  ~CaServer() { stop(); }

  void start() {
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (tls_) {
      grpc::SslServerCredentialsOptions o;
      o.pem_key_cert_pairs.push_back({tls_->key_pem, tls_->cert_pem});
      creds = grpc::SslServerCredentials(o);
    }
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port_), creds, &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) throw std::runtime_error("cannot start the test CA server");
  }
  void stop() {
    if (server_) server_->Shutdown(system_clock::now() + 1s);
    server_.reset();
  }

  std::string address() const {
    return fmt::format("{}://127.0.0.1:{}", tls_ ? "https" : "http", port_);
  }
  TestCa& service() { return *service_; }

 private:
  std::optional<ServerTls> tls_;
  std::unique_ptr<TestCa> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

class CaClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("zt-ca-client-{}-{}", getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    auto p = dir_ / name;
    std::ofstream(p, std::ios::trunc) << content;
    return p.string();
  }

  // A CSR for id, as the certificate manager makes it.
  static std::string csr_for(const tls::SpiffeId& id) {
    auto key = identity::generate_p256_key();
    auto csr = identity::make_csr_pem(key->get(), id);
    return *csr;
  }

  std::shared_ptr<GrpcCaProvider> provider(GrpcCaOptions o) {
    auto p = GrpcCaProvider::create(std::move(o));
    if (!p) ADD_FAILURE() << p.error().message;
    return p ? *p : nullptr;
  }

  std::filesystem::path dir_;
  tls::SpiffeId id_{"cluster.local", "bookinfo", "details"};
};

TEST_F(CaClientTest, SendsCsrValidityTokenClusterIdAndImpersonatedIdentity) {
  CaServer server;
  auto token = write("token", "tok-1\n");
  auto p = provider(
      {.address = server.address(), .token_path = token, .cluster_id = "c1", .impersonate = true});
  ASSERT_TRUE(p);
  auto csr = csr_for(id_);
  auto chain = p->create_certificate(csr, id_, 3600s);
  ASSERT_TRUE(chain) << chain.error().message;
  EXPECT_EQ(chain->size(), 2u);
  EXPECT_EQ(chain->back(), server.service().ca().root_pem());

  // The token is read per request: a rotated token is what the next request carries.
  write("token", "tok-2");
  ASSERT_TRUE(p->create_certificate(csr_for(id_), id_, 60s));

  auto seen = server.service().seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].csr, csr);
  EXPECT_EQ(seen[0].validity, 3600);
  EXPECT_EQ(seen[0].authorization, "Bearer tok-1");
  EXPECT_EQ(seen[0].clusterid, "c1");
  ASSERT_TRUE(seen[0].impersonated);
  EXPECT_EQ(*seen[0].impersonated, id_.uri());
  EXPECT_EQ(seen[1].validity, 60);
  EXPECT_EQ(seen[1].authorization, "Bearer tok-2");
}

TEST_F(CaClientTest, DedicatedModeSendsNoImpersonatedIdentity) {
  CaServer server;
  auto p = provider({.address = server.address(), .cluster_id = "c2"});
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->create_certificate(csr_for(id_), id_, 60s));
  auto seen = server.service().seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].impersonated);
  EXPECT_EQ(seen[0].authorization, "");  // no token file configured
  EXPECT_EQ(seen[0].clusterid, "c2");
}

TEST_F(CaClientTest, MissingOrEmptyTokenFileIsAnErrorAndNothingIsSent) {
  CaServer server;
  auto missing = (dir_ / "no-such-token").string();
  auto p = provider({.address = server.address(), .token_path = missing});
  ASSERT_TRUE(p);
  auto r = p->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, missing)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, server.address())) << r.error().message;

  auto empty = write("empty-token", " \n");
  auto q = provider({.address = server.address(), .token_path = empty});
  auto r2 = q->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(r2);
  EXPECT_TRUE(contains(r2.error().message, "is empty")) << r2.error().message;
  EXPECT_EQ(server.service().calls.load(), 0);
}

TEST_F(CaClientTest, RejectsACertificateForAnotherIdentity) {
  CaServer server;
  tls::SpiffeId other{"cluster.local", "bookinfo", "ratings"};
  server.service().wrong_identity = other;
  auto p = provider({.address = server.address()});
  auto r = p->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message,
                       fmt::format("CA returned a certificate for {}, asked for {}", other, id_)))
      << r.error().message;
  EXPECT_TRUE(contains(r.error().message, server.address())) << r.error().message;

  // And the manager on top never hands it out.
  identity::CertificateManager manager(p, 60s);
  auto c = manager.get(id_);
  EXPECT_FALSE(c);
}

TEST_F(CaClientTest, RejectsAChainWithoutItsRoot) {
  CaServer server;
  server.service().drop_root = true;
  auto p = provider({.address = server.address()});
  auto r = p->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, "no root")) << r.error().message;
}

TEST_F(CaClientTest, CaDownIsAnErrorNamingTheAddressAndTheGrpcStatus) {
  CaServer server;
  auto address = server.address();
  server.stop();
  auto p = provider({.address = address, .timeout = 2000ms});
  auto r = p->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, address)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "UNAVAILABLE")) << r.error().message;
}

TEST_F(CaClientTest, HttpsVerifiesTheServerAgainstTheRootFile) {
  auto tls = make_server_tls();
  CaServer server(tls);
  auto good_root = write("root.pem", tls.cert_pem);
  auto p = provider({.address = server.address(), .root_ca_path = good_root, .timeout = 3000ms});
  ASSERT_TRUE(p);
  auto ok = p->create_certificate(csr_for(id_), id_, 60s);
  EXPECT_TRUE(ok) << (ok ? "" : ok.error().message);

  auto wrong_root = write("wrong-root.pem", make_server_tls().cert_pem);
  auto q = provider({.address = server.address(), .root_ca_path = wrong_root, .timeout = 3000ms});
  ASSERT_TRUE(q);
  auto bad = q->create_certificate(csr_for(id_), id_, 60s);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(contains(bad.error().message, server.address())) << bad.error().message;
  EXPECT_TRUE(contains(bad.error().message, "UNAVAILABLE")) << bad.error().message;
  EXPECT_EQ(server.service().calls.load(), 1);

  // https without a readable root file is refused up front.
  auto none = GrpcCaProvider::create(
      {.address = server.address(), .root_ca_path = (dir_ / "nope.pem").string()});
  EXPECT_FALSE(none);
}

// Polls `pred` until it holds or `limit` passes.
template <class F>
bool eventually(F pred, std::chrono::milliseconds limit = 8000ms) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

TEST_F(CaClientTest, KeepsServingWhileTheCaIsDownAndRenewsWhenItReturns) {
  CaServer server;
  auto p =
      provider({.address = server.address(), .timeout = 1000ms, .max_reconnect_backoff = 500ms});
  // 6 s certificates (dated from 1 s ago): half-life ~2.5 s from now, expiry ~6 s from now.
  identity::CertificateManager manager(p, 6s);
  manager.start_background_refresh();
  auto first = manager.get(id_);
  ASSERT_TRUE(first) << first.error().message;
  auto serial = (*first)->cert.serial();

  server.stop();
  // Past half-life the refresher tries, fails, and the old certificate stays in service.
  ASSERT_TRUE(eventually([&] { return !manager.list().at(0).last_error.empty(); }));
  auto during = manager.get(id_);
  ASSERT_TRUE(during) << during.error().message;
  EXPECT_EQ((*during)->cert.serial(), serial);
  EXPECT_EQ(manager.list().at(0).state, "Available");
  EXPECT_TRUE(contains(manager.list().at(0).last_error, "UNAVAILABLE"))
      << manager.list().at(0).last_error;

  server.start();
  ASSERT_TRUE(eventually([&] {
    auto info = manager.list().at(0);
    return info.serial != serial && info.last_error.empty();
  }));
  auto after = manager.get(id_);
  ASSERT_TRUE(after);
  EXPECT_NE((*after)->cert.serial(), serial);
  EXPECT_GT((*after)->cert.not_after, (*first)->cert.not_after);
}

TEST_F(CaClientTest, PrefetchIssuesAheadAndForgetDrops) {
  CaServer server;
  auto p = provider({.address = server.address(), .impersonate = true});
  identity::CertificateManager manager(p, 3600s);
  tls::SpiffeId other{"cluster.local", "bookinfo", "reviews"};
  manager.prefetch(id_);
  manager.prefetch(other);
  manager.prefetch(id_);  // already under way: not asked twice
  ASSERT_TRUE(eventually([&] {
    auto l = manager.list();
    return l.size() == 2 && l[0].state == "Available" && l[1].state == "Available";
  }));
  EXPECT_EQ(server.service().calls.load(), 2);
  // A connection now finds it without asking the CA.
  auto c = manager.get(id_);
  ASSERT_TRUE(c);
  manager.prefetch(id_);
  EXPECT_EQ(server.service().calls.load(), 2);

  manager.forget(other);
  auto l = manager.list();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].identity, id_);
}

TEST_F(CaClientTest, NeverMoreThanEightConcurrentCaRequests) {
  CaServer server;
  server.service().delay = 300ms;
  auto p = provider({.address = server.address(), .impersonate = true});
  identity::CertificateManager manager(p, 3600s);
  std::vector<tls::SpiffeId> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(tls::SpiffeId{"cluster.local", "load", fmt::format("sa{}", i)});
  for (const auto& id : ids) manager.prefetch(id);
  ASSERT_TRUE(eventually([&] {
    auto l = manager.list();
    return std::all_of(l.begin(), l.end(), [](const auto& i) { return i.state == "Available"; });
  }));
  EXPECT_EQ(server.service().calls.load(), 20);
  // Never more than Istio's limit of 8, and the limit is reached (the requests did overlap).
  EXPECT_EQ(server.service().max_in_flight.load(), 8);
}

// End to end: two dedicated-mode ztunnel processes with CA_ADDRESS get their certificates from
// the CA (no built-in CA files given) and carry traffic with them.
TEST_F(CaClientTest, ZtunnelsWithCaAddressGetTheirCertificatesFromTheCa) {
  CaServer server;
  auto token = write("token", "node-token");
  std::string client_ip = "127.0.147.2", server_ip = "127.0.147.3";
  auto config = dir_ / "mesh.yaml";
  testing::write_file(config, testing::two_workload_mesh_yaml(client_ip, server_ip));
  std::vector<std::string> args = {"--ca-address", server.address(), "--auth-token",
                                   token,          "--cluster-id",   "c9"};
  auto a = testing::ZtunnelProcess::start({.name = "client", .config = config, .extra_args = args});
  ASSERT_TRUE(a) << a.error().describe();
  auto b = testing::ZtunnelProcess::start(
      {.name = "server", .config = config, .socks5 = false, .extra_args = args});
  ASSERT_TRUE(b) << b.error().describe();

  auto http = testing::HttpHelloServer::start(
      tcp::endpoint(asio::ip::make_address(server_ip), 8080), "server");
  auto [rc, out] =
      testing::run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8080/hello",
                                       net::format_endpoint((*a)->socks5), server_ip));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, "hello from server")) << out << (*a)->daemon().output();

  std::set<std::string> asked;
  for (const auto& s : server.service().seen()) {
    auto csr = identity::parse_csr_pem(s.csr);
    ASSERT_TRUE(csr) << csr.error().message;
    asked.insert(csr->id.uri());
    EXPECT_EQ(s.authorization, "Bearer node-token");
    EXPECT_EQ(s.clusterid, "c9");
    EXPECT_FALSE(s.impersonated);  // dedicated mode asks for its own identity
  }
  EXPECT_TRUE(asked.contains("spiffe://cluster.local/ns/default/sa/client"));
  EXPECT_TRUE(asked.contains("spiffe://cluster.local/ns/default/sa/server"));
}

}  // namespace
}  // namespace zt::ca
