#include "waypoint/proxy/upstream.h"

#include <algorithm>

#include "common/async/timeout.h"
#include "common/base/log.h"
#include "common/hbone/headers.h"
#include "common/net/address.h"
#include "common/tls/context.h"

namespace zt::waypoint::proxy {
const std::string& EndpointTarget::key() const {
  if (key_cache.empty()) key_cache = net::format_endpoint(tcp::endpoint(ip, port));
  return key_cache;
}

bool EndpointTarget::hbone() const {
  return !workload || workload->protocol == zt::state::TunnelProtocol::kHbone;
}

Upstream::Upstream(WaypointContext& ctx, asio::any_io_executor ex, async::TaskGroup& tasks)
    : ctx_(ctx),
      ex_(ex),
      pool_(
          ex, ctx.settings.pool_max_streams, [this](const h2::PoolKey& key) { return dial(key); },
          tasks),
      rng_(std::random_device{}()) {}

Upstream::~Upstream() {
  for (auto& [key, list] : idle_http1_) {
    for (auto& idle : list) drop(idle);
  }
  for (auto& [key, client] : http2_) client->close();
}

void Upstream::drop(IdleHttp1& idle) {
  if (idle.client) idle.client->abort();
  idle.client.reset();
  if (idle.on_close) {
    auto f = std::move(idle.on_close);
    idle.on_close = nullptr;
    f();
  }
}

awaitable<Result<std::shared_ptr<h2::Connection>>> Upstream::dial(const h2::PoolKey& key) {
  auto dst = net::parse_endpoint(key.destination);
  if (!dst) co_return tl::unexpected(dst.error());
  auto creds = co_await ctx_.certs.get_async(ctx_.self.identity);
  if (!creds) co_return tl::unexpected(wrap(creds.error(), "no certificate for the waypoint"));
  tcp::socket sock(ex_);
  auto connected =
      co_await async::with_timeout(sock.async_connect(*dst, kTuple), ctx_.settings.connect_timeout);
  if (!connected) co_return failf("HBONE connection to {} timed out", key.destination);
  if (auto [cec] = *connected; cec) co_return fail(cec, "cannot connect to " + key.destination);
  error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  h2::TlsStream tls(std::move(sock), *(*creds)->client_ctx);
  auto hs = co_await async::with_timeout(
      tls.async_handshake(asio::ssl::stream_base::client, kTuple), ctx_.settings.handshake_timeout);
  if (!hs) co_return failf("TLS handshake with {} timed out", key.destination);
  if (auto [hec] = *hs; hec) {
    co_return fail(hec, "TLS handshake with " + key.destination + " failed");
  }
  auto expected = h2::split_identities(key.destination_identities);
  if (auto st = tls::verify_peer_identity(tls.native_handle(), expected); !st) {
    co_return tl::unexpected(wrap(st.error(), "HBONE peer " + key.destination));
  }
  co_return h2::Connection::create(std::move(tls), h2::Role::kClient, ctx_.settings.hbone);
}

awaitable<Result<Duplex>> Upstream::open(const EndpointTarget& target, const TunnelInfo& info) {
  if (!target.hbone()) {
    tcp::socket sock(ex_);
    tcp::endpoint at(target.ip, target.port);
    auto connected =
        co_await async::with_timeout(sock.async_connect(at, kTuple), ctx_.settings.connect_timeout);
    if (!connected) co_return failf("connection to {} timed out", target.key());
    if (auto [cec] = *connected; cec) co_return fail(cec, "cannot connect to " + target.key());
    error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    co_return Duplex::of_socket(std::move(sock));
  }
  h2::PoolKey key{
      .source_identity = ctx_.self.identity.uri(),
      .destination_identities = h2::join_identities(target.identities),
      .destination = net::format_endpoint(tcp::endpoint(target.ip, kHbonePort)),
      .source_ip = {},
  };
  h2::Headers headers = {
      {"forwarded", hbone::make_forwarded(tcp::endpoint(info.client_ip, 0), info.service_host)},
      {"traceparent", hbone::make_traceparent(rng_)},
  };
  if (const auto& s = info.source) {
    hbone::BaggageFields b{
        .cluster = s->cluster_id,
        .namespace_name = s->namespace_name,
        .workload_type = s->workload_type,
        .workload_name = s->workload_name.empty() ? s->name : s->workload_name,
        .service_name = s->canonical_name,
        .service_version = s->canonical_revision,
        .region = s->locality ? s->locality->region : std::string(),
        .zone = s->locality ? s->locality->zone : std::string(),
    };
    headers.emplace_back("baggage", hbone::make_baggage(b));
  }
  auto stream = co_await pool_.connect(key, target.key(), headers);
  if (!stream) {
    ctx_.metrics.hbone_streams.with({{"direction", "outbound"}, {"result", "error"}}).inc();
    co_return tl::unexpected(wrap(stream.error(), "HBONE to " + target.key()));
  }
  ctx_.metrics.hbone_streams.with({{"direction", "outbound"}, {"result", "ok"}}).inc();
  co_return Duplex::of(std::move(*stream));
}

bool Upstream::has_idle_http1(const std::string& key) const {
  auto it = idle_http1_.find(key);
  return it != idle_http1_.end() && !it->second.empty();
}

std::optional<IdleHttp1> Upstream::take_idle_http1(const std::string& key) {
  auto it = idle_http1_.find(key);
  if (it == idle_http1_.end() || it->second.empty()) return std::nullopt;
  IdleHttp1 idle = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) idle_http1_.erase(it);
  return idle;
}

void Upstream::put_idle_http1(const std::string& key, IdleHttp1 idle) {
  auto& list = idle_http1_[key];
  if (list.size() >= kMaxIdlePerEndpoint) {
    drop(idle);
    return;
  }
  list.push_front(std::move(idle));
}

bool Upstream::has_http2(const std::string& key) const {
  auto it = http2_.find(key);
  return it != http2_.end() && it->second->usable();
}

awaitable<Result<std::shared_ptr<http2::Http2Client>>> Upstream::http2_client(
    const EndpointTarget& target, const TunnelInfo& info) {
  auto key = target.key();
  if (auto it = http2_.find(key); it != http2_.end() && it->second->usable()) {
    co_return it->second;
  }
  auto stream = co_await open(target, info);
  if (!stream) co_return tl::unexpected(stream.error());
  // Another request may have opened one while this one waited.
  if (auto it = http2_.find(key); it != http2_.end() && it->second->usable()) {
    stream->abort();
    co_return it->second;
  }
  auto client = http2::Http2Client::start(ex_, std::move(*stream), ctx_.settings.limits);
  // The one replaced (after a GOAWAY, say) keeps its streams until they end: a long gRPC
  // stream is not cut because the endpoint asked for new ones to go elsewhere.
  std::erase_if(draining_http2_, [](const std::shared_ptr<http2::Http2Client>& c) {
    if (c->active_streams() != 0) return false;
    c->close();
    return true;
  });
  if (auto it = http2_.find(key); it != http2_.end()) {
    if (it->second->active_streams() == 0) {
      it->second->close();
    } else {
      draining_http2_.push_back(std::move(it->second));
    }
  }
  http2_[key] = client;
  co_return client;
}

void Upstream::close_idle() {
  for (auto& [key, list] : idle_http1_) {
    for (auto& idle : list) drop(idle);
  }
  idle_http1_.clear();
  for (auto it = http2_.begin(); it != http2_.end();) {
    if (it->second->active_streams() == 0 || !it->second->usable()) {
      it->second->close();
      it = http2_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& c : draining_http2_) c->close();
  draining_http2_.clear();
  pool_.drain_all();
}

}  // namespace zt::waypoint::proxy
