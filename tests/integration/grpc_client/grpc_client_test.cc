// common/grpc against a real grpc++ server on loopback, plaintext and TLS: unary calls, error
// statuses, deadlines, bidi streams, cancellation from both sides, TLS verification and the
// receive size limit.
#include <atomic>
#include <chrono>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "common/grpc/client.h"
#include "common/identity/csr.h"
#include "common/tls/certs.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "tests/support/grpc_library.h"
#include "tests/support/test_pki.h"

namespace zt {
namespace {

using namespace std::chrono_literals;
using envoy::service::discovery::v3::AggregatedDiscoveryService;
using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
using istio::v1::auth::IstioCertificateService;
using Clock = std::chrono::steady_clock;

constexpr const char* kUnaryPath = "/istio.v1.auth.IstioCertificateService/CreateCertificate";
constexpr const char* kStreamPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
// Non-ASCII, a percent sign and a newline: grpc++ percent-encodes them in grpc-message.
const std::string kErrorMessage = "denied: 100% sure, caf\xc3\xa9\nsecond line";

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

using testing::ServerCert;

ServerCert make_server_cert(const char* san) {
  return testing::self_signed_server_cert(san, "grpc test server");
}

// The unary service: what it answers depends on the csr field.
class TestCa final : public IstioCertificateService::Service {
 public:
  ::grpc::Status CreateCertificate(::grpc::ServerContext* ctx, const IstioCertificateRequest* req,
                                   IstioCertificateResponse* resp) override {
    {
      std::lock_guard lock(mu);
      metadata.clear();
      for (const auto& [k, v] : ctx->client_metadata()) {
        metadata.emplace_back(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
      }
    }
    const std::string& what = req->csr();
    if (what == "error") return {::grpc::StatusCode::PERMISSION_DENIED, kErrorMessage};
    if (what == "sleep") {
      for (int i = 0; i < 300 && !ctx->IsCancelled(); ++i) std::this_thread::sleep_for(10ms);
    }
    if (what == "big") {
      resp->add_cert_chain(std::string(5 * 1024 * 1024, 'x'));
      return ::grpc::Status::OK;
    }
    resp->add_cert_chain(fmt::format("leaf:{}", what));
    resp->add_cert_chain("root");
    return ::grpc::Status::OK;
  }

  std::string header(const std::string& name) {
    std::lock_guard lock(mu);
    for (const auto& [k, v] : metadata) {
      if (k == name) return v;
    }
    return "";
  }

  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> metadata;
};

// The bidi service: answers each request with a response whose nonce is the request's
// response_nonce; the type URL picks special behaviours.
class TestAds final : public AggregatedDiscoveryService::Service {
 public:
  ::grpc::Status DeltaAggregatedResources(
      ::grpc::ServerContext* ctx,
      ::grpc::ServerReaderWriter<DeltaDiscoveryResponse, DeltaDiscoveryRequest>* stream) override {
    DeltaDiscoveryRequest req;
    while (stream->Read(&req)) {
      const std::string& type = req.type_url();
      if (type == "hang") {
        hanging = true;
        while (!ctx->IsCancelled()) std::this_thread::sleep_for(10ms);
        return ::grpc::Status::CANCELLED;
      }
      if (type == "server-cancel") {
        ctx->TryCancel();
        return ::grpc::Status::CANCELLED;
      }
      DeltaDiscoveryResponse resp;
      resp.set_type_url(type);
      resp.set_nonce(req.response_nonce());
      if (!stream->Write(resp)) break;
      if (type == "abort") return {::grpc::StatusCode::ABORTED, "aborted after one response"};
    }
    return ::grpc::Status::OK;
  }
  std::atomic<bool> hanging{false};
};

class Server {
 public:
  explicit Server(
      std::shared_ptr<::grpc::ServerCredentials> creds = ::grpc::InsecureServerCredentials()) {
    ::grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", std::move(creds), &port_);
    b.RegisterService(&ca);
    b.RegisterService(&ads);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) throw std::runtime_error("grpc++ server did not start");
  }
  ~Server() { shutdown(); }
  void shutdown() {
    if (done_) return;
    done_ = true;
    server_->Shutdown(std::chrono::system_clock::now() + 200ms);
    server_->Wait();
  }
  int port() const { return port_; }
  std::string address(const std::string& scheme = "http",
                      const std::string& host = "127.0.0.1") const {
    return fmt::format("{}://{}:{}", scheme, host, port_);
  }

  TestCa ca;
  TestAds ads;

 private:
  int port_ = 0;
  bool done_ = false;
  std::unique_ptr<::grpc::Server> server_;
};

std::shared_ptr<::grpc::ServerCredentials> tls_creds(const ServerCert& c) {
  ::grpc::SslServerCredentialsOptions o;
  o.pem_key_cert_pairs.push_back({c.key_pem, c.cert_pem});
  return ::grpc::SslServerCredentials(o);
}

grpc::CallStatus call_unary(const zt::grpc::ChannelOptions& o, const std::string& csr,
                            IstioCertificateResponse* resp, zt::grpc::Metadata md = {},
                            std::chrono::milliseconds timeout = 5s) {
  IstioCertificateRequest req;
  req.set_csr(csr);
  std::string out;
  auto st = zt::grpc::unary(o, kUnaryPath, std::move(md), req.SerializeAsString(), &out,
                            Clock::now() + timeout);
  if (st.ok() && !resp->ParseFromString(out)) return {zt::grpc::StatusCode::kInternal, "parse"};
  return st;
}

std::string request(const std::string& type, const std::string& nonce) {
  DeltaDiscoveryRequest r;
  r.set_type_url(type);
  r.set_response_nonce(nonce);
  return r.SerializeAsString();
}

TEST(GrpcClientUnary, OkWithMetadataPlaintext) {
  Server server;
  zt::grpc::ChannelOptions o{.address = server.address()};
  IstioCertificateResponse resp;
  auto st =
      call_unary(o, "hello", &resp, {{"authorization", "Bearer tok"}, {"clusterid", "Kubernetes"}});
  ASSERT_TRUE(st.ok()) << st.describe();
  ASSERT_EQ(resp.cert_chain_size(), 2);
  EXPECT_EQ(resp.cert_chain(0), "leaf:hello");
  EXPECT_EQ(server.ca.header("authorization"), "Bearer tok");
  EXPECT_EQ(server.ca.header("clusterid"), "Kubernetes");
  EXPECT_TRUE(contains(server.ca.header("user-agent"), "zt-grpc"))
      << server.ca.header("user-agent");
}

TEST(GrpcClientUnary, ErrorStatusAndPercentDecodedMessage) {
  Server server;
  zt::grpc::ChannelOptions o{.address = server.address()};
  IstioCertificateResponse resp;
  auto st = call_unary(o, "error", &resp);
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kPermissionDenied) << st.describe();
  EXPECT_EQ(st.message, kErrorMessage);
}

TEST(GrpcClientUnary, DeadlineExceeded) {
  Server server;
  zt::grpc::ChannelOptions o{.address = server.address()};
  IstioCertificateResponse resp;
  auto t0 = Clock::now();
  auto st = call_unary(o, "sleep", &resp, {}, 300ms);
  auto took = Clock::now() - t0;
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kDeadlineExceeded) << st.describe();
  EXPECT_LT(took, 2s);
}

TEST(GrpcClientUnary, OversizeMessageIsAnErrorUnlessAllowed) {
  Server server;
  zt::grpc::ChannelOptions o{.address = server.address()};
  IstioCertificateResponse resp;
  auto st = call_unary(o, "big", &resp);
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kResourceExhausted) << st.describe();
  EXPECT_TRUE(contains(st.message, o.address)) << st.message;
  o.max_receive_message_bytes = 8 * 1024 * 1024;
  st = call_unary(o, "big", &resp);
  ASSERT_TRUE(st.ok()) << st.describe();
  EXPECT_EQ(resp.cert_chain(0).size(), 5u * 1024 * 1024);
}

TEST(GrpcClientUnary, ConnectionRefusedIsUnavailable) {
  int port;
  {
    Server server;
    port = server.port();
  }
  zt::grpc::ChannelOptions o{.address = fmt::format("http://127.0.0.1:{}", port)};
  IstioCertificateResponse resp;
  auto st = call_unary(o, "x", &resp);
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kUnavailable) << st.describe();
  EXPECT_TRUE(contains(st.message, o.address)) << st.message;
}

TEST(GrpcClientStream, BidiExchangeAndHalfClose) {
  Server server;
  zt::grpc::Call call({.address = server.address()}, kStreamPath, {});
  std::string buf;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(call.write(request("t", fmt::format("n{}", i))));
    ASSERT_TRUE(call.read(&buf)) << call.finish().describe();
    DeltaDiscoveryResponse resp;
    ASSERT_TRUE(resp.ParseFromString(buf));
    EXPECT_EQ(resp.nonce(), fmt::format("n{}", i));
  }
  // Several in flight before reading.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(call.write(request("t", fmt::format("m{}", i))));
  ASSERT_TRUE(call.half_close());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(call.read(&buf));
    DeltaDiscoveryResponse resp;
    ASSERT_TRUE(resp.ParseFromString(buf));
    EXPECT_EQ(resp.nonce(), fmt::format("m{}", i));
  }
  EXPECT_FALSE(call.read(&buf));
  auto st = call.finish();
  EXPECT_TRUE(st.ok()) << st.describe();
}

TEST(GrpcClientStream, ErrorAfterAResponse) {
  Server server;
  zt::grpc::Call call({.address = server.address()}, kStreamPath, {});
  std::string buf;
  ASSERT_TRUE(call.write(request("abort", "a")));
  EXPECT_TRUE(call.read(&buf));
  EXPECT_FALSE(call.read(&buf));
  auto st = call.finish();
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kAborted) << st.describe();
  EXPECT_EQ(st.message, "aborted after one response");
}

TEST(GrpcClientStream, ServerSideCancellationIsAnError) {
  Server server;
  zt::grpc::Call call({.address = server.address()}, kStreamPath, {});
  std::string buf;
  ASSERT_TRUE(call.write(request("t", "first")));
  ASSERT_TRUE(call.read(&buf));
  ASSERT_TRUE(call.write(request("server-cancel", "")));
  EXPECT_FALSE(call.read(&buf));
  auto st = call.finish();
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kCancelled) << st.describe();
}

TEST(GrpcClientStream, ServerShutdownMidStreamIsAnError) {
  auto server = std::make_unique<Server>();
  zt::grpc::Call call({.address = server->address()}, kStreamPath, {});
  std::string buf;
  ASSERT_TRUE(call.write(request("t", "first")));
  ASSERT_TRUE(call.read(&buf));
  std::thread stopper([&] { server->shutdown(); });
  auto t0 = Clock::now();
  EXPECT_FALSE(call.read(&buf));
  auto st = call.finish();
  stopper.join();
  EXPECT_FALSE(st.ok());
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(GrpcClientStream, CancelFromAnotherThreadUnblocksARead) {
  Server server;
  zt::grpc::Call call({.address = server.address()}, kStreamPath, {});
  ASSERT_TRUE(call.write(request("hang", "")));
  std::atomic<Clock::time_point> cancelled_at{};
  std::thread canceller([&] {
    for (int i = 0; i < 500 && !server.ads.hanging; ++i) std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(100ms);
    cancelled_at = Clock::now();
    call.cancel();
  });
  std::string buf;
  EXPECT_FALSE(call.read(&buf));
  auto returned = Clock::now();
  canceller.join();
  EXPECT_LT(returned - cancelled_at.load(), 500ms);
  auto st = call.finish();
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kCancelled) << st.describe();
  EXPECT_TRUE(contains(st.message, server.address())) << st.message;
}

TEST(GrpcClientStream, CancelBeforeStartFailsAtOnce) {
  Server server;
  zt::grpc::Call call({.address = server.address()}, kStreamPath, {});
  call.cancel();
  EXPECT_FALSE(call.write(request("t", "")));
  EXPECT_EQ(call.finish().code, zt::grpc::StatusCode::kCancelled);
}

TEST(GrpcClientTls, UnaryAndStreamOverTlsByIpAndName) {
  auto cert = make_server_cert("IP:127.0.0.1,DNS:localhost");
  Server server(tls_creds(cert));
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    zt::grpc::ChannelOptions o{.address = server.address("https", host), .root_pem = cert.cert_pem};
    IstioCertificateResponse resp;
    auto st = call_unary(o, "tls", &resp);
    ASSERT_TRUE(st.ok()) << host << ": " << st.describe();
    EXPECT_EQ(resp.cert_chain(0), "leaf:tls");

    zt::grpc::Call call(o, kStreamPath, {});
    std::string buf;
    ASSERT_TRUE(call.write(request("t", "tls")));
    ASSERT_TRUE(call.read(&buf)) << call.finish().describe();
    call.cancel();
  }
}

TEST(GrpcClientTls, WrongRootIsAnErrorNamingTheAddress) {
  auto cert = make_server_cert("IP:127.0.0.1,DNS:localhost");
  Server server(tls_creds(cert));
  testing::TestPki pki;  // another CA entirely
  zt::grpc::ChannelOptions o{.address = server.address("https"), .root_pem = pki.root_pem()};
  IstioCertificateResponse resp;
  auto st = call_unary(o, "x", &resp);
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kUnavailable) << st.describe();
  EXPECT_TRUE(contains(st.message, o.address)) << st.message;
  EXPECT_TRUE(contains(st.message, "certificate verify failed")) << st.message;
  // No roots given: the system roots do not know this server either.
  o.root_pem.reset();
  st = call_unary(o, "x", &resp);
  EXPECT_EQ(st.code, zt::grpc::StatusCode::kUnavailable) << st.describe();
}

TEST(GrpcClientTls, WrongHostNameIsAnError) {
  auto cert = make_server_cert("DNS:istiod.example");
  Server server(tls_creds(cert));
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    zt::grpc::ChannelOptions o{.address = server.address("https", host), .root_pem = cert.cert_pem};
    IstioCertificateResponse resp;
    auto st = call_unary(o, "x", &resp);
    EXPECT_EQ(st.code, zt::grpc::StatusCode::kUnavailable) << host << ": " << st.describe();
    EXPECT_TRUE(contains(st.message, o.address)) << st.message;
    EXPECT_TRUE(contains(st.message, "mismatch")) << st.message;
  }
}

TEST(GrpcClientTls, PlaintextClientAgainstTlsServerFails) {
  auto cert = make_server_cert("IP:127.0.0.1");
  Server server(tls_creds(cert));
  zt::grpc::ChannelOptions o{.address = server.address("http")};
  IstioCertificateResponse resp;
  auto t0 = Clock::now();
  auto st = call_unary(o, "x", &resp, {}, 3s);
  EXPECT_FALSE(st.ok());
  EXPECT_LT(Clock::now() - t0, 4s);
}

}  // namespace
}  // namespace zt
