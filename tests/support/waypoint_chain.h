// The waypoint chain of issue 6 as real processes on loopback: a client workload whose dedicated
// ztunnel has a SOCKS5 listener, the waypoint (bin/waypoint) on <waypoint ip>:15008, and one
// dedicated ztunnel per backend workload in front of a test-owned server on <ip>:8080. Requests
// go client -> ztunnel (SOCKS5) -> HBONE to the waypoint (authority VIP:port) -> HBONE to the
// endpoint's ztunnel -> the backend server.
//
// Addresses: every chain takes one slot of 32 addresses in 127.0.65.0/24 - 127.0.69.0/24 (slot
// 0..39), so test cases running in parallel never bind the same address.
//
// The mesh (ztunnel local-config format, namespace default, trust domain cluster.local):
//   workloads client (sa client), intruder (sa intruder), waypoint (sa waypoint), reviews-v1,
//   reviews-v2, shadow, plain, h2, grpc;
//   services (port 80 -> 8080) reviews (endpoints v1 + v2), reviews-v1, reviews-v2, shadow, h2,
//   grpc, all with `waypoint: {destination: /<waypoint ip>, hboneMtlsPort: 15008}`, and plain
//   (no waypoint).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {

// ---- a scripted HTTP/1.1 backend ---------------------------------------------------------------

// What the backend saw of one request.
struct SeenRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names lower-cased; last value wins
  std::string body;                            // de-chunked
  std::string framing;                         // "content-length", "chunked" or "none"
};

// One scripted answer: status after a delay; extra header lines and another body if set.
struct ScriptStep {
  int status = 200;
  std::chrono::milliseconds delay{0};
  std::vector<std::pair<std::string, std::string>> headers = {};
  std::optional<std::string> body = std::nullopt;  // else the server's name
};

// An HTTP/1.1 server (keep-alive, Content-Length and chunked request bodies) that answers every
// request with body "<name>" and headers x-backend: <name>, x-seen-path: <target>. Answers follow
// the script (one step per request, in order), then the default step. Thread-safe.
class ScriptedHttpServer : public LoopbackServer {
 public:
  static std::unique_ptr<ScriptedHttpServer> start(const tcp::endpoint& at, std::string name);

  const std::string& name() const { return name_; }
  void script(std::vector<ScriptStep> steps);
  void set_default(ScriptStep step);
  // Answers every request as `responder` says (before any script), e.g. an authorizer.
  void set_responder(std::function<ScriptStep(const SeenRequest&)> responder);
  int hits() const { return hits_.load(); }
  int connections() const { return connections_.load(); }
  std::vector<SeenRequest> requests() const;
  void reset_counts();

 private:
  ScriptedHttpServer(const tcp::endpoint& at, std::string name)
      : LoopbackServer(at), name_(std::move(name)) {}
  awaitable<void> serve(tcp::socket s) override;
  ScriptStep next_step(const SeenRequest& request);

  std::string name_;
  std::atomic<int> hits_{0};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::deque<ScriptStep> script_;
  ScriptStep default_;
  std::function<ScriptStep(const SeenRequest&)> responder_;
  std::vector<SeenRequest> requests_;
};

// ---- a blocking HTTP/1.1 client over SOCKS5
// ------------------------------------------------------

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::chrono::milliseconds elapsed{0};  // from the request's last byte written to the response
  std::string header(const std::string& name) const;
};

// One connection through a SOCKS5 listener to `dst`, kept alive across requests. Reads time out
// after `read_timeout` (an error, never a hang).
class ChainHttpConnection {
 public:
  static Result<std::unique_ptr<ChainHttpConnection>> open(
      const tcp::endpoint& socks5, const tcp::endpoint& dst,
      std::chrono::milliseconds read_timeout = std::chrono::seconds(10));

  // GET/POST... with Host, the given extra header lines ("Name: value") and a Content-Length
  // body (when non-empty or the method is POST/PUT).
  Result<HttpResponse> request(const std::string& method, const std::string& target,
                               const std::vector<std::string>& headers = {},
                               const std::string& body = "");
  // Raw bytes.
  Status write(const std::string& bytes);
  // One response (1xx included: a 100 Continue is returned as such).
  Result<HttpResponse> read_response(bool head_only = false);
  // True when the peer closed the connection (reads EOF within `wait`).
  bool closed_by_peer(std::chrono::milliseconds wait = std::chrono::milliseconds(2000));
  // True when the last response asked to close or the peer closed.
  bool done() const { return done_; }
  std::string host;

 private:
  ChainHttpConnection() : socket_(io_) {}
  Result<size_t> fill();  // reads more into buffer_; 0 = EOF

  asio::io_context io_;
  tcp::socket socket_;
  std::string buffer_;
  bool done_ = false;
  std::chrono::milliseconds read_timeout_{10000};
  std::chrono::steady_clock::time_point written_at_;
};

// A one-shot request on a fresh connection (reopening is what a load test would do).
Result<HttpResponse> chain_request(const tcp::endpoint& socks5, const tcp::endpoint& dst,
                                   const std::string& method, const std::string& target,
                                   const std::vector<std::string>& headers = {},
                                   const std::string& body = "");

// Forwards every accepted connection on 127.0.0.1:<port> through SOCKS5 to `dst` (for clients
// that cannot speak SOCKS5 themselves: grpc++).
class SocksForwarder {
 public:
  static std::unique_ptr<SocksForwarder> start(const tcp::endpoint& socks5,
                                               const tcp::endpoint& dst);
  ~SocksForwarder();
  tcp::endpoint endpoint() const { return endpoint_; }

 private:
  SocksForwarder() : acceptor_(io_) {}
  awaitable<void> accept_loop();
  awaitable<void> relay(tcp::socket s);
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_, socks5_, dst_;
  std::thread thread_;
};

// ---- the chain
// -----------------------------------------------------------------------------------

// The backend workloads a chain starts a ztunnel for. reviews-v1/-v2, shadow and plain also get
// a ScriptedHttpServer on <ip>:8080; for h2 and grpc the test runs its own server there (an h2c
// server: the waypoint speaks to the upstream in the client's protocol).
// kExtAuthz: workload and service "ext-authz" (no waypoint), an HTTP authorizer.
enum class Backend { kReviewsV1, kReviewsV2, kShadow, kPlain, kH2, kGrpc, kExtAuthz };

struct ChainOptions {
  int slot = 0;  // 0..39: which 32 addresses
  std::set<Backend> backends = {Backend::kReviewsV1, Backend::kReviewsV2};
  bool intruder = false;  // a second client (sa intruder) with its own ztunnel
  std::string l7_config;  // the waypoint's --config file (HTTPRoute, ...), appended to
                          // the base routes (h2, grpc, reviews-v1, reviews-v2)
  std::vector<std::string> waypoint_args;  // extra bin/waypoint flags
};

class WaypointChain {
 public:
  static Result<std::unique_ptr<WaypointChain>> start(ChainOptions options);
  ~WaypointChain();

  // Addresses.
  std::string ip(const std::string& host) const;  // client, intruder, waypoint, reviews-v1, ...
  tcp::endpoint vip(const std::string& service, uint16_t port = 80) const;
  tcp::endpoint endpoint(const std::string& workload, uint16_t port = 8080) const;

  ScriptedHttpServer& backend(
      const std::string& workload);  // reviews-v1, reviews-v2, shadow, plain
  ZtunnelProcess& client() { return *client_; }
  ZtunnelProcess& intruder() { return *intruder_; }
  Daemon& waypoint() { return *waypoint_; }
  tcp::endpoint waypoint_hbone, waypoint_admin, waypoint_metrics, waypoint_readiness;
  const TestPki& pki() const { return pki_; }
  const std::filesystem::path& dir() const { return dir_.path(); }

  // Rewrites the waypoint's --config file (base routes + `l7_config`) and waits until the
  // waypoint's /config_dump reports a newer generation.
  Status set_config(const std::string& l7_config,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Generation of the L7 config in /config_dump, nullopt when it cannot be read.
  std::optional<uint64_t> config_generation();
  std::string config_dump();
  std::string waypoint_metrics_text();
  // Access log lines of the waypoint (component=access).
  std::vector<std::string> access_lines();

  // The HTTPRoutes every chain has (one per service h2, grpc, reviews-v1, reviews-v2: all
  // traffic to the service's own endpoints).
  static std::string base_routes();
  std::string mesh_yaml() const;

 private:
  WaypointChain() = default;
  ChainOptions options_;
  TempDir dir_;
  TestPki pki_;
  TestPki::CaFiles ca_;
  std::filesystem::path mesh_path_, l7_path_;
  std::map<std::string, std::unique_ptr<ScriptedHttpServer>> backends_;
  std::unique_ptr<ZtunnelProcess> client_, intruder_;
  std::vector<std::unique_ptr<ZtunnelProcess>> endpoint_ztunnels_;
  std::unique_ptr<Daemon> waypoint_;
};

// Polls `cond` every 20 ms until it holds or `limit` passed.
bool poll_until(const std::function<bool()>& cond,
                std::chrono::milliseconds limit = std::chrono::seconds(10));

// The value of `name`'s first occurrence in a JSON-ish text ("generation": 7), for /config_dump.
std::optional<uint64_t> find_json_number(const std::string& text, const std::string& name);

}  // namespace zt::testing
