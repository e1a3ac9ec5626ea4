// Router: maps (method, exact path) to a handler. Unknown path -> 404; a known path with another
// method -> 405 with an Allow header. A route with an empty method accepts every method.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/http/message.h"

namespace zt::http {

class Router {
 public:
  Router& add(std::string method, std::string path, Handler handler);
  Router& get(std::string path, Handler handler) {
    return add("GET", std::move(path), std::move(handler));
  }
  Router& post(std::string path, Handler handler) {
    return add("POST", std::move(path), std::move(handler));
  }

  // Routes `request`; usable directly as a Handler.
  Response operator()(const Request& request) const;

  struct RouteInfo {
    std::string method;  // empty: any
    std::string path;
  };
  std::vector<RouteInfo> routes() const;

 private:
  struct Route {
    std::string method;
    std::string path;
    Handler handler;
  };
  std::vector<Route> routes_;  // a handful of routes: a linear scan beats a map
};

}  // namespace zt::http
