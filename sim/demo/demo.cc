#include "sim/demo/demo.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <ostream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bpf/loader/capture.h"
#include "common/pcap/capture.h"
#include "common/pcap/packets.h"
#include "common/pcap/tls.h"
#include "common/stats/scrape.h"
#include "sim/cluster.h"
#include "sim/echo/echo_server.h"

namespace zt::sim {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kServiceVip = "10.96.0.20";  // shop/checkout in sim/examples/demo
// Tokens for the RequestAuthentication of sim/examples/demo/reviews.yaml (issuer
// https://demo.ambient-mesh.example, sub jason, aud reviews, exp 2100-01-01): one signed with the
// demo key whose public half that JWKS holds, one with another key. Demo values, not secrets.
constexpr const char* kDemoJwt =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImRlbW8iLCJ0eXAiOiJKV1QifQ."
    "eyJpc3MiOiJodHRwczovL2RlbW8uYW1iaWVudC1tZXNoLmV4YW1wbGUiLCJzdWIiOiJqYXNvbiIsImF1ZCI6InJldmlld"
    "3MiLCJleHAiOjQxMDI0NDQ4MDB9."
    "LSxVTd1QpbwqDl7yn9ij2Z9Z-ezZ8XvcGEcYXkpl9QObZVWyOLoziEBysA3vkYWXTI-OqfS-SYszqz7hLkH5Eg";
constexpr const char* kForgedJwt =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImRlbW8iLCJ0eXAiOiJKV1QifQ."
    "eyJpc3MiOiJodHRwczovL2RlbW8uYW1iaWVudC1tZXNoLmV4YW1wbGUiLCJzdWIiOiJqYXNvbiIsImF1ZCI6InJldmlld"
    "3MiLCJleHAiOjQxMDI0NDQ4MDB9."
    "qZRFK-2ePsP97AiMC3pmQQ-8dSb_OgceWlGtIgCcP7YaKVZaFc31iG9T7ICGBNsmt8fn5P4NyFVFx2-a4VGVDQ";
constexpr const char* kReviewsVip = "10.96.0.30";  // shop/reviews: through the waypoint
constexpr const char* kWaypointPod = "shop/waypoint";
constexpr uint16_t kMetricsPort = 15020;  // ztunnel's and the waypoint's Prometheus endpoint
constexpr uint16_t kHbonePort = 15008;

// How a connection travelled, as the ztunnels' access logs tell it.
enum class Path {
  kDirect,            // no ztunnel logged it: not captured anywhere
  kHbone,             // captured at the source, HBONE mTLS to the destination
  kPassthrough,       // captured at the source, sent on as plain TCP
  kInboundPlaintext,  // not captured at the source; the destination's ztunnel took it in
  kWaypoint,          // captured at the source, HBONE mTLS to the waypoint (L7)
};

std::string_view describe(Path p) {
  switch (p) {
    case Path::kDirect:
      return "not captured: direct TCP";
    case Path::kHbone:
      return "captured at the source, HBONE mTLS to the destination";
    case Path::kPassthrough:
      return "captured at the source, passthrough as plain TCP";
    case Path::kInboundPlaintext:
      return "not captured at the source; the destination's ztunnel took it in as plaintext";
    case Path::kWaypoint:
      return "captured at the source, HBONE mTLS to the waypoint (L7)";
  }
  return "?";
}

// One request of the demo and what became of it.
struct Call {
  std::string title;
  std::string from;    // pod key "ns/name"
  std::string to_pod;  // the pod that should answer ("": refused before any pod)
  std::string url;     // curl's target
  std::string method;  // "" = POST (the marker is the body)
  std::string header;  // an extra request header, "Name: value"
  int expected_status = 200;
  std::string refusal = "RBAC: access denied";  // the body of a refusal (to_pod "")
  Path expected = Path::kDirect;
  // Expected to cross the node link as HBONE only.
  bool encrypted() const { return expected == Path::kHbone || expected == Path::kWaypoint; }
  // results
  Path seen = Path::kDirect;
  std::vector<std::string> log_evidence;  // the access lines the path was read from
  std::string marker;
  std::string curl_output;  // the echo, then "local_port=N" (curl -w)
  bool answered = false;
  int status = 0;                              // the HTTP status curl saw
  std::string answered_by;                     // pod=... in the echo
  std::string peer_seen;                       // the client IP the app saw
  std::vector<std::string> waypoint_evidence;  // the waypoint's access lines for this call
  std::string error;
  bool marker_on_wire = false;  // the plaintext marker in any captured packet
};

struct Check {
  std::string what;
  bool ok = false;
};

std::string random_marker() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string m = "demo-";
  for (int i = 0; i < 27; ++i) m.push_back(kAlphabet[pick(rd)]);
  return m;
}

// "peer=10.10.0.11:40312 local=... pod=checkout\n..." -> field value.
std::string echo_field(const std::string& body, std::string_view key) {
  auto first_line = body.substr(0, body.find('\n'));
  std::istringstream in(first_line);
  std::string token;
  while (in >> token) {
    if (token.rfind(std::string(key) + "=", 0) == 0) return token.substr(key.size() + 1);
  }
  return {};
}

// A field curl printed after the body (-w "local_port=%{local_port} status=%{http_code}").
std::string curl_field(const Call& call, std::string_view key) {
  auto pos = call.curl_output.rfind(std::string(key) + "=");
  if (pos == std::string::npos) return "?";
  pos += key.size() + 1;
  auto end = call.curl_output.find_first_of(" \n", pos);
  return call.curl_output.substr(pos, end == std::string::npos ? end : end - pos);
}

std::string ip_of(const std::string& endpoint) {
  auto colon = endpoint.rfind(':');
  return colon == std::string::npos ? endpoint : endpoint.substr(0, colon);
}

// key="quoted value" and key=number fields of one text access-log line.
std::map<std::string, std::string> log_fields(const std::string& line) {
  std::map<std::string, std::string> f;
  size_t i = 0;
  while (i < line.size()) {
    size_t eq = line.find('=', i);
    if (eq == std::string::npos) break;
    size_t key_start = line.rfind(' ', eq);
    key_start = key_start == std::string::npos ? 0 : key_start + 1;
    std::string key = line.substr(key_start, eq - key_start);
    std::string value;
    size_t j = eq + 1;
    if (j < line.size() && line[j] == '"') {
      for (++j; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) ++j;
        value.push_back(line[j]);
      }
      ++j;
    } else {
      while (j < line.size() && line[j] != ' ') value.push_back(line[j++]);
    }
    f[key] = value;
    i = j;
  }
  return f;
}

// The fields of the log's lines that contain `marker`: ztunnel's "access connection complete",
// the waypoint's "component=access reporter=waypoint".
std::vector<std::map<std::string, std::string>> access_lines(
    const fs::path& log, std::string_view marker = "access connection complete") {
  std::vector<std::map<std::string, std::string>> out;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(marker);
    if (pos != std::string::npos) out.push_back(log_fields(line.substr(pos)));
  }
  return out;
}

constexpr std::string_view kWaypointAccess = "component=access reporter=waypoint";

std::string get(const std::map<std::string, std::string>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? std::string("-") : it->second;
}

}  // namespace

int run_demo(const DemoOptions& options, std::ostream& out) {
  auto say = [&](std::string_view s) { out << s << std::flush; };
  std::vector<Check> checks;
  auto check = [&](std::string what, bool ok) { checks.push_back({std::move(what), ok}); };

  // The manifests are copied: the demo must never edit the user's files.
  ClusterOptions co;
  co.prefix = options.prefix;
  co.state_dir = default_state_dir(options.prefix);
  co.bin_dir = options.bin_dir;
  co.progress = [&](std::string_view s) { say(fmt::format("  {}\n", s)); };
  const fs::path work = fs::temp_directory_path() / fmt::format("{}-manifests", options.prefix);
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  fs::copy(options.manifests, work, fs::copy_options::recursive, ec);
  if (ec) {
    out << "cannot copy the demo manifests from " << options.manifests << ": " << ec.message()
        << "\n";
    return 1;
  }
  co.manifests = work;

  say("== Starting a 2-node simulated cluster (meshd; per node: node-agent + ztunnel; pods, one "
      "of them shop's waypoint)\n");
  auto cluster = Cluster::up(co);
  if (!cluster) {
    out << "cluster did not come up: " << cluster.error().describe() << "\n";
    return 1;
  }
  auto& c = **cluster;
  for (const auto& node : c.plan().nodes) {
    std::string pods;
    for (const auto& p : node.pods) pods += fmt::format(" {}({})", p.key(), p.ip);
    say(fmt::format("  {} {}:{}\n", node.name, node.ip, pods));
  }
  auto pod_ip = [&](const std::string& key) {
    const auto* p = c.plan().find_pod(key);
    return p ? p->ip : std::string();
  };

  auto call = [](std::string title, std::string from, std::string to_pod, std::string url,
                 Path expected) {
    return Call{.title = std::move(title),
                .from = std::move(from),
                .to_pod = std::move(to_pod),
                .url = std::move(url),
                .expected = expected};
  };
  const std::string checkout = fmt::format("http://{}:8080/", pod_ip("shop/checkout"));
  const std::string ledger = fmt::format("http://{}:8080/", pod_ip("legacy/ledger"));
  const std::string reviews = fmt::format("http://{}:80/reviews/", kReviewsVip);
  std::vector<Call> calls = {
      call("shop/frontend -> shop/checkout, by pod IP", "shop/frontend", "shop/checkout", checkout,
           Path::kHbone),
      call("shop/frontend -> checkout.shop Service VIP", "shop/frontend", "shop/checkout",
           fmt::format("http://{}:80/", kServiceVip), Path::kHbone),
      call("legacy/batch -> legacy/ledger", "legacy/batch", "legacy/ledger", ledger, Path::kDirect),
      call("shop/frontend -> legacy/ledger", "shop/frontend", "legacy/ledger", ledger,
           Path::kPassthrough),
      call("shop/debug (opt-out label) -> shop/checkout", "shop/debug", "shop/checkout", checkout,
           Path::kInboundPlaintext),
      call("shop/frontend -> reviews.shop Service VIP (HTTPRoute default: reviews-v1)",
           "shop/frontend", "shop/reviews-v1", reviews, Path::kWaypoint),
  };
  // Through the waypoint: a header the HTTPRoute matches, and a method the policy denies.
  calls.push_back(call("shop/frontend -> reviews.shop with end-user: jason (HTTPRoute: reviews-v2)",
                       "shop/frontend", "shop/reviews-v2", reviews, Path::kWaypoint));
  calls.back().header = "end-user: jason";
  calls.push_back(
      call("shop/frontend -> reviews.shop DELETE (AuthorizationPolicy: DENY at the waypoint)",
           "shop/frontend", "", reviews, Path::kWaypoint));
  calls.back().method = "DELETE";
  calls.back().expected_status = 403;
  // RequestAuthentication at the waypoint: a JWT of the demo issuer passes, one signed with
  // another key is refused with 401 before any route or pod.
  calls.push_back(
      call("shop/frontend -> reviews.shop with the demo issuer's JWT "
           "(RequestAuthentication: verified)",
           "shop/frontend", "shop/reviews-v1", reviews, Path::kWaypoint));
  calls.back().header = std::string("Authorization: Bearer ") + kDemoJwt;
  calls.push_back(
      call("shop/frontend -> reviews.shop with a forged JWT (RequestAuthentication: "
           "401 at the waypoint)",
           "shop/frontend", "", reviews, Path::kWaypoint));
  calls.back().header = std::string("Authorization: Bearer ") + kForgedJwt;
  calls.back().expected_status = 401;
  calls.back().refusal = "Jwt verification fails";
  // CUSTOM authorization at the waypoint: the ext-authz pod allows a request with its header,
  // and the waypoint answers any other with the authorizer's own 403.
  const std::string private_reviews = fmt::format("http://{}:80/reviews/private/", kReviewsVip);
  calls.push_back(
      call("shop/frontend -> reviews.shop/private with x-ext-authz: allow (CUSTOM: allowed by "
           "the ext-authz pod)",
           "shop/frontend", "shop/reviews-v1", private_reviews, Path::kWaypoint));
  calls.back().header = "x-ext-authz: allow";
  calls.push_back(
      call("shop/frontend -> reviews.shop/private without it (CUSTOM: 403 from the ext-authz "
           "pod)",
           "shop/frontend", "", private_reviews, Path::kWaypoint));
  calls.back().expected_status = 403;
  calls.back().refusal = echo::kExtAuthzDenied;
  const std::string waypoint_ip = pod_ip(kWaypointPod);
  const fs::path waypoint_log = c.log_path("shop.waypoint.app");  // its process: the pod's app

  // Capture node-0's link to the other node while the requests run.
  const std::string& node0 = c.plan().nodes.front().name;
  auto node_ns = c.node_netns(node0);
  if (!node_ns) {
    out << "no netns for " << node0 << ": " << node_ns.error().describe() << "\n";
    return 1;
  }
  auto capture = pcap::Capture::start(
      pcap::CaptureOptions{.interface = "eth0", .netns = &*node_ns, .include_outgoing = true});
  if (!capture) {
    out << "packet capture failed: " << capture.error().describe() << "\n";
    return 1;
  }

  // The access lines every ztunnel has written so far, to find each call's own lines.
  auto ztunnel_lines = [&] {
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> all;
    for (const auto& node : c.plan().nodes) {
      for (auto& l : access_lines(c.log_path(node.name + ".ztunnel"))) {
        all.emplace_back(node.name, std::move(l));
      }
    }
    return all;
  };

  say("\n== Requests (curl in the client pod -> http-echo in the server pod)\n");
  for (auto& call : calls) {
    call.marker = random_marker();
    // The waypoint logs the client's IP, not its port: the path names the call.
    if (call.expected == Path::kWaypoint) call.url += call.marker;
    std::string body;
    while (body.size() < 1024) body += call.marker + " ";
    std::vector<std::string> argv = {"curl", "-sS", "--max-time",
                                     "10",   "-H",  "Content-Type: text/plain"};
    if (!call.method.empty()) argv.insert(argv.end(), {"-X", call.method});
    if (!call.header.empty()) argv.insert(argv.end(), {"-H", call.header});
    argv.insert(argv.end(), {"--data-binary", body, "-w",
                             "\nlocal_port=%{local_port} status=%{http_code}\n", call.url});
    auto r = c.exec_in_pod(call.from, argv, 15s);
    if (!r) {
      call.error = r.error().describe();
    } else if (r->exit_code != 0) {
      call.error = fmt::format("curl exit {}: {}", r->exit_code, r->err);
    } else {
      call.answered = true;
      call.curl_output = r->out;
      call.status = std::atoi(curl_field(call, "status").c_str());
      call.peer_seen = ip_of(echo_field(r->out, "peer"));
      call.answered_by = echo_field(r->out, "pod");
      if (call.status != call.expected_status) {
        call.error = fmt::format("status {}, expected {}", call.status, call.expected_status);
      } else if (call.status == 200 && r->out.find(call.marker) == std::string::npos) {
        call.error = "the echo lost the body";
      }
    }
    // A ztunnel writes its access line when the connection closes, with the app's own socket
    // (client IP and port) as the source: wait until this call's lines stop changing, or
    // 700 ms without any.
    const std::string client_addr =
        fmt::format("{}:{}", pod_ip(call.from), curl_field(call, "local_port"));
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> mine;
    auto start = std::chrono::steady_clock::now();
    auto last_change = start;
    for (;;) {
      auto all = ztunnel_lines();
      std::vector<std::pair<std::string, std::map<std::string, std::string>>> now;
      for (auto& line : all) {
        if (get(line.second, "src.addr") == client_addr) now.push_back(std::move(line));
      }
      auto t = std::chrono::steady_clock::now();
      if (now.size() != mine.size()) last_change = t;
      mine = std::move(now);
      if (mine.empty() ? t - start > 700ms : t - last_change > 250ms) break;
      if (t - start > 3s) break;
      std::this_thread::sleep_for(50ms);
    }
    call.seen = Path::kDirect;
    bool inbound = false;
    for (const auto& [node, l] : mine) {
      call.log_evidence.push_back(fmt::format(
          "{} {} {} -> {}{}", node, get(l, "direction"), get(l, "src.addr"), get(l, "dst.addr"),
          l.count("dst.hbone_addr") ? " via HBONE " + get(l, "dst.hbone_addr") : ""));
      if (get(l, "direction") == "outbound") {
        call.seen = !l.count("dst.hbone_addr")                 ? Path::kPassthrough
                    : ip_of(get(l, "dst.addr")) == waypoint_ip ? Path::kWaypoint
                                                               : Path::kHbone;
      } else if (get(l, "direction") == "inbound") {
        inbound = true;
      }
    }
    if (call.seen == Path::kDirect && inbound) call.seen = Path::kInboundPlaintext;
    // The waypoint's access line for this call: its path, and the client's own IP (which the
    // client's ztunnel sent along in HBONE's Forwarded header).
    if (call.seen == Path::kWaypoint) {
      const std::string path = call.url.substr(call.url.find('/', call.url.find("//") + 2));
      for (const auto& l : access_lines(waypoint_log, kWaypointAccess)) {
        if (get(l, "path") != path || get(l, "src.addr") != pod_ip(call.from)) continue;
        call.waypoint_evidence.push_back(fmt::format(
            "{} {} {} -> {} status={} route={} upstream={} src.identity={}{}", kWaypointPod,
            get(l, "method"), get(l, "path"), get(l, "dst.service"), get(l, "status"),
            get(l, "route"), get(l, "upstream"), get(l, "src.identity"),
            l.count("error") ? " error=\"" + get(l, "error") + "\"" : std::string()));
      }
    }
  }
  auto frames = (*capture)->stop();

  // Wire evidence.
  for (auto& call : calls) {
    for (const auto& f : frames) {
      if (f.find(call.marker) != std::string::npos) {
        call.marker_on_wire = true;
        break;
      }
    }
  }
  auto hbone =
      pcap::tcp_flows(frames, [](const tcp::endpoint& ep) { return ep.port() == kHbonePort; });

  for (const auto& call : calls) {
    const std::string client_ip = pod_ip(call.from);
    const std::string server_name = call.to_pod.substr(call.to_pod.find('/') + 1);
    // Through a waypoint the app's peer is the waypoint, which opened the connection to it.
    const bool via_waypoint = call.expected == Path::kWaypoint;
    const std::string& peer_ip = via_waypoint ? waypoint_ip : client_ip;
    out << "  " << call.title << "\n      " << describe(call.seen) << "\n";
    for (const auto& e : call.log_evidence) out << "        access log: " << e << "\n";
    for (const auto& e : call.waypoint_evidence) out << "        waypoint:   " << e << "\n";
    if (!call.answered || !call.error.empty()) {
      out << "      FAILED: " << call.error << "\n";
    } else if (call.to_pod.empty()) {
      out << fmt::format(
          "      refused with {} by the waypoint (\"{}\"); plaintext on the node "
          "link: {}\n",
          call.status, call.curl_output.substr(0, call.curl_output.find('\n')),
          call.marker_on_wire ? "yes" : "never");
    } else {
      out << fmt::format(
          "      answered by pod {}; the app saw client {} ({}); plaintext on the "
          "node link: {}\n",
          call.answered_by, call.peer_seen,
          call.peer_seen == client_ip     ? "the real client pod IP"
          : call.peer_seen == waypoint_ip ? "the waypoint's IP"
                                          : "NOT the client's IP",
          call.marker_on_wire ? "yes" : "never");
    }
    if (call.to_pod.empty()) {
      check(call.title + fmt::format(": refused with {} by the waypoint, reaching no pod",
                                     call.expected_status),
            call.answered && call.error.empty() && call.answered_by.empty() &&
                call.curl_output.find(call.refusal) != std::string::npos);
    } else {
      check(call.title + ": answered by " + call.to_pod,
            call.answered && call.error.empty() && call.answered_by == server_name);
      check(call.title + (via_waypoint ? ": the app sees the waypoint's IP"
                                       : ": the app sees the client's own IP"),
            call.peer_seen == peer_ip);
    }
    if (via_waypoint) {
      check(call.title + ": the waypoint logged the request with the client's identity",
            call.waypoint_evidence.size() == 1 &&
                call.waypoint_evidence.front().find("/sa/frontend") != std::string::npos);
    }
    check(call.title + ": " + std::string(describe(call.expected)), call.seen == call.expected);
    check(call.title +
              (call.encrypted() ? ": plaintext never on the wire" : ": plain TCP on the wire"),
          call.marker_on_wire == !call.encrypted());
  }

  // Identities and bytes, as both ztunnels logged them.
  out << "\n== Identities and bytes (ztunnel access logs)\n";
  bool saw_outbound_mtls = false, saw_inbound_mtls = false;
  bool saw_to_waypoint = false;
  for (const auto& node : c.plan().nodes) {
    for (const auto& l : access_lines(c.log_path(node.name + ".ztunnel"))) {
      const std::string dir = get(l, "direction");
      out << fmt::format(
          "  {} {:8} {} -> {}  src.identity={} dst.identity={} sent={}B recv={}B{}\n", node.name,
          dir, get(l, "src.addr"), get(l, "dst.addr"), get(l, "src.identity"),
          get(l, "dst.identity"), get(l, "bytes_sent"), get(l, "bytes_recv"),
          l.count("error") ? " error=\"" + get(l, "error") + "\"" : std::string());
      const bool mtls = get(l, "src.identity").find("/sa/frontend") != std::string::npos &&
                        get(l, "dst.identity").find("/sa/checkout") != std::string::npos;
      if (mtls && dir == "outbound" && node.name == node0) saw_outbound_mtls = true;
      if (mtls && dir == "inbound" && node.name != node0) saw_inbound_mtls = true;
      const bool to_waypoint = get(l, "src.identity").find("/sa/frontend") != std::string::npos &&
                               get(l, "dst.identity").find("/sa/waypoint") != std::string::npos;
      if (to_waypoint && dir == "outbound" && node.name == node0) saw_to_waypoint = true;
    }
  }
  check("node-0's ztunnel logs frontend -> checkout with both SPIFFE identities",
        saw_outbound_mtls);
  check("node-1's ztunnel logs frontend -> checkout with both SPIFFE identities", saw_inbound_mtls);
  check("node-0's ztunnel sends frontend's reviews requests to the waypoint's SPIFFE identity",
        saw_to_waypoint);

  // What the waypoint counted, and what the destinations' ztunnels counted of the waypoint's own
  // connections (their Prometheus endpoints). The waypoint keeps those connections open for the
  // next request, so no ztunnel has written their access lines yet.
  out << fmt::format("\n== L7 at the waypoint ({})\n", kWaypointPod);
  auto scrape = [&](const Result<ExecResult>& r, std::string_view whose) {
    if (r && r->exit_code == 0) return r->out;
    out << fmt::format("  cannot read {} metrics: {}\n", whose, r ? r->err : r.error().describe());
    return std::string();
  };
  const auto metrics_url = [](uint16_t port) {
    return fmt::format("http://127.0.0.1:{}/metrics", port);
  };
  const std::string waypoint_metrics =
      scrape(c.exec_in_pod(kWaypointPod,
                           {"curl", "-sS", "--max-time", "5", metrics_url(kMetricsPort)}, 10s),
             "the waypoint's");
  struct Count {
    std::string workload, code;
    double want;
    std::string why = "";  // for a refusal
  };
  out << "  istio_requests_total{reporter=\"waypoint\"} from frontend:\n";
  for (const Count& k : {Count{"reviews-v1", "200", 3}, Count{"reviews-v2", "200", 1},
                         Count{"", "403", 2, " (denied: by policy, by ext-authz)"},
                         Count{"", "401", 1, " (bad JWT)"}}) {
    std::vector<std::string> labels = {R"(reporter="waypoint")", R"(source_workload="frontend")",
                                       fmt::format(R"(response_code="{}")", k.code)};
    if (!k.workload.empty())
      labels.push_back(fmt::format(R"(destination_workload="{}")", k.workload));
    double n = stats::sum_samples(waypoint_metrics, "istio_requests_total", labels);
    const std::string by = k.workload.empty() ? k.why : " by " + k.workload;
    out << fmt::format("    response_code={}{}: {}\n", k.code, by, n);
    check(fmt::format("the waypoint counted {} request{} to reviews answered {}{}", k.want,
                      k.want == 1 ? "" : "s", k.code, by),
          n == k.want);
  }
  out << "  istio_tcp_connections_opened_total{reporter=\"destination\"} from the waypoint's "
         "identity, mTLS:\n";
  for (const auto& [pod, workload] :
       {std::pair{"shop/reviews-v1", "reviews-v1"}, std::pair{"shop/reviews-v2", "reviews-v2"}}) {
    const auto* p = c.plan().find_pod(pod);
    const std::string node = p ? p->node : std::string("?");
    const std::string text = scrape(
        c.exec_in_node(node, {"curl", "-sS", "--max-time", "5", metrics_url(kMetricsPort)}, 10s),
        node + "'s ztunnel");
    double n =
        stats::sum_samples(text, "istio_tcp_connections_opened_total",
                           {R"(reporter="destination")",
                            R"(source_principal="spiffe://cluster.local/ns/shop/sa/waypoint")",
                            fmt::format(R"(destination_workload="{}")", workload),
                            R"(connection_security_policy="mutual_tls")"});
    out << fmt::format("    {}'s ztunnel, to {}: {}\n", node, workload, n);
    check(fmt::format("{}'s ztunnel took the waypoint's connection to {} over mTLS with the "
                      "waypoint's identity",
                      node, workload),
          n >= 1);
  }

  out << fmt::format("\n== The wire (capture of {}'s eth0: {} packets)\n", node0, frames.size());
  size_t tls_ok = 0;
  for (const auto& [client, flow] : hbone) {
    auto rep = pcap::inspect_tls(flow);
    out << fmt::format("  {}:{} -> {}:{}  {} packets  {}\n", client.address().to_string(),
                       client.port(), flow.server.address().to_string(), flow.server.port(),
                       flow.packets, rep.ok() ? rep.summary() : "PROBLEM: " + rep.problems.front());
    if (rep.ok()) ++tls_ok;
  }
  check("every connection on port 15008 is TLS 1.3 with only the hellos in the clear",
        !hbone.empty() && tls_ok == hbone.size());

  out << "\n== eBPF capture counters\n";
  for (const auto& node : c.plan().nodes) {
    auto maps = bpf::CaptureMaps::open(c.bpf_pin_root(node.name).string());
    if (!maps) {
      out << "  " << node.name << ": " << maps.error().describe() << "\n";
      continue;
    }
    auto k = (*maps)->counters();
    out << fmt::format(
        "  {}: connects redirected {}, inbound SYNs steered {}, refused (fail closed) {}, "
        "passed (probes, own delivery) {}\n",
        node.name, k.connect_redirected, k.lookup_assigned, k.lookup_dropped, k.lookup_bypassed);
  }

  size_t failed = 0;
  out << "\n== Checks\n";
  for (const auto& ch : checks) {
    out << (ch.ok ? "  ok    " : "  FAIL  ") << ch.what << "\n";
    if (!ch.ok) ++failed;
  }
  out << (failed == 0 ? "\nAll checks passed.\n"
                      : fmt::format("\n{} of {} checks failed.\n", failed, checks.size()));
  if (failed != 0 || options.keep) {
    out << "Logs: " << (co.state_dir / "logs").string() << "\n";
  }
  if (options.keep) {
    c.detach();
    out << "The cluster is still running: meshsim exec <ns>/<pod> -- CMD; meshsim down --prefix "
        << options.prefix << "\n";
  } else if (auto st = c.down(); !st) {
    out << "teardown: " << st.error().describe() << "\n";
    return 1;
  }
  fs::remove_all(work, ec);
  return failed == 0 ? 0 : 1;
}

}  // namespace zt::sim
