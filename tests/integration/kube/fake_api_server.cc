#include "tests/integration/kube/fake_api_server.h"

#include <algorithm>
#include <cctype>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace zt::testing {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using nlohmann::json;

struct KindInfo {
  const char* kind;
  const char* api_version;
  const char* path;
};
constexpr KindInfo kKinds[] = {
    {"Namespace", "v1", "/api/v1/namespaces"},
    {"Pod", "v1", "/api/v1/pods"},
    {"Service", "v1", "/api/v1/services"},
    {"ServiceAccount", "v1", "/api/v1/serviceaccounts"},
    {"AuthorizationPolicy", "security.istio.io/v1",
     "/apis/security.istio.io/v1/authorizationpolicies"},
    {"PeerAuthentication", "security.istio.io/v1",
     "/apis/security.istio.io/v1/peerauthentications"},
    {"RequestAuthentication", "security.istio.io/v1",
     "/apis/security.istio.io/v1/requestauthentications"},
    {"Gateway", "gateway.networking.k8s.io/v1", "/apis/gateway.networking.k8s.io/v1/gateways"},
    {"HTTPRoute", "gateway.networking.k8s.io/v1", "/apis/gateway.networking.k8s.io/v1/httproutes"},
    {"GRPCRoute", "gateway.networking.k8s.io/v1", "/apis/gateway.networking.k8s.io/v1/grpcroutes"},
    {"DestinationRule", "networking.istio.io/v1", "/apis/networking.istio.io/v1/destinationrules"},
    {"VirtualService", "networking.istio.io/v1", "/apis/networking.istio.io/v1/virtualservices"},
    // (only Istio's MeshConfig's namespace: meshd reads no other ConfigMaps)
    {"ConfigMap", "v1", "/api/v1/namespaces/istio-system/configmaps"},
};

bool is_int(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  return std::all_of(s.begin() + i, s.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string key_of(const json& object) {
  const auto& md = object.at("metadata");
  std::string name = md.value("name", "");
  if (object.value("kind", "") == "Namespace") return name;
  std::string ns = md.value("namespace", "");
  return (ns.empty() ? "default" : ns) + "/" + name;
}

std::string status_json(int code, const std::string& reason, const std::string& message) {
  return json{{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
              {"status", "Failure"}, {"message", message}, {"reason", reason},
              {"code", code}}
      .dump();
}

// Watch lines, built outside the coroutines (g++ 12 miscompiles braced JSON literals in them).
std::string event_line(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}
std::string error_line(int code, const std::string& message) {
  auto status = status_json(code, code == 410 ? "Expired" : "InternalError", message);
  return event_line("ERROR", json::parse(status));
}
std::string bookmark_line(const std::string& kind, const std::string& api_version, int64_t rv) {
  json object = {{"kind", kind},
                 {"apiVersion", api_version},
                 {"metadata", {{"resourceVersion", std::to_string(rv)}}}};
  return event_line("BOOKMARK", object);
}

// A ConfigMap request without the selector RBAC's resourceNames needs is refused, as a real API
// server refuses it under meshd's ClusterRole; one for a namespace gets only that namespace's.
bool forbidden(const std::string& kind, std::map<std::string, std::string>& query) {
  return kind == "ConfigMap" && query["fieldSelector"] != "metadata.name=istio";
}
bool in_path_namespace(const json& object, const std::string& path) {
  auto at = path.find("/namespaces/");
  if (at == std::string::npos) return true;
  auto ns = path.substr(at + 12, path.find('/', at + 12) - at - 12);
  auto md = object.find("metadata");
  return md != object.end() && md->is_object() && md->value("namespace", "") == ns;
}

bool matches(const json& object, const std::string& field_selector) {
  if (field_selector.empty()) return true;
  auto eq = field_selector.find('=');
  if (field_selector.substr(0, eq) == "metadata.name") {
    auto md = object.find("metadata");
    return md != object.end() && md->is_object() &&
           md->value("name", "") == field_selector.substr(eq + 1);
  }
  if (field_selector.substr(0, eq) != "spec.nodeName") return true;
  auto want = field_selector.substr(eq + 1);
  auto spec = object.find("spec");
  if (spec == object.end() || !spec->is_object()) return want.empty();
  return spec->value("nodeName", "") == want;
}

awaitable<bool> write_all(tcp::socket& socket, std::string data) {
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(data), kTuple);
  co_return !ec;
}

// g++ 12 cannot pass a string literal straight into a coroutine's std::string parameter.
const std::string kLastChunk = "0\r\n\r\n";
const std::string kWatchHeader =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kHalfEvent = R"({"type":"MODIFIED","object":{"kind":")";

awaitable<bool> write_chunk(tcp::socket& socket, const std::string& data) {
  if (data.empty()) co_return true;
  co_return co_await write_all(socket, fmt::format("{:x}\r\n{}\r\n", data.size(), data));
}

awaitable<void> respond(tcp::socket& socket, int status, std::string body) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), 11};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::connection, "close");
  res.body() = std::move(body);
  res.prepare_payload();
  co_await bhttp::async_write(socket, res, kTuple);
  error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) out[kv.first.Scalar()] = yaml_to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const auto& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted
      if (s == "true") return true;
      if (s == "false") return false;
      if (s == "null" || s == "~") return nullptr;
      if (is_int(s)) return std::stoll(s);
      return s;
    }
    default:
      return nullptr;
  }
}

struct FakeApiServer::Watch {
  explicit Watch(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  int error = 0;
  bool drop = false;
  bool mid_event = false;
};

FakeApiServer::FakeApiServer() {
  for (const auto& k : kKinds) {
    auto& c = collections_[k.path];
    c.kind = k.kind;
    c.api_version = k.api_version;
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

FakeApiServer::~FakeApiServer() {
  io_.stop();
  thread_.join();
}

std::string FakeApiServer::path_of(const std::string& kind) const {
  for (const auto& k : kKinds) {
    if (kind == k.kind) return k.path;
  }
  throw std::runtime_error("FakeApiServer: unknown kind " + kind);
}

void FakeApiServer::set_served(const std::string& kind, bool served) {
  std::lock_guard lock(mu_);
  if (served) {
    unserved_.erase(path_of(kind));
  } else {
    unserved_.insert(path_of(kind));
  }
}

void FakeApiServer::set_forbidden(const std::string& kind, bool forbidden) {
  std::lock_guard lock(mu_);
  if (forbidden) {
    forbidden_kinds_.insert(kind);
  } else {
    forbidden_kinds_.erase(kind);
  }
}

void FakeApiServer::set_served_only_in(const std::string& kind, const std::string& group_version) {
  std::lock_guard lock(mu_);
  if (group_version.empty()) {
    moved_.erase(path_of(kind));
  } else {
    moved_[path_of(kind)] = group_version;
  }
}

FakeApiServer::Collection* FakeApiServer::collection_locked(const std::string& path) {
  if (unserved_.count(path) || moved_.count(path)) return nullptr;
  auto it = collections_.find(path);
  return it == collections_.end() ? nullptr : &it->second;
}

void FakeApiServer::record_locked(Collection& c, const std::string& type, const json& object) {
  c.history.push_back(Event{rv_, type, object});
}

void FakeApiServer::notify_watches() {
  asio::post(io_, [this] {
    for (auto& w : watches_) w->timer.cancel();
  });
}

void FakeApiServer::put(json object) {
  {
    std::lock_guard lock(mu_);
    auto& c = collections_.at(path_of(object.at("kind")));
    auto key = key_of(object);
    ++rv_;
    object["metadata"]["resourceVersion"] = std::to_string(rv_);
    bool exists = c.objects.count(key) > 0;
    c.objects[key] = Object{object, rv_};
    record_locked(c, exists ? "MODIFIED" : "ADDED", object);
  }
  notify_watches();
}

void FakeApiServer::put_yaml(const std::string& yaml_text) {
  for (const auto& doc : YAML::LoadAll(yaml_text)) {
    if (!doc.IsMap()) continue;
    put(yaml_to_json(doc));
  }
}

void FakeApiServer::remove(const std::string& kind, const std::string& ns,
                           const std::string& name) {
  {
    std::lock_guard lock(mu_);
    auto& c = collections_.at(path_of(kind));
    auto key = kind == "Namespace" ? name : ns + "/" + name;
    auto it = c.objects.find(key);
    if (it == c.objects.end()) return;
    ++rv_;
    auto object = it->second.json;
    object["metadata"]["resourceVersion"] = std::to_string(rv_);
    c.objects.erase(it);
    record_locked(c, "DELETED", object);
  }
  notify_watches();
}

void FakeApiServer::put_silently(json object) {
  std::lock_guard lock(mu_);
  auto& c = collections_.at(path_of(object.at("kind")));
  ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  c.objects[key_of(object)] = Object{object, rv_};
  for (auto& [_, col] : collections_) col.history.clear();
  compacted_rv_ = rv_;
}

void FakeApiServer::fail_next_requests(int count, int status, const std::string& prefix) {
  std::lock_guard lock(mu_);
  fail_count_ = count;
  fail_status_ = status;
  fail_prefix_ = prefix;
}

void FakeApiServer::expire_next_continue_token() {
  std::lock_guard lock(mu_);
  expire_next_continue_ = true;
}

size_t FakeApiServer::continues_expired() const {
  std::lock_guard lock(mu_);
  return continues_expired_;
}

void FakeApiServer::send_error_on_watches(int code) {
  asio::post(io_, [this, code] {
    for (auto& w : watches_) {
      w->error = code;
      w->timer.cancel();
    }
  });
}

void FakeApiServer::drop_watches(bool mid_event) {
  asio::post(io_, [this, mid_event] {
    for (auto& w : watches_) {
      w->drop = true;
      w->mid_event = mid_event;
      w->timer.cancel();
    }
  });
}

void FakeApiServer::set_bookmark_interval(std::chrono::milliseconds interval) {
  std::lock_guard lock(mu_);
  bookmark_interval_ = interval;
}

std::vector<FakeApiServer::Request> FakeApiServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t FakeApiServer::open_watches() const {
  std::lock_guard lock(mu_);
  return open_watches_;
}

int64_t FakeApiServer::resource_version() const {
  std::lock_guard lock(mu_);
  return rv_;
}

awaitable<void> FakeApiServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) co_return;
    asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
  }
}

awaitable<void> FakeApiServer::serve(tcp::socket socket) {
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> req;
  auto [ec, n] = co_await bhttp::async_read(socket, buffer, req, kTuple);
  if (ec) co_return;
  std::string target(req.target());
  int fail_status = 0;
  {
    std::lock_guard lock(mu_);
    requests_.push_back(Request{target, std::string(req[bhttp::field::authorization])});
    if (fail_count_ > 0 && target.starts_with(fail_prefix_)) {
      --fail_count_;
      fail_status = fail_status_;
    }
  }
  if (fail_status) {
    auto body = status_json(fail_status, "InternalError", "injected");
    co_await respond(socket, fail_status, std::move(body));
    co_return;
  }
  auto q = target.find('?');
  std::string path = target.substr(0, q);
  std::map<std::string, std::string> query;
  if (q != std::string::npos) {
    std::string_view rest = std::string_view(target).substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      auto part = rest.substr(0, amp);
      auto eq = part.find('=');
      query[url_decode(part.substr(0, eq))] =
          eq == std::string_view::npos ? "" : url_decode(part.substr(eq + 1));
      rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    }
  }
  if (query["watch"] == "1" || query["watch"] == "true") {
    co_await serve_watch(socket, path, std::move(query));
  } else {
    co_await serve_list(socket, path, std::move(query));
  }
}

awaitable<void> FakeApiServer::serve_list(tcp::socket& socket, const std::string& path,
                                          std::map<std::string, std::string> query) {
  int status = 200;
  std::string body;
  {
    std::lock_guard lock(mu_);
    auto* c = collection_locked(path);
    if (!c && path.starts_with("/apis/")) {
      // Discovery: /apis/<group>/<version> (APIResourceList) and /apis/<group> (APIGroup), of
      // what is served.
      json names = json::array();
      std::set<std::string> versions;
      for (const auto& [p, coll] : collections_) {
        if (unserved_.count(p)) continue;
        // Where discovery has it: its own path, or the version set_served_only_in() moved it to.
        auto plural = p.substr(p.rfind('/') + 1);
        auto moved = moved_.find(p);
        auto at = moved == moved_.end() ? p : "/apis/" + moved->second + "/" + plural;
        if (!at.starts_with(path + "/")) continue;
        names.push_back(json{{"name", plural}, {"kind", coll.kind}});
        versions.insert(at.substr(6, at.rfind('/') - 6));
      }
      const bool version = std::count(path.begin(), path.end(), '/') == 3;
      if (!names.empty() && version) {
        body =
            json{
                {"kind", "APIResourceList"}, {"groupVersion", path.substr(6)}, {"resources", names}}
                .dump();
      } else if (!names.empty()) {
        json list = json::array();
        for (const auto& gv : versions) list.push_back(json{{"groupVersion", gv}});
        body = json{{"kind", "APIGroup"}, {"name", path.substr(6)}, {"versions", list}}.dump();
      }
    }
    if (!c && body.empty()) {
      status = 404;
      body = status_json(404, "NotFound", "the server could not find the requested resource");
    } else if (!c) {
      // (the discovery document above)
    } else if (forbidden(c->kind, query) || forbidden_kinds_.count(c->kind)) {
      status = 403;
      body = status_json(403, "Forbidden", "configmaps is forbidden");
    } else {
      size_t limit = query["limit"].empty() ? 0 : std::stoul(query["limit"]);
      int64_t id = 0;
      size_t offset = 0;
      const auto& token = query["continue"];
      if (!token.empty()) {
        std::sscanf(token.c_str(), "%ld:%zu", &id, &offset);
        if (expire_next_continue_ || !snapshots_.count(id)) {
          expire_next_continue_ = false;
          ++continues_expired_;
          status = 410;
          body = status_json(410, "Expired",
                             "The provided continue parameter is too old to display a consistent "
                             "list result.");
        }
      } else {
        id = next_snapshot_++;
        auto& items = snapshots_[id];
        for (const auto& [key, object] : c->objects) {
          if (!matches(object.json, query["fieldSelector"]) ||
              !in_path_namespace(object.json, path)) {
            continue;
          }
          auto item = object.json;
          item.erase("kind");
          item.erase("apiVersion");
          items.push_back(std::move(item));
        }
        snapshot_rv_[id] = rv_;
      }
      if (status == 200) {
        const auto& items = snapshots_[id];
        size_t end = limit == 0 ? items.size() : std::min(items.size(), offset + limit);
        json page = json::array();
        for (size_t i = offset; i < end; ++i) page.push_back(items[i]);
        json md = {{"resourceVersion", std::to_string(snapshot_rv_[id])}};
        if (end < items.size()) md["continue"] = fmt::format("{}:{}", id, end);
        body = json{
            {"kind", c->kind + "List"},
            {"apiVersion", c->api_version},
            {"metadata", md},
            {"items",
             page}}.dump();
      }
    }
  }
  co_await respond(socket, status, std::move(body));
}

awaitable<void> FakeApiServer::serve_watch(tcp::socket& socket, const std::string& path,
                                           std::map<std::string, std::string> query) {
  std::string kind, api_version;
  int64_t from = 0;
  bool gone = false;
  bool refused = false;
  {
    std::lock_guard lock(mu_);
    auto* c = collection_locked(path);
    if (c) {
      kind = c->kind;
      api_version = c->api_version;
      refused = forbidden_kinds_.count(kind) > 0;
    }
    from = query["resourceVersion"].empty() ? rv_ : std::stoll(query["resourceVersion"]);
    gone = from < compacted_rv_;
  }
  if (kind.empty()) {
    auto body = status_json(404, "NotFound", "no such resource");
    co_await respond(socket, 404, std::move(body));
    co_return;
  }
  if (refused || forbidden(kind, query)) {
    auto body = status_json(403, "Forbidden", "configmaps is forbidden");
    co_await respond(socket, 403, std::move(body));
    co_return;
  }
  if (!co_await write_all(socket, kWatchHeader)) {
    co_return;
  }
  if (gone) {
    auto event =
        error_line(410, fmt::format("too old resource version: {} ({})", from, compacted_rv_));
    co_await write_chunk(socket, event);
    co_await write_all(socket, kLastChunk);
    co_return;
  }
  const bool bookmarks = query["allowWatchBookmarks"] == "true";
  const auto field_selector = query["fieldSelector"];
  auto timeout = std::chrono::seconds(
      query["timeoutSeconds"].empty() ? 1800 : std::stoll(query["timeoutSeconds"]));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto watch = std::make_shared<Watch>(co_await asio::this_coro::executor);
  watches_.push_back(watch);
  {
    std::lock_guard lock(mu_);
    ++open_watches_;
  }
  int64_t sent = from;
  auto next_bookmark = std::chrono::steady_clock::now();
  for (;;) {
    if (watch->drop) {
      if (watch->mid_event) {
        co_await write_chunk(socket, kHalfEvent);
      }
      error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      break;
    }
    if (watch->error) {
      auto line = error_line(watch->error,
                             watch->error == 410 ? "too old resource version" : "injected error");
      co_await write_chunk(socket, line);
      co_await write_all(socket, kLastChunk);
      break;
    }
    std::string lines;
    std::chrono::milliseconds interval;
    int64_t bookmark_rv = 0;
    {
      std::lock_guard lock(mu_);
      auto& c = collections_.at(path);
      for (const auto& ev : c.history) {
        if (ev.rv <= sent) continue;
        sent = ev.rv;
        if (!matches(ev.object, field_selector) || !in_path_namespace(ev.object, path)) continue;
        lines += event_line(ev.type, ev.object);
      }
      interval = bookmark_interval_;
      bookmark_rv = rv_;
    }
    auto now = std::chrono::steady_clock::now();
    if (bookmarks && now >= next_bookmark) {
      sent = std::max(sent, bookmark_rv);
      lines += bookmark_line(kind, api_version, sent);
      next_bookmark = now + interval;
    }
    if (!co_await write_chunk(socket, lines)) break;
    if (now >= deadline) {
      co_await write_all(socket, kLastChunk);
      break;
    }
    watch->timer.expires_at(bookmarks ? std::min(deadline, next_bookmark) : deadline);
    co_await watch->timer.async_wait(kTuple);
  }
  watches_.erase(std::find(watches_.begin(), watches_.end(), watch));
  std::lock_guard lock(mu_);
  --open_watches_;
}

}  // namespace zt::testing
