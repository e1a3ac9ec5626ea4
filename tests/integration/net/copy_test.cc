// copy_bidirectional over real loopback TCP: bytes, half-close, and how the buffers grow.
#include "common/net/copy.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/coro.h"

namespace zt::net {
namespace {

// Two loopback TCP connections joined by copy_bidirectional: client <-> [a | b] <-> server.
class CopyOverTcp : public ::testing::Test {
 protected:
  awaitable<std::pair<tcp::socket, tcp::socket>> connected_pair() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor acc(ex, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    tcp::socket out(ex);
    co_await out.async_connect(acc.local_endpoint(), asio::use_awaitable);
    tcp::socket in = co_await acc.async_accept(asio::use_awaitable);
    co_return std::pair{std::move(out), std::move(in)};
  }

  asio::io_context io_;
};

TEST_F(CopyOverTcp, RequestResponseKeepsSmallBuffersAndBulkGrowsThem) {
  zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto [client, a] = co_await connected_pair();
    auto [b, server] = co_await connected_pair();
    std::atomic<uint64_t> a_to_b{0}, b_to_a{0};
    TcpDuplex da(a), db(b);

    constexpr size_t kMessage = 1100;
    constexpr int kRounds = 500;  // 550 kB each way: past any rule based on bytes moved
    constexpr size_t kBulk = 24 * 1024 * 1024;

    auto client_side = [&]() -> awaitable<void> {
      std::string req(kMessage, 'q'), resp(kMessage, '\0');
      for (int i = 0; i < kRounds; ++i) {
        co_await asio::async_write(client, asio::buffer(req), asio::use_awaitable);
        co_await asio::async_read(client, asio::buffer(resp), asio::use_awaitable);
        EXPECT_EQ(resp, std::string(kMessage, 'r'));
      }
      std::vector<char> bulk(1024 * 1024, 'x');
      for (size_t sent = 0; sent < kBulk; sent += bulk.size()) {
        co_await asio::async_write(client, asio::buffer(bulk), asio::use_awaitable);
      }
      client.shutdown(tcp::socket::shutdown_send);
      // The server's half-close comes back through the copy as end of stream.
      char c;
      auto [ec, n] = co_await client.async_read_some(asio::buffer(&c, 1), kTuple);
      EXPECT_EQ(ec, asio::error::eof);
    };
    auto server_side = [&]() -> awaitable<void> {
      std::string req(kMessage, '\0'), resp(kMessage, 'r');
      for (int i = 0; i < kRounds; ++i) {
        co_await asio::async_read(server, asio::buffer(req), asio::use_awaitable);
        co_await asio::async_write(server, asio::buffer(resp), asio::use_awaitable);
      }
      std::vector<char> sink(64 * 1024);
      size_t got = 0;
      for (;;) {
        auto [ec, n] = co_await server.async_read_some(asio::buffer(sink), kTuple);
        got += n;
        if (ec) {
          EXPECT_EQ(ec, asio::error::eof);
          break;
        }
      }
      EXPECT_EQ(got, kBulk);
      server.shutdown(tcp::socket::shutdown_send);
    };

    CopyResult r;
    auto copy = [&]() -> awaitable<void> {
      r = co_await copy_bidirectional(da, db, a_to_b, b_to_a);
    };
    co_await (client_side() && server_side() && copy());

    EXPECT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.a_to_b, kRounds * kMessage + kBulk);
    EXPECT_EQ(r.b_to_a, kRounds * kMessage);
    // The responses never filled the 2 KiB the first one grew the buffer to; the bulk filled
    // it up to the medium size, and past it once 10 MiB had gone through.
    EXPECT_EQ(r.b_to_a_buffer, 2048u);
    EXPECT_GT(r.a_to_b_buffer, AdaptiveBuffer::kMedium);
  });
}

}  // namespace
}  // namespace zt::net
