#include "tests/integration/waypoint_pipeline/scripted_server.h"

#include <algorithm>

#include <fmt/format.h>

namespace zt::testing {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

ScriptedServer::ScriptedServer(const tcp::endpoint& at, std::string version)
    : version_(std::move(version)), acceptor_(io_) {
  acceptor_.open(at.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(at);
  acceptor_.listen();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

ScriptedServer::~ScriptedServer() {
  asio::post(io_, [this] {
    error_code ec;
    acceptor_.close(ec);
    tasks_.cancel_all();
  });
  io_.stop();
  thread_.join();
}

void ScriptedServer::script(std::vector<int> statuses) {
  std::lock_guard lock(mu_);
  script_.assign(statuses.begin(), statuses.end());
}

std::vector<SeenRequest> ScriptedServer::seen() const {
  std::lock_guard lock(mu_);
  return seen_;
}

int ScriptedServer::next_status() {
  std::lock_guard lock(mu_);
  if (script_.empty()) return default_status_;
  int s = script_.front();
  script_.pop_front();
  return s;
}

awaitable<void> ScriptedServer::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(kTuple);
    if (ec) co_return;
    tasks_.spawn(serve(std::move(s)), "scripted server connection");
  }
}

awaitable<void> ScriptedServer::serve(tcp::socket s) {
  std::string buf;
  char chunk[8192];
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) co_return;
      buf.append(chunk, n);
    }
    std::string head = buf.substr(0, end);
    buf.erase(0, end + 4);
    SeenRequest req;
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    auto sp1 = first.find(' ');
    auto sp2 = first.rfind(' ');
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string_view line(head.data() + pos, e - pos);
      auto colon = line.find(':');
      if (colon != std::string_view::npos) {
        req.headers[lower(std::string(line.substr(0, colon)))] = trim(line.substr(colon + 1));
      }
      pos = e + 2;
    }
    req.host = req.headers["host"];
    size_t length = 0;
    if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
      length = std::stoul(it->second);
    }
    while (buf.size() < length) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) co_return;
      buf.append(chunk, n);
    }
    buf.erase(0, length);
    bool close = lower(req.headers["connection"]) == "close";
    if (req.headers.count("upgrade")) {
      // WebSocket-style upgrade: 101, then echo every byte until the peer ends.
      {
        std::lock_guard lock(mu_);
        seen_.push_back(req);
      }
      ++hits_;
      std::string head101 =
          "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
      head101 += buf;
      auto [uec, un] = co_await asio::async_write(s, asio::buffer(head101), kTuple);
      if (uec) co_return;
      for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
        if (ec) {
          error_code ignored;
          s.shutdown(tcp::socket::shutdown_send, ignored);
          co_return;
        }
        auto [wec, wn] = co_await asio::async_write(s, asio::buffer(chunk, n), kTuple);
        if (wec) co_return;
      }
    }
    {
      std::lock_guard lock(mu_);
      seen_.push_back(req);
    }
    ++hits_;
    int status = next_status();
    if (int64_t d = delay_ms_; d > 0) {
      asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(d));
      co_await t.async_wait(kTuple);
    }
    std::string resp = fmt::format(
        "HTTP/1.1 {} Scripted\r\nx-version: {}\r\ncontent-type: text/plain\r\n"
        "content-length: {}\r\n{}\r\n{}",
        status, version_, version_.size(), close ? "connection: close\r\n" : "", version_);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(resp), kTuple);
    if (wec || close) co_return;
  }
}

H2Server::H2Server(const tcp::endpoint& at) : acceptor_(io_) {
  acceptor_.open(at.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(at);
  acceptor_.listen();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

H2Server::~H2Server() {
  asio::post(io_, [this] {
    error_code ec;
    acceptor_.close(ec);
    tasks_.cancel_all();
  });
  io_.stop();
  thread_.join();
}

namespace {

// A streamed answer that fails after its first piece (the server resets its stream), 100 ms
// later, so that the head and the piece are out before the reset.
class BreaksAfterOnePiece final : public waypoint::BodySource {
 public:
  awaitable<void> until_done() override { co_return; }
  awaitable<Piece> next() override {
    Piece p;
    if (sent_) {
      asio::steady_timer later(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
      co_await later.async_wait(kTuple);
      p.error = "the backend broke";
    } else {
      sent_ = true;
      p.data = "first";
    }
    co_return p;
  }

 private:
  bool sent_ = false;
};

}  // namespace

awaitable<waypoint::Response> H2Server::answer(waypoint::Request r) {
  ++hits_;
  if (r.head.target == "/hold") {
    asio::steady_timer later(co_await asio::this_coro::executor, std::chrono::seconds(10));
    co_await later.async_wait(kTuple);
    if (r.gone && r.gone->happened()) {
      std::lock_guard lock(mu_);
      gone_.push_back(r.gone->flag);
    }
  } else if (r.source) {
    for (;;) {
      auto piece = co_await r.source->next();
      r.body += piece.data;
      if (piece.end || !piece.error.empty()) break;
    }
  }
  {
    std::lock_guard lock(mu_);
    bodies_.push_back(r.body);
  }
  waypoint::Response out;
  out.status = 200;
  out.headers.push_back({"x-version", "h2"});
  out.headers.push_back({"x-seen-version", r.version == waypoint::HttpVersion::kHttp2 ? "2" : "1"});
  out.body = "h2:" + r.head.target;
  if (r.head.target == "/big") out.body.assign(9 << 20, 'b');  // more than a buffered body
  if (r.head.target == "/break") {
    out.body.clear();
    out.source = std::make_shared<BreaksAfterOnePiece>();
  }
  co_return out;
}

awaitable<void> H2Server::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(kTuple);
    if (ec) co_return;
    waypoint::RequestHandler handler = [this](waypoint::Request r) { return answer(std::move(r)); };
    tasks_.spawn(waypoint::http2::serve_http2(waypoint::Duplex::of_socket(std::move(s)), "",
                                              limits_, std::move(handler)),
                 "h2 backend connection");
  }
}

}  // namespace zt::testing
