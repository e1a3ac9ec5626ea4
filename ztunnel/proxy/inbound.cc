#include "ztunnel/proxy/inbound.h"

#include "common/async/timeout.h"
#include "common/base/log.h"
#include "common/hbone/headers.h"
#include "common/hbone/request.h"
#include "common/net/address.h"
#include "common/net/copy.h"
#include "common/tls/context.h"
#include "ztunnel/proxy/access_log.h"
#include "ztunnel/state/routing.h"

namespace zt::proxy {

awaitable<void> Inbound::serve_connection(tcp::socket sock) {
  error_code ec;
  PeerInfo info;
  info.peer = sock.remote_endpoint(ec);
  info.local = sock.local_endpoint(ec);
  if (ec) co_return;
  sock.set_option(tcp::no_delay(true), ec);

  auto creds = co_await ctx_.certs.get_async(scope_->local.identity);
  if (!creds) {
    ctx_.metrics.error("inbound", "certificate");
    ZT_LOG_ERROR("component=inbound msg=\"no certificate for {}\" error=\"{}\"",
                 scope_->local.identity.uri(), creds.error().describe());
    co_return;
  }
  h2::TlsStream tls(std::move(sock), *(*creds)->server_ctx);
  auto hs = co_await async::with_timeout(
      tls.async_handshake(asio::ssl::stream_base::server, kTuple), ctx_.settings.handshake_timeout);
  if (!hs || std::get<0>(*hs)) {
    ctx_.metrics.error("inbound", "tls_handshake");
    ZT_LOG_WARN("component=inbound msg=\"TLS handshake failed\" src.addr={} error=\"{}\"",
                net::format_endpoint(info.peer),
                hs ? std::get<0>(*hs).message() : std::string("timed out"));
    co_return;
  }
  auto id = tls::peer_identity(tls.native_handle());
  if (!id) {
    ctx_.metrics.error("inbound", "peer_identity");
    ZT_LOG_WARN("component=inbound msg=\"peer has no SPIFFE identity\" src.addr={} error=\"{}\"",
                net::format_endpoint(info.peer), id.error().describe());
    co_return;
  }
  info.identity = id->uri();
  info.authz_identity.emplace(id->trust_domain, id->ns, id->sa);
  ZT_LOG_DEBUG(
      "component=inbound msg=\"HBONE connection\" src.addr={} src.identity=\"{}\" tls=\"{}\"",
      net::format_endpoint(info.peer), info.identity, tls::negotiated_summary(tls.native_handle()));
  ctx_.metrics.hbone_connections.with({{"direction", "inbound"}}).inc();

  auto conn = h2::Connection::create(
      std::move(tls), h2::Role::kServer, ctx_.settings.h2,
      [this, info](std::shared_ptr<h2::Stream> s) {
        // Called from inside nghttp2's callback, and co_spawn would start the coroutine right
        // here: post it so the stream is served after nghttp2 has returned.
        asio::post(tasks_.executor(), [this, info, s = std::move(s)]() mutable {
          tasks_.spawn(serve_stream(std::move(s), info), "inbound-stream");
        });
      });
  if (!conn) {
    ZT_LOG_ERROR("component=inbound msg=\"{}\"", conn.error().describe());
    co_return;
  }
  connections_.remove_if([](const auto& w) { return w.expired(); });
  connections_.push_back(*conn);
  // A handshake that finished after the drain began still gets its GOAWAY.
  if (draining_) (*conn)->drain();
  co_await (*conn)->run();
}

awaitable<void> Inbound::serve_stream(std::shared_ptr<h2::Stream> stream, PeerInfo peer) {
  ctx_.metrics.hbone_streams.with({{"direction", "inbound"}}).inc();
  ConnectionRecord rec(ctx_.metrics, ConnectionRecord::Direction::kInbound);
  rec.mtls = true;
  rec.src_identity = peer.identity;
  rec.dst_hbone_addr = stream->authority();
  rec.dst_identity = scope_->local.identity.uri();
  rec.dst_workload = scope_->local.name;
  rec.dst_namespace = scope_->local.ns;
  rec.src_addr = net::format_endpoint(peer.peer);

  hbone::ConnectRequest req{stream->method(), stream->authority(), stream->headers()};
  std::string forwarded_host;
  if (auto fwd = hbone::find_header(req, hbone::kForwardedHeader)) {
    if (auto client = hbone::parse_forwarded_for(*fwd))
      rec.src_addr = net::format_endpoint(*client);
    // host= names the service the client addressed (telemetry only). Only a service we know
    // becomes a label: peer-chosen label values would grow the metrics without bound.
    if (auto host = hbone::parse_forwarded_host(*fwd)) forwarded_host = *host;
  }
  auto decision = hbone::check_connect_request(req, peer.local.address());
  if (decision.status != hbone::kStatusOk) {
    stream->respond(decision.status);
    rec.set_error(decision.reason);
    ctx_.metrics.error("inbound", "bad_request");
    co_return;
  }

  auto snapshot = ctx_.state.current();
  if (auto src = snapshot->find_workload(scope_->local.network, peer.peer.address())) {
    rec.set_source(*src);
  }
  if (auto self = snapshot->find_workload(scope_->local.network, peer.local.address())) {
    rec.set_destination(*self);
  }
  if (!forwarded_host.empty()) {
    if (auto svc = snapshot->find_service_by_hostname(forwarded_host)) {
      rec.set_destination_service(*svc);
    }
  }
  auto target =
      state::resolve_inbound(*snapshot, peer.local, decision.authority, scope_->local.network);
  if (!target) {
    stream->respond(hbone::kStatusServiceUnavailable);
    rec.set_error(target.error().describe());
    ctx_.metrics.error("inbound", "unknown_target");
    co_return;
  }
  rec.dst_addr = net::format_endpoint(target->app);

  // Authorization at the destination (DESIGN §7): source IP and proven identity, the pod IP
  // and target port. No co_await between reading the snapshot and tracking the stream, so a
  // policy published meanwhile is re-checked against it.
  authz::ConnectionInfo authz_conn{.source_ip = peer.peer.address(),
                                   .identity = peer.authz_identity,
                                   .destination_ip = target->app.address(),
                                   .destination_port = target->app.port()};
  auto verdict = check_authorization(authz_conn, *snapshot, *target->workload, "inbound");
  if (verdict.denied()) {
    stream->respond(hbone::kStatusUnauthorized);
    rec.set_error(verdict.reason(), "DENY");
    ctx_.metrics.error("inbound", "policy_denied");
    co_return;
  }

  AppConnection delivery(*scope_, co_await asio::this_coro::executor);
  tcp::socket& app = delivery.socket();
  // Closed by a later policy change: the record says why, whatever the copy reports.
  RevocationNote revoked(rec);
  auto tracked =
      tracker_->track(std::move(authz_conn), target->workload, [&](const authz::Decision& d) {
        revoked.set(d);
        ctx_.metrics.error("inbound", "policy_revoked");
        error_code ignored;
        app.close(ignored);
        stream->abort();
      });
  // The app sees the HBONE peer's IP (the client pod), not ztunnel's.
  if (auto st = delivery.open(peer.peer.address(), target->app); !st) {
    stream->respond(hbone::kStatusServiceUnavailable);
    rec.set_error(fmt::format("connection to the app at {} failed: {}",
                              net::format_endpoint(target->app), st.error().describe()));
    ctx_.metrics.error("inbound", "app_connect");
    co_return;
  }
  auto cec = co_await delivery.connect(target->app, ctx_.settings.connect_timeout);
  if (cec) {
    stream->respond(hbone::kStatusServiceUnavailable);
    rec.set_error(fmt::format("connection to the app at {} failed: {}",
                              net::format_endpoint(target->app),
                              cec == asio::error::timed_out ? "timed out" : cec.message()));
    ctx_.metrics.error("inbound", "app_connect");
    co_return;
  }
  error_code ec;
  app.set_option(tcp::no_delay(true), ec);
  if (auto rec_ec = stream->respond(hbone::kStatusOk)) {
    rec.set_error("HBONE stream closed before the answer: " + rec_ec.message());
    co_return;
  }
  rec.opened();

  net::TcpDuplex app_side(app);
  auto result = co_await net::copy_bidirectional(*stream, app_side, rec.bytes_from_client,
                                                 rec.bytes_to_client);
  if (result.error && result.error != asio::error::operation_aborted) {
    rec.error = result.error.message();
  }
}

void Inbound::drain_all() {
  draining_ = true;
  for (auto& w : connections_) {
    if (auto c = w.lock()) c->drain();
  }
}

}  // namespace zt::proxy
