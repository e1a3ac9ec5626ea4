#include "ztunnel/proxy/inbound_plaintext.h"

#include "common/async/timeout.h"
#include "common/net/address.h"
#include "common/net/copy.h"
#include "ztunnel/proxy/access_log.h"

namespace zt::proxy {
namespace {

bool is_proxy_port(uint16_t port) {
  return port == kOutboundPort || port == kInboundPlaintextPort || port == kHbonePort ||
         port == kSocks5Port;
}

}  // namespace

awaitable<void> serve_plaintext(tcp::socket client, tcp::endpoint original_dst, ProxyContext& ctx,
                                ConnectionTracker* tracker) {
  auto scope = std::make_shared<PodScope>();
  scope->local = ctx.local;
  co_await serve_plaintext(std::move(client), original_dst, ctx, std::move(scope), tracker);
}

awaitable<void> serve_plaintext(tcp::socket client, tcp::endpoint original_dst, ProxyContext& ctx,
                                std::shared_ptr<const PodScope> scope, ConnectionTracker* tracker) {
  const LocalWorkload& self = scope->local;
  error_code ec;
  ConnectionRecord rec(ctx.metrics, ConnectionRecord::Direction::kInbound);
  rec.src_addr = net::format_endpoint(client.remote_endpoint(ec));
  rec.dst_addr = net::format_endpoint(original_dst);
  rec.dst_workload = self.name;
  rec.dst_namespace = self.ns;
  client.set_option(tcp::no_delay(true), ec);

  if (is_proxy_port(original_dst.port())) {
    rec.set_error(
        fmt::format("connection to {} is a call to the proxy itself (not captured)", rec.dst_addr));
    ctx.metrics.error("inbound_plaintext", "self_call");
    co_return;
  }
  bool local = false;
  for (const auto& ip : self.ips) local = local || ip == original_dst.address();
  if (!local) {
    rec.set_error(fmt::format("{} is not an address of the local workload", rec.dst_addr));
    ctx.metrics.error("inbound_plaintext", "unknown_target");
    co_return;
  }

  // Authorization with no identity (DESIGN §7): a STRICT-style DENY rejects plaintext here.
  // No co_await from reading the snapshot to tracking the connection.
  auto snapshot = ctx.state.current();
  auto destination = snapshot->find_workload(self.network, original_dst.address());
  if (destination) {
    rec.set_destination(*destination);
  } else {
    // Not in the config (yet): policies still apply by the local workload's namespace.
    auto placeholder = std::make_shared<state::Workload>();
    placeholder->uid = "unknown/" + original_dst.address().to_string();
    placeholder->namespace_name = self.ns;
    placeholder->name = self.name;
    destination = std::move(placeholder);
  }
  error_code peer_ec;
  authz::ConnectionInfo authz_conn{.source_ip = client.remote_endpoint(peer_ec).address(),
                                   .identity = std::nullopt,
                                   .destination_ip = original_dst.address(),
                                   .destination_port = original_dst.port()};
  auto verdict = check_authorization(authz_conn, *snapshot, *destination, "inbound_plaintext");
  if (verdict.denied()) {
    rec.set_error(verdict.reason(), "DENY");
    ctx.metrics.error("inbound_plaintext", "policy_denied");
    co_return;  // closes the client connection
  }

  AppConnection delivery(*scope, co_await asio::this_coro::executor);
  tcp::socket& app = delivery.socket();
  // Closed by a later policy change: the record says why, whatever the copy reports.
  RevocationNote revoked(rec);
  ConnectionTracker::Registration tracked;
  auto client_ip = authz_conn.source_ip;
  if (tracker != nullptr) {
    tracked = tracker->track(std::move(authz_conn), destination, [&](const authz::Decision& d) {
      revoked.set(d);
      ctx.metrics.error("inbound_plaintext", "policy_revoked");
      error_code ignored;
      client.close(ignored);
      app.close(ignored);
    });
  }
  if (auto st = delivery.open(client_ip, original_dst); !st) {
    rec.set_error(
        fmt::format("connection to the app at {} failed: {}", rec.dst_addr, st.error().describe()));
    ctx.metrics.error("inbound_plaintext", "app_connect");
    co_return;
  }
  auto cec = co_await delivery.connect(original_dst, ctx.settings.connect_timeout);
  if (cec) {
    rec.set_error(fmt::format("connection to the app at {} failed: {}", rec.dst_addr,
                              cec == asio::error::timed_out ? "timed out" : cec.message()));
    ctx.metrics.error("inbound_plaintext", "app_connect");
    co_return;
  }
  app.set_option(tcp::no_delay(true), ec);
  rec.opened();
  net::TcpDuplex client_side(client);
  net::TcpDuplex app_side(app);
  auto result = co_await net::copy_bidirectional(client_side, app_side, rec.bytes_from_client,
                                                 rec.bytes_to_client);
  if (result.error && result.error != asio::error::operation_aborted) {
    rec.error = result.error.message();
  }
}

}  // namespace zt::proxy
