#include "tests/support/mesh.h"

#include <cstdio>
#include <fstream>
#include <random>

#include "common/async/timeout.h"
#include "common/net/address.h"
#include "common/stats/scrape.h"

namespace zt::testing {

TempDir::TempDir() {
  std::random_device rd;
  for (;;) {
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("zt-test-{:016x}", (static_cast<uint64_t>(rd()) << 32) | rd());
    if (std::filesystem::create_directory(path_)) break;
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& p, const std::string& content) {
  // Write then rename, as an editor or a config map update would: the watcher sees one change.
  auto tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
  }
  std::filesystem::rename(tmp, p);
}

std::string two_workload_mesh_yaml(const std::string& client_ip, const std::string& server_ip,
                                   const std::string& extra) {
  return fmt::format(R"(workloads:
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["{}"]
  protocol: HBONE
  node: node-a
- uid: cluster1//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["{}"]
  protocol: HBONE
  node: node-b
{})",
                     client_ip, server_ip, extra);
}

Result<std::unique_ptr<ZtunnelProcess>> ZtunnelProcess::start(const ZtunnelOptions& o) {
  std::vector<std::string> args = {
      "--admin-address",     "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
      "--readiness-address", "127.0.0.1:0", "--worker-threads",  std::to_string(o.workers),
  };
  if (!o.ca_cert.empty()) {
    args.insert(args.end(), {"--ca-cert", o.ca_cert.string(), "--ca-key", o.ca_key.string()});
  }
  if (o.socks5) args.insert(args.end(), {"--socks5-address", "127.0.0.1:0"});
  args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
  std::vector<std::string> env = {
      "LOCAL_XDS_PATH=" + o.config.string(),
      "PROXY_MODE=dedicated",
      fmt::format("PROXY_WORKLOAD_INFO={}/{}/{}", o.ns, o.name,
                  o.service_account.empty() ? o.name : o.service_account),
      std::string("UNSTABLE_ENABLE_SOCKS5=") + (o.socks5 ? "true" : "false"),
  };
  env.insert(env.end(), o.env.begin(), o.env.end());
  auto d = Daemon::start(bin_path("ztunnel"), args, env);
  if (!d) return tl::unexpected(d.error());
  std::unique_ptr<ZtunnelProcess> p(new ZtunnelProcess());
  p->daemon_ = std::move(*d);
  if (!p->daemon_->wait_for(std::regex("ztunnel ready"), std::chrono::seconds(20))) {
    return failf("ztunnel {} did not become ready; output:\n{}", o.name, p->daemon_->output());
  }
  auto get = [&](const std::string& c, tcp::endpoint& out) -> Status {
    auto ep = p->daemon_->listening(c, std::chrono::seconds(1));
    if (!ep) return failf("ztunnel {} did not report its {} address", o.name, c);
    out = *ep;
    return {};
  };
  for (auto [c, ep] : {std::pair<const char*, tcp::endpoint*>{"admin", &p->admin},
                       {"metrics", &p->metrics},
                       {"readiness", &p->readiness}}) {
    if (auto st = get(c, *ep); !st) return tl::unexpected(st.error());
  }
  if (o.socks5) {
    if (auto st = get("socks5", p->socks5); !st) return tl::unexpected(st.error());
  }
  return p;
}

std::string ZtunnelProcess::metrics_text() {
  auto r = http_request(metrics, "GET", "/metrics");
  return r ? r->body : std::string();
}

Result<HttpReply> http_request(const tcp::endpoint& at, const std::string& method,
                               const std::string& target) {
  asio::io_context io;
  tcp::socket s(io);
  error_code ec;
  s.connect(at, ec);
  if (ec) return fail(ec, "connect to " + net::format_endpoint(at));
  std::string req =
      fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                  method, target, net::format_endpoint(at));
  asio::write(s, asio::buffer(req), ec);
  if (ec) return fail(ec, "write");
  std::string resp;
  char buf[8192];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    resp.append(buf, n);
    if (ec) break;
  }
  if (resp.rfind("HTTP/1.1 ", 0) != 0 || resp.size() < 12) return failf("bad response: {}", resp);
  HttpReply r;
  r.status = std::stoi(resp.substr(9, 3));
  auto body = resp.find("\r\n\r\n");
  if (body != std::string::npos) r.body = resp.substr(body + 4);
  return r;
}

double metric_sum(const std::string& text, const std::string& family,
                  const std::vector<std::string>& label_filters) {
  return stats::sum_samples(text, family, label_filters);
}

awaitable<Result<tcp::socket>> socks5_connect(const tcp::endpoint& proxy,
                                              const tcp::endpoint& dst) {
  tcp::socket s(co_await asio::this_coro::executor);
  auto [cec] = co_await s.async_connect(proxy, kTuple);
  if (cec) co_return fail(cec, "connect to the SOCKS5 listener");
  s.set_option(tcp::no_delay(true));
  std::vector<uint8_t> req = {5, 1, 0, 5, 1, 0};
  if (dst.address().is_v4()) {
    req.push_back(1);
    auto b = dst.address().to_v4().to_bytes();
    req.insert(req.end(), b.begin(), b.end());
  } else {
    req.push_back(4);
    auto b = dst.address().to_v6().to_bytes();
    req.insert(req.end(), b.begin(), b.end());
  }
  req.push_back(static_cast<uint8_t>(dst.port() >> 8));
  req.push_back(static_cast<uint8_t>(dst.port() & 0xff));
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), kTuple);
  if (wec) co_return fail(wec, "SOCKS5 request");
  // Method reply (2 bytes) then the CONNECT reply (10 bytes for an IPv4 bound address).
  std::array<uint8_t, 12> reply{};
  auto [rec, rn] = co_await asio::async_read(s, asio::buffer(reply), kTuple);
  if (rec) co_return fail(rec, "SOCKS5 reply");
  if (reply[1] != 0) co_return failf("SOCKS5 method refused ({})", reply[1]);
  if (reply[3] != 0) co_return failf("SOCKS5 CONNECT failed with reply code {}", reply[3]);
  co_return s;
}

std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int rc = ::pclose(f);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

}  // namespace zt::testing
