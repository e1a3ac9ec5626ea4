#include "common/h2/connection.h"

#include <algorithm>
#include <cstring>

#include <nghttp2/nghttp2.h>

#include "common/base/log.h"
#include "common/base/memory.h"

namespace zt::h2 {
namespace {

constexpr size_t kReadBufferSize = 32 * 1024;
// Stop serializing frames once this much is queued for the socket.
constexpr size_t kOutHighWater = 512 * 1024;
// Output buffers above this capacity are freed once the burst that grew them is over (see
// release_output_buffers).
constexpr size_t kOutKeepCapacity = 64 * 1024;
// At most one heap trim per process per this interval (it locks every arena in turn).
constexpr std::chrono::seconds kTrimInterval{1};
// Per-stream cap on the request/response header bytes we keep.
constexpr size_t kMaxStreamHeaderBytes = 16 * 1024;
constexpr size_t kMaxHeadersPerStream = 64;

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// nghttp2 callbacks. `user_data` is the Connection; stream user data is the Stream.

struct Connection::Callbacks {
  static Connection& conn(void* user_data) { return *static_cast<Connection*>(user_data); }
  static Stream* stream(nghttp2_session* session, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int,
                         void* user_data) {
    auto& c = conn(user_data);
    if (c.out_.size() >= kOutHighWater) return NGHTTP2_ERR_WOULDBLOCK;
    c.out_.append(reinterpret_cast<const char*>(data), length);
    return static_cast<ssize_t>(length);
  }

  // DATA payload is copied straight from the stream's send buffer into the output buffer.
  static int on_send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                          size_t length, nghttp2_data_source* source, void* user_data) {
    auto& c = conn(user_data);
    auto* s = static_cast<Stream*>(source->ptr);
    if (c.out_.size() >= kOutHighWater) return NGHTTP2_ERR_WOULDBLOCK;
    c.out_.append(reinterpret_cast<const char*>(framehd), 9);
    size_t padlen = frame->data.padlen;
    if (padlen > 0) c.out_.push_back(static_cast<char>(padlen - 1));
    c.out_.append(s->send_, s->send_off_, length);
    if (padlen > 1) c.out_.append(padlen - 1, '\0');
    s->send_off_ += length;
    if (s->send_off_ == s->send_.size()) {
      s->send_.clear();
      s->send_off_ = 0;
    } else if (s->send_off_ >= 64 * 1024 && s->send_off_ * 2 >= s->send_.size()) {
      s->send_.erase(0, s->send_off_);
      s->send_off_ = 0;
    }
    s->writable_.notify();
    return 0;
  }

  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* data_flags,
                           nghttp2_data_source* source, void*) {
    auto* s = static_cast<Stream*>(source->ptr);
    size_t avail = s->send_.size() - s->send_off_;
    if (avail == 0) {
      if (s->send_eof_) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
      }
      s->deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(avail, length);
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && s->send_eof_) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                              void* user_data) {
    auto& c = conn(user_data);
    if (c.role_ != Role::kServer || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    auto s = std::make_shared<Stream>(c.ex_);
    s->conn_ = c.weak_from_this();
    s->id_ = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(session, s->id_, s.get());
    c.streams_[s->id_] = std::move(s);
    c.last_active_ = std::chrono::steady_clock::now();
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void* user_data) {
    auto& c = conn(user_data);
    Stream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    s->header_bytes_ += namelen + valuelen;
    if (s->header_bytes_ > kMaxStreamHeaderBytes || s->headers_.size() >= kMaxHeadersPerStream) {
      // Resets this stream only.
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (c.role_ == Role::kServer) {
      if (n == ":method") {
        s->method_ = v;
      } else if (n == ":authority") {
        s->authority_ = v;
      } else {
        s->headers_.emplace_back(n, v);
      }
    } else if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      if (n == ":status") {
        int status = 0;
        for (char ch : v) status = status * 10 + (ch - '0');  // nghttp2 validated 3 digits
        s->status_ = status;
      } else {
        s->headers_.emplace_back(n, v);
      }
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    // No last_active_ update here: PING ACKs would keep an idle pooled connection alive
    // forever. Streams opening and closing are what count as activity.
    ZT_LOG_TRACE("component=h2 role={} frame={} stream={} flags={}",
                 c.role_ == Role::kServer ? "server" : "client", frame->hd.type,
                 frame->hd.stream_id, frame->hd.flags);
    switch (frame->hd.type) {
      case NGHTTP2_DATA:
      case NGHTTP2_HEADERS: {
        Stream* s = stream(session, frame->hd.stream_id);
        if (s == nullptr) return 0;
        bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (frame->hd.type == NGHTTP2_HEADERS) {
          if (c.role_ == Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (end) s->recv_eof_ = true;
            ++c.streams_total_;
            auto it = c.streams_.find(s->id_);
            if (it != c.streams_.end() && c.on_stream_) c.on_stream_(it->second);
            return 0;
          }
          if (c.role_ == Role::kClient && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
            s->response_ready_ = true;
            s->response_.notify();
          }
        }
        if (end) {
          s->recv_eof_ = true;
          s->wake_reader();
        }
        return 0;
      }
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) c.ping_outstanding_ = false;
        return 0;
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                           const uint8_t* data, size_t len, void*) {
    Stream* s = stream(session, stream_id);
    if (s == nullptr || s->closed_) {
      // Nobody will read it: give the window back at once.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    s->recv_.append(reinterpret_cast<const char*>(data), len);
    s->wake_reader();
    return 0;
  }

  // A server answer that ended the stream (400/401/503) leaves the client's side open; reset
  // it once the answer is on the wire so the client stops sending and its window comes back.
  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (c.role_ != Role::kServer || frame->hd.type != NGHTTP2_HEADERS ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  // DATA frames as large as the windows and the peer's max frame size allow (nghttp2 caps
  // them at 16 KiB otherwise), bounded so one frame does not monopolize the output buffer.
  static ssize_t data_read_length(nghttp2_session*, uint8_t, int32_t, int32_t session_window,
                                  int32_t stream_window, uint32_t remote_max_frame, void*) {
    int64_t n = std::min<int64_t>({session_window, stream_window, remote_max_frame, 128 * 1024});
    return static_cast<ssize_t>(std::max<int64_t>(n, 1));
  }

  static int on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                             void* user_data) {
    auto& c = conn(user_data);
    Stream* s = stream(session, stream_id);
    if (s != nullptr) c.finish_stream(*s, error_code);
    return 0;
  }
};

// ---------------------------------------------------------------------------------------------
// Stream

Stream::Stream(asio::any_io_executor ex) : ex_(ex), readable_(ex), writable_(ex), response_(ex) {}

void Stream::on_peer_end(std::function<void()> fn) {
  on_peer_end_ = std::move(fn);
  fire_peer_end();
}

void Stream::wake_reader() {
  readable_.notify();
  fire_peer_end();
}

void Stream::fire_peer_end() {
  if ((recv_eof_ || closed_) && on_peer_end_) {
    asio::post(ex_, std::exchange(on_peer_end_, nullptr));
  }
}

Stream::~Stream() {
  // Unread bytes still count against the connection window: return them.
  if (auto c = conn_.lock(); c && !c->closed_) {
    size_t unread = recv_.size() - recv_off_;
    if (unread > 0) c->consumed(*this, unread);
    if (!closed_ && id_ >= 0) {
      nghttp2_session_set_stream_user_data(c->session_, id_, nullptr);
      nghttp2_submit_rst_stream(c->session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
      c->signal_write();
    }
  }
}

std::optional<std::string> Stream::header(std::string_view name) const {
  for (const auto& [k, v] : headers_) {
    if (k == name) return v;
  }
  return std::nullopt;
}

error_code Stream::respond(int status, const Headers& headers) {
  auto c = conn_.lock();
  if (!c || c->closed_ || closed_) return asio::error::connection_aborted;
  std::string status_str = std::to_string(status);
  std::string status_name = ":status";
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.size() + 1);
  nva.push_back(make_nv(status_name, status_str));
  for (const auto& [k, v] : headers) nva.push_back(make_nv(k, v));
  nghttp2_data_provider prd{};
  prd.source.ptr = this;
  prd.read_callback = &Connection::Callbacks::read_data;
  int rv = nghttp2_submit_response(c->session_, id_, nva.data(), nva.size(),
                                   status == 200 ? &prd : nullptr);
  if (rv != 0) return asio::error::invalid_argument;
  status_ = status;
  if (status != 200) {
    // Nobody reads a rejected stream: DATA the client still sends is given back at once.
    closed_ = true;
    size_t unread = recv_.size() - recv_off_;
    if (unread > 0) c->consumed(*this, unread);
    recv_.clear();
    recv_off_ = 0;
  }
  c->signal_write();
  return {};
}

awaitable<std::tuple<error_code, size_t>> Stream::read_some_until(asio::mutable_buffer b,
                                                                  Deadline deadline) {
  for (;;) {
    if (recv_off_ < recv_.size()) {
      size_t n = std::min(b.size(), recv_.size() - recv_off_);
      std::memcpy(b.data(), recv_.data() + recv_off_, n);
      recv_off_ += n;
      if (recv_off_ == recv_.size()) {
        recv_.clear();
        recv_off_ = 0;
        // A bulk transfer may have grown the buffer to the stream window; do not keep it.
        if (recv_.capacity() > 256 * 1024) recv_.shrink_to_fit();
      }
      if (auto c = conn_.lock()) c->consumed(*this, n);
      co_return std::tuple{error_code{}, n};
    }
    if (recv_eof_) co_return std::tuple{error_code(asio::error::eof), size_t{0}};
    auto c = conn_.lock();
    if (!c || c->closed_)
      co_return std::tuple{error_code(asio::error::connection_aborted), size_t{0}};
    if (closed_) co_return std::tuple{error_code(asio::error::connection_reset), size_t{0}};
    c.reset();
    switch (co_await readable_.wait_until(deadline)) {
      case async::Event::Wake::kNotified:
        break;
      case async::Event::Wake::kExpired:
        co_return std::tuple{error_code(asio::error::timed_out), size_t{0}};
      case async::Event::Wake::kCancelled:
        co_return std::tuple{error_code(asio::error::operation_aborted), size_t{0}};
    }
  }
}

awaitable<error_code> Stream::write_all_until(asio::const_buffer b, Deadline deadline) {
  for (;;) {
    auto c = conn_.lock();
    if (!c || c->closed_) co_return asio::error::connection_aborted;
    if (closed_) co_return asio::error::connection_reset;
    if (send_eof_) co_return asio::error::shut_down;
    if (send_.size() - send_off_ < kMaxStreamSendBuffer) {
      send_.append(static_cast<const char*>(b.data()), b.size());
      if (deferred_) {
        deferred_ = false;
        nghttp2_session_resume_data(c->session_, id_);
      }
      c->signal_write();
      co_return error_code{};
    }
    c.reset();
    switch (co_await writable_.wait_until(deadline)) {
      case async::Event::Wake::kNotified:
        break;
      case async::Event::Wake::kExpired:
        co_return asio::error::timed_out;
      case async::Event::Wake::kCancelled:
        co_return asio::error::operation_aborted;
    }
  }
}

awaitable<error_code> Stream::shutdown_write() {
  auto c = conn_.lock();
  if (!c || c->closed_) co_return asio::error::connection_aborted;
  if (closed_) co_return asio::error::connection_reset;
  if (send_eof_) co_return error_code{};
  send_eof_ = true;
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(c->session_, id_);
  }
  c->signal_write();
  co_return error_code{};
}

void Stream::abort() {
  auto c = conn_.lock();
  if (c && !c->closed_ && !closed_ && id_ >= 0) {
    nghttp2_submit_rst_stream(c->session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    c->signal_write();
  }
  if (!closed_) {
    closed_ = true;
    close_code_ = NGHTTP2_CANCEL;
  }
  wake_reader();
  writable_.notify();
  response_.notify();
}

// ---------------------------------------------------------------------------------------------
// Connection

Result<std::shared_ptr<Connection>> Connection::create(TlsStream stream, Role role,
                                                       Settings settings, StreamHandler on_stream) {
  std::shared_ptr<Connection> c(
      new Connection(std::move(stream), role, settings, std::move(on_stream)));
  if (auto st = c->init_session(); !st) return tl::unexpected(st.error());
  return c;
}

Connection::Connection(TlsStream stream, Role role, Settings settings, StreamHandler on_stream)
    : ex_(stream.get_executor()),
      tls_(std::move(stream)),
      role_(role),
      settings_(settings),
      on_stream_(std::move(on_stream)),
      write_event_(ex_),
      last_active_(std::chrono::steady_clock::now()) {}

Connection::~Connection() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

Status Connection::init_session() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return fail("nghttp2: out of memory");
  nghttp2_session_callbacks_set_send_callback(cbs, &Callbacks::on_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &Callbacks::on_send_data);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, &Callbacks::data_read_length);

  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, settings_.max_header_list_size);

  int rv = role_ == Role::kServer ? nghttp2_session_server_new2(&session_, cbs, this, opt)
                                  : nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return failf("nghttp2 session: {}", nghttp2_strerror(rv));

  std::vector<nghttp2_settings_entry> iv = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size},
  };
  if (role_ == Role::kServer) {
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams});
  } else {
    iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  if (rv != 0) return failf("nghttp2 settings: {}", nghttp2_strerror(rv));
  rv = nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                             static_cast<int32_t>(settings_.connection_window));
  if (rv != 0) return failf("nghttp2 connection window: {}", nghttp2_strerror(rv));
  return {};
}

uint32_t Connection::peer_max_streams() const {
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

awaitable<void> Connection::run() {
  using namespace asio::experimental::awaitable_operators;
  // Cancelling run() (a drain, a worker going away) ends the loops below; what follows them
  // must still run, or the streams, which hold their pool lease, would keep this connection
  // alive forever. So a cancellation is not rethrown by the cleanup's own (bounded) waits.
  co_await asio::this_coro::throw_if_cancelled(false);
  auto self = shared_from_this();
  signal_write();
  co_await (read_loop() || write_loop() || keepalive_loop());
  // After a protocol error nghttp2 has queued a GOAWAY saying why; the writer was cancelled
  // with the reader, so flush it once, briefly.
  if (nghttp2_session_send(session_) == 0 && !out_.empty() && tls_.lowest_layer().is_open()) {
    std::string last;
    last.swap(out_);
    co_await async::with_timeout(asio::async_write(tls_, asio::buffer(last), kTuple),
                                 std::chrono::seconds(1));
  }
  closed_ = true;
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, s] : streams) {
    if (!s->closed_) {
      s->closed_ = true;
      s->close_code_ = NGHTTP2_CANCEL;
    }
    s->wake_reader();
    s->writable_.notify();
    s->response_.notify();
  }
  // close_notify is a courtesy; do not wait long for a peer that went away, nor at all for
  // one that stopped answering.
  if (!peer_unresponsive_) {
    co_await async::with_timeout(tls_.async_shutdown(kTuple), std::chrono::seconds(1));
  }
  error_code ec;
  tls_.lowest_layer().close(ec);
}

awaitable<void> Connection::read_loop() {
  std::vector<uint8_t> buf(kReadBufferSize);
  for (;;) {
    auto [ec, n] = co_await tls_.async_read_some(asio::buffer(buf), kTuple);
    if (ec) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted &&
          ec != asio::ssl::error::stream_truncated) {
        ZT_LOG_DEBUG("component=h2 msg=\"read failed\" error=\"{}\"", ec.message());
      }
      co_return;
    }
    auto rv = nghttp2_session_mem_recv(session_, buf.data(), n);
    if (rv < 0) {
      ZT_LOG_DEBUG("component=h2 msg=\"protocol error\" error=\"{}\"",
                   nghttp2_strerror(static_cast<int>(rv)));
      // Let the writer flush the GOAWAY nghttp2 queued.
      signal_write();
      co_return;
    }
    signal_write();
  }
}

awaitable<void> Connection::write_loop() {
  for (;;) {
    int rv = nghttp2_session_send(session_);
    if (rv != 0) {
      ZT_LOG_DEBUG("component=h2 msg=\"send failed\" error=\"{}\"", nghttp2_strerror(rv));
      co_return;
    }
    if (!out_.empty()) {
      writing_.swap(out_);
      out_peak_ = std::max(out_peak_, writing_.size());
      writing_busy_ = true;
      auto [ec, n] = co_await asio::async_write(tls_, asio::buffer(writing_), kTuple);
      writing_busy_ = false;
      if (ec) co_return;
      writing_.clear();
      continue;
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      co_return;
    }
    if (release_pending_) release_output_buffers();
    if (!co_await write_event_.wait()) co_return;
  }
}

awaitable<void> Connection::keepalive_loop() {
  asio::steady_timer timer(ex_);
  for (;;) {
    timer.expires_after(settings_.ping_interval);
    auto [ec] = co_await timer.async_wait(kTuple);
    if (ec) co_return;
    auto now = std::chrono::steady_clock::now();
    if (ping_outstanding_ && now - ping_sent_ >= settings_.ping_timeout) {
      ZT_LOG_WARN("component=h2 msg=\"ping timeout, closing connection\"");
      peer_unresponsive_ = true;
      co_return;
    }
    // A burst that ended on a stream that is still open: release once a whole interval
    // passed without a large write.
    if (out_peak_ <= kOutKeepCapacity) release_output_buffers();
    out_peak_ = 0;
    if (role_ == Role::kClient && streams_.empty() && !draining_ &&
        now - last_active_ >= settings_.idle_timeout) {
      ZT_LOG_DEBUG("component=h2 msg=\"idle connection released\"");
      drain();
      continue;
    }
    if (!ping_outstanding_) {
      if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) == 0) {
        ping_outstanding_ = true;
        ping_sent_ = now;
        signal_write();
      }
    }
  }
}

void Connection::release_output_buffers() {
  if (!out_.empty() || writing_busy_) return;  // the writer's wait point will come back to it
  release_pending_ = false;
  size_t freed = 0;
  for (std::string* b : {&out_, &writing_}) {
    if (b->capacity() > kOutKeepCapacity) {
      freed += b->capacity();
      std::string().swap(*b);
    }
  }
  // What else the burst freed (its streams' buffers) may sit in the worker's malloc arena.
  if (freed > 0) release_free_memory_at_most_every(kTrimInterval);
}

awaitable<Result<std::shared_ptr<Stream>>> Connection::open_request(
    std::string method, std::string authority, Headers headers, std::chrono::milliseconds timeout) {
  if (closed_ || draining()) co_return fail("HBONE connection is closing");
  auto s = std::make_shared<Stream>(ex_);
  s->conn_ = weak_from_this();
  s->method_ = std::move(method);
  s->authority_ = std::move(authority);
  const std::string method_name = ":method";
  const std::string authority_name = ":authority";
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.size() + 2);
  nva.push_back(make_nv(method_name, s->method_));
  nva.push_back(make_nv(authority_name, s->authority_));
  for (const auto& [k, v] : headers) nva.push_back(make_nv(k, v));
  nghttp2_data_provider prd{};
  prd.source.ptr = s.get();
  prd.read_callback = &Callbacks::read_data;
  int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &prd, s.get());
  if (id < 0) co_return failf("HBONE CONNECT not sent: {}", nghttp2_strerror(id));
  s->id_ = id;
  streams_[id] = s;
  ++streams_total_;
  last_active_ = std::chrono::steady_clock::now();
  signal_write();

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!s->response_ready_ && !s->closed_) {
    // The stream's own event times out: no second timer per CONNECT.
    const auto woke = co_await s->response_.wait_until(deadline);
    if (woke == async::Event::Wake::kExpired) {
      s->abort();
      co_return failf("no answer to the HBONE CONNECT within {} ms", timeout.count());
    }
    if (woke == async::Event::Wake::kCancelled) {
      s->abort();
      co_return fail("HBONE CONNECT cancelled");
    }
  }
  if (!s->response_ready_) {
    co_return failf("HBONE stream reset before a response (h2 error {})", s->close_code_);
  }
  if (s->status_ != 200) {
    s->abort();
    co_return failf("http status: {}", s->status_);
  }
  co_return s;
}

void Connection::finish_stream(Stream& s, uint32_t code) {
  s.closed_ = true;
  s.close_code_ = code;
  s.wake_reader();
  s.writable_.notify();
  s.response_.notify();
  last_active_ = std::chrono::steady_clock::now();
  streams_.erase(s.id_);  // may destroy `s`
  // The last stream ended, so whatever burst grew the output buffers is over. The writer may
  // still be flushing its last frames; then it releases them before it waits. (With streams
  // left, the keep-alive tick releases them once a whole interval had no large write.)
  if (streams_.empty()) {
    release_pending_ = true;
    release_output_buffers();
  }
}

void Connection::consumed(Stream& s, size_t n) {
  if (closed_ || n == 0) return;
  nghttp2_session_consume(session_, s.id_, n);
  signal_write();
}

void Connection::drain() {
  if (closed_ || draining_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  signal_write();
}

void Connection::close() {
  if (closed_) return;
  error_code ec;
  tls_.lowest_layer().cancel(ec);
  tls_.lowest_layer().close(ec);
}

}  // namespace zt::h2
