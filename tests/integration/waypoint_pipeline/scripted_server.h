// A small HTTP/1.1 backend for the waypoint pipeline tests, on its own thread: keep-alive,
// Content-Length bodies, a scripted status sequence (then a default status), an optional delay
// per response, a hit counter and the Host/target/headers of every request it saw. Every
// response carries `x-version: <version>` and the version as its body.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/async/task_group.h"
#include "waypoint/http2/http2.h"

namespace zt::testing {

struct SeenRequest {
  std::string method, target, host;
  std::map<std::string, std::string> headers;  // lower-case names, last value wins
};

class ScriptedServer {
 public:
  ScriptedServer(const tcp::endpoint& at, std::string version);
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  void script(std::vector<int> statuses);
  void set_default_status(int status) { default_status_ = status; }
  void set_delay(std::chrono::milliseconds d) { delay_ms_ = d.count(); }
  int hits() const { return hits_; }
  std::vector<SeenRequest> seen() const;

 private:
  awaitable<void> accept_loop();
  awaitable<void> serve(tcp::socket s);
  int next_status();

  std::string version_;
  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> hits_{0};
  std::atomic<int> default_status_{200};
  std::atomic<int64_t> delay_ms_{0};
  mutable std::mutex mu_;
  std::deque<int> script_;
  std::vector<SeenRequest> seen_;
};

// An h2c (prior knowledge) backend on the waypoint's own HTTP/2 server codec: answers every
// request 200 with `x-version: h2`, `x-seen-version: 2` and body "h2:<target>"; keeps the
// request bodies it got. gRPC request bodies arrive streamed and are read whole, except on
// "/hold": not read at all, and answered only after 10 s, or as soon as the waypoint goes away
// (the handler is cancelled then: gone() says how, in Envoy's flag). "/break" answers a body
// that fails after its first piece ("first"): the stream is reset in mid-body. "/big" answers
// 9 MiB, more than the waypoint buffers.
class H2Server {
 public:
  explicit H2Server(const tcp::endpoint& at);
  ~H2Server();
  H2Server(const H2Server&) = delete;
  H2Server& operator=(const H2Server&) = delete;
  int hits() const { return hits_; }
  std::vector<std::string> bodies() const {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::vector<std::string> gone() const {
    std::lock_guard lock(mu_);
    return gone_;
  }

 private:
  awaitable<void> accept_loop();
  awaitable<waypoint::Response> answer(waypoint::Request r);

  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> hits_{0};
  const waypoint::Limits limits_{.stream_grpc_requests = true};
  mutable std::mutex mu_;
  std::vector<std::string> bodies_;
  std::vector<std::string> gone_;  // "/hold" requests whose downstream went away: how
};

}  // namespace zt::testing
