// Telemetry and admin of real ztunnel processes (issue 5 acceptance 3, 4, 5): two ztunnels on
// loopback (127.0.43.x; each test its own pair of addresses), a client using ztunnel A's SOCKS5
// listener, servers behind ztunnel B. The tests send a known number of connections and bytes
// and check what both ztunnels report: Prometheus metrics (and promtool), access log lines in
// text and JSON, /config_dump, /logging, /quitquitquit, and that admin-only endpoints are
// reachable only on localhost's admin port.
#include <chrono>
#include <map>
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/net/address.h"
#include "tests/support/coro.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kSubnet = "127.0.43";
constexpr const char* kServiceHost = "echo.default.svc.cluster.local";
constexpr const char* kClientId = "spiffe://cluster.local/ns/default/sa/client";
constexpr const char* kServerId = "spiffe://cluster.local/ns/default/sa/server";

// Client and server workloads with Istio's workload metadata (workloadName, canonical name and
// revision, cluster, locality), a service "echo" (VIP `vip`, port 80 -> 8080) backed by the
// server, and a policy that applies only to namespace "other".
std::string mesh_yaml(const std::string& client_ip, const std::string& server_ip,
                      const std::string& vip, const std::string& extra_workloads = "") {
  return fmt::format(R"(workloads:
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["{0}"]
  protocol: HBONE
  node: node-a
  workloadName: client-deploy
  canonicalName: client-app
  canonicalRevision: v1
  clusterId: cluster1
- uid: cluster1//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["{1}"]
  protocol: HBONE
  node: node-b
  workloadName: server-deploy
  canonicalName: server-app
  canonicalRevision: v2
  clusterId: cluster1
  locality: {{region: us-east1, zone: us-east1-b}}
  services:
    "default/{3}": {{"80": 8080}}
{4}services:
- name: echo
  namespace: default
  hostname: {3}
  vips: ["/{2}"]
  ports: {{"80": 8080}}
policies:
- name: deny-other
  namespace: other
  scope: Namespace
  action: Deny
  dryRun: false
  rules:
  - - - principals: [{{Prefix: "cluster.local/ns/evil/"}}]
        destinationPorts: [8080]
)",
                     client_ip, server_ip, vip, kServiceHost, extra_workloads);
}

// One sample line of the Prometheus text format.
struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Every sample of `family` (exact name), labels unescaped.
std::vector<Sample> samples(const std::string& text, const std::string& family) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, family.size(), family) != 0) continue;
    size_t i = family.size();
    if (i < line.size() && line[i] != '{' && line[i] != ' ') continue;
    Sample s;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        auto eq = line.find('=', i);
        std::string name = line.substr(i, eq - i);
        std::string value;
        i = eq + 2;  // skip ="
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
          ++i;
        }
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
        s.labels[name] = value;
      }
      ++i;
    }
    s.value = std::stod(line.substr(line.find_last_of(' ') + 1));
    out.push_back(std::move(s));
  }
  return out;
}

// Sum of the samples of `family` whose labels include all of `want`.
double sum_where(const std::string& text, const std::string& family,
                 const std::map<std::string, std::string>& want) {
  double sum = 0;
  for (const auto& s : samples(text, family)) {
    bool ok = true;
    for (const auto& [k, v] : want) {
      auto it = s.labels.find(k);
      ok = ok && it != s.labels.end() && it->second == v;
    }
    if (ok) sum += s.value;
  }
  return sum;
}

// Through SOCKS5: sends `send` bytes, half-closes, reads until EOF. Returns bytes received.
awaitable<Result<uint64_t>> exchange(tcp::endpoint socks, tcp::endpoint dst, size_t send) {
  auto s = co_await socks5_connect(socks, dst);
  if (!s) co_return tl::unexpected(s.error());
  std::string data(send, 'x');
  auto [wec, wn] = co_await asio::async_write(*s, asio::buffer(data), kTuple);
  if (wec) co_return fail(wec, "write");
  s->shutdown(tcp::socket::shutdown_send);
  uint64_t got = 0;
  char buf[16384];
  for (;;) {
    auto [rec, n] = co_await s->async_read_some(asio::buffer(buf), kTuple);
    got += n;
    if (rec == asio::error::eof) break;
    if (rec) co_return fail(rec, "read");
  }
  co_return got;
}

awaitable<Result<tcp::socket>> open_via_socks(tcp::endpoint socks, tcp::endpoint dst) {
  co_return co_await socks5_connect(socks, dst);
}

// Writes `msg` and reads the same number of bytes back (an echo server behind).
awaitable<Result<std::string>> echo_once(tcp::socket& s, std::string msg) {
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(msg), kTuple);
  if (wec) co_return fail(wec, "write");
  std::string back(msg.size(), '\0');
  auto [rec, rn] = co_await asio::async_read(s, asio::buffer(back), kTuple);
  if (rec) co_return fail(rec, "read");
  co_return back;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cond();
}

// A ztunnel process and its ports. Like ZtunnelProcess (tests/support/mesh.h), but the ports
// are read from the "listening" lines in either log format (text or JSON).
struct Ztunnel {
  std::unique_ptr<Daemon> d;
  tcp::endpoint socks5, admin, metrics, readiness;

  Daemon& daemon() { return *d; }
  std::string metrics_text() {
    auto r = http_request(metrics, "GET", "/metrics");
    return r ? r->body : std::string();
  }
};

Result<std::unique_ptr<Ztunnel>> start_ztunnel(const ZtunnelOptions& o) {
  std::vector<std::string> args = {
      "--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--readiness-address",
      "127.0.0.1:0",     "--ca-cert",   o.ca_cert.string(),  "--ca-key",    o.ca_key.string()};
  if (o.socks5) args.insert(args.end(), {"--socks5-address", "127.0.0.1:0"});
  args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
  std::vector<std::string> env = {
      "LOCAL_XDS_PATH=" + o.config.string(), "PROXY_MODE=dedicated",
      fmt::format("PROXY_WORKLOAD_INFO={}/{}/{}", o.ns, o.name, o.name),
      std::string("UNSTABLE_ENABLE_SOCKS5=") + (o.socks5 ? "true" : "false")};
  env.insert(env.end(), o.env.begin(), o.env.end());
  auto d = Daemon::start(bin_path("ztunnel"), args, env);
  if (!d) return tl::unexpected(d.error());
  auto z = std::make_unique<Ztunnel>();
  z->d = std::move(*d);
  if (!z->d->wait_for(std::regex("ztunnel ready"), 20s)) {
    return failf("ztunnel {} did not become ready; output:\n{}", o.name, z->d->output());
  }
  std::vector<std::pair<std::string, tcp::endpoint*>> want = {
      {"admin", &z->admin}, {"metrics", &z->metrics}, {"readiness", &z->readiness}};
  if (o.socks5) want.emplace_back("socks5", &z->socks5);
  for (auto& [component, ep] : want) {
    auto addr = z->d->wait_for(
        std::regex("listening component=" + component + " address=([0-9.]+:[0-9]+)"), 1s);
    auto parsed = addr ? net::parse_endpoint(*addr) : failf("no address");
    if (!parsed) return failf("ztunnel {} did not report its {} address", o.name, component);
    *ep = *parsed;
  }
  return z;
}

class Telemetry : public ::testing::Test {
 protected:
  // Ztunnel A (client) on <subnet>.<host>, B (server) on <subnet>.<host+1>, the echo service VIP
  // on <subnet>.<host+100>.
  void start(int host, std::vector<std::string> env = {}, std::vector<std::string> a_args = {},
             bool b_default_admin = false) {
    client_ip_ = fmt::format("{}.{}", kSubnet, host);
    server_ip_ = fmt::format("{}.{}", kSubnet, host + 1);
    vip_ = fmt::format("{}.{}", kSubnet, host + 100);
    ca_ = pki_.write_ca_files(dir_.path());
    config_ = dir_.path() / "mesh.yaml";
    write_file(config_, mesh_yaml(client_ip_, server_ip_, vip_));
    auto a = start_ztunnel({.name = "client",
                            .config = config_,
                            .ca_cert = ca_.cert_path,
                            .ca_key = ca_.key_path,
                            .extra_args = a_args,
                            .env = env});
    ASSERT_TRUE(a) << a.error().describe();
    a_ = std::move(*a);
    if (b_default_admin) return;
    auto b = start_ztunnel({.name = "server",
                            .config = config_,
                            .ca_cert = ca_.cert_path,
                            .ca_key = ca_.key_path,
                            .socks5 = false,
                            .env = env});
    ASSERT_TRUE(b) << b.error().describe();
    b_ = std::move(*b);
  }
  tcp::endpoint server(uint16_t port) const { return {asio::ip::make_address(server_ip_), port}; }
  tcp::endpoint vip(uint16_t port) const { return {asio::ip::make_address(vip_), port}; }

  TempDir dir_;
  TestPki pki_;
  TestPki::CaFiles ca_;
  std::filesystem::path config_;
  std::string client_ip_, server_ip_, vip_;
  std::unique_ptr<Ztunnel> a_, b_;
};

awaitable<void> exchange_into(tcp::endpoint socks, tcp::endpoint dst, size_t send,
                              Result<uint64_t>& out) {
  out = co_await exchange(socks, dst, send);
}

// Runs `count` exchanges and checks each got `answer` bytes.
void run_exchanges(const tcp::endpoint& socks, const tcp::endpoint& dst, int count, size_t send,
                   uint64_t answer) {
  for (int i = 0; i < count; ++i) {
    asio::io_context io;
    Result<uint64_t> got = failf("not run");
    run_coroutine(io, [&] { return exchange_into(socks, dst, send, got); });
    ASSERT_TRUE(got) << got.error().describe();
    EXPECT_EQ(*got, answer);
  }
}

// The label set both reporters must give the echo connections (reporter aside).
std::map<std::string, std::string> expected_labels(const std::string& reporter) {
  return {
      {"reporter", reporter},
      {"source_workload", "client-deploy"},
      {"source_canonical_service", "client-app"},
      {"source_canonical_revision", "v1"},
      {"source_workload_namespace", "default"},
      {"source_principal", kClientId},
      {"source_app", "client-app"},
      {"source_version", "v1"},
      {"source_cluster", "cluster1"},
      {"destination_service", kServiceHost},
      {"destination_service_namespace", "default"},
      {"destination_service_name", "echo"},
      {"destination_workload", "server-deploy"},
      {"destination_canonical_service", "server-app"},
      {"destination_canonical_revision", "v2"},
      {"destination_workload_namespace", "default"},
      {"destination_principal", kServerId},
      {"destination_app", "server-app"},
      {"destination_version", "v2"},
      {"destination_cluster", "cluster1"},
      {"request_protocol", "tcp"},
      {"response_flags", "-"},
      {"connection_security_policy", "mutual_tls"},
      {"source_region", "unknown"},
      {"source_zone", "unknown"},
      {"destination_region", "us-east1"},
      {"destination_zone", "us-east1-b"},
  };
}

TEST_F(Telemetry, MetricsCountConnectionsAndBytesWithIstioLabelsOnBothReporters) {
  ASSERT_NO_FATAL_FAILURE(start(2));
  constexpr int kConnections = 5;
  constexpr size_t kSend = 3000;
  constexpr uint64_t kAnswer = 7000;
  auto bulk = BulkServer::start(server(8080), kAnswer, 7);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), kConnections, kSend, kAnswer));

  const std::string opened = "istio_tcp_connections_opened_total";
  const std::string closed = "istio_tcp_connections_closed_total";
  for (auto [z, reporter] : {std::pair{a_.get(), "source"}, std::pair{b_.get(), "destination"}}) {
    SCOPED_TRACE(reporter);
    std::string text;
    ASSERT_TRUE(eventually([&] {
      text = z->metrics_text();
      return sum_where(text, closed, {{"reporter", reporter}}) >= kConnections;
    })) << text;
    // Exactly one series per family for this traffic, with Istio's full label set.
    for (const auto& family : {opened, closed, std::string("istio_tcp_received_bytes_total"),
                               std::string("istio_tcp_sent_bytes_total")}) {
      auto s = samples(text, family);
      ASSERT_EQ(s.size(), 1u) << family << "\n" << text;
      EXPECT_EQ(s[0].labels, expected_labels(reporter)) << family;
    }
    EXPECT_EQ(sum_where(text, opened, {}), kConnections);
    EXPECT_EQ(sum_where(text, closed, {}), kConnections);
    // Istio's convention on both reporters: received = client -> server, sent = the answer.
    EXPECT_EQ(sum_where(text, "istio_tcp_received_bytes_total", {}), kConnections * kSend);
    EXPECT_EQ(sum_where(text, "istio_tcp_sent_bytes_total", {}), kConnections * kAnswer);
    EXPECT_EQ(sum_where(text, "istio_tcp_connections_failed_total", {}), 0);
    // Build info and process metrics.
    EXPECT_EQ(sum_where(text, "istio_build", {{"component", "ztunnel"}}), 1) << text;
    EXPECT_GT(sum_where(text, "process_open_fds", {}), 5);
    EXPECT_GT(sum_where(text, "process_max_fds", {}), 0);
    EXPECT_GT(sum_where(text, "process_resident_memory_bytes", {}), 1e6);
    // /stats/prometheus is the same exposition.
    auto alias = http_request(z->metrics, "GET", "/stats/prometheus");
    ASSERT_TRUE(alias);
    EXPECT_EQ(alias->status, 200);
    EXPECT_EQ(sum_where(alias->body, closed, {}), kConnections);
  }
}

TEST_F(Telemetry, FailuresCarryResponseFlagsAndCountHandledErrors) {
  ASSERT_NO_FATAL_FAILURE(start(4));
  // Nothing listens on the server's port 9: B cannot reach the app (503 on the CONNECT).
  asio::io_context io;
  Result<tcp::socket> s = failf("not run");
  run_coroutine(io,
                [&]() -> awaitable<void> { s = co_await open_via_socks(a_->socks5, server(9)); });
  EXPECT_FALSE(s);
  std::string a_text, b_text;
  ASSERT_TRUE(eventually([&] {
    a_text = a_->metrics_text();
    b_text = b_->metrics_text();
    return sum_where(a_text, "istio_tcp_connections_failed_total", {}) >= 1 &&
           sum_where(b_text, "istio_tcp_connections_failed_total", {}) >= 1;
  })) << a_text
      << b_text;
  EXPECT_EQ(sum_where(a_text, "istio_tcp_connections_failed_total",
                      {{"reporter", "source"}, {"response_flags", "CONNECT"}}),
            1);
  EXPECT_EQ(sum_where(b_text, "istio_tcp_connections_failed_total",
                      {{"reporter", "destination"}, {"response_flags", "CONNECT"}}),
            1);
  // Every handled error is counted by component and kind.
  EXPECT_EQ(
      sum_where(a_text, "ztunnel_errors_total", {{"component", "outbound"}, {"kind", "connect"}}),
      1)
      << a_text;
  EXPECT_EQ(sum_where(b_text, "ztunnel_errors_total",
                      {{"component", "inbound"}, {"kind", "app_connect"}}),
            1)
      << b_text;
  // No opened/closed for a connection that never reached its peer.
  EXPECT_EQ(sum_where(a_text, "istio_tcp_connections_opened_total", {}), 0);

  // Early failures are logged once each, at WARN, with the error.
  auto a_line = a_->daemon().wait_for(std::regex(".*warning access connection failed.*"));
  ASSERT_TRUE(a_line) << a_->daemon().output();
  EXPECT_NE(a_line->find(fmt::format("dst.addr=\"{}:15008\"", server_ip_)), std::string::npos)
      << *a_line;
  EXPECT_NE(a_line->find("direction=\"outbound\""), std::string::npos) << *a_line;
  EXPECT_NE(a_line->find(" error=\""), std::string::npos) << *a_line;
  auto b_line = b_->daemon().wait_for(std::regex(".*warning access connection failed.*"));
  ASSERT_TRUE(b_line) << b_->daemon().output();
  EXPECT_NE(b_line->find(fmt::format("dst.addr=\"{}:9\"", server_ip_)), std::string::npos)
      << *b_line;
  EXPECT_NE(b_line->find("direction=\"inbound\""), std::string::npos) << *b_line;
  EXPECT_NE(b_line->find("error=\"connection to the app at"), std::string::npos) << *b_line;
}

TEST_F(Telemetry, RealExpositionPassesPromtool) {
  if (run_command("command -v promtool >/dev/null 2>&1").first != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package 'prometheus')";
  }
  ASSERT_NO_FATAL_FAILURE(start(6));
  auto bulk = BulkServer::start(server(8080), 100, 1);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 2, 100, 100));
  {
    // One failure too, so the failed and error families are in the output.
    asio::io_context io;
    Result<tcp::socket> s = failf("not run");
    run_coroutine(io,
                  [&]() -> awaitable<void> { s = co_await open_via_socks(a_->socks5, server(9)); });
  }
  for (auto* z : {a_.get(), b_.get()}) {
    std::string text;
    ASSERT_TRUE(eventually([&] {
      text = z->metrics_text();
      return sum_where(text, "istio_tcp_connections_closed_total", {}) >= 2 &&
             sum_where(text, "istio_tcp_connections_failed_total", {}) >= 1;
    })) << text;
    auto path = dir_.path() / "metrics.txt";
    write_file(path, text);
    // Syntax and lint both. promtool's lint flags non-base units and counters without _total;
    // ztunnel's Istio-mandated names (istio_tcp_*_total, istio_build, process_*) raise none,
    // so no finding is filtered: any output fails. (The waypoint's
    // istio_request_duration_milliseconds is the one Istio name lint would flag; it is not
    // exported by ztunnel.)
    auto [rc, out] = run_command("promtool check metrics < " + path.string() + " 2>&1");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "") << "promtool findings:\n" << out << "\nexposition:\n" << text;
  }
}

// key="value" (or key=number) of a text access line.
std::string text_field(const std::string& line, const std::string& key) {
  std::smatch m;
  std::string pattern = " ";
  for (char c : key) {
    if (c == '.') pattern += '\\';
    pattern += c;
  }
  pattern += R"(=("([^"\\]|\\.)*"|[0-9]+))";
  std::regex re(pattern);
  if (!std::regex_search(line, m, re)) return "<missing>";
  auto v = m[1].str();
  if (!v.empty() && v.front() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

TEST_F(Telemetry, TextAccessLogHasIstiosFieldsOnBothSides) {
  ASSERT_NO_FATAL_FAILURE(start(8));
  auto bulk = BulkServer::start(server(8080), 4321, 3);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 1234, 4321));

  auto out = a_->daemon().wait_for(std::regex(".*info access connection complete.*"));
  ASSERT_TRUE(out) << a_->daemon().output();
  // The SOCKS5 client's own address (the test connects from 127.0.0.1).
  auto client_addr = text_field(*out, "src.addr");
  EXPECT_TRUE(std::regex_match(client_addr, std::regex(R"(127\.0\.0\.1:[0-9]+)"))) << *out;
  EXPECT_EQ(text_field(*out, "src.workload"), "client");
  EXPECT_EQ(text_field(*out, "src.namespace"), "default");
  EXPECT_EQ(text_field(*out, "src.identity"), kClientId);
  EXPECT_EQ(text_field(*out, "dst.addr"), server_ip_ + ":15008");
  EXPECT_EQ(text_field(*out, "dst.hbone_addr"), server_ip_ + ":8080");
  EXPECT_EQ(text_field(*out, "dst.service"), kServiceHost);
  EXPECT_EQ(text_field(*out, "dst.workload"), "server");
  EXPECT_EQ(text_field(*out, "dst.namespace"), "default");
  EXPECT_EQ(text_field(*out, "dst.identity"), kServerId);
  EXPECT_EQ(text_field(*out, "direction"), "outbound");
  // The local workload's view: the client sent 1234 and received 4321.
  EXPECT_EQ(text_field(*out, "bytes_sent"), "1234") << *out;
  EXPECT_EQ(text_field(*out, "bytes_recv"), "4321") << *out;
  EXPECT_TRUE(std::regex_match(text_field(*out, "duration"), std::regex("[0-9]+ms"))) << *out;
  EXPECT_EQ(text_field(*out, "error"), "<missing>");

  auto in = b_->daemon().wait_for(std::regex(".*info access connection complete.*"));
  ASSERT_TRUE(in) << b_->daemon().output();
  // The client's address as the source ztunnel forwarded it (Forwarded: for=).
  EXPECT_EQ(text_field(*in, "src.addr"), client_addr) << *in;
  EXPECT_EQ(text_field(*in, "src.workload"), "client");
  EXPECT_EQ(text_field(*in, "src.identity"), kClientId);
  EXPECT_EQ(text_field(*in, "dst.addr"), server_ip_ + ":8080");
  EXPECT_EQ(text_field(*in, "dst.service"), kServiceHost);
  EXPECT_EQ(text_field(*in, "dst.workload"), "server");
  EXPECT_EQ(text_field(*in, "dst.identity"), kServerId);
  EXPECT_EQ(text_field(*in, "direction"), "inbound");
  // The server's view: it sent the 4321-byte answer and received 1234.
  EXPECT_EQ(text_field(*in, "bytes_sent"), "4321") << *in;
  EXPECT_EQ(text_field(*in, "bytes_recv"), "1234") << *in;
  // One line per connection on each side.
  auto count = [](Daemon& d) {
    int n = 0;
    for (const auto& l : d.lines()) n += l.find("access connection complete") != std::string::npos;
    return n;
  };
  EXPECT_EQ(count(a_->daemon()), 1);
  EXPECT_EQ(count(b_->daemon()), 1);
}

// Every line of the daemon's output that parses as a JSON object with "scope":"access".
std::vector<json> json_access_lines(Daemon& d) {
  std::vector<json> out;
  for (const auto& l : d.lines()) {
    auto j = json::parse(l, nullptr, false);
    if (j.is_object() && j.value("scope", "") == "access") out.push_back(j);
  }
  return out;
}

TEST_F(Telemetry, JsonAccessLogHasOneObjectPerLineWithIstiosFieldNames) {
  ASSERT_NO_FATAL_FAILURE(start(10, {"LOG_FORMAT=json"}));
  auto bulk = BulkServer::start(server(8080), 50, 3);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 20, 50));
  {
    asio::io_context io;
    Result<tcp::socket> s = failf("not run");
    run_coroutine(io,
                  [&]() -> awaitable<void> { s = co_await open_via_socks(a_->socks5, server(9)); });
  }
  std::vector<json> lines;
  ASSERT_TRUE(eventually([&] {
    lines = json_access_lines(a_->daemon());
    return lines.size() >= 2;
  })) << a_->daemon().output();
  // Every line the process wrote is a JSON object.
  for (const auto& l : a_->daemon().lines()) {
    EXPECT_TRUE(json::parse(l, nullptr, false).is_object()) << l;
  }
  const json* complete = nullptr;
  const json* failed = nullptr;
  for (const auto& j : lines) {
    if (j.value("msg", "") == "connection complete") complete = &j;
    if (j.value("msg", "") == "connection failed") failed = &j;
  }
  ASSERT_NE(complete, nullptr) << a_->daemon().output();
  EXPECT_EQ(complete->value("level", ""), "info");
  EXPECT_EQ(complete->value("src.workload", ""), "client");
  EXPECT_EQ(complete->value("src.namespace", ""), "default");
  EXPECT_EQ(complete->value("src.identity", ""), kClientId);
  EXPECT_EQ(complete->value("dst.addr", ""), server_ip_ + ":15008");
  EXPECT_EQ(complete->value("dst.hbone_addr", ""), server_ip_ + ":8080");
  EXPECT_EQ(complete->value("dst.service", ""), kServiceHost);
  EXPECT_EQ(complete->value("dst.workload", ""), "server");
  EXPECT_EQ(complete->value("dst.namespace", ""), "default");
  EXPECT_EQ(complete->value("dst.identity", ""), kServerId);
  EXPECT_EQ(complete->value("direction", ""), "outbound");
  EXPECT_EQ(complete->value("bytes_sent", -1), 20);
  EXPECT_EQ(complete->value("bytes_recv", -1), 50);
  EXPECT_TRUE(std::regex_match(complete->value("duration", ""), std::regex("[0-9]+ms")));
  EXPECT_FALSE(complete->contains("error"));
  EXPECT_TRUE(complete->contains("src.addr") && complete->contains("time"));

  ASSERT_NE(failed, nullptr) << a_->daemon().output();
  EXPECT_EQ(failed->value("level", ""), "warning");
  EXPECT_EQ(failed->value("direction", ""), "outbound");
  EXPECT_FALSE(failed->value("error", "").empty());
  EXPECT_TRUE(failed->contains("src.addr") && failed->contains("dst.addr"));

  // The server side too.
  std::vector<json> in;
  ASSERT_TRUE(eventually([&] {
    in = json_access_lines(b_->daemon());
    return !in.empty();
  })) << b_->daemon().output();
  EXPECT_EQ(in.front().value("direction", ""), "inbound");
  EXPECT_EQ(in.front().value("src.identity", ""), kClientId);
}

TEST_F(Telemetry, ConfigDumpListsWhatTheConfigHoldsWithCertificateExpiry) {
  ASSERT_NO_FATAL_FAILURE(start(12));
  auto bulk = BulkServer::start(server(8080), 10, 3);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 10, 10));

  auto reply = http_request(a_->admin, "GET", "/config_dump");
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 200);
  auto dump = json::parse(reply->body, nullptr, false);
  ASSERT_TRUE(dump.is_object()) << reply->body;

  std::map<std::string, json> workloads;
  for (const auto& w : dump.at("workloads")) workloads[w.at("name")] = w;
  ASSERT_EQ(workloads.size(), 2u) << dump.dump(2);
  EXPECT_EQ(workloads["client"].at("uid"), "cluster1//v1/Pod/default/client");
  EXPECT_EQ(workloads["client"].at("workloadIps"), json::array({client_ip_}));
  EXPECT_EQ(workloads["server"].at("serviceAccount"), "server");
  EXPECT_EQ(workloads["server"].at("protocol"), "HBONE");

  ASSERT_EQ(dump.at("services").size(), 1u);
  const auto& svc = dump.at("services")[0];
  EXPECT_EQ(svc.at("hostname"), kServiceHost);
  EXPECT_EQ(svc.at("vips"), json::array({"/" + vip_}));
  EXPECT_EQ(svc.at("ports"), json({{"80", 8080}}));

  ASSERT_EQ(dump.at("policies").size(), 1u);
  const auto& pol = dump.at("policies")[0];
  EXPECT_EQ(pol.at("name"), "deny-other");
  EXPECT_EQ(pol.at("namespace"), "other");
  EXPECT_EQ(pol.at("scope"), "Namespace");
  EXPECT_EQ(pol.at("action"), "Deny");
  EXPECT_EQ(pol.at("dryRun"), false);
  const auto& match = pol.at("rules")[0].at("clauses")[0].at("matches")[0];
  EXPECT_EQ(match.at("principals"), json::array({{{"prefix", "cluster.local/ns/evil/"}}}));
  EXPECT_EQ(match.at("destinationPorts"), json::array({8080}));

  // The client ztunnel holds its workload's certificate, with validity and expiry.
  const json* cert = nullptr;
  for (const auto& c : dump.at("certificates")) {
    if (c.at("identity") == kClientId) cert = &c;
  }
  ASSERT_NE(cert, nullptr) << dump.dump(2);
  EXPECT_EQ(cert->at("state"), "Available");
  EXPECT_FALSE(cert->at("serialNumber").get<std::string>().empty());
  auto parse_time = [](const std::string& s) {
    std::tm tm{};
    EXPECT_NE(strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm), nullptr) << s;
    return std::chrono::system_clock::from_time_t(timegm(&tm));
  };
  auto from = parse_time(cert->at("validFrom"));
  auto until = parse_time(cert->at("expirationTime"));
  auto now = std::chrono::system_clock::now();
  EXPECT_LE(from, now + 1min);
  EXPECT_GT(until, now + 1h);
  EXPECT_GT(until, from);

  // A config change shows in the next dump.
  write_file(config_,
             mesh_yaml(client_ip_, server_ip_, vip_, R"(- uid: cluster1//v1/Pod/default/extra
  name: extra
  namespace: default
  workloadIps: ["10.9.9.9"]
)"));
  EXPECT_TRUE(eventually([&] {
    auto r = http_request(a_->admin, "GET", "/config_dump");
    if (!r || r->status != 200) return false;
    auto j = json::parse(r->body, nullptr, false);
    if (!j.is_object()) return false;
    for (const auto& w : j.at("workloads")) {
      if (w.at("name") == "extra") return true;
    }
    return false;
  }));
}

int count_lines(Daemon& d, const std::string& needle) {
  int n = 0;
  for (const auto& l : d.lines()) n += l.find(needle) != std::string::npos;
  return n;
}

TEST_F(Telemetry, LoggingLevelChangesAtRunTime) {
  ASSERT_NO_FATAL_FAILURE(start(14));
  auto bulk = BulkServer::start(server(8080), 10, 3);
  auto level = http_request(a_->admin, "GET", "/logging");
  ASSERT_TRUE(level);
  EXPECT_EQ(level->body, "current log level is info\n");
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 10, 10));
  ASSERT_TRUE(a_->daemon().wait_for(std::regex(".*access connection complete.*")));
  EXPECT_EQ(count_lines(a_->daemon(), "access connection opened"), 0);

  // warn: the next connection's INFO access line is not written.
  auto set = http_request(a_->admin, "POST", "/logging?level=warn");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->status, 200);
  EXPECT_EQ(set->body, "current log level is warning\n");
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 10, 10));
  ASSERT_TRUE(eventually([&] {
    return sum_where(a_->metrics_text(), "istio_tcp_connections_closed_total", {}) >= 2;
  }));
  EXPECT_EQ(count_lines(a_->daemon(), "access connection complete"), 1);

  // debug: DEBUG "connection opened" appears, then the INFO line again.
  set = http_request(a_->admin, "POST", "/logging?level=debug");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->status, 200);
  ASSERT_NO_FATAL_FAILURE(run_exchanges(a_->socks5, vip(80), 1, 10, 10));
  EXPECT_TRUE(a_->daemon().wait_for(std::regex(".*debug access connection opened.*")))
      << a_->daemon().output();
  EXPECT_TRUE(
      eventually([&] { return count_lines(a_->daemon(), "access connection complete") == 2; }));
  level = http_request(a_->admin, "GET", "/logging");
  ASSERT_TRUE(level);
  EXPECT_EQ(level->body, "current log level is debug\n");

  // A bad level is refused and changes nothing.
  set = http_request(a_->admin, "POST", "/logging?level=chatty");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->status, 400);
  level = http_request(a_->admin, "GET", "/logging");
  EXPECT_EQ(level->body, "current log level is debug\n");
}

TEST_F(Telemetry, QuitquitquitDrainsOpenConnectionsAndRefusesNewOnes) {
  ASSERT_NO_FATAL_FAILURE(start(16, {}, {"--connection-termination-deadline", "30s"}));
  auto echo = EchoServer::start(server(8080));
  asio::io_context io;
  Result<tcp::socket> conn = failf("not run");
  run_coroutine(io,
                [&]() -> awaitable<void> { conn = co_await open_via_socks(a_->socks5, vip(80)); });
  ASSERT_TRUE(conn) << conn.error().describe();
  Result<std::string> back = failf("not run");
  run_coroutine(io, [&]() -> awaitable<void> { back = co_await echo_once(*conn, "before"); });
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, "before");

  auto quit = http_request(a_->admin, "POST", "/quitquitquit");
  ASSERT_TRUE(quit);
  EXPECT_EQ(quit->status, 200);
  ASSERT_TRUE(a_->daemon().wait_for(std::regex(".*draining \\(/quitquitquit\\).*")));

  // New connections are refused...
  EXPECT_TRUE(eventually([&] {
    asio::io_context io2;
    tcp::socket s(io2);
    error_code ec;
    s.connect(a_->socks5, ec);
    return ec == asio::error::connection_refused;
  }));
  // ...while the open one keeps working.
  run_coroutine(io, [&]() -> awaitable<void> { back = co_await echo_once(*conn, "after quit"); });
  ASSERT_TRUE(back) << back.error().describe();
  EXPECT_EQ(*back, "after quit");
  EXPECT_TRUE(a_->daemon().running());

  // Once it closes, the process exits cleanly, long before the 30 s deadline.
  conn->close();
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return !a_->daemon().running(); }, 10s)) << a_->daemon().output();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_TRUE(a_->daemon().saw(std::regex(".*ztunnel stopped.*")));
  EXPECT_EQ(a_->daemon().stop(SIGTERM), 0);
  // And the drained connection was logged and counted as completed.
  EXPECT_TRUE(
      a_->daemon().saw(std::regex(".*access connection complete.*direction=\"outbound\".*")));
}

TEST_F(Telemetry, AdminEndpointsAreNotServedOnMetricsOrReadinessPorts) {
  ASSERT_NO_FATAL_FAILURE(start(18));
  for (const auto& ep : {a_->metrics, a_->readiness}) {
    SCOPED_TRACE(net::format_endpoint(ep));
    for (auto [method, target] :
         std::vector<std::pair<std::string, std::string>>{{"GET", "/"},
                                                          {"GET", "/config_dump"},
                                                          {"GET", "/logging"},
                                                          {"POST", "/logging?level=trace"},
                                                          {"POST", "/quitquitquit"}}) {
      auto r = http_request(ep, method, target);
      ASSERT_TRUE(r) << r.error().describe();
      EXPECT_EQ(r->status, 404) << method << " " << target;
    }
  }
  // Nothing changed: the level is the same and the process still serves.
  auto level = http_request(a_->admin, "GET", "/logging");
  ASSERT_TRUE(level);
  EXPECT_EQ(level->body, "current log level is info\n");
  EXPECT_TRUE(a_->daemon().running());
  auto ready = http_request(a_->readiness, "GET", "/healthz/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ready\n");
  auto metrics = http_request(a_->admin, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 404);
}

TEST_F(Telemetry, AdminBindsLocalhostByDefaultAndIsNotReachableThroughTheMesh) {
  {
    asio::io_context io;
    tcp::acceptor probe(io);
    error_code ec;
    probe.open(tcp::v4(), ec);
    // As the admin server does: a TIME_WAIT left by an earlier run is no conflict.
    probe.set_option(tcp::acceptor::reuse_address(true), ec);
    probe.bind({asio::ip::address_v4::loopback(), 15000}, ec);
    if (ec) GTEST_SKIP() << "127.0.0.1:15000 is in use on this machine";
  }
  ASSERT_NO_FATAL_FAILURE(start(20, {}, {}, /*b_default_admin=*/true));
  // B with the default admin address (only metrics and readiness moved off their fixed ports).
  auto b = Daemon::start(bin_path("ztunnel"),
                         {"--metrics-address", "127.0.0.1:0", "--readiness-address", "127.0.0.1:0",
                          "--ca-cert", ca_.cert_path.string(), "--ca-key", ca_.key_path.string()},
                         {"LOCAL_XDS_PATH=" + config_.string(), "PROXY_MODE=dedicated",
                          "PROXY_WORKLOAD_INFO=default/server/server"});
  ASSERT_TRUE(b) << b.error().describe();
  auto admin = (*b)->listening("admin");
  ASSERT_TRUE(admin) << (*b)->output();
  EXPECT_EQ(net::format_endpoint(*admin), "127.0.0.1:15000");
  ASSERT_TRUE((*b)->wait_for(std::regex("ztunnel ready"), 20s)) << (*b)->output();

  // Not on the pod's address...
  {
    asio::io_context io;
    tcp::socket s(io);
    error_code ec;
    s.connect(server(15000), ec);
    EXPECT_EQ(ec, asio::error::connection_refused);
  }
  // ...so a pod going through the mesh to the workload's port 15000 gets nothing.
  asio::io_context io;
  Result<tcp::socket> via_mesh = failf("not run");
  run_coroutine(io, [&]() -> awaitable<void> {
    via_mesh = co_await open_via_socks(a_->socks5, server(15000));
  });
  EXPECT_FALSE(via_mesh);
  EXPECT_TRUE((*b)->wait_for(std::regex(".*access connection failed.*:15000.*"))) << (*b)->output();
  // Localhost itself does get the admin answers.
  auto r = http_request(*admin, "GET", "/logging");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(Telemetry, ReadinessListsWhatItStillWaitsFor) {
  // A control plane that never answers: the proxy cannot start, so readiness names it (and the
  // configuration task) while admin and metrics already serve.
  uint16_t dead_port = 0;
  {
    asio::io_context io;
    tcp::acceptor a(io, {asio::ip::address_v4::loopback(), 0});
    dead_port = a.local_endpoint().port();
  }
  ca_ = pki_.write_ca_files(dir_.path());
  auto d = Daemon::start(
      bin_path("ztunnel"),
      {"--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--readiness-address",
       "127.0.0.1:0", "--ca-cert", ca_.cert_path.string(), "--ca-key", ca_.key_path.string(),
       "--xds-address", fmt::format("http://127.0.0.1:{}", dead_port)},
      {"PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=default/client/client"});
  ASSERT_TRUE(d) << d.error().describe();
  auto ready_ep = (*d)->listening("readiness");
  ASSERT_TRUE(ready_ep) << (*d)->output();
  Result<HttpReply> r = failf("not asked");
  ASSERT_TRUE(eventually([&] {
    r = http_request(*ready_ep, "GET", "/healthz/ready");
    return r.has_value();
  })) << (*d)->output();
  EXPECT_EQ(r->status, 500);
  EXPECT_TRUE(r->body.starts_with("not ready, pending: ")) << r->body;
  EXPECT_NE(r->body.find("proxy"), std::string::npos) << r->body;
  EXPECT_TRUE((*d)->running());
}

}  // namespace
}  // namespace zt::testing
