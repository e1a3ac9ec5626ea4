#include "agent/app/app.h"

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <fmt/ranges.h>

#include "agent/reconcile/reconciler.h"
#include "agent/source/source.h"
#include "bpf/loader/capture.h"
#include "common/base/log.h"
#include "common/netns/netns.h"
#include "common/zds/zds.h"
#include "meshd/kube/config.h"

namespace zt::agent {
namespace {

namespace fs = std::filesystem;

constexpr auto kRetryInterval = std::chrono::seconds(1);
constexpr auto kVerifyInterval = std::chrono::seconds(5);

Status write_ready_file(const std::string& path) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return failf("--ready-file: cannot write {}", tmp);
    out << "ready\n";
    if (!out.flush()) return failf("--ready-file: cannot write {}", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return failf("--ready-file: cannot rename {} to {}: {}", tmp, path, ec.message());
  return {};
}

Status check_readable(const std::string& path, std::string_view flag) {
  std::ifstream in(path);
  if (!in) return failf("{}: cannot read {}", flag, path);
  return {};
}

// The object source the flags ask for, and its description for the log.
Result<std::unique_ptr<ObjectSource>> make_source(const Config& c, asio::io_context& io,
                                                  std::string* description) {
  if (!c.manifests_dir.empty()) {
    *description = "manifests " + c.manifests_dir;
    return make_manifest_dir_source(c.manifests_dir);
  }
  meshd::kube::KubeConfig kc;
  if (c.kube_in_cluster) {
    auto in_cluster = meshd::kube::in_cluster_config();
    if (!in_cluster) return tl::unexpected(wrap(in_cluster.error(), "--kube-api"));
    kc = std::move(*in_cluster);
  } else {
    auto url = meshd::kube::parse_server_url(c.kube_server);
    if (!url) return tl::unexpected(wrap(url.error(), "--kube-server"));
    kc.server = *url;
    if (c.kube_token_file) {
      if (auto st = check_readable(*c.kube_token_file, "--kube-token-file"); !st) {
        return tl::unexpected(st.error());
      }
      kc.token_file = *c.kube_token_file;
    }
    if (c.kube_ca_file) {
      if (auto st = check_readable(*c.kube_ca_file, "--kube-ca-file"); !st) {
        return tl::unexpected(st.error());
      }
      kc.ca_file = *c.kube_ca_file;
    }
  }
  // Only what the enrollment rule reads (and the DaemonSet's RBAC allows): namespaces, all of
  // them, and this node's pods.
  kc.kinds = {"Namespace", "Pod"};
  kc.pod_field_selector = "spec.nodeName=" + c.node_name;
  *description = "kube-api " + kc.server.describe();
  return make_kube_api_source(io, std::move(kc));
}

std::string join(const std::vector<asio::ip::address>& ips) {
  std::vector<std::string> text;
  for (const auto& ip : ips) text.push_back(ip.to_string());
  return fmt::format("{}", fmt::join(text, ","));
}

}  // namespace

struct App::Impl {
  Config config;
  asio::io_context io;
  // Registered before any slow start-up work: a SIGTERM that arrives early is queued and
  // handled by on_signal() (installed in create()), never the default action.
  asio::signal_set signals{io, SIGINT, SIGTERM};
  asio::steady_timer retry_timer{io};
  asio::steady_timer verify_timer{io};
  std::unique_ptr<ObjectSource> source;
  std::unique_ptr<bpf::CaptureProgram> capture;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<zds::Server> zds;
  std::string source_description;
  bool stopping = false;

  // SIGTERM/SIGINT, also while create() waits for the API server's first state.
  void on_signal(int sig) {
    ZT_LOG_INFO("node-agent shutting down component=agent signal={} release_all={}", sig,
                config.release_all_on_exit);
    stopping = true;
    retry_timer.cancel();
    verify_timer.cancel();
    if (source) source->stop();
    if (config.release_all_on_exit && reconciler) reconciler->release_all("agent exiting");
    io.stop();
  }

  void schedule_retry() {
    if (stopping || !reconciler->needs_retry()) return;
    retry_timer.expires_after(kRetryInterval);
    retry_timer.async_wait([this](const error_code& ec) {
      if (ec || stopping) return;
      reconciler->retry();
      schedule_retry();
    });
  }

  // Every few seconds: did an enrolled pod get a new netns (sandbox restart)?
  void schedule_verify() {
    if (stopping) return;
    verify_timer.expires_after(kVerifyInterval);
    verify_timer.async_wait([this](const error_code& ec) {
      if (ec || stopping) return;
      reconciler->verify();
      if (reconciler->needs_retry()) {
        reconciler->retry();
        retry_timer.cancel();
        schedule_retry();
      }
      schedule_verify();
    });
  }

  void on_objects(ObjectsPtr objects) {
    reconciler->reconcile(std::move(objects));
    auto s = reconciler->stats();
    ZT_LOG_INFO("reconciled component=agent enrolled={} waiting={} errors={}", s.enrolled,
                s.waiting, s.errors);
    retry_timer.cancel();
    schedule_retry();
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() {
  if (impl_->source) impl_->source->stop();
  if (impl_->zds) impl_->zds->stop();
}

Result<std::unique_ptr<App>> App::create(Config config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  Config& c = impl->config;

  if (c.cgroup_root.empty()) c.cgroup_root = default_cgroup_root();
  std::error_code ec;
  if (!fs::is_directory(c.cgroup_root, ec)) {
    return failf("--cgroup-root {} is not a directory", c.cgroup_root);
  }
  if (c.probe_sources.empty()) {
    // The node's own addresses: kubelet probes come from there.
    auto self = netns::Netns::current();
    if (!self) return tl::unexpected(wrap(self.error(), "reading the node's netns"));
    auto addrs = self->addresses();
    if (!addrs) {
      return tl::unexpected(wrap(addrs.error(), "reading the node's addresses for --probe-source"));
    }
    c.probe_sources = std::move(*addrs);
  }

  auto source = make_source(c, impl->io, &impl->source_description);
  if (!source) return tl::unexpected(source.error());
  impl->source = std::move(*source);
  auto* raw = impl.get();
  impl->signals.async_wait([raw](const error_code& ec, int sig) {
    if (!ec) raw->on_signal(sig);
  });
  // The manifest directory is read here; the API source runs the io_context until every kind
  // is listed (retrying while the server is unreachable; a signal gives up).
  auto initial = impl->source->load();
  if (!initial) return tl::unexpected(initial.error());

  // The pin root lives on bpffs (mounted at /sys/fs/bpf); the folder is ours to create.
  // When that fails (no bpffs there), load() says so.
  fs::create_directories(c.bpf_pin_root, ec);
  auto capture = bpf::CaptureProgram::load(c.bpf_pin_root);
  if (!capture) {
    return tl::unexpected(wrap(capture.error(), fmt::format("--bpf-pin-root {}", c.bpf_pin_root)));
  }
  impl->capture = std::move(*capture);
  if (c.ztunnel_cgroup) {
    UniqueFd fd(::open(c.ztunnel_cgroup->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
      return fail(std::error_code(errno, std::system_category()),
                  fmt::format("--ztunnel-cgroup: cannot open {}", *c.ztunnel_cgroup));
    }
    if (auto st = impl->capture->attach_proxy_cgroup(fd.get()); !st) {
      return tl::unexpected(
          wrap(st.error(), fmt::format("--ztunnel-cgroup {}", *c.ztunnel_cgroup)));
    }
    ZT_LOG_INFO("proxy cgroup attached component=agent cgroup={}", *c.ztunnel_cgroup);
  }

  impl->reconciler = std::make_unique<Reconciler>(
      *impl->capture,
      ReconcilerOptions{
          .node_name = c.node_name,
          .cgroup_root = c.cgroup_root,
          .probe_sources = c.probe_sources,
          .prepare_netns =
              [](const netns::Netns& ns) { return netns::configure_delivery_routing(ns); },
      });
  ZT_LOG_INFO(
      "node-agent starting component=agent node={} source=\"{}\" cgroup_root={} pin_root={} "
      "zds_socket={} probe_sources={}",
      c.node_name, impl->source_description, c.cgroup_root, c.bpf_pin_root, c.zds_socket,
      join(c.probe_sources));

  // The first reconcile happens before ztunnel can connect: it then gets the whole set.
  impl->reconciler->reconcile(*initial);
  auto server = zds::Server::start(c.zds_socket);
  if (!server) {
    return tl::unexpected(wrap(server.error(), fmt::format("--zds-socket {}", c.zds_socket)));
  }
  impl->zds = std::move(*server);
  impl->reconciler->attach_zds(impl->zds.get());
  ZT_LOG_INFO("listening component=zds path={}", c.zds_socket);

  if (auto st = impl->source->watch(impl->io.get_executor(),
                                    [raw](ObjectsPtr objects) { raw->on_objects(objects); });
      !st) {
    impl->zds->stop();
    return tl::unexpected(st.error());
  }
  auto s = impl->reconciler->stats();
  ZT_LOG_INFO("node-agent ready component=agent enrolled={} waiting={} errors={}", s.enrolled,
              s.waiting, s.errors);
  if (c.ready_file) {
    if (auto st = write_ready_file(*c.ready_file); !st) {
      impl->zds->stop();
      return tl::unexpected(st.error());
    }
  }
  impl->schedule_retry();
  impl->schedule_verify();
  return std::unique_ptr<App>(new App(std::move(impl)));
}

int App::run() {
  if (!impl_->stopping) {
    impl_->io.restart();
    impl_->io.run();
  }
  impl_->zds->stop();
  auto s = impl_->reconciler->stats();
  auto z = impl_->zds->stats();
  ZT_LOG_INFO(
      "node-agent stopped component=agent enrolled={} enrolls={} releases={} errors={} "
      "zds_connections={} zds_nacks={}",
      s.enrolled, s.enrolls, s.releases, s.errors, z.connections, z.nacks);
  return 0;
}

}  // namespace zt::agent
