#include "meshd/jwks/resolver.h"

#include <algorithm>

#include "common/base/log.h"
#include "meshd/kube/client.h"
#include "waypoint/authz/jwt.h"
#include "waypoint/base/strings.h"

namespace zt::meshd::jwks {
namespace {

constexpr uint64_t kMaxJwksBytes = 1 << 20;

// "https://host:port/path?q" -> the server part and the request target ("/path?q", "/").
Result<std::pair<kube::ServerUrl, std::string>> split_uri(const std::string& uri) {
  if (auto problem = waypoint::authz::jwks_uri_problem(uri); !problem.empty()) {
    return failf("\"{}\" {}", uri, problem);
  }
  const size_t scheme = uri.find("://");
  const size_t host_end = uri.find_first_of("/?#", scheme + 3);
  std::string authority =
      waypoint::to_lower(uri.substr(0, scheme)) +
      uri.substr(scheme, host_end == std::string::npos ? std::string::npos : host_end - scheme);
  std::string target = host_end == std::string::npos ? "" : uri.substr(host_end);
  if (auto hash = target.find('#'); hash != std::string::npos) target.resize(hash);
  if (target.empty() || target[0] != '/') target = "/" + target;
  auto server = kube::parse_server_url(authority);
  if (!server) return tl::unexpected(server.error());
  return std::pair{*server, target};
}

}  // namespace

struct JwksResolver::Entry {
  std::string uri;
  ResolverOptions options;
  std::shared_ptr<std::function<void()>> on_change;
  std::string jwks;        // "" until fetched
  bool attempted = false;  // one fetch ended (well or not)
  bool dropped = false;
  std::unique_ptr<asio::steady_timer> timer;
  std::unique_ptr<kube::ApiClient> client;
};

JwksResolver::JwksResolver(asio::any_io_executor executor, ResolverOptions options,
                           std::function<void()> on_change)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      on_change_(std::make_shared<std::function<void()>>(std::move(on_change))) {}

JwksResolver::~JwksResolver() { shutdown(); }

void JwksResolver::track(const std::set<std::string>& uris) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (uris.contains(it->first)) {
      ++it;
      continue;
    }
    it->second->dropped = true;
    it->second->timer->cancel();
    if (it->second->client) it->second->client->shutdown();
    it = entries_.erase(it);
  }
  for (const auto& uri : uris) {
    if (entries_.contains(uri)) continue;
    auto e = std::make_shared<Entry>();
    e->uri = uri;
    e->options = options_;
    e->on_change = on_change_;
    e->timer = std::make_unique<asio::steady_timer>(executor_);
    entries_.emplace(uri, e);
    asio::co_spawn(executor_, run(std::move(e)), asio::detached);
  }
}

bool JwksResolver::all_attempted() const {
  return std::all_of(entries_.begin(), entries_.end(),
                     [](const auto& e) { return e.second->attempted; });
}

std::map<std::string, std::string> JwksResolver::resolved() const {
  std::map<std::string, std::string> out;
  for (const auto& [uri, e] : entries_) {
    if (!e->jwks.empty()) out.emplace(uri, e->jwks);
  }
  return out;
}

void JwksResolver::shutdown() { track({}); }

awaitable<void> JwksResolver::run(std::shared_ptr<Entry> e) {
  while (!e->dropped) {
    bool ok = false;
    try {
      ok = co_await fetch(e);
    } catch (const std::exception& ex) {
      ZT_LOG_WARN("jwks fetch failed component=jwks uri=\"{}\" error=\"{}\"", e->uri, ex.what());
    }
    e->attempted = true;
    if (e->dropped) co_return;
    e->timer->expires_after(ok ? e->options.refresh : e->options.retry);
    auto [ec] = co_await e->timer->async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
  }
}

awaitable<bool> JwksResolver::fetch(std::shared_ptr<Entry> e) {
  auto executor = co_await asio::this_coro::executor;
  bool ok = false;
  {
    auto where = split_uri(e->uri);
    if (!where) {
      ZT_LOG_WARN("jwks fetch failed component=jwks uri=\"{}\" error=\"{}\"", e->uri,
                  where.error().describe());
    } else {
      kube::KubeConfig config;
      config.server = where->first;
      config.ca_file = e->options.ca_file;
      config.ca_file_adds_to_system_roots = true;
      config.max_body = kMaxJwksBytes;
      config.connect_timeout = e->options.timeout;
      config.request_timeout = e->options.timeout;
      e->client = std::make_unique<kube::ApiClient>(executor, std::move(config));
      auto response = co_await e->client->get(where->second);
      e->client.reset();
      if (e->dropped) co_return false;
      std::string error;
      if (response.error) {
        error = response.error->describe();
      } else if (response.status != 200) {
        error = fmt::format("HTTP status {}", response.status);
      } else if (auto keys = waypoint::authz::Jwks::parse(response.body); !keys) {
        error = keys.error().describe();
      }
      if (!error.empty()) {
        ZT_LOG_WARN("jwks fetch failed component=jwks uri=\"{}\" error=\"{}\"{}", e->uri, error,
                    e->jwks.empty() ? "" : " keeping=previous keys");
      } else {
        ok = true;
        if (response.body != e->jwks) {
          ZT_LOG_INFO("jwks fetched component=jwks uri=\"{}\" bytes={}", e->uri,
                      response.body.size());
          e->jwks = std::move(response.body);
          if (*e->on_change) (*e->on_change)();
        }
      }
    }
  }
  co_return ok;
}

}  // namespace zt::meshd::jwks
