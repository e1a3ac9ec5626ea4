#include "ztunnel/proxy/outbound.h"

#include <algorithm>

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
Outbound::Outbound(ProxyContext& ctx, std::shared_ptr<const PodScope> scope,
                   asio::any_io_executor ex, async::TaskGroup& tasks)
    : ctx_(ctx),
      scope_(std::move(scope)),
      ex_(ex),
      pool_(
          ex, ctx.settings.pool_max_streams, [this](const h2::PoolKey& key) { return dial(key); },
          tasks),
      rng_(std::random_device{}()) {}

awaitable<Result<std::shared_ptr<h2::Connection>>> Outbound::dial(const h2::PoolKey& key) {
  auto dst = net::parse_endpoint(key.destination);
  if (!dst) co_return tl::unexpected(dst.error());
  auto src_id = tls::SpiffeId::parse(key.source_identity);
  if (!src_id) co_return tl::unexpected(src_id.error());
  auto creds = co_await ctx_.certs.get_async(*src_id);
  if (!creds) co_return tl::unexpected(wrap(creds.error(), "no certificate for the source"));

  // In a pod: created in the pod's netns with the proxy mark, so the pod's capture skips it.
  auto opened = scope_->open_socket(ex_, dst->protocol());
  if (!opened) co_return tl::unexpected(wrap(opened.error(), "HBONE to " + key.destination));
  tcp::socket sock = std::move(*opened);
  error_code ec;
  if (!key.source_ip.empty()) {
    auto src_ip = net::parse_ip(key.source_ip);
    if (src_ip && src_ip->is_v4() == dst->address().is_v4()) sock.bind({*src_ip, 0}, ec);
  }
  if (ec) co_return fail(ec, "cannot open a socket to " + key.destination);
  auto connected =
      co_await async::with_timeout(sock.async_connect(*dst, kTuple), ctx_.settings.connect_timeout);
  if (!connected) {
    co_return failf(
        "connection to {} timed out (maybe a NetworkPolicy is blocking HBONE port 15008)",
        key.destination);
  }
  if (auto [cec] = *connected; cec) co_return fail(cec, "cannot connect to " + key.destination);
  sock.set_option(tcp::no_delay(true), ec);

  // No SNI: the server's identity is checked by its SPIFFE SAN below.
  h2::TlsStream tls(std::move(sock), *(*creds)->client_ctx);
  auto hs = co_await async::with_timeout(
      tls.async_handshake(asio::ssl::stream_base::client, kTuple), ctx_.settings.handshake_timeout);
  if (!hs) co_return failf("TLS handshake with {} timed out", key.destination);
  if (auto [hec] = *hs; hec)
    co_return fail(hec, "TLS handshake with " + key.destination + " failed");
  auto expected = h2::split_identities(key.destination_identities);
  if (auto st = tls::verify_peer_identity(tls.native_handle(), expected); !st) {
    co_return tl::unexpected(wrap(st.error(), "HBONE peer " + key.destination));
  }
  ctx_.metrics.hbone_connections.with({{"direction", "outbound"}}).inc();
  co_return h2::Connection::create(std::move(tls), h2::Role::kClient, ctx_.settings.h2);
}

awaitable<void> Outbound::proxy(tcp::socket client, tcp::endpoint original_dst,
                                BeforeCopy before_copy) {
  error_code ec;
  auto client_ep = client.remote_endpoint(ec);
  client.set_option(tcp::no_delay(true), ec);
  if (scope_->in_pod() && client_ep.address().is_loopback()) {
    // Captured by eBPF: the app's connect was rewritten to loopback, so its socket's address
    // is 127.0.0.1. The client is the pod (as iptables capture would show it).
    for (const auto& ip : scope_->local.ips) {
      if (ip.is_v4() == client_ep.address().is_v4()) {
        client_ep = tcp::endpoint(ip, client_ep.port());
        break;
      }
    }
  }

  ConnectionRecord rec(ctx_.metrics, ConnectionRecord::Direction::kOutbound);
  rec.src_addr = net::format_endpoint(client_ep);
  rec.src_workload = scope_->local.name;
  rec.src_namespace = scope_->local.ns;
  rec.dst_addr = net::format_endpoint(original_dst);

  // Records the failure; the client is told (SOCKS5) by the caller's hook, outside this lambda.
  auto refuse = [&](std::string why, std::string flag) {
    rec.set_error(std::move(why), std::move(flag));
    ctx_.metrics.error("outbound", "connect");
  };

  auto snapshot = ctx_.state.current();
  auto source = scope_->find_workload(*snapshot);
  if (source) rec.set_source(*source);
  auto upstream = state::resolve_outbound(*snapshot, source.get(), original_dst, rng_);
  if (!upstream) {
    refuse(upstream.error().describe(), "NR");
    if (before_copy) co_await before_copy(client, false);
    co_return;
  }
  if (upstream->workload) rec.set_destination(*upstream->workload);
  if (upstream->service) rec.set_destination_service(*upstream->service);
  rec.dst_addr = net::format_endpoint(upstream->connect);
  rec.dst_waypoint = upstream->waypoint_address();

  if (upstream->kind == state::UpstreamKind::kHbone) {
    rec.mtls = true;
    rec.src_identity = scope_->local.identity.uri();
    rec.dst_hbone_addr = upstream->authority;
    // The pod's address of the upstream's family is the HBONE connection's source.
    std::string source_ip;
    for (const auto& ip : scope_->local.ips) {
      if (ip.is_v4() == upstream->connect.address().is_v4()) {
        source_ip = ip.to_string();
        break;
      }
    }
    h2::PoolKey key{
        .source_identity = scope_->local.identity.uri(),
        .destination_identities = h2::join_identities(upstream->expected_identities),
        .destination = net::format_endpoint(upstream->connect),
        .source_ip = source_ip,
    };
    h2::Headers headers = {
        {"forwarded",
         hbone::make_forwarded(client_ep,
                               upstream->service ? upstream->service->hostname : std::string())},
        {"traceparent", hbone::make_traceparent(rng_)},
    };
    if (source) {
      hbone::BaggageFields b{
          .cluster = source->cluster_id,
          .namespace_name = source->namespace_name,
          .workload_type = source->workload_type,
          .workload_name = source->workload_name.empty() ? source->name : source->workload_name,
          .service_name = source->canonical_name,
          .service_version = source->canonical_revision,
          .region = source->locality ? source->locality->region : std::string(),
          .zone = source->locality ? source->locality->zone : std::string(),
      };
      headers.emplace_back("baggage", hbone::make_baggage(b));
    }
    // Bounded inside: connect and handshake timeouts in dial(), the response timeout in
    // open_connect(). No outer `||` here: it could drop a stream that did open.
    auto stream = co_await pool_.connect(key, upstream->authority, headers);
    if (!stream) {
      refuse(stream.error().describe(), "CONNECT");
      if (before_copy) co_await before_copy(client, false);
      co_return;
    }
    auto hbone = std::move(*stream);
    ctx_.metrics.hbone_streams.with({{"direction", "outbound"}}).inc();
    rec.dst_identity = upstream->expected_identities.empty()
                           ? std::string()
                           : upstream->expected_identities.front();
    if (before_copy && !co_await before_copy(client, true)) {
      hbone->abort();
      co_return;
    }
    rec.opened();
    net::TcpDuplex client_side(client);
    auto result = co_await net::copy_bidirectional(client_side, *hbone, rec.bytes_from_client,
                                                   rec.bytes_to_client);
    if (result.error && result.error != asio::error::operation_aborted) {
      rec.error = result.error.message();
    }
    co_return;
  }

  // Plain TCP: a TCP workload, or a destination the mesh does not know (passthrough).
  auto opened = scope_->open_socket(ex_, upstream->connect.protocol());
  if (!opened) {
    refuse(opened.error().describe(), "CONNECT");
    if (before_copy) co_await before_copy(client, false);
    co_return;
  }
  tcp::socket upstream_sock = std::move(*opened);
  auto connected = co_await async::with_timeout(
      upstream_sock.async_connect(upstream->connect, kTuple), ctx_.settings.connect_timeout);
  if (!connected || std::get<0>(*connected)) {
    refuse(fmt::format("connection to {} failed: {}", rec.dst_addr,
                       connected ? std::get<0>(*connected).message() : "timed out"),
           "CONNECT");
    if (before_copy) co_await before_copy(client, false);
    co_return;
  }
  upstream_sock.set_option(tcp::no_delay(true), ec);
  if (before_copy && !co_await before_copy(client, true)) co_return;
  rec.opened();
  net::TcpDuplex client_side(client);
  net::TcpDuplex upstream_side(upstream_sock);
  auto result = co_await net::copy_bidirectional(client_side, upstream_side, rec.bytes_from_client,
                                                 rec.bytes_to_client);
  if (result.error && result.error != asio::error::operation_aborted) {
    rec.error = result.error.message();
  }
}

}  // namespace zt::proxy
