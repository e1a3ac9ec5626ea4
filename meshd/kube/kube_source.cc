#include "meshd/kube/kube_source.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "meshd/kube/client.h"
#include "meshd/kube/protocol.h"
#include "meshd/kube/store.h"

namespace zt::meshd::kube {

using Clock = std::chrono::steady_clock;

struct KubeApiSource::Impl : std::enable_shared_from_this<Impl> {
  struct TypeState {
    const ResourceType* type = nullptr;
    std::string resource_version;
    bool synced = false;
    bool listed = false;      // a LIST succeeded in this process
    bool not_served = false;  // its last LIST said 404 and discovery does not serve it
    std::unique_ptr<asio::steady_timer> sleep;
  };
  enum class Listed { kOk, kFailed, kNotServed };
  // What API discovery says of a custom resource's group, version and kind.
  enum class Discovered { kServed, kNotInstalled, kOtherVersion, kUnknown };

  Impl(asio::any_io_executor ex, KubeConfig c)
      : executor(ex), config(std::move(c)), client(ex, config), publish_timer(ex) {
    for (const auto& t : resource_types()) {
      if (!config.kinds.empty() &&
          std::find(config.kinds.begin(), config.kinds.end(), t.kind) == config.kinds.end()) {
        continue;
      }
      TypeState s;
      s.type = &t;
      s.sleep = std::make_unique<asio::steady_timer>(ex);
      types.push_back(std::move(s));
    }
    selectors.field = config.pod_field_selector;
    selectors.label = config.label_selector;
  }

  // Holds `self` so the state outlives every frame, whenever the source itself goes away.
  static awaitable<void> run(std::shared_ptr<Impl> self, size_t index) {
    co_await self->run_type(index);
  }
  awaitable<void> run_type(size_t index);
  awaitable<Listed> list(size_t index);
  awaitable<Listed> not_found(size_t index);
  awaitable<Discovered> discover(const ResourceType& type);
  void mark_synced(TypeState& state);
  awaitable<WatchOutcome> watch(size_t index);
  awaitable<void> sleep(size_t index, std::chrono::milliseconds d);
  void add_errors(ObjectStore::Errors errors);
  void schedule_publish();
  void publish();

  asio::any_io_executor executor;
  KubeConfig config;
  ApiClient client;
  Selectors selectors;
  std::vector<TypeState> types;
  size_t synced_types = 0;
  ObjectStore store;
  std::vector<manifest::ManifestError> pending_errors;
  std::shared_ptr<const manifest::ObjectSet> last;
  bool published_once = false;
  bool publish_armed = false;
  asio::steady_timer publish_timer;
  Callback on_change;
  bool started = false;
  bool stopped = false;
  SourceStats stats;
};

void KubeApiSource::Impl::add_errors(ObjectStore::Errors errors) {
  for (auto& e : errors) {
    ++stats.invalid;
    pending_errors.push_back(std::move(e));
  }
}

awaitable<void> KubeApiSource::Impl::sleep(size_t index, std::chrono::milliseconds d) {
  auto& timer = *types[index].sleep;
  timer.expires_after(d);
  co_await timer.async_wait(kTuple);
}

awaitable<KubeApiSource::Impl::Listed> KubeApiSource::Impl::list(size_t index) {
  const auto& type = *types[index].type;
  std::vector<YAML::Node> items;
  std::string continue_token, resource_version;
  size_t restarts = 0;
  for (;;) {
    auto target =
        list_target(config.server.base_path, type, selectors, config.page_size, continue_token);
    auto resp = co_await client.get(target);
    if (stopped) co_return Listed::kFailed;
    if (resp.error) {
      ++stats.failures;
      ZT_LOG_WARN("list failed component=kube type={} error=\"{}\"", type.plural,
                  resp.error->describe());
      co_return Listed::kFailed;
    }
    if (resp.status == 410 && !continue_token.empty() && restarts < 3) {
      // The snapshot the continue token points into was compacted: start the list over.
      ++stats.list_restarts;
      ++restarts;
      ZT_LOG_INFO("list continue expired component=kube type={}; listing again", type.plural);
      items.clear();
      continue_token.clear();
      continue;
    }
    if (resp.status == 404 && type.custom()) co_return co_await not_found(index);
    if (resp.status == 403 && type.forbidden_is_none && !types[index].listed) {
      if (!types[index].not_served) {
        ZT_LOG_WARN(
            "list forbidden component=kube type={} path={}: meshd's RBAC does not grant it (see "
            "deploy/daemonset/rbac.yaml); none assumed, checking again every {}ms",
            type.plural, type.path(), config.not_served_recheck.count());
      }
      types[index].not_served = true;
      add_errors(store.apply_list(type, {}));
      co_return Listed::kNotServed;
    }
    if (resp.status != 200) {
      ++stats.failures;
      auto st = parse_status(resp.body);
      ZT_LOG_WARN("list failed component=kube type={} status={} error=\"{}\"", type.plural,
                  resp.status, st ? st->describe() : resp.body.substr(0, 200));
      co_return Listed::kFailed;
    }
    auto page = parse_list(resp.body);
    if (!page) {
      ++stats.failures;
      ZT_LOG_WARN("list failed component=kube type={} error=\"{}\"", type.plural,
                  page.error().describe());
      co_return Listed::kFailed;
    }
    ++stats.list_pages;
    for (auto& item : page->items) items.push_back(std::move(item));
    resource_version = page->resource_version;
    continue_token = page->continue_token;
    if (continue_token.empty()) break;
  }
  if (types[index].not_served) {
    ZT_LOG_INFO("served now component=kube type={}", type.plural);
    types[index].not_served = false;
  }
  types[index].listed = true;
  add_errors(store.apply_list(type, items));
  types[index].resource_version = resource_version;
  ++stats.lists;
  ZT_LOG_INFO("listed component=kube type={} objects={} resource_version={}", type.plural,
              items.size(), resource_version);
  co_return Listed::kOk;
}

// A custom resource's LIST answered 404. Only when discovery confirms that the API server does
// not serve the kind (its CRD is not installed) is that "none of them", never before this process
// listed it: an API server can answer 404 for a moment (a replica behind, a restart), and an empty
// AuthorizationPolicy list would fail open. A kind served in other versions only (CRDs older
// than the version we read) is a failure, as loud as any other, unless its type says that
// counts as none (GRPCRoute before Gateway API 1.1).
awaitable<KubeApiSource::Impl::Listed> KubeApiSource::Impl::not_found(size_t index) {
  auto& state = types[index];
  const auto& type = *state.type;
  auto found = co_await discover(type);
  if (stopped) co_return Listed::kFailed;
  const bool older_only = found == Discovered::kOtherVersion && type.older_version_is_none;
  if ((found == Discovered::kNotInstalled || older_only) && !state.listed) {
    if (!state.not_served) {
      ZT_LOG_WARN(
          "not served component=kube type={} path={}: {}; none assumed, checking again every "
          "{}ms",
          type.plural, type.path(),
          older_only ? fmt::format("the API server serves it only in versions other than {}",
                                   type.api_version)
                     : std::string("its CustomResourceDefinition is not installed"),
          config.not_served_recheck.count());
    }
    state.not_served = true;
    add_errors(store.apply_list(type, {}));
    co_return Listed::kNotServed;
  }
  ++stats.failures;
  switch (found) {
    case Discovered::kOtherVersion:
      ZT_LOG_WARN(
          "list failed component=kube type={} status=404 error=\"the API server serves {} but "
          "not {}: install CRDs that serve {}\"",
          type.plural, type.group(), type.api_version, type.api_version);
      break;
    case Discovered::kNotInstalled:  // after a LIST that worked: keep what it gave
      ZT_LOG_WARN(
          "list failed component=kube type={} status=404 error=\"no longer served (its CRD "
          "removed?); keeping the objects listed before\"",
          type.plural);
      break;
    default:
      ZT_LOG_WARN(
          "list failed component=kube type={} status=404 error=\"not found, though API "
          "discovery serves it (or could not tell); retrying, keeping what was listed\"",
          type.plural);
      break;
  }
  co_return Listed::kFailed;
}

awaitable<KubeApiSource::Impl::Discovered> KubeApiSource::Impl::discover(const ResourceType& type) {
  // GET /apis/<group>/<version>: the APIResourceList of the version (404 when no resource of the
  // group is served in that version). Without the kind there, GET /apis/<group> (404 when the
  // group is not served at all) and every other version's list: the kind served in one of them
  // is a version we do not read, not "none".
  const std::string base = config.server.base_path + "/apis/";
  auto names_in = [&](const std::string& group_version)
      -> awaitable<std::optional<std::optional<std::vector<std::string>>>> {
    // nullopt: could not tell; an inner nullopt: that version is not served.
    auto r = co_await client.get(base + group_version);
    if (r.error || (r.status != 200 && r.status != 404)) co_return std::nullopt;
    if (r.status == 404) co_return std::optional<std::vector<std::string>>();
    auto names = parse_resource_names(r.body);
    if (!names) co_return std::nullopt;
    co_return std::optional<std::vector<std::string>>(std::move(*names));
  };
  auto has = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), type.plural) != names.end();
  };
  auto own = co_await names_in(type.api_version);
  if (!own) co_return Discovered::kUnknown;
  if (*own && has(**own)) co_return Discovered::kServed;
  auto group = co_await client.get(base + type.group());
  if (group.error) co_return Discovered::kUnknown;
  if (group.status == 404) co_return Discovered::kNotInstalled;
  if (group.status != 200) co_return Discovered::kUnknown;
  auto versions = parse_group_versions(group.body);
  if (!versions) co_return Discovered::kUnknown;
  for (const auto& gv : *versions) {
    if (gv == type.api_version) continue;
    auto other = co_await names_in(gv);
    if (!other) co_return Discovered::kUnknown;
    if (*other && has(**other)) co_return Discovered::kOtherVersion;
  }
  co_return Discovered::kNotInstalled;
}

awaitable<WatchOutcome> KubeApiSource::Impl::watch(size_t index) {
  auto& state = types[index];
  const auto& type = *state.type;
  WatchOutcome outcome;
  auto started_at = Clock::now();
  LineSplitter lines;
  bool end_stream = false;
  auto on_line = [&](std::string_view line) {
    if (end_stream || stopped) return;
    auto event = parse_watch_event(line);
    if (!event) {
      // A line we cannot read: end this watch and re-watch from the last good resourceVersion.
      ++stats.failures;
      ZT_LOG_WARN("bad watch event component=kube type={} error=\"{}\"", type.plural,
                  event.error().describe());
      outcome.transport_error = true;
      end_stream = true;
      return;
    }
    ++outcome.events;
    switch (event->type) {
      case EventType::kError:
        outcome.error_event = event->status->code;
        end_stream = true;
        ZT_LOG_INFO("watch error component=kube type={} status=\"{}\"", type.plural,
                    event->status->describe());
        return;
      case EventType::kBookmark:
        ++stats.bookmarks;
        state.resource_version = event->resource_version;
        return;
      default:
        ++stats.events;
        add_errors(store.apply_event(type, *event));
        state.resource_version = event->resource_version;
        schedule_publish();
        return;
    }
  };
  auto on_data = [&](std::string_view data) {
    if (!lines.feed(data, on_line)) {
      ++stats.failures;
      ZT_LOG_WARN("watch line too long component=kube type={}", type.plural);
      outcome.transport_error = true;
      return false;
    }
    return !end_stream && !stopped;
  };
  ++stats.watches;
  auto target = watch_target(config.server.base_path, type, selectors, state.resource_version,
                             config.watch_timeout_seconds);
  auto idle = std::chrono::seconds(config.watch_timeout_seconds + 30);
  auto resp = co_await client.stream(std::move(target), on_data, idle);
  outcome.http_status = resp.status;
  if (resp.error) {
    outcome.transport_error = true;
    if (!stopped) ++stats.failures;
    ZT_LOG_DEBUG("watch ended component=kube type={} events={} error=\"{}\"", type.plural,
                 outcome.events, resp.error->describe());
  }
  if (resp.status != 0 && resp.status != 200) {
    ++stats.failures;
    auto st = parse_status(resp.body);
    ZT_LOG_WARN("watch failed component=kube type={} status={} error=\"{}\"", type.plural,
                resp.status, st ? st->describe() : resp.body.substr(0, 200));
  }
  outcome.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_at);
  co_return outcome;
}

awaitable<void> KubeApiSource::Impl::run_type(size_t index) {
  auto& state = types[index];
  Backoff backoff(config.backoff_initial, config.backoff_max);
  bool need_list = true;
  bool watch_refused = false;  // the last watch answered 404: its relist does not reset backoff
  while (!stopped) {
    if (need_list) {
      auto listed = co_await list(index);
      if (stopped) break;
      if (listed == Listed::kFailed) {
        auto d = backoff.next();
        ZT_LOG_DEBUG("retrying list component=kube type={} in={}ms", state.type->plural, d.count());
        co_await sleep(index, d);
        continue;
      }
      if (!watch_refused) backoff.reset();
      mark_synced(state);
      schedule_publish();
      if (listed == Listed::kNotServed) {
        co_await sleep(index, config.not_served_recheck);
        continue;  // list again: nothing to watch
      }
      need_list = false;
    }
    auto outcome = co_await watch(index);
    if (stopped) break;
    watch_refused = outcome.http_status == 404 && state.type->custom();
    if (watch_refused) {
      // Perhaps its CRD was deleted: the LIST (and discovery) tell, after a backoff that keeps
      // growing while watches are refused (an API server whose LIST works and WATCH does not
      // must not be listed in a tight loop).
      co_await sleep(index, backoff.next());
      ++stats.relists;
      need_list = true;
      continue;
    }
    switch (next_step(outcome)) {
      case NextStep::kWatch:
        if (outcome.events > 0) backoff.reset();
        break;
      case NextStep::kRelist:
        ++stats.relists;
        ZT_LOG_INFO(
            "resource version too old component=kube type={} resource_version={}; "
            "listing again",
            state.type->plural, state.resource_version);
        need_list = true;
        break;
      case NextStep::kWatchAfterBackoff: {
        auto d = backoff.next();
        ZT_LOG_DEBUG("retrying watch component=kube type={} in={}ms", state.type->plural,
                     d.count());
        co_await sleep(index, d);
        break;
      }
    }
  }
}

void KubeApiSource::Impl::mark_synced(TypeState& state) {
  if (state.synced) return;
  state.synced = true;
  if (++synced_types == types.size()) {
    ZT_LOG_INFO("synced component=kube server={} objects={}", config.server.describe(),
                store.objects().size());
  }
}

void KubeApiSource::Impl::schedule_publish() {
  if (stopped || synced_types < types.size() || publish_armed) return;
  publish_armed = true;
  publish_timer.expires_after(config.debounce);
  publish_timer.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->publish();
  });
}

void KubeApiSource::Impl::publish() {
  publish_armed = false;
  if (stopped || !on_change) return;
  bool first = !published_once;
  if (!first && !store.dirty() && pending_errors.empty()) return;
  manifest::LoadResult update;
  update.changed = first || store.dirty();
  if (update.changed) last = store.snapshot();
  update.objects = last;
  update.errors = std::move(pending_errors);
  pending_errors.clear();
  published_once = true;
  ++stats.publishes;
  on_change(update);
}

KubeApiSource::KubeApiSource(asio::any_io_executor executor, KubeConfig config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

KubeApiSource::~KubeApiSource() { stop(); }

Status KubeApiSource::start(Callback on_change) {
  if (impl_->started) return fail("already started");
  impl_->started = true;
  impl_->on_change = std::move(on_change);
  ZT_LOG_INFO("watching component=kube server={} pod_field_selector=\"{}\" label_selector=\"{}\"",
              impl_->config.server.describe(), impl_->config.pod_field_selector,
              impl_->config.label_selector);
  for (size_t i = 0; i < impl_->types.size(); ++i) {
    async::spawn_logged(impl_->executor, Impl::run(impl_, i),
                        "kube watch " + impl_->types[i].type->plural);
  }
  return {};
}

void KubeApiSource::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->on_change = nullptr;
  impl_->publish_timer.cancel();
  for (auto& t : impl_->types) t.sleep->cancel();
  impl_->client.shutdown();
}

std::string KubeApiSource::describe() const {
  return "kube-api " + impl_->config.server.describe();
}

bool KubeApiSource::synced() const { return impl_->synced_types == impl_->types.size(); }

SourceStats KubeApiSource::stats() const { return impl_->stats; }

}  // namespace zt::meshd::kube
