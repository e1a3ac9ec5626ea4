#include "tests/support/waypoint_chain.h"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <thread>

#include <poll.h>
#include <signal.h>

#include "common/async/timeout.h"
#include "common/net/address.h"
#include "common/net/copy.h"

namespace zt::testing {

using namespace std::chrono_literals;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

// Parses "Name: value" lines after the first line of `head` (without the final CRLFCRLF).
std::map<std::string, std::string> parse_fields(std::string_view head, std::string& first_line) {
  std::map<std::string, std::string> out;
  size_t pos = head.find("\r\n");
  first_line = std::string(head.substr(0, pos));
  while (pos != std::string_view::npos && pos + 2 <= head.size()) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? end : end - start);
    pos = end;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    out[lower(std::string(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return out;
}

const char* reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

}  // namespace

// ---- ScriptedHttpServer
// ----------------------------------------------------------------------------

std::unique_ptr<ScriptedHttpServer> ScriptedHttpServer::start(const tcp::endpoint& at,
                                                              std::string name) {
  std::unique_ptr<ScriptedHttpServer> s(new ScriptedHttpServer(at, std::move(name)));
  s->LoopbackServer::start();
  return s;
}

void ScriptedHttpServer::script(std::vector<ScriptStep> steps) {
  std::lock_guard lock(mu_);
  script_.assign(steps.begin(), steps.end());
}

void ScriptedHttpServer::set_default(ScriptStep step) {
  std::lock_guard lock(mu_);
  default_ = step;
}

std::vector<SeenRequest> ScriptedHttpServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void ScriptedHttpServer::reset_counts() {
  std::lock_guard lock(mu_);
  requests_.clear();
  hits_ = 0;
  connections_ = 0;
}

void ScriptedHttpServer::set_responder(std::function<ScriptStep(const SeenRequest&)> responder) {
  std::lock_guard lock(mu_);
  responder_ = std::move(responder);
}

ScriptStep ScriptedHttpServer::next_step(const SeenRequest& request) {
  std::lock_guard lock(mu_);
  if (responder_) return responder_(request);
  if (script_.empty()) return default_;
  auto s = script_.front();
  script_.pop_front();
  return s;
}

awaitable<void> ScriptedHttpServer::serve(tcp::socket s) {
  ++connections_;
  std::string buf;
  char chunk[16384];
  // Reads until `buf` holds at least `n` bytes; false at EOF/error.
  auto need = [&](size_t n) -> awaitable<bool> {
    while (buf.size() < n) {
      auto [ec, got] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) co_return false;
      buf.append(chunk, got);
    }
    co_return true;
  };
  // Reads until `buf` contains `what`; its position or npos at EOF.
  auto need_text = [&](std::string_view what, size_t from) -> awaitable<size_t> {
    for (;;) {
      auto p = buf.find(what, from);
      if (p != std::string::npos) co_return p;
      auto [ec, got] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) co_return std::string::npos;
      buf.append(chunk, got);
    }
  };
  for (;;) {
    size_t head_end = co_await need_text("\r\n\r\n", 0);
    if (head_end == std::string::npos) co_return;
    SeenRequest req;
    std::string first;
    req.headers = parse_fields(std::string_view(buf).substr(0, head_end), first);
    buf.erase(0, head_end + 4);
    auto sp1 = first.find(' ');
    auto sp2 = first.rfind(' ');
    req.method = first.substr(0, sp1);
    if (sp1 != std::string::npos && sp2 > sp1) req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    if (lower(req.headers["expect"]) == "100-continue") {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(s, asio::buffer(kContinue), kTuple);
    }
    req.framing = "none";
    if (lower(req.headers["transfer-encoding"]).find("chunked") != std::string::npos) {
      req.framing = "chunked";
      for (;;) {
        size_t line_end = co_await need_text("\r\n", 0);
        if (line_end == std::string::npos) co_return;
        size_t size = std::strtoul(buf.substr(0, line_end).c_str(), nullptr, 16);
        buf.erase(0, line_end + 2);
        if (size == 0) {
          // Trailers until an empty line.
          for (;;) {
            size_t e = co_await need_text("\r\n", 0);
            if (e == std::string::npos) co_return;
            bool empty = e == 0;
            buf.erase(0, e + 2);
            if (empty) break;
          }
          break;
        }
        if (!co_await need(size + 2)) co_return;
        req.body.append(buf, 0, size);
        buf.erase(0, size + 2);
      }
    } else if (req.headers.count("content-length")) {
      req.framing = "content-length";
      size_t n = std::strtoul(req.headers["content-length"].c_str(), nullptr, 10);
      if (!co_await need(n)) co_return;
      req.body = buf.substr(0, n);
      buf.erase(0, n);
    }
    const bool close = lower(req.headers["connection"]) == "close";
    {
      std::lock_guard lock(mu_);
      requests_.push_back(req);
    }
    ++hits_;
    auto step = next_step(req);
    if (step.delay.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, step.delay);
      co_await t.async_wait(kTuple);
    }
    std::string body = step.body.value_or(name_);
    std::string extra;
    for (const auto& [name, value] : step.headers) extra += name + ": " + value + "\r\n";
    std::string resp = fmt::format(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {}\r\n"
        "x-seen-path: {}\r\n{}{}\r\n{}",
        step.status, reason(step.status), body.size(), name_, req.target, extra,
        close ? "connection: close\r\n" : "", body);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(resp), kTuple);
    if (wec || close) co_return;
  }
}

// ---- ChainHttpConnection
// ---------------------------------------------------------------------------

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

Result<std::unique_ptr<ChainHttpConnection>> ChainHttpConnection::open(
    const tcp::endpoint& socks5, const tcp::endpoint& dst, std::chrono::milliseconds read_timeout) {
  std::unique_ptr<ChainHttpConnection> c(new ChainHttpConnection());
  c->host = net::format_endpoint(dst);
  Result<tcp::socket> sock = failf("not run");
  asio::co_spawn(
      c->io_, [&]() -> awaitable<void> { sock = co_await socks5_connect(socks5, dst); },
      asio::detached);
  c->io_.run_for(read_timeout);
  c->io_.restart();
  if (!sock) return tl::unexpected(wrap(sock.error(), "SOCKS5 to " + net::format_endpoint(dst)));
  c->socket_ = std::move(*sock);
  c->read_timeout_ = read_timeout;
  return c;
}

Status ChainHttpConnection::write(const std::string& bytes) {
  error_code ec;
  asio::write(socket_, asio::buffer(bytes), ec);
  if (ec) return fail(ec, "write");
  written_at_ = std::chrono::steady_clock::now();
  return {};
}

Result<size_t> ChainHttpConnection::fill() {
  const auto deadline = std::chrono::steady_clock::now() + read_timeout_;
  char buf[16384];
  ssize_t n = -1;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return failf("no answer within {} ms", read_timeout_.count());
    pollfd p{socket_.native_handle(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r == 0) return failf("no answer within {} ms", read_timeout_.count());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return failf("poll failed");
    n = ::recv(socket_.native_handle(), buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    break;
  }
  if (n < 0) return failf("recv: {}", std::strerror(errno));
  buffer_.append(buf, static_cast<size_t>(n));
  if (n == 0) done_ = true;
  return static_cast<size_t>(n);
}

Result<HttpResponse> ChainHttpConnection::read_response(bool head_only) {
  size_t head_end;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    auto n = fill();
    if (!n) return tl::unexpected(n.error());
    if (*n == 0) return failf("connection closed before a response (read {})", buffer_);
  }
  HttpResponse r;
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - written_at_);
  std::string first;
  r.headers = parse_fields(std::string_view(buffer_).substr(0, head_end), first);
  if (first.rfind("HTTP/1.", 0) != 0 || first.size() < 12) {
    return failf("bad status line {}", first);
  }
  r.status = std::atoi(first.c_str() + 9);
  buffer_.erase(0, head_end + 4);
  const bool no_body = head_only || r.status < 200 || r.status == 204 || r.status == 304;
  if (no_body) return r;
  if (lower(r.header("transfer-encoding")).find("chunked") != std::string::npos) {
    for (;;) {
      size_t e;
      while ((e = buffer_.find("\r\n")) == std::string::npos) {
        auto n = fill();
        if (!n) return tl::unexpected(n.error());
        if (*n == 0) return failf("closed inside a chunked body");
      }
      size_t size = std::strtoul(buffer_.substr(0, e).c_str(), nullptr, 16);
      buffer_.erase(0, e + 2);
      if (size == 0) {
        for (;;) {
          while ((e = buffer_.find("\r\n")) == std::string::npos) {
            auto n = fill();
            if (!n) return tl::unexpected(n.error());
            if (*n == 0) return failf("closed inside trailers");
          }
          bool empty = e == 0;
          buffer_.erase(0, e + 2);
          if (empty) break;
        }
        break;
      }
      while (buffer_.size() < size + 2) {
        auto n = fill();
        if (!n) return tl::unexpected(n.error());
        if (*n == 0) return failf("closed inside a chunk");
      }
      r.body.append(buffer_, 0, size);
      buffer_.erase(0, size + 2);
    }
  } else if (!r.header("content-length").empty()) {
    size_t len = std::strtoul(r.header("content-length").c_str(), nullptr, 10);
    while (buffer_.size() < len) {
      auto n = fill();
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) return failf("closed after {} of {} body bytes", buffer_.size(), len);
    }
    r.body = buffer_.substr(0, len);
    buffer_.erase(0, len);
  } else {
    for (;;) {
      auto n = fill();
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) break;
    }
    r.body = std::move(buffer_);
    buffer_.clear();
  }
  if (lower(r.header("connection")) == "close") done_ = true;
  return r;
}

Result<HttpResponse> ChainHttpConnection::request(const std::string& method,
                                                  const std::string& target,
                                                  const std::vector<std::string>& headers,
                                                  const std::string& body) {
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", method, target, host);
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    req += fmt::format("Content-Length: {}\r\n", body.size());
  }
  req += "\r\n" + body;
  if (auto st = write(req); !st) return tl::unexpected(st.error());
  return read_response(method == "HEAD");
}

bool ChainHttpConnection::closed_by_peer(std::chrono::milliseconds wait) {
  auto saved = read_timeout_;
  read_timeout_ = wait;
  bool closed = done_;
  while (!closed) {
    auto n = fill();
    if (!n) {
      // A reset counts as closed; a timeout does not.
      closed = n.error().message.rfind("recv", 0) == 0;
      break;
    }
    closed = *n == 0;
  }
  read_timeout_ = saved;
  return closed;
}

Result<HttpResponse> chain_request(const tcp::endpoint& socks5, const tcp::endpoint& dst,
                                   const std::string& method, const std::string& target,
                                   const std::vector<std::string>& headers,
                                   const std::string& body) {
  auto c = ChainHttpConnection::open(socks5, dst);
  if (!c) return tl::unexpected(c.error());
  return (*c)->request(method, target, headers, body);
}

// ---- SocksForwarder
// --------------------------------------------------------------------------------

std::unique_ptr<SocksForwarder> SocksForwarder::start(const tcp::endpoint& socks5,
                                                      const tcp::endpoint& dst) {
  std::unique_ptr<SocksForwarder> f(new SocksForwarder());
  f->socks5_ = socks5;
  f->dst_ = dst;
  tcp::endpoint at(asio::ip::make_address("127.0.0.1"), 0);
  f->acceptor_.open(at.protocol());
  f->acceptor_.bind(at);
  f->acceptor_.listen();
  f->endpoint_ = f->acceptor_.local_endpoint();
  asio::co_spawn(f->io_, f->accept_loop(), asio::detached);
  f->thread_ = std::thread([p = f.get()] { p->io_.run(); });
  return f;
}

SocksForwarder::~SocksForwarder() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

awaitable<void> SocksForwarder::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(kTuple);
    if (ec) co_return;
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(io_, relay(std::move(s)), asio::detached);
  }
}

awaitable<void> SocksForwarder::relay(tcp::socket s) {
  auto up = co_await socks5_connect(socks5_, dst_);
  if (!up) co_return;
  net::TcpDuplex a(s), b(*up);
  std::atomic<uint64_t> ab{0}, ba{0};
  co_await net::copy_bidirectional(a, b, ab, ba);
}

// ---- WaypointChain
// -------------------------------------------------------------------------------

namespace {

struct HostSpec {
  const char* name;
  int offset;
};
constexpr HostSpec kHosts[] = {
    {"client", 1}, {"intruder", 2}, {"waypoint", 3}, {"reviews-v1", 4}, {"reviews-v2", 5},
    {"shadow", 6}, {"plain", 7},    {"h2", 8},       {"grpc", 9},       {"ext-authz", 10}};
constexpr HostSpec kVips[] = {{"reviews", 17}, {"reviews-v1", 18}, {"reviews-v2", 19},
                              {"shadow", 20},  {"plain", 21},      {"h2", 22},
                              {"grpc", 23},    {"ext-authz", 24}};

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kReviewsV1:
      return "reviews-v1";
    case Backend::kReviewsV2:
      return "reviews-v2";
    case Backend::kShadow:
      return "shadow";
    case Backend::kPlain:
      return "plain";
    case Backend::kH2:
      return "h2";
    case Backend::kGrpc:
      return "grpc";
    case Backend::kExtAuthz:
      return "ext-authz";
  }
  return "";
}

std::string host_of(const std::string& service) { return service + ".default.svc.cluster.local"; }

std::string route_doc(const std::string& service) {
  return fmt::format(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {0}, namespace: default}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {0}, port: 80}}]
  rules:
  - backendRefs: [{{name: {0}, port: 80}}]
)",
                     service);
}

}  // namespace

std::string WaypointChain::ip(const std::string& host) const {
  const int subnet = 65 + options_.slot / 8;
  const int base = (options_.slot % 8) * 32;
  for (const auto& h : kHosts) {
    if (host == h.name) return fmt::format("127.0.{}.{}", subnet, base + h.offset);
  }
  throw std::runtime_error("unknown host " + host);
}

tcp::endpoint WaypointChain::vip(const std::string& service, uint16_t port) const {
  const int subnet = 65 + options_.slot / 8;
  const int base = (options_.slot % 8) * 32;
  for (const auto& h : kVips) {
    if (service == h.name) {
      return {asio::ip::make_address(fmt::format("127.0.{}.{}", subnet, base + h.offset)), port};
    }
  }
  throw std::runtime_error("unknown service " + service);
}

tcp::endpoint WaypointChain::endpoint(const std::string& workload, uint16_t port) const {
  return {asio::ip::make_address(ip(workload)), port};
}

ScriptedHttpServer& WaypointChain::backend(const std::string& workload) {
  auto it = backends_.find(workload);
  if (it == backends_.end()) throw std::runtime_error("no backend " + workload);
  return *it->second;
}

std::string WaypointChain::base_routes() {
  std::string out;
  for (const char* s : {"h2", "grpc", "reviews-v1", "reviews-v2"}) {
    out += route_doc(s) + "---\n";
  }
  return out;
}

std::string WaypointChain::mesh_yaml() const {
  auto net_ip = [&](const std::string& h) { return ip(h); };
  std::string out = "workloads:\n";
  auto workload = [&](const std::string& name, const std::string& sa,
                      const std::vector<std::string>& services, const std::string& version) {
    out += fmt::format(R"(- uid: cluster1//v1/Pod/default/{0}
  name: {0}
  namespace: default
  serviceAccount: {1}
  workloadIps: ["{2}"]
  protocol: HBONE
  node: node-{0}
  workloadName: {0}
  canonicalName: {3}
  canonicalRevision: {4}
  clusterId: cluster1
)",
                       name, sa, net_ip(name), name.substr(0, name.find("-v")), version);
    if (!services.empty()) {
      out += "  services:\n";
      for (const auto& s : services) {
        out += fmt::format("    \"default/{}\": {{\"80\": 8080}}\n", host_of(s));
      }
    }
  };
  workload("client", "client", {}, "v1");
  workload("intruder", "intruder", {}, "v1");
  workload("waypoint", "waypoint", {}, "v1");
  workload("reviews-v1", "reviews", {"reviews", "reviews-v1"}, "v1");
  workload("reviews-v2", "reviews", {"reviews", "reviews-v2"}, "v2");
  workload("shadow", "shadow", {"shadow"}, "v1");
  workload("plain", "plain", {"plain"}, "v1");
  workload("h2", "h2", {"h2"}, "v1");
  workload("grpc", "grpc", {"grpc"}, "v1");
  workload("ext-authz", "ext-authz", {"ext-authz"}, "v1");
  out += "services:\n";
  for (const auto& v : kVips) {
    std::string name = v.name;
    out += fmt::format(R"(- name: {0}
  namespace: default
  hostname: {1}
  vips: ["/{2}"]
  ports: {{"80": 8080}}
)",
                       name, host_of(name), vip(name).address().to_string());
    if (name != "plain" && name != "ext-authz") {
      out += fmt::format("  waypoint: {{destination: \"/{}\", hboneMtlsPort: 15008}}\n",
                         ip("waypoint"));
    }
  }
  return out;
}

Result<std::unique_ptr<WaypointChain>> WaypointChain::start(ChainOptions options) {
  std::unique_ptr<WaypointChain> c(new WaypointChain());
  c->options_ = std::move(options);
  if (c->options_.slot < 0 || c->options_.slot >= 40)
    return failf("slot {} out of range", c->options_.slot);
  c->ca_ = c->pki_.write_ca_files(c->dir_.path());
  c->mesh_path_ = c->dir_.path() / "mesh.yaml";
  c->l7_path_ = c->dir_.path() / "waypoint.yaml";
  write_file(c->mesh_path_, c->mesh_yaml());
  write_file(c->l7_path_, base_routes() + c->options_.l7_config);

  for (auto b : c->options_.backends) {
    std::string name = backend_name(b);
    if (b == Backend::kH2 || b == Backend::kGrpc) continue;  // servers run by the test
    try {
      c->backends_[name] = ScriptedHttpServer::start(c->endpoint(name), name);
    } catch (const std::exception& e) {
      return failf("backend {} on {}: {}", name, c->ip(name), e.what());
    }
  }

  // The waypoint.
  const std::string wip = c->ip("waypoint");
  std::vector<std::string> args = {"--name",
                                   "waypoint",
                                   "--namespace",
                                   "default",
                                   "--instance-ip",
                                   wip,
                                   "--hbone-address",
                                   wip + ":15008",
                                   "--local-xds-path",
                                   c->mesh_path_.string(),
                                   "--config",
                                   c->l7_path_.string(),
                                   "--ca-cert",
                                   c->ca_.cert_path.string(),
                                   "--ca-key",
                                   c->ca_.key_path.string(),
                                   "--admin-address",
                                   "127.0.0.1:0",
                                   "--metrics-address",
                                   "127.0.0.1:0",
                                   "--readiness-address",
                                   "127.0.0.1:0",
                                   "--worker-threads",
                                   "1"};
  args.insert(args.end(), c->options_.waypoint_args.begin(), c->options_.waypoint_args.end());
  // Every process is forked from this thread: Daemon sets PR_SET_PDEATHSIG, which fires when
  // the forking *thread* ends. The waypoint starts first; the ztunnels start (each waiting for
  // its readiness) while it gets ready.
  auto wp = Daemon::start(bin_path("waypoint"), args);
  if (!wp) return tl::unexpected(wrap(wp.error(), "start bin/waypoint"));
  c->waypoint_ = std::move(*wp);
  auto zt = [&](const std::string& name, const std::string& sa,
                bool socks5) -> Result<std::unique_ptr<ZtunnelProcess>> {
    auto z = ZtunnelProcess::start({.name = name,
                                    .service_account = sa,
                                    .config = c->mesh_path_,
                                    .ca_cert = c->ca_.cert_path,
                                    .ca_key = c->ca_.key_path,
                                    .socks5 = socks5,
                                    .workers = 1});
    if (!z) return tl::unexpected(wrap(z.error(), "ztunnel " + name));
    return z;
  };
  auto client = zt("client", "client", true);
  if (!client) return tl::unexpected(client.error());
  c->client_ = std::move(*client);
  if (c->options_.intruder) {
    auto intruder = zt("intruder", "intruder", true);
    if (!intruder) return tl::unexpected(intruder.error());
    c->intruder_ = std::move(*intruder);
  }
  for (auto b : c->options_.backends) {
    std::string name = backend_name(b);
    std::string sa = name.rfind("reviews", 0) == 0 ? "reviews" : name;
    auto z = zt(name, sa, false);
    if (!z) return tl::unexpected(z.error());
    c->endpoint_ztunnels_.push_back(std::move(*z));
  }
  if (!c->waypoint_->wait_for(std::regex("waypoint ready"), 20s)) {
    return failf("the waypoint did not become ready; output:\n{}", c->waypoint_->output());
  }
  for (auto [name, ep] : {std::pair<const char*, tcp::endpoint*>{"hbone", &c->waypoint_hbone},
                          {"admin", &c->waypoint_admin},
                          {"metrics", &c->waypoint_metrics},
                          {"readiness", &c->waypoint_readiness}}) {
    auto got = c->waypoint_->listening(name, 2s);
    if (!got) {
      return failf("the waypoint did not report its {} address; output:\n{}", name,
                   c->waypoint_->output());
    }
    *ep = *got;
  }
  return c;
}

WaypointChain::~WaypointChain() {
  // No graceful drain (it would wait for the connections the test left open): the processes'
  // shutdown is not what these tests check. The waypoint first, then the ztunnels.
  if (waypoint_) waypoint_->stop(SIGKILL, 5s);
  if (client_) client_->daemon().stop(SIGKILL, 5s);
  if (intruder_) intruder_->daemon().stop(SIGKILL, 5s);
  for (auto& z : endpoint_ztunnels_) z->daemon().stop(SIGKILL, 5s);
}

std::string WaypointChain::config_dump() {
  auto r = http_request(waypoint_admin, "GET", "/config_dump");
  return r && r->status == 200 ? r->body : std::string();
}

std::optional<uint64_t> WaypointChain::config_generation() {
  return find_json_number(config_dump(), "generation");
}

Status WaypointChain::set_config(const std::string& l7_config, std::chrono::milliseconds timeout) {
  auto before = config_generation();
  if (!before) return failf("no generation in the waypoint's /config_dump: {}", config_dump());
  write_file(l7_path_, base_routes() + l7_config);
  if (!poll_until([&] { return config_generation().value_or(0) > *before; }, timeout)) {
    return failf("the waypoint did not load the new config (generation stays {}); output:\n{}",
                 *before, waypoint_->output());
  }
  return {};
}

std::string WaypointChain::waypoint_metrics_text() {
  auto r = http_request(waypoint_metrics, "GET", "/metrics");
  return r ? r->body : std::string();
}

std::vector<std::string> WaypointChain::access_lines() {
  std::vector<std::string> out;
  for (auto& l : waypoint_->lines()) {
    if (l.find("component=access") != std::string::npos) out.push_back(l);
  }
  return out;
}

bool poll_until(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

std::optional<uint64_t> find_json_number(const std::string& text, const std::string& name) {
  const std::string key = "\"" + name + "\"";
  auto p = text.find(key);
  if (p == std::string::npos) return std::nullopt;
  p += key.size();
  while (p < text.size() && (text[p] == ' ' || text[p] == ':' || text[p] == '\n')) ++p;
  if (p >= text.size() || !std::isdigit(static_cast<unsigned char>(text[p]))) return std::nullopt;
  return std::strtoull(text.c_str() + p, nullptr, 10);
}

}  // namespace zt::testing
