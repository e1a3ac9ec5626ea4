#include "meshd/kube/config.h"

#include <charconv>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

namespace zt::meshd::kube {

std::string ServerUrl::describe() const {
  bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}{}", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
                     port, base_path);
}

Result<ServerUrl> parse_server_url(const std::string& url) {
  ServerUrl out;
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    out.tls = true;
    out.port = 443;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    out.tls = false;
    out.port = 80;
    rest.remove_prefix(7);
  } else {
    return failf("server URL \"{}\" must start with https:// or http://", url);
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    if (path.find_first_of("?#") != std::string_view::npos) {
      return failf("server URL \"{}\" must not have a query or fragment", url);
    }
    out.base_path = std::string(path);
  }
  std::string_view port_text;
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return failf("server URL \"{}\": unclosed [", url);
    out.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return failf("server URL \"{}\": junk after ]", url);
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) return failf("server URL \"{}\" has no host", url);
  if (authority.find('@') != std::string_view::npos) {
    return failf("server URL \"{}\" must not carry credentials", url);
  }
  if (!port_text.empty() || authority.ends_with(":")) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || p != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return failf("server URL \"{}\": bad port \"{}\"", url, port_text);
    }
    out.port = static_cast<uint16_t>(port);
  }
  return out;
}

Result<KubeConfig> in_cluster_config(
    const std::function<std::optional<std::string>(const char*)>& getenv,
    const std::string& sa_dir) {
  auto env = [&](const char* name) -> std::optional<std::string> {
    if (getenv) return getenv(name);
    const char* v = std::getenv(name);
    if (!v) return std::nullopt;
    return std::string(v);
  };
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return fail(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
        "must be set");
  }
  bool v6 = host->find(':') != std::string::npos;
  auto url = parse_server_url(
      fmt::format("https://{}{}{}:{}", v6 ? "[" : "", *host, v6 ? "]" : "", *port));
  if (!url) return tl::unexpected(wrap(url.error(), "in-cluster API address"));
  KubeConfig c;
  c.server = *url;
  c.token_file = (std::filesystem::path(sa_dir) / "token").string();
  c.ca_file = (std::filesystem::path(sa_dir) / "ca.crt").string();
  std::error_code ec;
  if (!std::filesystem::exists(c.token_file, ec)) {
    return failf("in-cluster service account token {} is missing", c.token_file);
  }
  if (!std::filesystem::exists(c.ca_file, ec)) {
    return failf("in-cluster CA {} is missing", c.ca_file);
  }
  return c;
}

}  // namespace zt::meshd::kube
