#include "waypoint/server/server.h"

#include <sys/socket.h>

#include "common/async/timeout.h"
#include "common/base/log.h"
#include "common/hbone/headers.h"
#include "common/hbone/request.h"
#include "common/net/address.h"
#include "common/net/listener.h"
#include "common/tls/context.h"
#include "common/tls/spiffe.h"
#include "waypoint/http1/http1.h"
#include "waypoint/http2/http2.h"

namespace zt::waypoint::server {

// The HTTP/1.1 codec's timeouts wait on the HBONE stream's own timer; without these the
// Duplex would silently fall back to a second timer per read and write.
static_assert(Duplex::kNativeDeadlines<h2::Stream>);
HboneWorker::HboneWorker(proxy::WaypointContext& ctx, int index, ServerOptions options)
    : ctx_(ctx),
      index_(index),
      options_(options),
      io_(1),
      work_(io_.get_executor()),
      tasks_(io_.get_executor()),
      downstream_(io_.get_executor()),
      control_(io_.get_executor()),
      pipeline_(std::make_unique<proxy::Pipeline>(ctx, io_.get_executor(), tasks_)) {}

HboneWorker::~HboneWorker() {
  io_.stop();
  join();
}

Result<tcp::endpoint> HboneWorker::bind(const tcp::endpoint& at) {
  auto a = net::bind_listener(io_.get_executor(), at, "hbone");
  if (!a) return tl::unexpected(a.error());
  error_code ec;
  auto local = a->local_endpoint(ec);
  if (ec) return fail(ec, "local address of the hbone listener");
  if (index_ == 0) ZT_LOG_INFO("listening component=hbone address={}", net::format_endpoint(local));
  acceptor_.emplace(std::move(*a));
  return local;
}

void HboneWorker::start() {
  if (acceptor_) {
    downstream_.spawn(net::accept_loop(*acceptor_, "hbone",
                                       [this](tcp::socket s) {
                                         downstream_.spawn(serve_connection(std::move(s)),
                                                           "waypoint-connection");
                                       }),
                      "waypoint-accept");
  }
  thread_ = std::thread([this] { io_.run(); });
}

awaitable<void> HboneWorker::serve_connection(tcp::socket sock) {
  error_code ec;
  PeerInfo info;
  info.peer = sock.remote_endpoint(ec);
  if (!ec) info.local = sock.local_endpoint(ec);
  if (ec) co_return;
  sock.set_option(tcp::no_delay(true), ec);

  auto creds = co_await ctx_.certs.get_async(ctx_.self.identity);
  if (!creds) {
    ctx_.metrics.error("hbone", "certificate");
    ZT_LOG_ERROR("component=hbone msg=\"no certificate for {}\" error=\"{}\"",
                 ctx_.self.identity.uri(), creds.error().describe());
    co_return;
  }
  h2::TlsStream tls(std::move(sock), *(*creds)->server_ctx);
  auto hs = co_await async::with_timeout(
      tls.async_handshake(asio::ssl::stream_base::server, kTuple), ctx_.settings.handshake_timeout);
  if (!hs || std::get<0>(*hs)) {
    ctx_.metrics.error("hbone", "tls_handshake");
    ZT_LOG_WARN("component=hbone msg=\"TLS handshake failed\" src.addr={} error=\"{}\"",
                net::format_endpoint(info.peer),
                hs ? std::get<0>(*hs).message() : std::string("timed out"));
    co_return;
  }
  auto id = tls::peer_identity(tls.native_handle());
  if (!id) {
    ctx_.metrics.error("hbone", "peer_identity");
    ZT_LOG_WARN("component=hbone msg=\"peer has no SPIFFE identity\" src.addr={} error=\"{}\"",
                net::format_endpoint(info.peer), id.error().describe());
    co_return;
  }
  info.identity = id->uri();
  ZT_LOG_DEBUG(
      "component=hbone msg=\"HBONE connection\" src.addr={} src.identity=\"{}\" tls=\"{}\"",
      net::format_endpoint(info.peer), info.identity, tls::negotiated_summary(tls.native_handle()));

  auto conn = h2::Connection::create(
      std::move(tls), h2::Role::kServer, ctx_.settings.hbone,
      [this, info](std::shared_ptr<h2::Stream> s) {
        // Called from inside nghttp2: serve the stream after it has returned.
        asio::post(io_.get_executor(), [this, info, s = std::move(s)]() mutable {
          downstream_.spawn(serve_stream(std::move(s), info), "waypoint-stream");
        });
      });
  if (!conn) {
    ZT_LOG_ERROR("component=hbone msg=\"{}\"", conn.error().describe());
    co_return;
  }
  connections_.remove_if([](const auto& w) { return w.expired(); });
  connections_.push_back(*conn);
  if (draining_) (*conn)->drain();
  co_await (*conn)->run();
}

awaitable<void> HboneWorker::serve_stream(std::shared_ptr<h2::Stream> stream, PeerInfo peer) {
  auto sc = std::make_shared<proxy::StreamContext>();
  sc->peer_identity = peer.identity;
  if (peer.identity.starts_with("spiffe://")) sc->principal = peer.identity.substr(9);
  if (auto id = tls::SpiffeId::parse(peer.identity)) sc->source_namespace = std::move(id->ns);
  sc->peer_ip = net::unmap(peer.peer.address());
  sc->source_ip = sc->peer_ip;
  sc->authority = stream->authority();

  hbone::ConnectRequest req{stream->method(), stream->authority(), stream->headers()};
  if (auto fwd = hbone::find_header(req, hbone::kForwardedHeader)) {
    if (auto client = hbone::parse_forwarded_for(*fwd))
      sc->source_ip = net::unmap(client->address());
  }

  // A refusal: answered before any byte is relayed, logged and counted.
  auto refuse = [&](int status, const std::string& reason, std::string_view kind) {
    stream->respond(status);
    ctx_.metrics.hbone_streams.with({{"direction", "inbound"}, {"result", "refused"}}).inc();
    ctx_.metrics.error("hbone", kind);
    ZT_LOG_INFO(
        "access connection refused component=access reporter=waypoint src.addr={} "
        "src.identity=\"{}\" dst.hbone_addr={} status={} error=\"{}\"",
        sc->source_ip.to_string(), sc->peer_identity, net::quote(sc->authority), status, reason);
  };

  if (req.method != "CONNECT") {
    refuse(hbone::kStatusBadRequest,
           fmt::format("method {} is not CONNECT", net::quote(req.method)), "bad_request");
    co_return;
  }
  auto authority = hbone::parse_authority(req.authority);
  if (!authority) {
    refuse(hbone::kStatusBadRequest, "malformed authority: " + authority.error().message,
           "bad_request");
    co_return;
  }
  if (!authority->ip) {
    refuse(hbone::kStatusBadRequest, "the authority must be ip:port", "bad_request");
    co_return;
  }
  sc->destination_ip = net::unmap(*authority->ip);
  sc->port = authority->port;

  auto snapshot = ctx_.state.current();
  sc->source_workload = snapshot->find_workload("", sc->source_ip);
  auto binding = bind_target(*snapshot, ctx_.self, sc->destination_ip, sc->port);
  if (binding.status != hbone::kStatusOk) {
    refuse(binding.status, binding.reason,
           binding.status == hbone::kStatusUnauthorized ? "not_bound" : "unknown_target");
    co_return;
  }
  sc->service = std::move(binding.service);
  sc->workload = std::move(binding.workload);

  if (auto ec = stream->respond(hbone::kStatusOk)) {
    ZT_LOG_DEBUG("component=hbone msg=\"stream closed before the answer\" error=\"{}\"",
                 ec.message());
    co_return;
  }
  ctx_.metrics.hbone_streams.with({{"direction", "inbound"}, {"result", "accepted"}}).inc();

  // Sniff: read until the first bytes say what the protocol is.
  Duplex downstream = Duplex::of(stream);
  std::string buffered;
  Sniffed kind = Sniffed::kNeedMore;
  auto started = std::chrono::steady_clock::now();
  std::array<char, 4096> buf{};
  while (kind == Sniffed::kNeedMore) {
    auto limit = buffered.empty() ? options_.first_byte_timeout : options_.request_line_timeout;
    auto left = started + limit - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      kind = sniff(buffered, true);
      break;
    }
    auto r = co_await async::with_timeout(downstream.read_some(asio::buffer(buf)), left);
    if (!r) {
      kind = sniff(buffered, true);
      break;
    }
    auto [ec, n] = *r;
    buffered.append(buf.data(), n);
    if (ec) {
      if (buffered.empty()) co_return;  // closed before sending anything
      kind = sniff(buffered, true);
      break;
    }
    kind = sniff(buffered, buffered.size() >= kMaxSniffBytes);
    if (kind == Sniffed::kNeedMore && buffered.size() == n) {
      started = std::chrono::steady_clock::now();  // the request line's clock starts now
    }
  }

  std::shared_ptr<const proxy::StreamContext> context = sc;
  proxy::Pipeline* pipeline = pipeline_.get();
  RequestHandler handler = [pipeline, context](Request r) {
    return pipeline->handle(context, std::move(r));
  };
  switch (kind) {
    case Sniffed::kHttp2:
      co_await http2::serve_http2(downstream, std::move(buffered), ctx_.settings.limits, handler);
      break;
    case Sniffed::kHttp1:
      co_await http1::serve_http1(downstream, std::move(buffered), ctx_.settings.limits, handler);
      break;
    default:
      co_await pipeline->relay_tcp(context, downstream, std::move(buffered));
      break;
  }
  co_await downstream.shutdown_write();
}

void HboneWorker::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  asio::post(io_.get_executor(), [this, deadline, done = std::move(done)]() mutable {
    control_.spawn(run_drain(deadline, std::move(done)), "waypoint-drain");
  });
}

awaitable<void> HboneWorker::run_drain(std::chrono::milliseconds deadline,
                                       std::function<void()> done) {
  draining_ = true;
  error_code ec;
  if (acceptor_) acceptor_->close(ec);
  for (auto& w : connections_) {
    if (auto c = w.lock()) c->drain();
  }
  auto until = std::chrono::steady_clock::now() + deadline;
  if (!co_await downstream_.wait_empty(deadline)) {
    ZT_LOG_WARN("component=drain worker={} msg=\"deadline passed, closing {} open streams\"",
                index_, downstream_.size());
    for (auto& w : connections_) {
      if (auto c = w.lock()) c->close();
    }
    downstream_.cancel_all(asio::cancellation_type::terminal);
    co_await downstream_.wait_empty(std::chrono::seconds(2));
  }
  // Downstream is done: the upstream connections go now (idle ones at once, busy ones once
  // their mirrors or attempts end, at the latest at the deadline).
  pipeline_->close_idle();
  auto left = until - std::chrono::steady_clock::now();
  if (left < std::chrono::milliseconds(200)) left = std::chrono::milliseconds(200);
  if (!co_await tasks_.wait_empty(left)) {
    tasks_.cancel_all(asio::cancellation_type::terminal);
    co_await tasks_.wait_empty(std::chrono::seconds(2));
  }
  work_.reset();
  if (done) done();
}

void HboneWorker::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace zt::waypoint::server
