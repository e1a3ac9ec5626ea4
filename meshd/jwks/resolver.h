// JwksResolver: the keys behind the jwksUri of RequestAuthentications, fetched by meshd as istiod
// fetches them, so that waypoints get the keys inline (`jwks`) and never reach out themselves.
//
// track() is given the URIs the current objects use; a new one is fetched at once, then again
// every `refresh` (Istio's default: 20 minutes), or `retry` after a failure. A failed fetch keeps
// the keys fetched before (a URI never fetched has none: its rule then fails every token, as
// Istio's does). A body is accepted only when the waypoint could use it (a JWKS with a usable
// key) and at most 1 MiB; redirects are not followed. on_change() runs, on the executor, when a
// URI's keys change.
//
// Threading: everything on one executor (meshd's).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/async/asio.h"

namespace zt::meshd::jwks {

struct ResolverOptions {
  std::chrono::milliseconds refresh{std::chrono::minutes(20)};
  std::chrono::milliseconds retry{std::chrono::seconds(30)};
  std::chrono::seconds timeout{5};  // connect, and the whole request
  std::string ca_file;              // PEM roots for https; "" = the system's
};

class JwksResolver {
 public:
  JwksResolver(asio::any_io_executor executor, ResolverOptions options,
               std::function<void()> on_change);
  ~JwksResolver();
  JwksResolver(const JwksResolver&) = delete;
  JwksResolver& operator=(const JwksResolver&) = delete;

  void track(const std::set<std::string>& uris);
  // Every tracked URI has had one fetch end, well or not (meshd waits for this, within a bound,
  // before it first serves, so waypoints start with the keys).
  bool all_attempted() const;
  // URI -> JWKS text, for the tracked URIs fetched at least once.
  std::map<std::string, std::string> resolved() const;
  void shutdown();

 private:
  struct Entry;
  static awaitable<void> run(std::shared_ptr<Entry> entry);
  static awaitable<bool> fetch(std::shared_ptr<Entry> entry);  // true: keys taken or unchanged

  asio::any_io_executor executor_;
  ResolverOptions options_;
  std::shared_ptr<std::function<void()>> on_change_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace zt::meshd::jwks
