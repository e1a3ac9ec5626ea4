// gRPC through the waypoint's HTTP/2 codec: a real grpc++ client against serve_http2, and
// Http2Client against a real grpc++ server (unary IstioCertificateService/CreateCertificate).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/async/asio.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "tests/support/coro.h"
#include "tests/support/grpc_library.h"
#include "waypoint/http2/http2.h"

namespace zt::waypoint::http2 {
namespace {

using namespace std::chrono_literals;
using http::find_header;
using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
using istio::v1::auth::IstioCertificateService;

constexpr std::string_view kMethodPath = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

// gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length, bytes.
std::string grpc_frame(const google::protobuf::Message& m) {
  std::string payload = m.SerializeAsString();
  std::string out(5, '\0');
  const auto n = static_cast<uint32_t>(payload.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  return out + payload;
}

template <class M>
std::optional<M> grpc_unframe(const std::string& body) {
  if (body.size() < 5 || body[0] != 0) return std::nullopt;
  const uint32_t n = (uint32_t(uint8_t(body[1])) << 24) | (uint32_t(uint8_t(body[2])) << 16) |
                     (uint32_t(uint8_t(body[3])) << 8) | uint32_t(uint8_t(body[4]));
  if (body.size() != 5 + size_t{n}) return std::nullopt;
  M m;
  if (!m.ParseFromString(body.substr(5))) return std::nullopt;
  return m;
}

// The handler a waypoint backend would be: answers CreateCertificate with the CSR echoed as
// the chain; a CSR "deny" gets grpc-status 7 (PERMISSION_DENIED) in the trailers.
awaitable<Response> grpc_handler(Request req) {
  Response r;
  r.status = 200;
  r.headers.push_back({"content-type", "application/grpc"});
  auto in = grpc_unframe<IstioCertificateRequest>(req.body);
  const bool te_ok = find_header(req.head.headers, "te") == "trailers";
  if (req.head.target != kMethodPath || req.head.method != "POST" || !in || !te_ok) {
    r.trailers.push_back({"grpc-status", "12"});
    r.trailers.push_back({"grpc-message", "unexpected request"});
    co_return r;
  }
  if (in->csr() == "deny") {
    r.trailers.push_back({"grpc-status", "7"});
    r.trailers.push_back({"grpc-message", "not for you"});
    co_return r;
  }
  IstioCertificateResponse out;
  out.add_cert_chain("leaf for " + in->csr());
  out.add_cert_chain("root");
  r.body = grpc_frame(out);
  r.trailers.push_back({"grpc-status", "0"});
  co_return r;
}

awaitable<void> accept_loop(tcp::acceptor& acc, Limits limits) {
  for (;;) {
    auto [ec, socket] = co_await acc.async_accept(kTuple);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(),
                   serve_http2(Duplex::of_socket(std::move(socket)), {}, limits, grpc_handler),
                   asio::detached);
  }
}

TEST(Http2Grpc, GrpcClientAgainstServeHttp2) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = acc.local_endpoint().port();
  asio::co_spawn(io, accept_loop(acc, Limits{}), asio::detached);
  std::thread t([&] {
    auto guard = asio::make_work_guard(io);
    io.run();
  });

  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = IstioCertificateService::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    IstioCertificateRequest req;
    req.set_csr("my-csr");
    req.set_validity_duration(3600);
    IstioCertificateResponse resp;
    grpc::Status st = stub->CreateCertificate(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
    ASSERT_EQ(resp.cert_chain_size(), 2);
    EXPECT_EQ(resp.cert_chain(0), "leaf for my-csr");
    EXPECT_EQ(resp.cert_chain(1), "root");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    IstioCertificateRequest req;
    req.set_csr("deny");
    IstioCertificateResponse resp;
    grpc::Status st = stub->CreateCertificate(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(st.error_message(), "not for you");
  }
  // Several calls at once on the channel's one connection.
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 10s);
      IstioCertificateRequest req;
      req.set_csr("c" + std::to_string(i));
      IstioCertificateResponse resp;
      if (stub->CreateCertificate(&ctx, req, &resp).ok() && resp.cert_chain_size() == 2 &&
          resp.cert_chain(0) == "leaf for c" + std::to_string(i)) {
        ++ok;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(ok.load(), 8);

  stub.reset();
  channel.reset();
  io.stop();
  t.join();
}

class EchoCa final : public IstioCertificateService::Service {
 public:
  grpc::Status CreateCertificate(grpc::ServerContext*, const IstioCertificateRequest* req,
                                 IstioCertificateResponse* resp) override {
    if (req->csr() == "deny") return {grpc::StatusCode::PERMISSION_DENIED, "no certificate"};
    resp->add_cert_chain("signed " + req->csr());
    return grpc::Status::OK;
  }
};

TEST(Http2Grpc, Http2ClientAgainstGrpcServer) {
  EchoCa service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_TRUE(server);
  ASSERT_GT(port, 0);

  asio::io_context io;
  zt::testing::run_coroutine(
      io,
      [&]() -> awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        tcp::socket socket(ex);
        auto [ec] = co_await socket.async_connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
            kTuple);
        EXPECT_FALSE(ec) << ec.message();
        if (ec) co_return;
        auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));

        auto make = [](std::string csr) {
          IstioCertificateRequest m;
          m.set_csr(std::move(csr));
          Request req;
          req.version = HttpVersion::kHttp2;
          req.head.method = "POST";
          req.head.target = std::string(kMethodPath);
          req.head.authority = "istiod.test:15012";
          req.head.headers.push_back({"content-type", "application/grpc"});
          req.head.headers.push_back({"te", "trailers"});
          req.body = grpc_frame(m);
          return req;
        };

        auto res = co_await client->send(make("abc"));
        EXPECT_TRUE(res) << res.error().message;
        if (!res) co_return;
        EXPECT_EQ(res->status, 200);
        EXPECT_EQ(find_header(res->headers, "content-type"), "application/grpc");
        auto msg = grpc_unframe<IstioCertificateResponse>(res->body);
        EXPECT_TRUE(msg);
        if (msg) {
          EXPECT_EQ(msg->cert_chain_size(), 1);
          if (msg->cert_chain_size() == 1) {
            EXPECT_EQ(msg->cert_chain(0), "signed abc");
          }
        }
        EXPECT_EQ(find_header(res->trailers, "grpc-status"), "0");

        // A failing call: gRPC answers trailers-only (grpc-status in the head) or in trailers.
        auto denied = co_await client->send(make("deny"));
        EXPECT_TRUE(denied) << denied.error().message;
        if (denied) {
          auto st = find_header(denied->trailers, "grpc-status");
          if (!st) st = find_header(denied->headers, "grpc-status");
          EXPECT_EQ(st, "7");
        }
        EXPECT_TRUE(client->usable());
        client->close();
      },
      std::chrono::seconds(30));
  io.run_for(200ms);  // lets the closed client send its GOAWAY
  server->Shutdown(std::chrono::system_clock::now() + 2s);
}

}  // namespace
}  // namespace zt::waypoint::http2
