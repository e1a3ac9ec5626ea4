#include "bench/mesh/proxies/haproxy.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include "bench/mesh/proxies/pod_probe.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/csr.h"
#include "common/tls/certs.h"
#include "sim/cluster.h"
#include "sim/host.h"

namespace zt::bench::mesh {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kTrustDomain = "cluster.local";
constexpr auto kCertValidity = std::chrono::hours(24 * 7);

// Debian's haproxy: /usr/sbin is not in every PATH (sudo, cron), so look there first.
Result<std::string> find_haproxy() {
  for (const char* p : {"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"}) {
    if (::access(p, X_OK) == 0) return std::string(p);
  }
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest(path);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      auto dir = rest.substr(0, colon);
      auto candidate = fs::path(std::string(dir)) / "haproxy";
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return fail(
      "haproxy not found (neither /usr/sbin/haproxy nor in PATH): install Debian's haproxy "
      "package (apt-get install haproxy) to run the haproxy scenario");
}

Status write_file(const fs::path& path, const std::string& text, bool secret = false) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (secret) {
      std::error_code ec;
      fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write, ec);
    }
    out << text;
    out.flush();
    if (!out) return failf("cannot write {}", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return failf("cannot write {}: {}", path.string(), ec.message());
  return {};
}

std::string file_stem(const std::string& pod) {
  std::string out = pod;
  for (auto& c : out) {
    if (c == '/') c = '-';
  }
  return out;
}

// A P-256 key and a leaf with the pod's SPIFFE identity signed by the CA, in one PEM file as
// haproxy's `crt` wants it: leaf, the CA chain, then the key.
Status write_identity(const identity::CertificateAuthority& ca, const sim::PodPlan& pod,
                      const fs::path& file) {
  auto key = identity::generate_p256_key();
  if (!key) return tl::unexpected(wrap(key.error(), "generating a P-256 key"));
  tls::SpiffeId id{kTrustDomain, pod.namespace_,
                   pod.service_account.empty() ? "default" : pod.service_account};
  auto now = std::chrono::system_clock::now();
  auto chain = ca.issue(key->get(), id, now - identity::CertificateAuthority::kClockSkewAllowance,
                        now + kCertValidity);
  if (!chain) return tl::unexpected(wrap(chain.error(), "issuing a certificate for " + id.uri()));
  std::string pem;
  for (const auto& c : *chain) pem += c;
  auto key_pem = tls::key_to_pem(key->get());
  if (key_pem.empty()) return fail("encoding a private key");
  pem += key_pem;
  return write_file(file, pem, /*secret=*/true);
}

struct SideFiles {
  fs::path config, identity;
};

// Shared head of both configurations: no logging at all (nothing on stdout per connection),
// TLS 1.3 only on both bind and server lines, generous timeouts (a long benchmark connection
// must not be cut), a connect timeout that makes a dead peer visible.
std::string config_head(int threads) {
  // haproxy needs about two descriptors per connection and refuses to start when it cannot raise
  // its limit that far; 4096 concurrent connections is far above what the bench opens.
  rlimit limit{};
  long maxconn = 4096;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_max != RLIM_INFINITY) {
    maxconn = std::clamp<long>((static_cast<long>(limit.rlim_max) - 200) / 2, 64, 4096);
  }
  return fmt::format(
      "# written by mesh_bench (bench/mesh/proxies/haproxy.cc)\n"
      "global\n"
      "  nbthread {}\n"
      "  maxconn {}\n"
      "  ssl-default-bind-options ssl-min-ver TLSv1.3\n"
      "  ssl-default-server-options ssl-min-ver TLSv1.3\n"
      "\n"
      "defaults\n"
      "  mode tcp\n"
      "  timeout connect 5s\n"
      "  timeout client 1h\n"
      "  timeout server 1h\n"
      "  timeout client-fin 5s\n"
      "  timeout server-fin 5s\n"
      "\n",
      threads, maxconn);
}

// Client pod: plaintext on loopback, TLS 1.3 with the client certificate to the server pod.
std::string client_config(const HaproxyOptions& o, const SideFiles& f, const fs::path& ca) {
  auto server = [&](uint16_t port) {
    return fmt::format(
        "  server peer {}:{} ssl crt {} ca-file {} verify required ssl-min-ver TLSv1.3\n",
        o.server_ip, port, f.identity.string(), ca.string());
  };
  return config_head(o.threads) +
         fmt::format("frontend app\n  bind 127.0.0.1:{}\n  default_backend app\n\n",
                     kHaproxyAppPort) +
         "backend app\n" + server(kHaproxyTlsAppPort) + "\n" +
         fmt::format("frontend bulk\n  bind 127.0.0.1:{}\n  default_backend bulk\n\n",
                     kHaproxyBulkPort) +
         "backend bulk\n" + server(kHaproxyTlsBulkPort);
}

// Server pod: TLS 1.3 on the pod IP, client certificate required, plaintext to the local app.
std::string server_config(const HaproxyOptions& o, const SideFiles& f, const fs::path& ca) {
  auto frontend = [&](const char* name, uint16_t port) {
    return fmt::format(
        "frontend {0}\n"
        "  bind {1}:{2} ssl crt {3} ca-file {4} verify required ssl-min-ver TLSv1.3\n"
        "  default_backend {0}\n\n",
        name, o.server_ip, port, f.identity.string(), ca.string());
  };
  return config_head(o.threads) + frontend("app", kHaproxyTlsAppPort) +
         fmt::format("backend app\n  server app 127.0.0.1:{}\n\n", o.app_port) +
         frontend("bulk", kHaproxyTlsBulkPort) +
         fmt::format("backend bulk\n  server bulk 127.0.0.1:{}\n", o.bulk_port);
}

// `haproxy -c`: a configuration error with haproxy's own message before anything starts.
Status check_config(const std::string& haproxy, const fs::path& config) {
  sim::SpawnSpec spec;
  spec.argv = {haproxy, "-c", "-f", config.string()};
  auto r = sim::run_captured(spec, 20s);
  if (!r) return tl::unexpected(wrap(r.error(), "running haproxy -c"));
  if (r->exit_code != 0) {
    return failf("haproxy rejects {} (exit {}):\n{}{}", config.string(), r->exit_code, r->out,
                 r->err);
  }
  return {};
}

Status wait_listening(sim::Cluster& cluster, const std::string& pod, const std::string& process,
                      pid_t pid, const std::string& ip, std::vector<uint16_t> ports) {
  auto ns = cluster.pod_netns(pod);
  if (!ns) return tl::unexpected(wrap(ns.error(), "the netns of " + pod));
  auto timeout = cluster.options().ready_timeout;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto port : ports) {
    while (!pod_tcp_connects(*ns, ip, port, 500ms)) {
      if (!sim::process_alive(pid)) {
        return failf("{} exited during start-up{}", process,
                     process_log_tail(cluster.log_path(process)));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return failf("{}: listener {}:{} in pod {} never opened{}", process, ip, port, pod,
                     process_log_tail(cluster.log_path(process)));
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  return {};
}

}  // namespace

Result<std::vector<StartedProxy>> start_haproxy_pair(sim::Cluster& cluster,
                                                     const HaproxyOptions& options) {
  auto haproxy = find_haproxy();
  if (!haproxy) return tl::unexpected(haproxy.error());
  const auto* client = cluster.plan().find_pod(options.client_pod);
  if (!client) return failf("haproxy: no pod {} in the simulated cluster", options.client_pod);
  const auto* server = cluster.plan().find_pod(options.server_pod);
  if (!server) return failf("haproxy: no pod {} in the simulated cluster", options.server_pod);
  if (options.server_ip.empty()) return fail("haproxy: no server IP given");
  if (options.threads < 1) return failf("haproxy: {} threads", options.threads);
  if (options.work_dir.empty()) return fail("haproxy: no work directory given");

  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) {
    return failf("haproxy: cannot create {}: {}", options.work_dir.string(), ec.message());
  }
  auto ca = identity::CertificateAuthority::load((options.ca_dir / "ca-cert.pem").string(),
                                                 (options.ca_dir / "ca-key.pem").string());
  if (!ca)
    return tl::unexpected(
        wrap(ca.error(), "haproxy: loading the CA of " + options.ca_dir.string()));
  auto ca_file = options.work_dir / "ca.pem";
  if (auto ok = write_file(ca_file, ca->root_pem()); !ok) return tl::unexpected(ok.error());

  SideFiles cf{options.work_dir / ("haproxy-" + file_stem(options.client_pod) + ".cfg"),
               options.work_dir / (file_stem(options.client_pod) + ".pem")};
  SideFiles sf{options.work_dir / ("haproxy-" + file_stem(options.server_pod) + ".cfg"),
               options.work_dir / (file_stem(options.server_pod) + ".pem")};
  if (auto ok = write_identity(*ca, *client, cf.identity); !ok) {
    return tl::unexpected(wrap(ok.error(), "haproxy: the certificate of " + options.client_pod));
  }
  if (auto ok = write_identity(*ca, *server, sf.identity); !ok) {
    return tl::unexpected(wrap(ok.error(), "haproxy: the certificate of " + options.server_pod));
  }
  if (auto ok = write_file(cf.config, client_config(options, cf, ca_file)); !ok) {
    return tl::unexpected(ok.error());
  }
  if (auto ok = write_file(sf.config, server_config(options, sf, ca_file)); !ok) {
    return tl::unexpected(ok.error());
  }
  for (const auto* f : {&sf.config, &cf.config}) {
    if (auto ok = check_config(*haproxy, *f); !ok) return tl::unexpected(ok.error());
  }

  // On a failure the processes started so far are killed (their logs stay), so a caller that
  // goes on with other scenarios has no half-configured pair running.
  std::vector<StartedProxy> started;
  auto give_up = [&](Error e) -> Result<std::vector<StartedProxy>> {
    for (const auto& p : started) (void)cluster.stop_named(p.process, SIGKILL);
    return tl::unexpected(std::move(e));
  };
  // Server first, so the client's first connection finds its peer.
  struct Side {
    const std::string& pod;
    const fs::path& config;
    std::string ip;
    std::vector<uint16_t> ports;
  };
  for (const auto& side :
       {Side{options.server_pod,
             sf.config,
             options.server_ip,
             {kHaproxyTlsAppPort, kHaproxyTlsBulkPort}},
        Side{options.client_pod, cf.config, "127.0.0.1", {kHaproxyAppPort, kHaproxyBulkPort}}}) {
    auto name = pod_process_base(side.pod) + ".haproxy";
    auto pid = cluster.start_in_pod(side.pod, name, {*haproxy, "-db", "-f", side.config.string()},
                                    {}, sim::Cluster::PodCgroup::kSidecar);
    if (!pid) return give_up(wrap(pid.error(), "haproxy: starting " + name));
    started.push_back(StartedProxy{name, *pid, "haproxy", side.pod});
    if (auto ok = wait_listening(cluster, side.pod, name, *pid, side.ip, side.ports); !ok) {
      return give_up(wrap(ok.error(), "haproxy"));
    }
  }

  // One request end to end: client app -> client haproxy -> TLS -> server haproxy -> echo.
  auto url = fmt::format("http://127.0.0.1:{}/", kHaproxyAppPort);
  auto r = cluster.exec_in_pod(options.client_pod, {"curl", "-sS", "-m", "5", url}, 15s);
  if (!r) return give_up(wrap(r.error(), "haproxy: curl " + url + " in " + options.client_pod));
  if (r->exit_code != 0 || r->out.rfind("peer=", 0) != 0) {
    return give_up(
        Error{.message = fmt::format(
                  "haproxy: {} from pod {} did not reach the server's app (curl exit {}): {}{}{}{}",
                  url, options.client_pod, r->exit_code, r->out.substr(0, 200), r->err,
                  process_log_tail(cluster.log_path(started[1].process)),
                  process_log_tail(cluster.log_path(started[0].process)))});
  }
  return started;
}

}  // namespace zt::bench::mesh
