#include "tools/loadgen/config.h"

#include <charconv>
#include <cmath>
#include <map>

namespace zt::loadgen {

namespace {

Result<double> parse_number(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || !std::isfinite(v)) {
    return failf("expected a number, got '{}'", s);
  }
  return v;
}

Result<uint64_t> parse_uint(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) {
    return failf("expected a non-negative integer, got '{}'", s);
  }
  return v;
}

// Splits "123.5ms" into ("123.5", "ms").
std::pair<std::string_view, std::string_view> split_unit(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  return {s.substr(0, i), s.substr(i)};
}

}  // namespace

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  auto [num, unit] = split_unit(text);
  auto v = parse_number(num);
  if (!v) return failf("expected a duration like 10s, 500ms or 1m, got '{}'", text);
  static const std::map<std::string_view, double> kUnits = {
      {"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}, {"ns", 1}, {"m", 60e9}, {"h", 3600e9}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) return failf("unknown duration unit '{}' in '{}'", unit, text);
  double ns = *v * it->second;
  if (ns > 1e18) return failf("duration '{}' is too long", text);
  return std::chrono::nanoseconds(static_cast<int64_t>(ns));
}

Result<size_t> parse_size(std::string_view text) {
  auto [num, unit] = split_unit(text);
  auto v = parse_uint(num);
  if (!v) return failf("expected a size like 1024, 16k or 1m, got '{}'", text);
  static const std::map<std::string_view, uint64_t> kUnits = {
      {"", 1},        {"b", 1},        {"k", 1024},      {"kb", 1024},    {"kib", 1024},
      {"m", 1 << 20}, {"mb", 1 << 20}, {"mib", 1 << 20}, {"K", 1024},     {"KB", 1024},
      {"KiB", 1024},  {"M", 1 << 20},  {"MB", 1 << 20},  {"MiB", 1 << 20}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) return failf("unknown size unit '{}' in '{}'", unit, text);
  return static_cast<size_t>(*v * it->second);
}

Result<HostPort> parse_host_port(std::string_view text) {
  HostPort hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return failf("expected [ipv6]:port, got '{}'", text);
    }
    hp.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return failf("expected host:port, got '{}'", text);
    }
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      return failf("IPv6 addresses need brackets: [addr]:port, got '{}'", text);
    }
    port = text.substr(colon + 1);
  }
  auto p = parse_uint(port);
  if (!p || *p == 0 || *p > 65535) return failf("bad port '{}' in '{}'", port, text);
  hp.port = static_cast<uint16_t>(*p);
  return hp;
}

Result<Target> parse_target(std::string_view text) {
  Target t;
  std::string_view rest = text;
  auto sep = rest.find("://");
  if (sep != std::string_view::npos) {
    t.scheme = std::string(rest.substr(0, sep));
    rest = rest.substr(sep + 3);
    if (t.scheme != "http" && t.scheme != "tcp") {
      return failf("unsupported scheme '{}' in '{}' (http:// or tcp://)", t.scheme, text);
    }
  } else {
    t.scheme = "tcp";
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) t.path = std::string(rest.substr(slash));
  // http://host/path means port 80.
  std::string with_port(authority);
  bool has_port = !authority.empty() && authority.back() != ']' &&
                  authority.find(':') != std::string_view::npos;
  if (!has_port && t.scheme == "http") with_port += ":80";
  auto hp = parse_host_port(with_port);
  if (!hp) return failf("bad target '{}': {}", text, hp.error().message);
  t.address = *hp;
  t.authority = std::string(authority);
  return t;
}

std::string_view to_string(Protocol p) { return p == Protocol::kHttp1 ? "http1" : "http2"; }
std::string_view to_string(ConnMode m) {
  return m == ConnMode::kKeepAlive ? "keepalive" : "new-connection";
}
std::string_view to_string(Direction d) {
  switch (d) {
    case Direction::kSend:
      return "send";
    case Direction::kRecv:
      return "recv";
    case Direction::kBoth:
      return "both";
  }
  return "send";
}

std::string usage() {
  return R"(usage: loadgen [flags] URL
  URL                   http://ip:port/path (HTTP) or ip:port / tcp://ip:port (--tcp-bulk)
  --rate N              total requests/s over all connections (open loop); 0 = closed loop [0]
  --connections N       connections (TCP bulk: streams) [1]
  --threads N           threads, one io_context each; connections are spread over them [1]
  --duration D          measured time, e.g. 10s, 500ms, 1m [10s]
  --warmup D            time before the measurement, not counted [1s]
  --timeout D           per request (and per connect) timeout [5s]
  --protocol P          http1 | http2 (h2c, prior knowledge) [http1]
  --mode M              keepalive | new-connection (one connection per request) [keepalive]
  --method M            request method [GET, or POST with a body]
  --body-size N         request body bytes, e.g. 1024 or 1k [0]
  --header K:V          extra request header (repeatable)
  --max-streams N       HTTP/2: requests in flight per connection [open loop 100, closed 1]
  --socks5 IP:PORT      connect through this SOCKS5 proxy (no auth)
  --tcp-bulk            bulk TCP throughput instead of HTTP requests
  --direction D         TCP bulk: send | recv | both [send]
  --chunk-size N        TCP bulk: bytes per write/read [128k]
  --json FILE           write the JSON report here instead of stdout
  --help                this text
)";
}

Result<Config> parse_args(const std::vector<std::string>& args) {
  Config c;
  bool have_target = false;
  bool have_direction = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (flag.rfind("--", 0) == 0) {
      if (auto eq = flag.find('='); eq != std::string::npos) {
        inline_value = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
      }
    } else if (flag.rfind("-", 0) != 0 || flag == "-") {
      if (have_target) return failf("unexpected argument '{}': the URL was already given", flag);
      auto t = parse_target(flag);
      if (!t) return failf("URL: {}", t.error().message);
      c.target = *t;
      have_target = true;
      continue;
    }
    auto no_value = [&](bool& field) -> Status {
      if (inline_value) return failf("{}: takes no value", flag);
      field = true;
      return {};
    };
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return failf("{}: missing value", flag);
      return args[++i];
    };
    // Wraps a value parse with the flag's name.
    auto named = [&](auto parsed) -> decltype(parsed) {
      if (!parsed) return failf("{}: {}", flag, parsed.error().message);
      return parsed;
    };
    auto count = [&](uint64_t min, uint64_t max) -> Result<uint32_t> {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto n = named(parse_uint(*v));
      if (!n) return tl::unexpected(n.error());
      if (*n < min || *n > max) return failf("{}: must be in [{}, {}], got {}", flag, min, max, *n);
      return static_cast<uint32_t>(*n);
    };
    auto duration = [&]() -> Result<std::chrono::nanoseconds> {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      return named(parse_duration(*v));
    };

    if (flag == "--help" || flag == "-h") {
      c.help = true;
      return c;
    } else if (flag == "--rate") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto r = named(parse_number(*v));
      if (!r) return tl::unexpected(r.error());
      if (*r < 0) return failf("--rate: must be >= 0 (0 = closed loop), got {}", *v);
      c.rate = *r;
    } else if (flag == "--connections" || flag == "-c") {
      auto n = count(1, 100000);
      if (!n) return tl::unexpected(n.error());
      c.connections = *n;
    } else if (flag == "--threads" || flag == "-t") {
      auto n = count(1, 1024);
      if (!n) return tl::unexpected(n.error());
      c.threads = *n;
    } else if (flag == "--max-streams") {
      auto n = count(1, 100000);
      if (!n) return tl::unexpected(n.error());
      c.max_streams = *n;
    } else if (flag == "--duration" || flag == "-d") {
      auto d = duration();
      if (!d) return tl::unexpected(d.error());
      if (d->count() <= 0) return failf("{}: must be > 0", flag);
      c.duration = *d;
    } else if (flag == "--warmup") {
      auto d = duration();
      if (!d) return tl::unexpected(d.error());
      c.warmup = *d;
    } else if (flag == "--timeout") {
      auto d = duration();
      if (!d) return tl::unexpected(d.error());
      if (d->count() <= 0) return failf("{}: must be > 0", flag);
      c.timeout = *d;
    } else if (flag == "--protocol") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      if (*v == "http1" || *v == "http/1.1") {
        c.protocol = Protocol::kHttp1;
      } else if (*v == "http2" || *v == "h2c" || *v == "h2") {
        c.protocol = Protocol::kHttp2;
      } else {
        return failf("--protocol: expected http1 or http2, got '{}'", *v);
      }
    } else if (flag == "--mode") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      if (*v == "keepalive" || *v == "keep-alive") {
        c.mode = ConnMode::kKeepAlive;
      } else if (*v == "new-connection" || *v == "new") {
        c.mode = ConnMode::kNewConnection;
      } else {
        return failf("--mode: expected keepalive or new-connection, got '{}'", *v);
      }
    } else if (flag == "--method") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      if (v->empty() || v->find_first_of(" \t\r\n") != std::string::npos) {
        return failf("--method: expected a token, got '{}'", *v);
      }
      c.method = *v;
    } else if (flag == "--body-size") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto s = named(parse_size(*v));
      if (!s) return tl::unexpected(s.error());
      c.body_size = *s;
    } else if (flag == "--chunk-size") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto s = named(parse_size(*v));
      if (!s) return tl::unexpected(s.error());
      if (*s == 0) return failf("--chunk-size: must be > 0");
      c.chunk_size = *s;
    } else if (flag == "--header" || flag == "-H") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto colon = v->find(':');
      if (colon == std::string::npos || colon == 0) {
        return failf("{}: expected name:value, got '{}'", flag, *v);
      }
      std::string name = v->substr(0, colon);
      std::string val = v->substr(colon + 1);
      while (!val.empty() && (val.front() == ' ' || val.front() == '\t')) val.erase(0, 1);
      if (name.find_first_of(" \t\r\n") != std::string::npos ||
          val.find_first_of("\r\n") != std::string::npos) {
        return failf("{}: bad header '{}'", flag, *v);
      }
      c.headers.emplace_back(std::move(name), std::move(val));
    } else if (flag == "--socks5") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      auto hp = named(parse_host_port(*v));
      if (!hp) return tl::unexpected(hp.error());
      c.socks5 = *hp;
    } else if (flag == "--tcp-bulk") {
      if (auto s = no_value(c.tcp_bulk); !s) return tl::unexpected(s.error());
    } else if (flag == "--direction") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      if (*v == "send") {
        c.direction = Direction::kSend;
      } else if (*v == "recv" || *v == "receive") {
        c.direction = Direction::kRecv;
      } else if (*v == "both") {
        c.direction = Direction::kBoth;
      } else {
        return failf("--direction: expected send, recv or both, got '{}'", *v);
      }
      have_direction = true;
    } else if (flag == "--json") {
      auto v = value();
      if (!v) return tl::unexpected(v.error());
      if (v->empty()) return failf("--json: empty file name");
      c.json_path = *v;
    } else {
      return failf("unknown flag '{}' (see --help)", flag);
    }
  }
  if (!have_target) return fail("missing the target URL (see --help)");
  if (c.tcp_bulk) {
    if (c.target.scheme != "tcp" && c.target.scheme != "http") return fail("URL: bad scheme");
  } else {
    if (have_direction) return fail("--direction: only with --tcp-bulk");
    if (c.target.scheme != "http") {
      return failf("URL: HTTP mode needs http://host:port/path, got scheme '{}'", c.target.scheme);
    }
  }
  if (c.threads > c.connections) c.threads = c.connections;
  return c;
}

}  // namespace zt::loadgen
