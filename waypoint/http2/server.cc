// serve_http2: one downstream h2c connection. Requests are validated here (nghttp2's own HTTP
// messaging checks are off, so that a bad head is answered with a status, as for HTTP/1.1,
// instead of a bare RST_STREAM).
#include <algorithm>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http2/http2.h"
#include "waypoint/http2/session.h"

namespace zt::waypoint::http2 {
namespace {

// Per-stream cap the server advertises (and so the number of handlers one connection can run).
constexpr uint32_t kMaxConcurrentStreams = 128;
// Flow-control windows: the peer may have this much in flight per stream / per connection.
constexpr int32_t kStreamWindow = 1024 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
// HPACK's per-field accounting (RFC 9113 §6.5.2) on top of names and values.
constexpr size_t kFieldOverhead = 32;

struct ServerStream {
  int32_t id = -1;
  Request request;
  std::optional<std::string> host;  // a Host field (used when :authority is absent)
  size_t header_bytes = 0;
  size_t header_count = 0;
  bool regular_seen = false;
  bool has_method = false, has_path = false, has_scheme = false, has_authority = false;
  std::optional<uint64_t> content_length;
  std::optional<http::Rejection> rejection;  // decided while the head arrives
  bool head_request = false;                 // a HEAD: the answer's Content-Length is kept
  bool dispatched = false;                   // the handler runs (or ran) for it
  bool responded = false;
  OutBody out;
};

bool is_connection_specific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

bool has_upper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

class ServerConnection final : public Session,
                               public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(asio::any_io_executor ex, Duplex io, const Limits& limits,
                   RequestHandler handler)
      : Session(std::move(ex), std::move(io)), limits_(limits), handler_(std::move(handler)) {}

  Status init();
  awaitable<void> run(std::string already_read) {
    auto self = shared_from_this();
    co_await pump(std::move(already_read));
    streams_.clear();
  }

 private:
  struct Callbacks;

  // Once the peer stopped sending, only answers still being computed are worth waiting for: a
  // request without its end can never complete.
  bool idle_after_peer_eof() const override {
    return std::none_of(streams_.begin(), streams_.end(), [](const auto& kv) {
      return kv.second->dispatched && !kv.second->responded;
    });
  }

  ServerStream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void reject(ServerStream& s, int status, std::string reason);
  void on_header(ServerStream& s, bool trailers, std::string_view name, std::string_view value);
  void on_head_complete(ServerStream& s);
  void on_request_complete(ServerStream& s);
  void respond(ServerStream& s, Response response);
  static awaitable<void> run_handler(std::weak_ptr<ServerConnection> weak, int32_t id,
                                     Request request, RequestHandler handler);

  Limits limits_;
  RequestHandler handler_;
  std::unordered_map<int32_t, std::unique_ptr<ServerStream>> streams_;
};

// nghttp2 callbacks; `user_data` is the Session base of the ServerConnection.
struct ServerConnection::Callbacks {
  static ServerConnection& conn(void* user_data) {
    return static_cast<ServerConnection&>(*static_cast<Session*>(user_data));
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto s = std::make_unique<ServerStream>();
    s->id = frame->hd.stream_id;
    s->request.version = HttpVersion::kHttp2;
    s->request.head.scheme.clear();
    c.streams_[s->id] = std::move(s);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void* user_data) {
    auto& c = conn(user_data);
    ServerStream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->rejection || s->responded) return 0;
    c.on_header(*s, frame->headers.cat != NGHTTP2_HCAT_REQUEST,
                {reinterpret_cast<const char*>(name), namelen},
                {reinterpret_cast<const char*>(value), valuelen});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    ServerStream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->responded) return 0;
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        c.on_head_complete(*s);
      } else if (!end && !s->rejection) {
        c.reject(*s, 400, "http2.trailers_without_end_stream");
      }
    }
    if (s->responded) return 0;
    if (s->rejection) {
      auto r = *s->rejection;
      c.reject(*s, r.status, r.reason);
      return 0;
    }
    if (end) c.on_request_complete(*s);
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user_data) {
    auto& c = conn(user_data);
    ServerStream* s = c.find(stream_id);
    if (s == nullptr || s->responded || s->rejection || s->dispatched) return 0;
    if (s->request.body.size() + len > c.limits_.max_body_bytes) {
      c.reject(*s, 413, "http2.request_body_too_large");
      return 0;
    }
    s->request.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  // An answer that ends the stream before the request did (413, 431, 400): reset the request
  // side once the answer is out, so the client stops sending.
  static int on_frame_send(nghttp2_session* ng, const nghttp2_frame* frame, void*) {
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (nghttp2_session_get_stream_remote_close(ng, frame->hd.stream_id) == 0) {
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user_data) {
    conn(user_data).streams_.erase(stream_id);  // a handler still running finds it gone
    return 0;
  }
};

Status ServerConnection::init() {
  Setup setup;
  setup.server = true;
  setup.http_messaging = false;
  setup.max_send_header_block = std::max<size_t>(64 * 1024, 2 * limits_.max_header_bytes);
  const auto header_list =
      static_cast<uint32_t>(limits_.max_header_bytes + kFieldOverhead * (limits_.max_headers + 4));
  setup.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
                    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, header_list}};
  setup.connection_window = kConnectionWindow;
  setup.add_callbacks = [](nghttp2_session_callbacks* cbs) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Callbacks::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Callbacks::on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::on_stream_close);
  };
  return start_session(setup);
}

void ServerConnection::on_header(ServerStream& s, bool trailers, std::string_view name,
                                 std::string_view value) {
  s.header_bytes += name.size() + value.size() + kFieldOverhead;
  ++s.header_count;
  // Pseudo-headers (at most 4 valid ones) are not counted against the field limit.
  const size_t max_fields = limits_.max_headers + 4;
  const size_t max_bytes = limits_.max_header_bytes + kFieldOverhead * max_fields;
  if (s.header_count > max_fields || s.header_bytes > max_bytes) {
    s.rejection = http::Rejection{431, "http2.headers_too_large"};
    s.request.head.headers.clear();
    s.request.trailers.clear();
    return;
  }
  auto refuse = [&](std::string reason) { s.rejection = http::Rejection{400, std::move(reason)}; };
  if (name.empty()) return refuse("http2.empty_header_name");
  if (has_upper(name)) return refuse("http2.uppercase_header_name");
  if (trailers) {
    if (name.front() == ':') return refuse("http2.pseudo_header_in_trailers");
    s.request.trailers.push_back({std::string(name), std::string(value)});
    return;
  }
  auto& head = s.request.head;
  if (name.front() == ':') {
    if (s.regular_seen) return refuse("http2.pseudo_header_after_regular");
    auto once = [&](bool& seen, std::string& field) {
      if (seen) return refuse(fmt::format("http2.duplicate_{}", name.substr(1)));
      seen = true;
      field = value;
    };
    if (name == ":method") return once(s.has_method, head.method);
    if (name == ":path") return once(s.has_path, head.target);
    if (name == ":scheme") return once(s.has_scheme, head.scheme);
    if (name == ":authority") return once(s.has_authority, head.authority);
    return refuse("http2.unknown_pseudo_header");
  }
  s.regular_seen = true;
  if (is_connection_specific(name)) return refuse("http2.connection_specific_header");
  if (name == "te" && value != "trailers") return refuse("http2.invalid_te_header");
  if (name == "host") {
    if (s.host) return refuse("http2.duplicate_host");
    s.host = std::string(value);
    return;
  }
  head.headers.push_back({std::string(name), std::string(value)});
}

void ServerConnection::on_head_complete(ServerStream& s) {
  if (s.rejection) return;
  auto& head = s.request.head;
  if (!s.has_method) return reject(s, 400, "http2.missing_method");
  if (head.method == "CONNECT") {
    if (!s.has_authority || s.has_path || s.has_scheme) {
      return reject(s, 400, "http2.invalid_connect");
    }
    head.target = head.authority;
  } else if (!s.has_scheme || !s.has_path || head.target.empty()) {
    return reject(s, 400, "http2.missing_pseudo_header");
  }
  if (!s.has_authority && s.host) head.authority = *s.host;
  if (s.has_authority && s.host && *s.host != head.authority) {
    return reject(s, 400, "http2.host_authority_mismatch");
  }
  const http::HeadLimits head_limits{limits_.max_header_bytes, limits_.max_headers};
  auto framing = http::check_request_head(head, http::Version::kHttp2, head_limits);
  if (!framing) return reject(s, framing.error().status, framing.error().reason);
  if (framing->has_content_length) {
    if (framing->content_length > limits_.max_body_bytes) {
      return reject(s, 413, "http2.request_body_too_large");
    }
    s.content_length = framing->content_length;
  }
}

void ServerConnection::on_request_complete(ServerStream& s) {
  if (s.dispatched || s.rejection) return;
  if (s.content_length && *s.content_length != s.request.body.size()) {
    return reject(s, 400, "http2.content_length_mismatch");
  }
  s.dispatched = true;
  s.head_request = s.request.head.method == "HEAD";
  async::spawn_logged(ex_, run_handler(weak_from_this(), s.id, std::move(s.request), handler_),
                      "waypoint h2 request handler");
}

void ServerConnection::reject(ServerStream& s, int status, std::string reason) {
  ZT_LOG_DEBUG("component=waypoint_h2 msg=\"request refused\" stream={} status={} reason={}", s.id,
               status, reason);
  s.rejection = http::Rejection{status, reason};
  s.request = Request{};
  const char* body = status == 431   ? "request header fields too large"
                     : status == 413 ? "payload too large"
                     : status == 400 ? "bad request"
                                     : "request refused";
  respond(s, local_response(status, body));
}

void ServerConnection::respond(ServerStream& s, Response response) {
  if (s.responded || ended_) return;
  s.responded = true;
  if (response.status < 200 || response.status > 999) {
    // 1xx (an upgrade's 101 included) has no meaning as a final HTTP/2 answer.
    response = local_response(502, "invalid upstream response");
  }
  http::strip_hop_by_hop(response.headers);
  http::remove_header(response.headers, "host");
  // An HTTP/2 peer checks Content-Length against the DATA it gets: never announce other bytes.
  if (!s.head_request && http::find_header(response.headers, "content-length")) {
    http::set_header(response.headers, "content-length", std::to_string(response.body.size()));
  }
  http::strip_hop_by_hop(response.trailers);
  HeaderBlock block;
  block.add(":status", std::to_string(response.status));
  block.add_regular(response.headers);
  s.out.stream_id = s.id;
  s.out.data = std::move(response.body);
  s.out.offset = 0;
  s.out.trailers = std::move(response.trailers);
  nghttp2_data_provider prd = provider(s.out);
  const int rv = nghttp2_submit_response(ng_, s.id, block.data(), block.size(),
                                         needs_provider(s.out) ? &prd : nullptr);
  if (rv != 0) {
    ZT_LOG_DEBUG("component=waypoint_h2 msg=\"response not sent\" stream={} error=\"{}\"", s.id,
                 nghttp2_strerror(rv));
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
  }
  wake();
}

awaitable<void> ServerConnection::run_handler(std::weak_ptr<ServerConnection> weak, int32_t id,
                                              Request request, RequestHandler handler) {
  Response response;
  try {
    response = co_await handler(std::move(request));
  } catch (const std::exception& e) {
    ZT_LOG_ERROR("component=waypoint_h2 msg=\"request handler failed\" error=\"{}\"", e.what());
    response = local_response(500, "internal error");
  }
  auto c = weak.lock();
  if (!c || c->ended_) co_return;
  if (ServerStream* s = c->find(id)) c->respond(*s, std::move(response));
}

}  // namespace

awaitable<void> serve_http2(Duplex downstream, std::string already_read, const Limits& limits,
                            RequestHandler handler) {
  auto ex = co_await asio::this_coro::executor;
  auto conn =
      std::make_shared<ServerConnection>(ex, std::move(downstream), limits, std::move(handler));
  if (auto st = conn->init(); !st) {
    ZT_LOG_WARN("component=waypoint_h2 msg=\"session not started\" error=\"{}\"",
                st.error().message);
    co_return;
  }
  co_await conn->run(std::move(already_read));
}

}  // namespace zt::waypoint::http2
