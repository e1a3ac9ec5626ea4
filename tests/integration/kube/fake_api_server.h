// FakeApiServer: a Kubernetes API server for tests, on 127.0.0.1 port 0, following the documented
// list/watch protocol (https://kubernetes.io/docs/reference/using-api/api-concepts/): LIST with
// limit/continue pagination over a snapshot, WATCH from a resourceVersion with chunked JSON
// events (one per line), BOOKMARKs when allowWatchBookmarks is set, ERROR 410 for a
// resourceVersion older than the compacted history, and fieldSelector spec.nodeName for pods.
// Faults on demand: 500s, dropped connections mid-event, ERROR 410 on open watches, expired
// continue tokens, changes that only a relist can see.
//
// Threading: serves on its own thread; every public method is safe from the test's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/async/asio.h"

namespace zt::testing {

// A YAML node as JSON (plain scalars that look like integers, booleans or null become those;
// quoted scalars stay strings), as `kubectl apply` would send it.
nlohmann::json yaml_to_json(const YAML::Node& node);

class FakeApiServer {
 public:
  struct Request {
    std::string target;
    std::string authorization;
  };

  FakeApiServer();
  ~FakeApiServer();

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Creates or replaces the object (ADDED / MODIFIED event). `object` has kind and apiVersion.
  void put(nlohmann::json object);
  // Every document of a YAML text of known kinds.
  void put_yaml(const std::string& yaml_text);
  void remove(const std::string& kind, const std::string& ns, const std::string& name);
  // Changes the object without any watch event and forgets the history (as if the events were
  // compacted away): only a LIST can see it. Watches older than this version get ERROR 410.
  void put_silently(nlohmann::json object);

  // Faults.
  // The next `count` requests whose target starts with `prefix` get `status` (a Status body).
  void fail_next_requests(int count, int status = 500, const std::string& prefix = "");
  void expire_next_continue_token();         // the next LIST with a continue token gets 410 Expired
  void send_error_on_watches(int code);      // ERROR event to every open watch, then end it
  void drop_watches(bool mid_event = true);  // close open watches (half an event line first)
  void set_bookmark_interval(std::chrono::milliseconds interval);
  // While false, LIST and WATCH of `kind` get 404 NotFound and discovery leaves it out, as for a
  // CRD that is not installed (its objects are kept for when it is served again). Watches already
  // open go on (drop_watches() ends them).
  void set_served(const std::string& kind, bool served);
  // While set, every request for `kind` is answered 403 (RBAC that does not grant it).
  void set_forbidden(const std::string& kind, bool forbidden);
  // While set, `kind` is served only under `group_version` ("security.istio.io/v1beta1"), as
  // with CRDs older than the version a client reads: its own path answers 404, and discovery
  // lists it under that version only ("" restores it). LIST and WATCH there are not served.
  void set_served_only_in(const std::string& kind, const std::string& group_version);

  std::vector<Request> requests() const;
  size_t open_watches() const;
  size_t continues_expired() const;
  int64_t resource_version() const;

 private:
  struct Object {
    nlohmann::json json;
    int64_t rv = 0;
  };
  struct Event {
    int64_t rv = 0;
    std::string type;
    nlohmann::json object;
  };
  struct Collection {
    std::string kind, api_version;
    std::map<std::string, Object> objects;  // by ns/name
    std::vector<Event> history;
  };
  struct Watch;

  awaitable<void> accept_loop();
  awaitable<void> serve(tcp::socket socket);
  awaitable<void> serve_list(tcp::socket& socket, const std::string& path,
                             std::map<std::string, std::string> query);
  awaitable<void> serve_watch(tcp::socket& socket, const std::string& path,
                              std::map<std::string, std::string> query);
  Collection* collection_locked(const std::string& path);
  std::string path_of(const std::string& kind) const;
  void record_locked(Collection& c, const std::string& type, const nlohmann::json& object);
  void notify_watches();

  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  uint16_t port_ = 0;
  std::thread thread_;

  mutable std::mutex mu_;
  int64_t rv_ = 1;
  int64_t compacted_rv_ = 0;                       // watches from a version below this get 410
  std::map<std::string, Collection> collections_;  // by API path ("/api/v1/pods")
  std::set<std::string> unserved_;                 // API paths that answer 404
  std::set<std::string> forbidden_kinds_;          // kinds that answer 403
  std::map<std::string, std::string> moved_;       // API path -> the group version it is under
  std::vector<Request> requests_;
  int fail_count_ = 0;
  int fail_status_ = 500;
  std::string fail_prefix_;
  bool expire_next_continue_ = false;
  size_t continues_expired_ = 0;
  std::map<int64_t, std::vector<nlohmann::json>> snapshots_;  // list id -> items
  int64_t next_snapshot_ = 1;
  std::map<int64_t, int64_t> snapshot_rv_;
  std::chrono::milliseconds bookmark_interval_{200};
  std::vector<std::shared_ptr<Watch>> watches_;  // touched on the server thread only
  size_t open_watches_ = 0;
};

}  // namespace zt::testing
