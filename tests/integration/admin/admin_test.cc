#include "ztunnel/admin/admin.h"

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "common/base/log.h"
#include "tests/integration/http/http_client.h"
#include "ztunnel/admin/readiness.h"

namespace zt::admin {
namespace {

using http::testing::fetch;
using http::testing::HttpResponse;
using ::testing::HasSubstr;
namespace bhttp = http::testing::bhttp;

const auto kLoopback = asio::ip::address_v4::loopback();

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_level_ = log::current_level();
    registry_.counter_family("istio_tcp_connections_opened", "Connections opened.")
        .with({{"reporter", "source"}})
        .inc(3);
  }
  void TearDown() override { ASSERT_TRUE(log::set_level(previous_level_)); }

  // Binds admin, metrics and readiness to 127.0.0.1 port 0 and starts them.
  std::unique_ptr<AdminServers> start_servers() {
    AdminServers::Config config;
    config.endpoints = {{kLoopback, 0}, {kLoopback, 0}, {kLoopback, 0}};
    config.hooks.config_dump = [] { return std::string(R"({"workloads":[],"services":[]})"); };
    config.hooks.quit = [this] { ++quit_calls_; };
    auto servers = AdminServers::bind(ioc_.get_executor(), config, registry_, readiness_);
    if (!servers) {
      ADD_FAILURE() << servers.error().message;
      return nullptr;
    }
    (*servers)->start();
    return std::move(*servers);
  }

  HttpResponse get(const tcp::endpoint& ep, std::string target) {
    return http::testing::run_until_done(ioc_, fetch(ep, "GET", std::move(target)));
  }
  HttpResponse post(const tcp::endpoint& ep, std::string target) {
    return http::testing::run_until_done(ioc_, fetch(ep, "POST", std::move(target)));
  }

  asio::io_context ioc_;
  stats::Registry registry_;
  Readiness readiness_;
  int quit_calls_ = 0;
  std::string previous_level_;
};

TEST_F(AdminTest, ReadinessFlipsFrom500ListingPendingBlocksTo200WhenReleased) {
  auto proxy = readiness_.register_task("proxy");
  auto state = readiness_.register_task("state manager");
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto ep = servers->readiness_endpoint();

  auto res = get(ep, "/healthz/ready");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(res.body(), "not ready, pending: proxy, state manager\n");

  state.release();
  res = get(ep, "/healthz/ready");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(res.body(), "not ready, pending: proxy\n");

  { auto moved = std::move(proxy); }  // released when the holder goes away
  res = get(ep, "/healthz/ready");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "ready\n");
  EXPECT_EQ(post(ep, "/healthz/ready").result_int(), 405);
}

TEST_F(AdminTest, LoggingShowsTheLevelAndPostChangesIt) {
  ASSERT_TRUE(log::set_level("info"));
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto ep = servers->admin_endpoint();

  auto res = get(ep, "/logging");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "current log level is info\n");

  res = post(ep, "/logging?level=debug");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "current log level is debug\n");
  EXPECT_EQ(log::current_level(), "debug");
  EXPECT_EQ(get(ep, "/logging").body(), "current log level is debug\n");
}

TEST_F(AdminTest, BadLoggingRequestsGet400WithTheReasonAndKeepTheLevel) {
  ASSERT_TRUE(log::set_level("warn"));
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto ep = servers->admin_endpoint();

  auto res = post(ep, "/logging?level=verbose");
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_THAT(res.body(), HasSubstr("unknown log level 'verbose'"));
  res = post(ep, "/logging");
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_THAT(res.body(), HasSubstr("missing ?level="));
  res = post(ep, "/logging?level=proxy:debug");
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_THAT(res.body(), HasSubstr("not supported"));
  res = get(ep, "/logging?level=debug");
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_THAT(res.body(), HasSubstr("use POST"));
  EXPECT_EQ(log::current_level(), "warning");
}

TEST_F(AdminTest, QuitquitquitAnswers200ThenInvokesTheCallbackOnce) {
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto ep = servers->admin_endpoint();
  EXPECT_EQ(get(ep, "/quitquitquit").result_int(), 405);
  EXPECT_EQ(quit_calls_, 0);

  auto res = post(ep, "/quitquitquit");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(quit_calls_, 1);
  res = post(ep, "/quitquitquit");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "already draining\n");
  EXPECT_EQ(quit_calls_, 1);
}

TEST_F(AdminTest, QuitCallbackMayStopTheServersThatAnsweredIt) {
  std::unique_ptr<AdminServers> servers;
  AdminServers::Config config;
  config.endpoints = {{kLoopback, 0}, {kLoopback, 0}, {kLoopback, 0}};
  config.hooks.quit = [&] { servers->stop(); };
  auto bound = AdminServers::bind(ioc_.get_executor(), config, registry_, readiness_);
  ASSERT_TRUE(bound) << bound.error().message;
  servers = std::move(*bound);
  servers->start();
  auto ep = servers->admin_endpoint();
  EXPECT_EQ(post(ep, "/quitquitquit").result_int(), 200);
  auto refused = http::testing::run_until_done(ioc_, [&]() -> awaitable<error_code> {
    tcp::socket s(co_await asio::this_coro::executor);
    auto [ec] = co_await s.async_connect(ep, kTuple);
    co_return ec;
  }());
  EXPECT_EQ(refused, asio::error::connection_refused);
}

TEST_F(AdminTest, MetricsAndStatsPrometheusServeTheRenderedRegistry) {
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto ep = servers->metrics_endpoint();
  for (const char* path : {"/metrics", "/stats/prometheus"}) {
    auto expected = registry_.render_prometheus();
    auto res = get(ep, path);
    EXPECT_EQ(res.result_int(), 200) << path;
    EXPECT_EQ(res[bhttp::field::content_type], "text/plain; version=0.0.4") << path;
    // The body is rendered before this request itself is counted, so it is the registry as
    // it was just before.
    EXPECT_EQ(res.body(), expected) << path;
    EXPECT_THAT(res.body(),
                HasSubstr("istio_tcp_connections_opened_total{reporter=\"source\"} 3\n"));
  }
  EXPECT_THAT(get(ep, "/metrics").body(),
              HasSubstr("http_server_requests_total{code=\"200\",server=\"metrics\"} 2\n"));
}

TEST_F(AdminTest, ConfigDumpServesTheProvidersJson) {
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto res = get(servers->admin_endpoint(), "/config_dump");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"workloads":[],"services":[]})");
}

TEST_F(AdminTest, IndexListsTheEndpoints) {
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  auto res = get(servers->admin_endpoint(), "/");
  EXPECT_EQ(res.result_int(), 200);
  for (const char* path : {"/config_dump", "/logging", "/quitquitquit", "/metrics",
                           "/stats/prometheus", "/healthz/ready"}) {
    EXPECT_THAT(res.body(), HasSubstr(path));
  }
}

TEST_F(AdminTest, EachServerServesOnlyItsOwnEndpoints) {
  auto servers = start_servers();
  ASSERT_TRUE(servers);
  EXPECT_EQ(get(servers->admin_endpoint(), "/metrics").result_int(), 404);
  EXPECT_EQ(get(servers->admin_endpoint(), "/healthz/ready").result_int(), 404);
  EXPECT_EQ(get(servers->metrics_endpoint(), "/config_dump").result_int(), 404);
  EXPECT_EQ(get(servers->readiness_endpoint(), "/metrics").result_int(), 404);
  EXPECT_NE(servers->admin_endpoint().port(), servers->metrics_endpoint().port());
  EXPECT_NE(servers->metrics_endpoint().port(), servers->readiness_endpoint().port());
}

TEST_F(AdminTest, BindFailureNamesTheServerThatFailed) {
  tcp::acceptor taken(ioc_, tcp::endpoint(kLoopback, 0));
  auto port = taken.local_endpoint().port();
  AdminServers::Config config;
  config.endpoints = {{kLoopback, 0}, {kLoopback, port}, {kLoopback, 0}};
  auto servers = AdminServers::bind(ioc_.get_executor(), config, registry_, readiness_);
  ASSERT_FALSE(servers);
  EXPECT_EQ(servers.error().message,
            "address already in use: 127.0.0.1:" + std::to_string(port) + " (metrics)");
}

TEST_F(AdminTest, EachServerLogsItsBoundAddress) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  sink->set_pattern("%l %v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("admin_test", sink));
  auto servers = start_servers();
  spdlog::set_default_logger(previous);
  ASSERT_TRUE(servers);
  auto lines = sink->last_formatted();
  auto expect_line = [&](const std::string& component, const tcp::endpoint& ep) {
    auto line = "info listening component=" + component +
                " address=127.0.0.1:" + std::to_string(ep.port()) + "\n";
    EXPECT_THAT(lines, ::testing::Contains(line));
  };
  expect_line("admin", servers->admin_endpoint());
  expect_line("metrics", servers->metrics_endpoint());
  expect_line("readiness", servers->readiness_endpoint());
}

TEST(AdminDefaults, UseIstiosPortsWithAdminOnLocalhost) {
  AdminEndpoints defaults;
  EXPECT_EQ(http::to_string(defaults.admin), "127.0.0.1:15000");
  EXPECT_EQ(http::to_string(defaults.metrics), "0.0.0.0:15020");
  EXPECT_EQ(http::to_string(defaults.readiness), "0.0.0.0:15021");
}

TEST(Readiness, BlocksAreRaiiMovableAndListedSortedOnce) {
  Readiness r;
  EXPECT_TRUE(r.ready());
  auto a = r.register_task("b-task");
  auto b = r.register_task("a-task");
  auto c = r.register_task("b-task");
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.pending(), (std::vector<std::string>{"a-task", "b-task"}));
  ReadyBlock moved = std::move(a);
  EXPECT_FALSE(a.holds());  // NOLINT(bugprone-use-after-move): testing the moved-from state
  EXPECT_TRUE(moved.holds());
  moved.release();
  moved.release();                                                         // idempotent
  EXPECT_EQ(r.pending(), (std::vector<std::string>{"a-task", "b-task"}));  // c still holds
  c = ReadyBlock();  // assigning releases the old block
  EXPECT_EQ(r.pending(), (std::vector<std::string>{"a-task"}));
  b.release();
  EXPECT_TRUE(r.ready());
  auto late = r.register_task("late");
  EXPECT_FALSE(r.ready());
}

TEST(Readiness, BlockMayOutliveTheReadiness) {
  ReadyBlock block;
  {
    Readiness r;
    block = r.register_task("x");
  }
  block.release();
  EXPECT_FALSE(block.holds());
}

}  // namespace
}  // namespace zt::admin
