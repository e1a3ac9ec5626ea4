#include "meshd/kube/client.h"

#include <fstream>
#include <sstream>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/x509v3.h>

#include "common/base/log.h"

namespace zt::meshd::kube {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

constexpr size_t kMaxErrorBody = 64 * 1024;

Result<std::string> read_token(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("cannot read token file {}", path);
  std::stringstream buf;
  buf << in.rdbuf();
  std::string token = buf.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) {
    token.erase(0, 1);
  }
  if (token.empty()) return failf("token file {} is empty", path);
  return token;
}

std::string host_header(const ServerUrl& url) {
  bool v6 = url.host.find(':') != std::string::npos;
  bool default_port = url.port == (url.tls ? 443 : 80);
  std::string h = v6 ? "[" + url.host + "]" : url.host;
  if (!default_port) h += ":" + std::to_string(url.port);
  return h;
}

Error error_of(const error_code& ec, std::string what) { return Error{ec, std::move(what)}; }

}  // namespace

struct ApiClient::Request {
  std::string target;
  std::function<bool(std::string_view)> on_data;  // null for get()
  std::chrono::seconds idle_timeout{0};
  std::string token;
};

ApiClient::ApiClient(asio::any_io_executor executor, KubeConfig config)
    : executor_(std::move(executor)), config_(std::move(config)) {}

ApiClient::~ApiClient() { shutdown(); }

void ApiClient::shutdown() {
  shut_down_ = true;
  auto open = std::move(open_);
  open_.clear();
  for (const auto& closer : open) {
    (*std::static_pointer_cast<std::function<void()>>(closer))();
  }
}

awaitable<ApiResponse> ApiClient::get(std::string target) {
  Request r{std::move(target), nullptr, std::chrono::seconds(0), {}};
  co_return co_await run(r);
}

awaitable<ApiResponse> ApiClient::stream(std::string target,
                                         std::function<bool(std::string_view)> on_data,
                                         std::chrono::seconds idle_timeout) {
  Request r{std::move(target), std::move(on_data), idle_timeout, {}};
  co_return co_await run(r);
}

template <class Stream>
awaitable<ApiResponse> ApiClient::exchange(Stream& stream, Request& request) {
  ApiResponse out;
  auto& lowest = beast::get_lowest_layer(stream);
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, request.target, 11};
  req.set(bhttp::field::host, host_header(config_.server));
  req.set(bhttp::field::accept, "application/json");
  req.set(bhttp::field::user_agent, "meshd");
  if (!request.token.empty()) req.set(bhttp::field::authorization, "Bearer " + request.token);
  lowest.expires_after(config_.request_timeout);
  auto [wec, wn] = co_await bhttp::async_write(stream, req, kTuple);
  if (wec) {
    out.error = error_of(wec, "sending the request");
    co_return out;
  }
  beast::flat_buffer buffer;
  if (!request.on_data) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(config_.max_body);
    auto [rec, rn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
    if (parser.is_header_done()) out.status = static_cast<int>(parser.get().result_int());
    if (rec) {
      out.error = error_of(rec, "reading the response");
      co_return out;
    }
    out.body = std::move(parser.get().body());
    co_return out;
  }

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
  if (hec) {
    out.error = error_of(hec, "reading the response header");
    co_return out;
  }
  out.status = static_cast<int>(parser.get().result_int());
  std::array<char, 16 * 1024> chunk;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    lowest.expires_after(out.status == 200
                             ? std::chrono::steady_clock::duration(request.idle_timeout)
                             : config_.request_timeout);
    // read_some: hand over each event as it arrives (async_read would wait for a full buffer).
    auto [ec, n] = co_await bhttp::async_read_some(stream, buffer, parser, kTuple);
    if (ec == bhttp::error::need_buffer) ec = {};
    size_t got = chunk.size() - parser.get().body().size;
    if (got > 0) {
      std::string_view data(chunk.data(), got);
      if (out.status == 200) {
        if (!request.on_data(data)) co_return out;
      } else if (out.body.size() < kMaxErrorBody) {
        out.body.append(data);
      }
    }
    if (ec) {
      out.error = error_of(
          ec, ec == beast::error::timeout ? "watch idle timeout" : "reading the response body");
      co_return out;
    }
  }
  co_return out;
}

awaitable<ApiResponse> ApiClient::run(Request& request) {
  ApiResponse out;
  if (shut_down_) {
    out.error = Error{{}, "client shut down"};
    co_return out;
  }
  if (!config_.token_file.empty()) {
    auto token = read_token(config_.token_file);
    if (!token) {
      out.error = token.error();
      co_return out;
    }
    request.token = std::move(*token);
  }
  const auto& url = config_.server;
  // The lookup (a blocking getaddrinfo on Asio's resolver thread, which cancel() cannot stop) is
  // waited for at most the connect timeout, and not past shutdown(): its result lands in a shared
  // state that wakes this frame, which may have moved on.
  struct Lookup {
    explicit Lookup(asio::any_io_executor ex) : resolver(ex), wake(ex) {}
    tcp::resolver resolver;
    asio::steady_timer wake;
    bool done = false;
    error_code ec;
    tcp::resolver::results_type results;
  };
  auto lookup = std::make_shared<Lookup>(executor_);
  // (an expiry in the past also ends a wait that has not begun yet)
  auto closer = std::make_shared<std::function<void()>>(
      [lookup] { lookup->wake.expires_at(asio::steady_timer::time_point::min()); });
  open_.insert(closer);
  struct Unregister {
    ApiClient* self;
    std::shared_ptr<void> closer;
    ~Unregister() { self->open_.erase(closer); }
  } unregister{this, closer};
  lookup->wake.expires_after(config_.connect_timeout);
  lookup->resolver.async_resolve(
      url.host, std::to_string(url.port),
      [lookup](const error_code& ec, tcp::resolver::results_type results) {
        lookup->done = true;
        lookup->ec = ec;
        lookup->results = std::move(results);
        lookup->wake.expires_at(asio::steady_timer::time_point::min());
      });
  co_await lookup->wake.async_wait(kTuple);
  if (shut_down_) {
    out.error = Error{{}, "client shut down"};
    co_return out;
  }
  if (!lookup->done || lookup->ec) {
    out.error = lookup->done ? error_of(lookup->ec, "resolving " + url.host)
                             : Error{make_error_code(std::errc::timed_out),
                                     "resolving " + url.host + ": no answer in time"};
    co_return out;
  }
  const auto endpoints = lookup->results;
  beast::tcp_stream tcp(executor_);
  tcp.expires_after(config_.connect_timeout);
  // Registered so that shutdown() can close it while a read is pending.
  *closer = [&tcp] {
    error_code ignored;
    tcp.socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp.cancel();
  };

  auto [cec, ep] = co_await tcp.async_connect(endpoints, kTuple);
  if (cec) {
    out.error = error_of(cec, "connecting to " + url.describe());
    co_return out;
  }
  if (shut_down_) {
    out.error = Error{{}, "client shut down"};
    co_return out;
  }
  if (!url.tls) co_return co_await exchange(tcp, request);

  asio::ssl::context ctx(asio::ssl::context::tls_client);
  error_code ec;
  ctx.set_verify_mode(asio::ssl::verify_peer, ec);
  if (config_.ca_file.empty() || config_.ca_file_adds_to_system_roots) {
    ctx.set_default_verify_paths(ec);
  }
  if (!config_.ca_file.empty()) {
    ctx.load_verify_file(config_.ca_file, ec);
    if (ec) {
      out.error = error_of(ec, "loading the CA file " + config_.ca_file);
      co_return out;
    }
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(tcp), ctx);
  *closer = [&tls] {
    error_code ignored;
    beast::get_lowest_layer(tls).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(tls).cancel();
  };
  SSL* ssl = tls.native_handle();
  error_code ip_ec;
  asio::ip::make_address(url.host, ip_ec);
  if (!ip_ec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, url.host.c_str());
    SSL_set1_host(ssl, url.host.c_str());
  }
  beast::get_lowest_layer(tls).expires_after(config_.connect_timeout);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) {
    out.error = error_of(hec, "TLS handshake with " + url.describe());
    co_return out;
  }
  co_return co_await exchange(tls, request);
}

}  // namespace zt::meshd::kube
