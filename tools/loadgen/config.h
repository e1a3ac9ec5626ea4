// The load generator's configuration and its command line (see tools/loadgen/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace zt::loadgen {

enum class Protocol { kHttp1, kHttp2 };
enum class ConnMode { kKeepAlive, kNewConnection };
enum class Direction { kSend, kRecv, kBoth };

// host:port (host is an IP literal or a name; IPv6 literals in brackets on the command line).
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;
};

struct Target {
  std::string scheme;  // "http" or "tcp"
  HostPort address;
  std::string path = "/";  // origin form, with the query
  std::string authority;   // Host header: host[:port] as written in the URL
};

struct Config {
  Target target;
  Protocol protocol = Protocol::kHttp1;
  ConnMode mode = ConnMode::kKeepAlive;
  uint32_t connections = 1;
  uint32_t threads = 1;
  double rate = 0;  // requests/s over all connections; 0 = closed loop
  std::chrono::nanoseconds duration = std::chrono::seconds(10);
  std::chrono::nanoseconds warmup = std::chrono::seconds(1);
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);  // per request / connect
  size_t body_size = 0;
  std::string method;  // default: GET, or POST when body_size > 0
  std::vector<std::pair<std::string, std::string>> headers;
  uint32_t max_streams = 0;  // HTTP/2 requests in flight per connection; 0: 100 open loop, 1 closed
  std::optional<HostPort> socks5;
  bool tcp_bulk = false;
  Direction direction = Direction::kSend;
  size_t chunk_size = 128 * 1024;
  std::string json_path;  // empty: stdout
  bool help = false;

  std::string effective_method() const {
    if (!method.empty()) return method;
    return body_size > 0 ? "POST" : "GET";
  }
};

// Parses the arguments after argv[0]. Errors name the flag: "--rate: expected ...".
Result<Config> parse_args(const std::vector<std::string>& args);
std::string usage();

// Parse pieces, public for tests.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);  // "2s", "500ms", "1.5"
Result<size_t> parse_size(std::string_view text);                        // "1024", "1k", "1MiB"
Result<HostPort> parse_host_port(std::string_view text);
Result<Target> parse_target(std::string_view text);

std::string_view to_string(Protocol p);
std::string_view to_string(ConnMode m);
std::string_view to_string(Direction d);

}  // namespace zt::loadgen
