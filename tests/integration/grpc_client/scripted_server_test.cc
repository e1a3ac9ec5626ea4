// common/grpc against a scripted HTTP/2 server (nghttp2, plaintext, loopback) that sends what a
// broken or hostile server would: Trailers-Only answers, HTTP errors, no grpc-status,
// compressed or oversize or truncated messages, RST_STREAM, GOAWAY, garbage, a dropped
// connection, silence. Every case must end in an error value, promptly.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <unistd.h>

#include "common/grpc/client.h"

namespace zt {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;
using zt::grpc::StatusCode;

std::string frame(std::string_view payload, uint8_t flag = 0) {
  std::string out(5, '\0');
  out[0] = static_cast<char>(flag);
  auto n = static_cast<uint32_t>(payload.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  return out + std::string(payload);
}

std::string prefix_only(uint32_t declared) {
  std::string out(5, '\0');
  out[1] = static_cast<char>(declared >> 24);
  out[2] = static_cast<char>(declared >> 16);
  out[3] = static_cast<char>(declared >> 8);
  out[4] = static_cast<char>(declared);
  return out;
}

const Headers kOkHeaders = {{":status", "200"}, {"content-type", "application/grpc"}};

struct Script {
  enum class Kind {
    kRespond,
    kRst,
    kGoaway,
    kGarbage,
    kCloseOnRequest,
    kSilent
  } kind = Kind::kRespond;
  Headers headers = kOkHeaders;
  bool end_after_headers = false;  // Trailers-Only
  std::string data;
  std::optional<Headers> trailers;
  bool close_after_data = false;  // drop the connection instead of ending the stream
  uint32_t rst_code = NGHTTP2_REFUSED_STREAM;
};

// Serves one script to every connection, one connection at a time.
class ScriptedServer {
 public:
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(listen_fd_, 8) != 0) {
      throw std::runtime_error("bind/listen");
    }
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  std::string address() const { return fmt::format("http://127.0.0.1:{}", port_); }
  Headers request_headers() {
    std::lock_guard lock(mu_);
    return request_;
  }
  std::string request_header(const std::string& name) {
    for (const auto& [k, v] : request_headers()) {
      if (k == name) return v;
    }
    return "";
  }

 private:
  struct Conn {
    ScriptedServer* server;
    int fd;
    nghttp2_session* session = nullptr;
    std::string data;
    size_t data_off = 0;
    bool close_now = false;
  };

  static nghttp2_nv nv(const std::string& k, const std::string& v) {
    return {reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
            reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
            NGHTTP2_NV_FLAG_NONE};
  }
  static std::vector<nghttp2_nv> nvs(const Headers& h) {
    std::vector<nghttp2_nv> out;
    for (const auto& [k, v] : h) out.push_back(nv(k, v));
    return out;
  }

  static ssize_t read_data(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* src, void*) {
    auto* c = static_cast<Conn*>(src->ptr);
    const Script& s = c->server->script_;
    size_t n = std::min(length, c->data.size() - c->data_off);
    std::memcpy(buf, c->data.data() + c->data_off, n);
    c->data_off += n;
    if (c->data_off == c->data.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s.close_after_data) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        c->close_now = true;
      } else if (s.trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto t = nvs(*s.trailers);
        nghttp2_submit_trailer(session, stream_id, t.data(), t.size());
      }
    }
    return static_cast<ssize_t>(n);
  }

  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* c = static_cast<Conn*>(user);
    std::lock_guard lock(c->server->mu_);
    c->server->request_.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                                     std::string(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* c = static_cast<Conn*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    const Script& s = c->server->script_;
    int32_t id = frame->hd.stream_id;
    switch (s.kind) {
      case Script::Kind::kRst:
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, s.rst_code);
        break;
      case Script::Kind::kGoaway:
        nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
        break;
      case Script::Kind::kCloseOnRequest:
        c->close_now = true;
        break;
      case Script::Kind::kSilent:
        break;
      default: {
        auto h = nvs(s.headers);
        if (s.end_after_headers) {
          nghttp2_submit_response(session, id, h.data(), h.size(), nullptr);
        } else {
          c->data = s.data;
          nghttp2_data_provider prd;
          prd.source.ptr = c;
          prd.read_callback = read_data;
          nghttp2_submit_response(session, id, h.data(), h.size(), &prd);
        }
      }
    }
    return 0;
  }

  void serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      serve_connection(fd);
      // A FIN, not a RST: closing with unread client bytes (a WINDOW_UPDATE, a SETTINGS ack)
      // would reset the connection, and a reset discards what the client has not read yet.
      ::shutdown(fd, SHUT_WR);
      char sink[4096];
      while (wait_readable_or_stop(fd, 500) && ::recv(fd, sink, sizeof(sink), 0) > 0) {
      }
      ::close(fd);
    }
  }

  void serve_connection(int fd) {
    if (script_.kind == Script::Kind::kGarbage) {
      std::string junk = "HTTP/1.1 400 Bad Request\r\n\r\n" + std::string(64, '\xff');
      [[maybe_unused]] auto n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      // Keep the connection open: the client must notice the garbage, not just an EOF.
      wait_readable_or_stop(fd, 2000);
      return;
    }
    Conn c{this, fd};
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_server_new(&c.session, cbs, &c);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, nullptr, 0);
    char buf[16384];
    while (!stop_ && !c.close_now) {
      const uint8_t* out;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(c.session, &out)) > 0) {
        if (::send(fd, out, static_cast<size_t>(n), MSG_NOSIGNAL) != n) c.close_now = true;
      }
      if (c.close_now) break;
      if (nghttp2_session_want_read(c.session) == 0 && nghttp2_session_want_write(c.session) == 0)
        break;
      if (!wait_readable_or_stop(fd, 20)) continue;
      ssize_t got = ::recv(fd, buf, sizeof(buf), 0);
      if (got <= 0) break;
      if (nghttp2_session_mem_recv(c.session, reinterpret_cast<uint8_t*>(buf),
                                   static_cast<size_t>(got)) < 0) {
        break;
      }
    }
    nghttp2_session_del(c.session);
  }

  bool wait_readable_or_stop(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    for (int waited = 0; waited < ms && !stop_; waited += 20) {
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  Headers request_;
};

constexpr const char* kPath = "/test.Service/Method";

struct Outcome {
  zt::grpc::CallStatus status;
  std::vector<std::string> messages;
  Clock::duration took;
};

// One call: sends one message, half-closes, reads everything, finishes.
Outcome run(const ScriptedServer& server, std::chrono::milliseconds timeout = 3s,
            size_t max_receive = 4 * 1024 * 1024) {
  auto t0 = Clock::now();
  zt::grpc::ChannelOptions o{.address = server.address(), .max_receive_message_bytes = max_receive};
  zt::grpc::Call call(o, kPath, {{"authorization", "Bearer t"}, {"clusterid", "c1"}},
                      Clock::now() + timeout);
  Outcome out;
  if (call.write("request") && call.half_close()) {
    std::string m;
    while (call.read(&m)) out.messages.push_back(m);
  }
  out.status = call.finish();
  out.took = Clock::now() - t0;
  return out;
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

TEST(GrpcClientScripted, SendsTheGrpcRequestHeaders) {
  ScriptedServer server({.data = frame("hi"), .trailers = Headers{{"grpc-status", "0"}}});
  auto r = run(server);
  ASSERT_TRUE(r.status.ok()) << r.status.describe();
  ASSERT_EQ(r.messages, std::vector<std::string>{"hi"});
  EXPECT_EQ(server.request_header(":method"), "POST");
  EXPECT_EQ(server.request_header(":scheme"), "http");
  EXPECT_EQ(server.request_header(":path"), kPath);
  EXPECT_EQ(server.request_header(":authority"), server.address().substr(7));
  EXPECT_EQ(server.request_header("content-type"), "application/grpc");
  EXPECT_EQ(server.request_header("te"), "trailers");
  EXPECT_EQ(server.request_header("authorization"), "Bearer t");
  EXPECT_EQ(server.request_header("clusterid"), "c1");
  EXPECT_FALSE(server.request_header("user-agent").empty());
  EXPECT_EQ(server.request_header("grpc-accept-encoding"), "");
  auto timeout = server.request_header("grpc-timeout");
  ASSERT_FALSE(timeout.empty());
  EXPECT_LE(timeout.size(), 9u);
  EXPECT_TRUE(timeout.back() == 'm' || timeout.back() == 'u') << timeout;
}

TEST(GrpcClientScripted, TrailersOnly) {
  ScriptedServer server({.headers = {{":status", "200"},
                                     {"content-type", "application/grpc"},
                                     {"grpc-status", "5"},
                                     {"grpc-message", "no%20such%20thing%3A%20%E2%9C%93"}},
                         .end_after_headers = true});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kNotFound) << r.status.describe();
  EXPECT_EQ(r.status.message, "no such thing: \xe2\x9c\x93");
  EXPECT_TRUE(r.messages.empty());
}

TEST(GrpcClientScripted, HttpErrorStatusesMapToGrpcCodes) {
  for (auto [http, code] :
       {std::pair{"503", StatusCode::kUnavailable}, std::pair{"404", StatusCode::kUnimplemented},
        std::pair{"401", StatusCode::kUnauthenticated},
        std::pair{"403", StatusCode::kPermissionDenied}, std::pair{"400", StatusCode::kInternal},
        std::pair{"500", StatusCode::kUnknown}}) {
    ScriptedServer server(
        {.headers = {{":status", http}, {"content-type", "text/html"}}, .data = "<html>nope"});
    auto r = run(server);
    EXPECT_EQ(r.status.code, code) << http << ": " << r.status.describe();
    EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
    EXPECT_TRUE(contains(r.status.message, http)) << r.status.message;
  }
}

TEST(GrpcClientScripted, MissingGrpcStatusIsAnError) {
  ScriptedServer server({.data = frame("one"), .trailers = Headers{{"x-other", "1"}}});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kUnknown) << r.status.describe();
  EXPECT_TRUE(contains(r.status.message, "grpc-status")) << r.status.message;
  // Ending with DATA END_STREAM and no trailers at all is the same.
  ScriptedServer server2({.data = frame("one")});
  r = run(server2);
  EXPECT_EQ(r.status.code, StatusCode::kUnknown) << r.status.describe();
}

TEST(GrpcClientScripted, InvalidGrpcStatusIsUnknown) {
  ScriptedServer server({.data = frame("x"), .trailers = Headers{{"grpc-status", "abc"}}});
  EXPECT_EQ(run(server).status.code, StatusCode::kUnknown);
  ScriptedServer server2({.data = frame("x"), .trailers = Headers{{"grpc-status", "99"}}});
  EXPECT_EQ(run(server2).status.code, StatusCode::kUnknown);
}

TEST(GrpcClientScripted, CompressedMessageIsAnError) {
  ScriptedServer server({.data = frame("zzz", 1), .trailers = Headers{{"grpc-status", "0"}}});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kInternal) << r.status.describe();
  EXPECT_TRUE(contains(r.status.message, "compress")) << r.status.message;
  EXPECT_TRUE(r.messages.empty());
  ScriptedServer server2({.data = frame("zzz", 7), .trailers = Headers{{"grpc-status", "0"}}});
  EXPECT_EQ(run(server2).status.code, StatusCode::kInternal);
}

TEST(GrpcClientScripted, OversizeLengthPrefixFailsAtOnce) {
  // Declares 1 GiB and never sends it: the client must not wait for it.
  ScriptedServer server({.data = frame("ok") + prefix_only(1u << 30), .close_after_data = false});
  auto r = run(server, 10s);
  EXPECT_EQ(r.status.code, StatusCode::kResourceExhausted) << r.status.describe();
  EXPECT_EQ(r.messages, std::vector<std::string>{"ok"});
  EXPECT_LT(r.took, 3s);
  // The limit is the caller's: 100 bytes allowed, 101 refused.
  ScriptedServer server2(
      {.data = frame(std::string(101, 'a')), .trailers = Headers{{"grpc-status", "0"}}});
  EXPECT_EQ(run(server2, 3s, 100).status.code, StatusCode::kResourceExhausted);
  ScriptedServer server3(
      {.data = frame(std::string(100, 'a')), .trailers = Headers{{"grpc-status", "0"}}});
  EXPECT_TRUE(run(server3, 3s, 100).status.ok());
}

TEST(GrpcClientScripted, TruncatedMessageIsAnError) {
  ScriptedServer server(
      {.data = prefix_only(10) + "abc", .trailers = Headers{{"grpc-status", "0"}}});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kInternal) << r.status.describe();
}

TEST(GrpcClientScripted, RstStreamMapsToCodes) {
  for (auto [rst, code] :
       {std::pair{uint32_t{NGHTTP2_REFUSED_STREAM}, StatusCode::kUnavailable},
        std::pair{uint32_t{NGHTTP2_CANCEL}, StatusCode::kCancelled},
        std::pair{uint32_t{NGHTTP2_ENHANCE_YOUR_CALM}, StatusCode::kResourceExhausted},
        std::pair{uint32_t{NGHTTP2_PROTOCOL_ERROR}, StatusCode::kInternal}}) {
    ScriptedServer server({.kind = Script::Kind::kRst, .rst_code = rst});
    auto r = run(server);
    EXPECT_EQ(r.status.code, code) << rst << ": " << r.status.describe();
    EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
  }
}

TEST(GrpcClientScripted, GoawayBeforeTheStreamIsUnavailable) {
  ScriptedServer server({.kind = Script::Kind::kGoaway});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kUnavailable) << r.status.describe();
  EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
  EXPECT_LT(r.took, 2s);
}

TEST(GrpcClientScripted, GarbageIsAnErrorNotAHang) {
  ScriptedServer server({.kind = Script::Kind::kGarbage});
  auto r = run(server, 10s);
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
  EXPECT_LT(r.took, 3s);
}

TEST(GrpcClientScripted, ConnectionDropIsUnavailable) {
  ScriptedServer server({.kind = Script::Kind::kCloseOnRequest});
  auto r = run(server);
  EXPECT_EQ(r.status.code, StatusCode::kUnavailable) << r.status.describe();
  EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
  // Mid-stream: headers and a message, then the connection goes away.
  ScriptedServer server2({.data = frame("partial"), .close_after_data = true});
  r = run(server2);
  EXPECT_EQ(r.status.code, StatusCode::kUnavailable) << r.status.describe();
  EXPECT_EQ(r.messages, std::vector<std::string>{"partial"});
}

TEST(GrpcClientScripted, SilentServerHitsTheDeadline) {
  ScriptedServer server({.kind = Script::Kind::kSilent});
  auto r = run(server, 300ms);
  EXPECT_EQ(r.status.code, StatusCode::kDeadlineExceeded) << r.status.describe();
  EXPECT_TRUE(contains(r.status.message, server.address())) << r.status.message;
  EXPECT_LT(r.took, 1500ms);
}

TEST(GrpcClientHelpers, MessagesAreLengthPrefixedAndOnlyOneWholeMessageIsRead) {
  using namespace std::string_literals;
  EXPECT_EQ(zt::grpc::frame_message("abc"), "\0\0\0\0\3abc"s);
  EXPECT_EQ(zt::grpc::frame_message(""), "\0\0\0\0\0"s);
  const std::string big(70000, 'x');
  auto framed = zt::grpc::frame_message(big);
  EXPECT_EQ(framed.substr(0, 5), "\0\0\x01\x11\x70"s);
  ASSERT_TRUE(zt::grpc::single_message(framed));
  EXPECT_EQ(*zt::grpc::single_message(framed), big);
  EXPECT_EQ(zt::grpc::single_message("\0\0\0\0\0"s), std::string_view());
  EXPECT_FALSE(zt::grpc::single_message("\0\0\0\0"s)) << "truncated prefix";
  EXPECT_FALSE(zt::grpc::single_message("\0\0\0\0\3ab"s)) << "truncated message";
  EXPECT_FALSE(zt::grpc::single_message("\0\0\0\0\1ab"s)) << "trailing bytes";
  EXPECT_FALSE(zt::grpc::single_message("\1\0\0\0\1a"s)) << "compressed";
}

TEST(GrpcClientHelpers, TimeoutAndPercentDecodingAndTargets) {
  EXPECT_EQ(zt::grpc::format_timeout(250ms), "250000u");
  EXPECT_EQ(zt::grpc::format_timeout(10s), "10000000u");
  EXPECT_EQ(zt::grpc::format_timeout(100s), "100000m");
  EXPECT_EQ(zt::grpc::format_timeout(std::chrono::hours(1000)), "3600000S");
  EXPECT_EQ(zt::grpc::format_timeout(1ns), "1n");
  EXPECT_EQ(zt::grpc::percent_decode("a%20b%zz%4"), "a b%zz%4");
  auto t = zt::grpc::parse_target("https://[::1]:15012/");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, "15012");
  EXPECT_EQ(t->authority, "[::1]:15012");
  EXPECT_FALSE(zt::grpc::parse_target("istiod:15012"));
  EXPECT_FALSE(zt::grpc::parse_target("http://istiod"));
  EXPECT_FALSE(zt::grpc::parse_target("http://istiod:abc"));
  EXPECT_FALSE(zt::grpc::parse_target("http://istiod:1/x"));
}

}  // namespace
}  // namespace zt
