#include "tools/loadgen/config.h"

#include <gtest/gtest.h>

#include "tools/loadgen/engine.h"
#include "tools/loadgen/socks5.h"

namespace zt::loadgen {
namespace {

using namespace std::chrono_literals;

Result<Config> parse(std::vector<std::string> args) { return parse_args(args); }

// The parse fails and the message names `flag`.
void expect_error(std::vector<std::string> args, const std::string& flag) {
  auto c = parse(args);
  ASSERT_FALSE(c.has_value()) << "expected an error mentioning " << flag;
  EXPECT_NE(c.error().message.find(flag), std::string::npos) << c.error().message;
}

TEST(Config, Defaults) {
  auto c = parse({"http://127.0.0.1:8080/"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->target.scheme, "http");
  EXPECT_EQ(c->target.address.host, "127.0.0.1");
  EXPECT_EQ(c->target.address.port, 8080);
  EXPECT_EQ(c->target.path, "/");
  EXPECT_EQ(c->target.authority, "127.0.0.1:8080");
  EXPECT_EQ(c->rate, 0);
  EXPECT_EQ(c->connections, 1u);
  EXPECT_EQ(c->threads, 1u);
  EXPECT_EQ(c->duration, 10s);
  EXPECT_EQ(c->warmup, 1s);
  EXPECT_EQ(c->protocol, Protocol::kHttp1);
  EXPECT_EQ(c->mode, ConnMode::kKeepAlive);
  EXPECT_EQ(c->effective_method(), "GET");
  EXPECT_FALSE(c->socks5);
  EXPECT_FALSE(c->tcp_bulk);
}

TEST(Config, EveryFlag) {
  auto c = parse({"--rate",
                  "1000",
                  "--connections=4",
                  "--threads",
                  "2",
                  "--duration",
                  "30s",
                  "--warmup",
                  "500ms",
                  "--timeout",
                  "2s",
                  "--protocol",
                  "http2",
                  "--mode",
                  "new-connection",
                  "--body-size",
                  "1k",
                  "--header",
                  "x-a: 1",
                  "-H",
                  "x-b:2",
                  "--max-streams",
                  "10",
                  "--socks5",
                  "127.0.0.1:15080",
                  "--json",
                  "/tmp/r.json",
                  "http://10.0.0.1:9080/api?x=1"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->rate, 1000);
  EXPECT_EQ(c->connections, 4u);
  EXPECT_EQ(c->threads, 2u);
  EXPECT_EQ(c->duration, 30s);
  EXPECT_EQ(c->warmup, 500ms);
  EXPECT_EQ(c->timeout, 2s);
  EXPECT_EQ(c->protocol, Protocol::kHttp2);
  EXPECT_EQ(c->mode, ConnMode::kNewConnection);
  EXPECT_EQ(c->body_size, 1024u);
  EXPECT_EQ(c->effective_method(), "POST");
  ASSERT_EQ(c->headers.size(), 2u);
  EXPECT_EQ(c->headers[0].first, "x-a");
  EXPECT_EQ(c->headers[0].second, "1");
  EXPECT_EQ(c->headers[1].second, "2");
  EXPECT_EQ(c->max_streams, 10u);
  ASSERT_TRUE(c->socks5);
  EXPECT_EQ(c->socks5->port, 15080);
  EXPECT_EQ(c->json_path, "/tmp/r.json");
  EXPECT_EQ(c->target.path, "/api?x=1");
}

TEST(Config, TcpBulk) {
  auto c = parse(
      {"--tcp-bulk", "--direction", "both", "--chunk-size", "64k", "-c", "3", "127.0.0.1:5201"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->tcp_bulk);
  EXPECT_EQ(c->direction, Direction::kBoth);
  EXPECT_EQ(c->chunk_size, 64u * 1024);
  EXPECT_EQ(c->connections, 3u);
  EXPECT_EQ(c->target.scheme, "tcp");
  auto v6 = parse({"--tcp-bulk", "tcp://[::1]:9"});
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->target.address.host, "::1");
}

TEST(Config, ThreadsNeverExceedConnections) {
  auto c = parse({"--threads", "8", "-c", "2", "http://127.0.0.1:1/"});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->threads, 2u);
}

TEST(Config, ErrorsNameTheFlag) {
  expect_error({"--rate", "fast", "http://127.0.0.1:1/"}, "--rate");
  expect_error({"--rate", "-5", "http://127.0.0.1:1/"}, "--rate");
  expect_error({"--connections", "0", "http://127.0.0.1:1/"}, "--connections");
  expect_error({"--connections", "x", "http://127.0.0.1:1/"}, "--connections");
  expect_error({"--threads", "1.5", "http://127.0.0.1:1/"}, "--threads");
  expect_error({"--duration", "10parsecs", "http://127.0.0.1:1/"}, "--duration");
  expect_error({"--duration", "0", "http://127.0.0.1:1/"}, "--duration");
  expect_error({"--warmup", "soon", "http://127.0.0.1:1/"}, "--warmup");
  expect_error({"--timeout", "0s", "http://127.0.0.1:1/"}, "--timeout");
  expect_error({"--protocol", "spdy", "http://127.0.0.1:1/"}, "--protocol");
  expect_error({"--mode", "pipelined", "http://127.0.0.1:1/"}, "--mode");
  expect_error({"--body-size", "1q", "http://127.0.0.1:1/"}, "--body-size");
  expect_error({"--header", "novalue", "http://127.0.0.1:1/"}, "--header");
  expect_error({"--header", "bad name:x", "http://127.0.0.1:1/"}, "--header");
  expect_error({"--method", "GE T", "http://127.0.0.1:1/"}, "--method");
  expect_error({"--socks5", "127.0.0.1", "http://127.0.0.1:1/"}, "--socks5");
  expect_error({"--socks5", "127.0.0.1:99999", "http://127.0.0.1:1/"}, "--socks5");
  expect_error({"--direction", "sideways", "--tcp-bulk", "127.0.0.1:1"}, "--direction");
  expect_error({"--direction", "send", "http://127.0.0.1:1/"}, "--direction");
  expect_error({"--chunk-size", "0", "--tcp-bulk", "127.0.0.1:1"}, "--chunk-size");
  expect_error({"--tcp-bulk=yes", "127.0.0.1:1"}, "--tcp-bulk");
  expect_error({"--json", "", "http://127.0.0.1:1/"}, "--json");
  expect_error({"--bogus", "http://127.0.0.1:1/"}, "--bogus");
  expect_error({"http://127.0.0.1:1/", "--rate"}, "--rate");  // missing value
  expect_error({"--rate", "10"}, "URL");
  expect_error({"ftp://127.0.0.1:1/"}, "URL");
  expect_error({"127.0.0.1:1"}, "URL");  // HTTP mode needs http://
  expect_error({"http://127.0.0.1:1/", "http://127.0.0.1:2/"}, "URL");
}

TEST(Config, HelpStopsParsing) {
  auto c = parse({"--help", "--bogus"});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->help);
  EXPECT_NE(usage().find("--tcp-bulk"), std::string::npos);
}

TEST(Config, Durations) {
  EXPECT_EQ(*parse_duration("2"), 2s);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("100us"), 100us);
  EXPECT_EQ(*parse_duration("1m"), 60s);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("ms"));
  EXPECT_FALSE(parse_duration("5d"));
}

TEST(Config, Http1RequestBytes) {
  auto c = parse({"--body-size", "4", "--header", "x-test: yes", "http://h.example:81/p?q"});
  ASSERT_TRUE(c);
  EXPECT_EQ(build_http1_request(*c),
            "POST /p?q HTTP/1.1\r\nHost: h.example:81\r\nx-test: yes\r\nContent-Length: "
            "4\r\n\r\nxxxx");
  auto n = parse({"--mode", "new-connection", "http://127.0.0.1:8/"});
  ASSERT_TRUE(n);
  EXPECT_EQ(build_http1_request(*n),
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:8\r\nConnection: close\r\n\r\n");
}

TEST(Socks5, ConnectRequests) {
  auto v4 = socks5::connect_request({"10.1.2.3", 8080});
  ASSERT_TRUE(v4);
  EXPECT_EQ(*v4, (std::vector<uint8_t>{5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90}));
  auto name = socks5::connect_request({"ab.c", 80});
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, (std::vector<uint8_t>{5, 1, 0, 3, 4, 'a', 'b', '.', 'c', 0, 80}));
  auto v6 = socks5::connect_request({"::1", 1});
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->size(), 4u + 16 + 2);
  EXPECT_EQ((*v6)[3], 4);
  EXPECT_FALSE(socks5::connect_request({std::string(256, 'a'), 1}));
}

TEST(Socks5, Replies) {
  const uint8_t ok4[5] = {5, 0, 0, 1, 127};
  EXPECT_EQ(*socks5::reply_length(ok4), 10u);
  const uint8_t okname[5] = {5, 0, 0, 3, 7};
  EXPECT_EQ(*socks5::reply_length(okname), 4u + 1 + 7 + 2);
  const uint8_t refused[5] = {5, 5, 0, 1, 0};
  auto r = socks5::reply_length(refused);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("connection refused"), std::string::npos);
  const uint8_t v4reply[5] = {4, 0, 0, 1, 0};
  EXPECT_FALSE(socks5::reply_length(v4reply));
}

}  // namespace
}  // namespace zt::loadgen
