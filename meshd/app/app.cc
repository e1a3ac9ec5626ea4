#include "meshd/app/app.h"

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include "common/async/asio.h"
#include "common/base/log.h"
#include "common/identity/certificate_authority.h"
#include "common/net/address.h"
#include "meshd/ambient/compute.h"
#include "meshd/ca/ca_server.h"
#include "meshd/jwks/resolver.h"
#include "meshd/kube/config.h"
#include "meshd/kube/kube_source.h"
#include "meshd/manifest/object_source.h"
#include "meshd/xds/delta_server.h"

namespace zt::meshd::app {
namespace {

namespace fs = std::filesystem;

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("cannot read {}", path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Status write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return failf("cannot write {}", path);
  out << text;
  if (!out.flush()) return failf("cannot write {}", path);
  return {};
}

// Loads the CA key pair when its files exist, otherwise generates one and saves it there (so
// ztunnels can be given the root). Sets `root_path` to the file holding the root to trust.
Result<identity::CertificateAuthority> load_or_create_ca(const Config& c, std::string* root_path) {
  std::string cert_path, key_path;
  if (c.ca_dir) {
    std::error_code ec;
    fs::create_directories(*c.ca_dir, ec);
    if (ec) return failf("cannot create --ca-dir {}: {}", *c.ca_dir, ec.message());
    cert_path = (fs::path(*c.ca_dir) / "ca-cert.pem").string();
    key_path = (fs::path(*c.ca_dir) / "ca-key.pem").string();
  } else if (c.ca_cert_path) {
    cert_path = *c.ca_cert_path;
    key_path = *c.ca_key_path;
  } else {
    ZT_LOG_WARN(
        "no --ca-dir or --ca-cert/--ca-key: using a CA generated in memory, which no ztunnel "
        "outside this process can be configured to trust");
    root_path->clear();
    return identity::CertificateAuthority::generate(c.trust_domain);
  }
  bool have_cert = fs::exists(cert_path);
  bool have_key = fs::exists(key_path);
  Result<identity::CertificateAuthority> ca = fail("unreachable");
  if (have_cert && have_key) {
    ca = identity::CertificateAuthority::load(cert_path, key_path);
    if (!ca) return tl::unexpected(wrap(ca.error(), "loading the CA"));
    ZT_LOG_INFO("CA loaded component=ca cert={} key={}", cert_path, key_path);
  } else if (!have_cert && !have_key) {
    ca = identity::CertificateAuthority::generate(c.trust_domain);
    if (!ca) return tl::unexpected(wrap(ca.error(), "generating the CA"));
    if (auto parent = fs::path(cert_path).parent_path(); !parent.empty()) {
      std::error_code ec;
      fs::create_directories(parent, ec);
    }
    if (auto parent = fs::path(key_path).parent_path(); !parent.empty()) {
      std::error_code ec;
      fs::create_directories(parent, ec);
    }
    if (auto st = ca->save(cert_path, key_path); !st) {
      return tl::unexpected(wrap(st.error(), "saving the generated CA"));
    }
    ZT_LOG_INFO("CA generated component=ca cert={} key={}", cert_path, key_path);
  } else {
    return failf("CA files incomplete: {} {}, {} {}; give both or neither", cert_path,
                 have_cert ? "exists" : "is missing", key_path, have_key ? "exists" : "is missing");
  }
  if (c.ca_dir) {
    *root_path = (fs::path(*c.ca_dir) / "root-cert.pem").string();
    auto existing = read_file(*root_path);
    if (!existing || *existing != ca->root_pem()) {
      if (auto st = write_file(*root_path, ca->root_pem()); !st) return tl::unexpected(st.error());
    }
  } else {
    *root_path = cert_path;  // the root is the last certificate of that file
  }
  return ca;
}

// A jwksUri fetch's connect and request timeouts (Istio's default jwtRule timeout is 5 s).
constexpr std::chrono::seconds kJwksTimeout{5};

struct Counts {
  size_t workloads = 0;
  size_t services = 0;
  size_t policies = 0;
};

Counts count(const MeshSnapshot& s) {
  Counts c;
  for (const auto& [_, a] : s.addresses) {
    if (a.has_workload()) c.workloads++;
    if (a.has_service()) c.services++;
  }
  c.policies = s.authorizations.size();
  return c;
}

}  // namespace

struct App::Impl {
  Config config;
  asio::io_context io;
  asio::signal_set signals{io, SIGINT, SIGTERM};
  bool stopping = false;
  std::unique_ptr<manifest::ObjectSource> source;
  std::string source_component;  // "manifests" or "kube", in log lines
  ambient::Options ambient_options;
  std::unique_ptr<xds::DeltaAdsServer> ads;
  std::unique_ptr<ca::CaServer> ca;
  std::unique_ptr<grpc::Server> server;
  uint64_t version = 0;
  bool published = false;
  Counts first_counts;
  // The keys of RequestAuthentication jwksUris; a change publishes the last objects again.
  std::unique_ptr<jwks::JwksResolver> jwks;
  std::shared_ptr<const manifest::ObjectSet> last_objects;
  size_t last_errors = 0;

  explicit Impl(Config c)
      : config(std::move(c)),
        ambient_options{.trust_domain = config.trust_domain, .cluster_id = config.cluster_id} {}

  // An update from the source: publishes when anything changed (always the first time).
  void on_update(const manifest::LoadResult& loaded) {
    // The last good snapshot stays published whatever goes wrong here.
    try {
      auto c = publish(loaded);
      if (!published) first_counts = c;
      published = true;
    } catch (const std::exception& e) {
      ZT_LOG_ERROR("reload failed component={} error=\"{}\"", source_component, e.what());
    }
  }

  Counts publish(const manifest::LoadResult& loaded) {
    for (const auto& e : loaded.errors) {
      ZT_LOG_WARN("manifest rejected component={} error=\"{}\"", source_component, e.message);
    }
    if (published && !loaded.changed) {
      ZT_LOG_INFO("manifests reloaded component={} changed=false errors={}", source_component,
                  loaded.errors.size());
      return {};
    }
    last_objects = loaded.objects;
    last_errors = loaded.errors.size();
    jwks->track(ambient::waypoint_jwks_uris(*loaded.objects));
    return publish_last();
  }

  // Computes and publishes the last objects with the keys fetched so far.
  Counts publish_last() {
    ambient_options.jwks_by_uri = jwks->resolved();
    auto snapshot =
        std::make_shared<const MeshSnapshot>(ambient::compute(*last_objects, ambient_options));
    // The CA first: by the time a ztunnel learns of a new pod, its identity can be signed.
    ca->publish(snapshot);
    ads->publish(snapshot);
    ++version;
    auto c = count(*snapshot);
    auto st = ads->stats();
    ZT_LOG_INFO(
        "published component=xds version={} workloads={} services={} policies={} objects={} "
        "errors={} streams={}",
        version, c.workloads, c.services, c.policies, last_objects->size(), last_errors,
        st.streams_active);
    return c;
  }

  // New keys for a jwksUri: the waypoints using it get them.
  void on_jwks_change() {
    if (!last_objects) return;
    try {
      publish_last();
    } catch (const std::exception& e) {
      ZT_LOG_ERROR("publish failed component=jwks error=\"{}\"", e.what());
    }
  }
};

// The object source the flags ask for.
Result<std::unique_ptr<manifest::ObjectSource>> make_source(const Config& c,
                                                            asio::any_io_executor executor) {
  if (!c.manifests_dir.empty()) {
    if (!fs::is_directory(c.manifests_dir)) {
      return failf("--manifests {} is not a directory", c.manifests_dir);
    }
    return std::make_unique<manifest::ManifestDirectorySource>(executor, c.manifests_dir);
  }
  kube::KubeConfig kc;
  if (c.kube_in_cluster) {
    auto in_cluster = kube::in_cluster_config();
    if (!in_cluster) return tl::unexpected(wrap(in_cluster.error(), "--kube-api"));
    kc = std::move(*in_cluster);
  } else {
    auto url = kube::parse_server_url(c.kube_server);
    if (!url) return tl::unexpected(wrap(url.error(), "--kube-server"));
    kc.server = *url;
    if (c.kube_token_file) {
      if (auto token = read_file(*c.kube_token_file); !token) {
        return tl::unexpected(wrap(token.error(), "--kube-token-file"));
      }
      kc.token_file = *c.kube_token_file;
    }
    if (c.kube_ca_file) {
      if (auto ca = read_file(*c.kube_ca_file); !ca) {
        return tl::unexpected(wrap(ca.error(), "--kube-ca-file"));
      }
      kc.ca_file = *c.kube_ca_file;
    }
  }
  return std::make_unique<kube::KubeApiSource>(executor, std::move(kc));
}

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() {
  if (impl_->source) impl_->source->stop();
  if (impl_->jwks) impl_->jwks->shutdown();
  if (impl_->server) {
    impl_->ads->close_all_streams();
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    impl_->server->Wait();
  }
}

Result<std::unique_ptr<App>> App::create(Config config) {
  auto requested = net::parse_endpoint(config.grpc_address);
  if (!requested) {
    return failf("--grpc-address {}: {}", config.grpc_address, requested.error().describe());
  }
  auto impl = std::make_unique<Impl>(std::move(config));
  const Config& c = impl->config;
  auto source = make_source(c, impl->io.get_executor());
  if (!source) return tl::unexpected(source.error());
  impl->source = std::move(*source);
  impl->source_component = c.manifests_dir.empty() ? "kube" : "manifests";

  std::string root_path;
  auto authority = load_or_create_ca(c, &root_path);
  if (!authority) return tl::unexpected(authority.error());
  if (!root_path.empty()) {
    ZT_LOG_INFO("CA root certificate for ztunnels component=ca root={}", root_path);
  }

  std::optional<ca::TokenTable> tokens;
  if (c.tokens_path) {
    auto t = ca::TokenTable::load(*c.tokens_path);
    if (!t) return tl::unexpected(wrap(t.error(), "--tokens"));
    ZT_LOG_INFO("CA tokens loaded component=ca file={} tokens={}", *c.tokens_path, t->size());
    tokens = std::move(*t);
  } else {
    ZT_LOG_WARN(
        "no --tokens: the CA signs any identity in trust domain {} for any caller; "
        "impersonation is not checked",
        c.trust_domain);
  }
  impl->ca = std::make_unique<ca::CaServer>(std::move(*authority),
                                            ca::CaServerOptions{.trust_domain = c.trust_domain},
                                            std::move(tokens));
  impl->ads = std::make_unique<xds::DeltaAdsServer>();
  impl->jwks = std::make_unique<jwks::JwksResolver>(
      impl->io.get_executor(),
      jwks::ResolverOptions{.refresh = c.jwks_refresh,
                            .timeout = kJwksTimeout,
                            .ca_file = c.jwks_ca_file.value_or("")},
      [raw = impl.get()] { raw->on_jwks_change(); });

  // The first state before serving: a ztunnel must never be told that nothing exists. The
  // directory source delivers it from start(); the API source once every kind is listed (it
  // retries while the API server is unreachable; SIGTERM/SIGINT give up).
  auto* raw = impl.get();
  impl->signals.async_wait([raw](const error_code& ec, int sig) {
    if (ec) return;
    ZT_LOG_INFO("meshd shutting down signal={}", sig);
    raw->stopping = true;
    raw->source->stop();
    raw->io.stop();
  });
  if (auto st = impl->source->start([raw](const manifest::LoadResult& u) { raw->on_update(u); });
      !st) {
    return tl::unexpected(wrap(st.error(), impl->source->describe()));
  }
  if (!impl->published) {
    ZT_LOG_INFO("waiting for the first state component={} source=\"{}\"", impl->source_component,
                impl->source->describe());
  }
  while (!impl->published && !impl->stopping) impl->io.run_one();
  if (impl->stopping) return fail("stopped before the first state arrived");
  // Waypoints start with the keys behind their jwksUris: each has one fetch (each change
  // publishes again, before anyone is served), within a bound, so that a dead issuer only delays
  // its own rules.
  if (!impl->jwks->all_attempted()) {
    ZT_LOG_INFO("fetching jwksUri keys before serving component=jwks");
    // (a fetch's lookup, connect, TLS handshake and request each have the timeout)
    const auto deadline =
        std::chrono::steady_clock::now() + 4 * kJwksTimeout + std::chrono::seconds(1);
    while (!impl->jwks->all_attempted() && !impl->stopping &&
           std::chrono::steady_clock::now() < deadline) {
      impl->io.run_one_for(std::chrono::milliseconds(100));
    }
    if (impl->stopping) return fail("stopped before the first state was served");
  }
  auto counts = impl->first_counts;

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (c.tls_cert_path) {
    auto cert = read_file(*c.tls_cert_path);
    if (!cert) return tl::unexpected(wrap(cert.error(), "--tls-cert"));
    auto key = read_file(*c.tls_key_path);
    if (!key) return tl::unexpected(wrap(key.error(), "--tls-key"));
    grpc::SslServerCredentialsOptions opts;
    opts.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(opts);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(c.grpc_address, creds, &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Find dead ztunnels; tolerate clients that ping often (ztunnel keeps its stream alive).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(impl->ads.get());
  builder.RegisterService(impl->ca.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    return failf("cannot serve gRPC on {} (address in use or not local?)", c.grpc_address);
  }
  tcp::endpoint bound(requested->address(), static_cast<uint16_t>(port));
  ZT_LOG_INFO("listening component=grpc address={} tls={} services=ads,ca",
              net::format_endpoint(bound), c.tls_cert_path ? "true" : "false");

  ZT_LOG_INFO("meshd ready: {} workloads, {} services, {} policies", counts.workloads,
              counts.services, counts.policies);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

int App::run() {
  if (!impl_->stopping) {
    impl_->io.restart();
    impl_->io.run();
  }
  impl_->ads->close_all_streams();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
  auto st = impl_->ads->stats();
  auto cs = impl_->ca->stats();
  ZT_LOG_INFO(
      "meshd stopped pushes={} bytes_sent={} nacks={} certificates_issued={} "
      "certificates_refused={}",
      st.pushes, st.bytes_sent, st.nacks, cs.issued, cs.unauthenticated + cs.denied + cs.invalid);
  impl_->server.reset();
  return 0;
}

}  // namespace zt::meshd::app
