#include "common/http/server.h"

#include <array>
#include <atomic>
#include <cctype>
#include <exception>
#include <stdexcept>
#include <unordered_map>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "common/stats/registry.h"

namespace zt::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

// After an error response, how long (at most) and how much we read and drop from a client that
// is still sending, so that closing does not reset the connection before it reads the answer.
constexpr std::chrono::seconds kMaxLinger{2};
constexpr size_t kMaxLingerBytes = 1024 * 1024;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

using async::log_exception;

std::string lower_first(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

bool is_http_error(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

struct Server::Impl {
  Impl(asio::any_io_executor ex, Handler h, ServerOptions o)
      : strand(asio::make_strand(ex)),
        acceptor(strand),
        handler(std::move(h)),
        options(std::move(o)) {}

  asio::strand<asio::any_io_executor> strand;
  tcp::acceptor acceptor;
  tcp::endpoint local;
  Handler handler;
  ServerOptions options;
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};

  // Strand only.
  std::unordered_map<uint64_t, beast::tcp_stream*> connections;
  size_t open_connections = 0;  // includes spawned connections not yet registered
  uint64_t next_id = 0;

  stats::CounterFamily* requests = nullptr;
  stats::CounterFamily* errors = nullptr;

  void count_error(std::string_view reason) {
    if (errors) errors->with({{"server", options.name}, {"reason", std::string(reason)}}).inc();
  }
  void count_request(int status) {
    if (requests)
      requests->with({{"server", options.name}, {"code", std::to_string(status)}}).inc();
  }

  void close_all() {
    error_code ignored;
    acceptor.close(ignored);
    for (auto& [id, stream] : connections) stream->close();
  }
};

namespace {

using ImplPtr = std::shared_ptr<Server::Impl>;

// Shuts down our side, reads and drops what the client still sends (bounded), then closes.
awaitable<void> linger_close(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (!ec) {
    stream.expires_after(kMaxLinger);
    std::array<char, 4096> scratch;
    size_t total = 0;
    while (total < kMaxLingerBytes) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(scratch), kTuple);
      if (rec) break;
      total += n;
    }
  }
  stream.close();
}

// The wire message for `res`. A response Beast refuses (an invalid status, a body on a 204, a
// bad header name) becomes a 500 instead of an exception in the connection's coroutine.
bhttp::response<bhttp::string_body> build_response(Server::Impl& self, Response& res,
                                                   unsigned version, bool keep_alive) {
  bhttp::response<bhttp::string_body> out;
  out.version(version);
  out.keep_alive(keep_alive);
  try {
    if (res.status < 200 || res.status > 599) {
      throw std::invalid_argument("invalid status " + std::to_string(res.status));
    }
    out.result(static_cast<unsigned>(res.status));
    if (!res.content_type.empty()) out.set(bhttp::field::content_type, res.content_type);
    for (const auto& [name, value] : res.headers) out.set(name, value);
    out.body() = std::move(res.body);
    out.prepare_payload();
    return out;
  } catch (const std::exception& e) {
    self.count_error("handler");
    ZT_LOG_ERROR("component={} cannot send the handler's response: {}", self.options.name,
                 e.what());
  }
  bhttp::response<bhttp::string_body> fallback{bhttp::status::internal_server_error, version};
  fallback.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  fallback.body() = "internal error\n";
  fallback.keep_alive(keep_alive);
  fallback.prepare_payload();
  return fallback;
}

// Writes `res`; returns false when the write failed (the connection is then unusable).
awaitable<bool> write_response(Server::Impl& self, beast::tcp_stream& stream, Response& res,
                               unsigned version, bool keep_alive) {
  auto out = build_response(self, res, version, keep_alive);
  int status = out.result_int();
  stream.expires_after(self.options.write_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream, out, kTuple);
  self.count_request(status);
  if (ec) {
    self.count_error("write");
    ZT_LOG_DEBUG("component={} write failed: {}", self.options.name, ec.message());
    co_return false;
  }
  co_return true;
}

// Answers a request we could not read with `status` and closes the connection.
awaitable<void> reject(Server::Impl& self, beast::tcp_stream& stream, int status,
                       std::string body) {
  auto res = Response::text(status, std::move(body));
  if (co_await write_response(self, stream, res, 11, false)) {
    co_await linger_close(stream);
  } else {
    stream.close();
  }
}

Request to_request(bhttp::request<bhttp::string_body>& msg, const std::string& peer) {
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  req.headers.reserve(std::distance(msg.begin(), msg.end()));
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  req.peer = peer;
  return req;
}

Response call_handler(Server::Impl& self, const Request& req) {
  try {
    return self.handler(req);
  } catch (const std::exception& e) {
    self.count_error("handler");
    ZT_LOG_ERROR("component={} handler for {} {} threw: {}", self.options.name, req.method,
                 req.target, e.what());
    return Response::text(500, "internal error\n");
  }
}

awaitable<void> serve(ImplPtr self, tcp::socket socket, uint64_t id) {
  struct Registration {
    Server::Impl& impl;
    uint64_t id;
    ~Registration() {
      impl.connections.erase(id);
      --impl.open_connections;
    }
  } registration{*self, id};
  if (self->stopped) co_return;

  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  std::string peer = ec ? std::string("unknown") : to_string(remote);
  beast::tcp_stream stream(std::move(socket));
  self->connections.emplace(id, &stream);
  const auto& opt = self->options;
  beast::flat_buffer buffer;

  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(opt.header_limit));
    parser.body_limit(opt.body_limit);

    // One deadline for the whole request: a slow sender cannot stretch it byte by byte.
    stream.expires_after(opt.read_timeout);
    auto [rec, rn] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
    if (!rec && !parser.is_done()) {
      auto expect = parser.get()[bhttp::field::expect];
      if (parser.get().version() >= 11 && iequals(expect, "100-continue")) {
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(kContinue), kTuple);
        rec = wec;
      }
      if (!rec) {
        auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
        rec = bec;
      }
    }
    if (self->stopped) co_return;

    if (rec) {
      if (rec == bhttp::error::end_of_stream) {
        // The client closed between requests: the normal end of a keep-alive connection.
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream.close();
      } else if (rec == beast::error::timeout) {
        self->count_error("timeout");
        ZT_LOG_DEBUG("component={} closing connection from {}: read timed out", opt.name, peer);
        stream.close();
      } else if (rec == bhttp::error::header_limit) {
        self->count_error("header_too_large");
        co_await reject(*self, stream, 431, "request header fields too large\n");
      } else if (rec == bhttp::error::body_limit) {
        self->count_error("body_too_large");
        co_await reject(*self, stream, 413, "request body too large\n");
      } else if (rec == bhttp::error::partial_message) {
        self->count_error("partial_request");  // the client went away mid-request
        stream.close();
      } else if (is_http_error(rec)) {
        self->count_error("bad_request");
        ZT_LOG_DEBUG("component={} bad request from {}: {}", opt.name, peer, rec.message());
        co_await reject(*self, stream, 400, "bad request: " + rec.message() + "\n");
      } else {
        ZT_LOG_DEBUG("component={} connection from {} ended: {}", opt.name, peer, rec.message());
        stream.close();
      }
      co_return;
    }

    auto& msg = parser.get();
    bool keep_alive = msg.keep_alive();
    unsigned version = msg.version();
    Request req = to_request(msg, peer);
    Response res;
    if (auto parsed = parse_target(req); !parsed) {
      self->count_error("bad_request");
      res = Response::text(400, "bad request: " + parsed.error().message + "\n");
    } else {
      res = call_handler(*self, req);
    }
    // The target, not the decoded path: Beast has checked it holds no control characters.
    ZT_LOG_DEBUG("component={} {} {} from {} -> {}", opt.name, req.method, req.target, peer,
                 res.status);
    auto after_send = std::move(res.after_send);
    keep_alive = keep_alive && !self->stopped;
    bool written = co_await write_response(*self, stream, res, version, keep_alive);
    if (after_send) after_send();
    if (self->stopped) co_return;
    if (!written) {
      stream.close();
      co_return;
    }
    if (!keep_alive) {
      co_await linger_close(stream);
      co_return;
    }
  }
}

awaitable<void> accept_loop(ImplPtr self) {
  for (;;) {
    auto [ec, socket] = co_await self->acceptor.async_accept(kTuple);
    if (self->stopped) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      self->count_error("accept");
      ZT_LOG_WARN("component={} accept failed: {}", self->options.name, ec.message());
      // Out of descriptors or memory: back off instead of spinning on the same error.
      asio::steady_timer backoff(self->strand, std::chrono::milliseconds(100));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    if (self->open_connections >= self->options.max_connections) {
      self->count_error("too_many_connections");
      error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++self->open_connections;
    auto id = ++self->next_id;
    asio::co_spawn(self->strand, serve(self, std::move(socket), id),
                   [name = self->options.name](std::exception_ptr e) {
                     log_exception("http connection (" + name + ")", e);
                   });
  }
}

}  // namespace

std::string to_string(const tcp::endpoint& endpoint) {
  const auto& a = endpoint.address();
  if (a.is_v6()) return fmt::format("[{}]:{}", a.to_string(), endpoint.port());
  return fmt::format("{}:{}", a.to_string(), endpoint.port());
}

Result<std::unique_ptr<Server>> Server::bind(asio::any_io_executor executor,
                                             const tcp::endpoint& endpoint, Handler handler,
                                             ServerOptions options) {
  auto impl = std::make_shared<Impl>(std::move(executor), std::move(handler), std::move(options));
  auto where = fmt::format("{} ({})", to_string(endpoint), impl->options.name);
  error_code ec;
  impl->acceptor.open(endpoint.protocol(), ec);
  if (ec) return failf("cannot open a socket for {}: {}", where, lower_first(ec.message()));
  impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return failf("cannot set SO_REUSEADDR for {}: {}", where, lower_first(ec.message()));
  impl->acceptor.bind(endpoint, ec);
  if (ec) return failf("{}: {}", lower_first(ec.message()), where);
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return failf("cannot listen on {}: {}", where, lower_first(ec.message()));
  impl->local = impl->acceptor.local_endpoint(ec);
  if (ec) return failf("cannot read the bound address of {}: {}", where, lower_first(ec.message()));
  if (auto* registry = impl->options.registry) {
    impl->requests = &registry->counter_family("http_server_requests",
                                               "HTTP requests answered, by server and status.");
    impl->errors = &registry->counter_family(
        "http_server_errors", "HTTP connections or requests that failed, by server and reason.");
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() {
  if (impl_) stop();
}

tcp::endpoint Server::local_endpoint() const { return impl_->local; }

void Server::start() {
  if (impl_->stopped || impl_->started.exchange(true)) return;
  ZT_LOG_INFO("listening component={} address={}", impl_->options.name, to_string(impl_->local));
  asio::co_spawn(impl_->strand, accept_loop(impl_),
                 [name = impl_->options.name](std::exception_ptr e) {
                   log_exception("http accept loop (" + name + ")", e);
                 });
}

void Server::stop() {
  if (impl_->stopped.exchange(true)) return;
  if (!impl_->started) {
    // Nothing runs on the strand yet: release the port now, even if the executor never runs.
    error_code ignored;
    impl_->acceptor.close(ignored);
    return;
  }
  asio::dispatch(impl_->strand, [impl = impl_] { impl->close_all(); });
}

}  // namespace zt::http
