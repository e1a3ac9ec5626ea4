// The agent's ObjectSource over meshd::kube::KubeApiSource (a manifest::ObjectSource): load()
// drives the io_context until the first complete update, watch() forwards the later ones.
#include <utility>

#include "agent/source/source.h"
#include "common/base/log.h"
#include "meshd/kube/kube_source.h"

namespace zt::agent {
namespace {

namespace manifest = meshd::manifest;
namespace kube = meshd::kube;

class KubeApiSourceAdapter final : public ObjectSource {
 public:
  KubeApiSourceAdapter(asio::io_context& io, kube::KubeConfig config)
      : io_(io), source_(io.get_executor(), std::move(config)) {}
  ~KubeApiSourceAdapter() override { stop(); }

  Result<ObjectsPtr> load() override {
    if (stopped_) return fail("stopped before the first state arrived from the API server");
    if (!started_) {
      auto st = source_.start([this](const manifest::LoadResult& u) { on_change(u); });
      if (!st) return tl::unexpected(wrap(st.error(), source_.describe()));
      started_ = true;
    }
    if (!latest_) {
      ZT_LOG_INFO("waiting for the first state component=kube source=\"{}\"", source_.describe());
    }
    // run_one() returns 0 only when `io` was stopped (or has nothing left to do).
    while (!latest_ && !stopped_) {
      if (io_.run_one() == 0) break;
    }
    if (!latest_ || stopped_) {
      return fail("stopped before the first state arrived from the API server");
    }
    loaded_ = true;
    pending_ = false;
    return latest_;
  }

  Status watch(asio::any_io_executor /*executor: updates come on io_'s*/,
               OnUpdate on_update) override {
    on_update_ = std::move(on_update);
    // A change seen after load() returned but before this call (only when someone ran `io` in
    // between) is handed over now, on the caller's (the executor's) thread.
    if (pending_ && on_update_ && !stopped_) {
      pending_ = false;
      on_update_(latest_);
    }
    return {};
  }

  void stop() override {
    stopped_ = true;
    on_update_ = nullptr;
    source_.stop();
  }

 private:
  void on_change(const manifest::LoadResult& u) {
    for (const auto& e : u.errors) {
      ZT_LOG_WARN("manifest rejected component=kube error=\"{}\"", e.message);
    }
    ZT_LOG_DEBUG("objects received component=kube objects={} errors={} changed={}",
                 u.objects->size(), u.errors.size(), u.changed);
    if (stopped_ || (!u.changed && latest_)) return;
    latest_ = u.objects;
    if (!loaded_) return;  // load() returns it
    if (on_update_) {
      on_update_(latest_);
    } else {
      pending_ = true;
    }
  }

  asio::io_context& io_;
  kube::KubeApiSource source_;
  bool started_ = false;
  bool stopped_ = false;
  bool loaded_ = false;
  bool pending_ = false;
  ObjectsPtr latest_;
  OnUpdate on_update_;
};

}  // namespace

std::unique_ptr<ObjectSource> make_kube_api_source(asio::io_context& io,
                                                   meshd::kube::KubeConfig config) {
  return std::make_unique<KubeApiSourceAdapter>(io, std::move(config));
}

}  // namespace zt::agent
