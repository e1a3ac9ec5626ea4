#include "common/http/router.h"

namespace zt::http {

Router& Router::add(std::string method, std::string path, Handler handler) {
  routes_.push_back(Route{std::move(method), std::move(path), std::move(handler)});
  return *this;
}

Response Router::operator()(const Request& request) const {
  std::string allow;
  for (const auto& route : routes_) {
    if (route.path != request.path) continue;
    if (route.method.empty() || route.method == request.method) return route.handler(request);
    if (!allow.empty()) allow.append(", ");
    allow.append(route.method);
  }
  if (allow.empty()) return Response::text(404, "not found\n");
  auto response = Response::text(405, "method not allowed, use " + allow + "\n");
  response.headers.emplace_back("Allow", std::move(allow));
  return response;
}

std::vector<Router::RouteInfo> Router::routes() const {
  std::vector<RouteInfo> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_) out.push_back(RouteInfo{r.method, r.path});
  return out;
}

}  // namespace zt::http
