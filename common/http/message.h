// HTTP/1.1 request and response values handed to handlers, and the target parsing behind them.
// No sockets here: the server (server.h) fills a Request from the wire, so everything in this
// file can be tested and fuzzed on its own.
//
// May use: common/base only.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace zt::http {

using Field = std::pair<std::string, std::string>;

struct Request {
  std::string method;          // as sent, e.g. "GET"
  std::string target;          // the raw request-target, e.g. "/logging?level=debug"
  std::string path;            // percent-decoded path, e.g. "/logging"
  std::vector<Field> query;    // percent-decoded ('+' is a space), in order
  std::vector<Field> headers;  // names as sent
  std::string body;
  std::string peer;  // client "ip:port", for logs

  // First query parameter with this name (exact match).
  std::optional<std::string_view> query_param(std::string_view name) const;
  // First header with this name (case-insensitive).
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<Field> headers;  // extra headers, e.g. Allow
  // Runs on the server's executor once the response has been written (or the write failed):
  // lets a handler act after it has answered, e.g. /quitquitquit starting a drain.
  std::function<void()> after_send;

  static Response text(int status, std::string body);
  static Response json(int status, std::string body);
};

// Handlers are synchronous and cheap; a slow one blocks every connection of its server.
using Handler = std::function<Response(const Request&)>;

// Decodes %XX escapes (and '+' as a space when `plus_is_space`). Fails on a malformed escape.
Result<std::string> percent_decode(std::string_view s, bool plus_is_space);

// "a=1&b=x%20y&flag" -> {{"a","1"},{"b","x y"},{"flag",""}}.
Result<std::vector<Field>> parse_query(std::string_view query);

// Fills request.path and request.query from request.target. Accepts origin-form ("/p?q") and
// absolute-form ("http://host/p?q") targets.
Status parse_target(Request& request);

}  // namespace zt::http
