// HTTP/2 for HBONE, on nghttp2: one TLS connection carrying many CONNECT streams.
//
// Invariants:
// - A Connection and all its Streams live on one executor (one worker thread); nothing here
//   locks. nghttp2 is only entered from that executor.
// - Flow control is manual (no automatic WINDOW_UPDATE): bytes a stream received are only
//   acknowledged when its reader takes them, so a slow reader stops its peer instead of growing
//   memory. Memory per connection is bounded by the connection window.
// - Writes to a stream wait while its send buffer is above kMaxStreamSendBuffer.
// - A Stream may outlive its Connection (the copy loop still holds it); it then reports
//   connection_aborted for every operation.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/ssl.hpp>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "common/base/result.h"

struct nghttp2_session;

namespace zt::h2 {

using TlsStream = asio::ssl::stream<tcp::socket>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// HTTP/2 settings of DESIGN §4 (ztunnel's defaults).
struct Settings {
  uint32_t stream_window = 4 * 1024 * 1024;
  uint32_t connection_window = 16 * 1024 * 1024;
  uint32_t max_frame_size = 1024 * 1024;
  uint32_t max_concurrent_streams = 100;  // advertised by a server
  uint32_t max_header_list_size = 64 * 1024;
  std::chrono::milliseconds ping_interval{10'000};
  std::chrono::milliseconds ping_timeout{20'000};
  // Client connections with no stream for this long are closed (pool release).
  std::chrono::milliseconds idle_timeout{300'000};
};

enum class Role { kClient, kServer };

class Connection;

// One CONNECT tunnel. Satisfies net::DuplexStream.
class Stream {
 public:
  static constexpr size_t kMaxStreamSendBuffer = 256 * 1024;

  explicit Stream(asio::any_io_executor ex);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int32_t id() const { return id_; }
  // Request as received (server) or sent (client).
  const std::string& method() const { return method_; }
  const std::string& authority() const { return authority_; }
  const Headers& headers() const { return headers_; }
  std::optional<std::string> header(std::string_view name) const;
  // Response status (client side), 0 until known.
  int status() const { return status_; }

  // Server side: answers the request. 200 keeps the stream open as a tunnel; any other status
  // ends it.
  error_code respond(int status, const Headers& headers = {});

  using Deadline = std::chrono::steady_clock::time_point;

  // DuplexStream.
  awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) {
    return read_some_until(b, Deadline::max());
  }
  awaitable<error_code> write_all(asio::const_buffer b) {
    return write_all_until(b, Deadline::max());
  }
  // The same, giving up with asio::error::timed_out when the peer has sent nothing (read) or
  // taken nothing (write: the stream's send buffer stays full) by `deadline`. The stream stays
  // usable. Cheaper than async::with_timeout: the wait uses the stream's own timer.
  awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b,
                                                            Deadline deadline);
  awaitable<error_code> write_all_until(asio::const_buffer b, Deadline deadline);
  awaitable<error_code> shutdown_write();
  void abort();

  // Calls `fn` once, posted to the stream's executor, when nothing more can come from the peer:
  // it ended its side (END_STREAM), or the stream ended (RST_STREAM, the connection gone, an
  // abort). Posted at once when that has already happened. No read need be pending, so a
  // server can notice its client going away while it works on a request. An empty `fn` drops
  // the one set (not one already posted).
  void on_peer_end(std::function<void()> fn);

  // Something the pool hangs on a stream so its slot is released when the stream is dropped.
  void set_lease(std::shared_ptr<void> lease) { lease_ = std::move(lease); }

 private:
  friend class Connection;

  // Wakes a waiting reader, and fires the on_peer_end callback at the peer's end.
  void wake_reader();
  void fire_peer_end();

  asio::any_io_executor ex_;
  std::weak_ptr<Connection> conn_;
  int32_t id_ = -1;
  std::string method_;
  std::string authority_;
  Headers headers_;
  size_t header_bytes_ = 0;
  int status_ = 0;

  std::string recv_;
  size_t recv_off_ = 0;
  bool recv_eof_ = false;

  std::string send_;
  size_t send_off_ = 0;
  bool send_eof_ = false;  // shutdown_write() asked for END_STREAM
  bool deferred_ = false;  // nghttp2 waits for data from us

  bool closed_ = false;
  uint32_t close_code_ = 0;  // HTTP/2 error code of RST_STREAM, 0 when ended cleanly
  bool response_ready_ = false;

  async::Event readable_;
  async::Event writable_;
  async::Event response_;
  std::shared_ptr<void> lease_;
  std::function<void()> on_peer_end_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using StreamHandler = std::function<void(std::shared_ptr<Stream>)>;

  // `on_stream` (server) is called for every request whose headers are complete; it must not
  // block (spawn a coroutine).
  static Result<std::shared_ptr<Connection>> create(TlsStream stream, Role role, Settings settings,
                                                    StreamHandler on_stream = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs the connection until it ends (peer gone, GOAWAY drained, ping timeout, close()).
  awaitable<void> run();

  static constexpr std::chrono::milliseconds kResponseTimeout{10'000};

  // Client: opens a CONNECT stream and waits (at most `timeout`) for the response headers. A
  // non-200 answer is an error "http status: N". The deadline is kept here, not by a caller's
  // `||`, so a stream that did open is never dropped unseen.
  awaitable<Result<std::shared_ptr<Stream>>> open_connect(
      const std::string& authority, const Headers& headers,
      std::chrono::milliseconds timeout = kResponseTimeout) {
    return open_request("CONNECT", authority, headers, timeout);
  }
  // Any method; pseudo-headers other than :method and :authority (e.g. :scheme, :path) go
  // first in `headers`. Tests use it to send what a broken or hostile client would.
  awaitable<Result<std::shared_ptr<Stream>>> open_request(
      std::string method, std::string authority, Headers headers,
      std::chrono::milliseconds timeout = kResponseTimeout);

  // Graceful: GOAWAY, let open streams finish, then close.
  void drain();
  // Immediate.
  void close();

  bool closed() const { return closed_; }
  bool draining() const { return draining_ || goaway_received_; }
  // Streams open on this connection.
  size_t active_streams() const { return streams_.size(); }
  // How many concurrent streams the peer allows us.
  uint32_t peer_max_streams() const;
  TlsStream& tls() { return tls_; }
  asio::any_io_executor executor() { return ex_; }
  // Streams this connection has carried in total.
  uint64_t streams_total() const { return streams_total_; }
  // Bytes allocated for frames waiting for or on their way to the socket.
  size_t output_buffer_capacity() const { return out_.capacity() + writing_.capacity(); }

 private:
  friend class Stream;
  struct Callbacks;

  Connection(TlsStream stream, Role role, Settings settings, StreamHandler on_stream);
  Status init_session();

  awaitable<void> read_loop();
  awaitable<void> write_loop();
  awaitable<void> keepalive_loop();
  void signal_write() { write_event_.notify(); }
  // A bulk transfer grows the two output buffers to about kOutHighWater each, and a pooled
  // connection may then carry only small frames for minutes. Frees those above
  // kOutKeepCapacity when the writer is idle; called when the last stream ends and at
  // keep-alive ticks.
  void release_output_buffers();
  void finish_stream(Stream& s, uint32_t code);
  void consumed(Stream& s, size_t n);

  asio::any_io_executor ex_;
  TlsStream tls_;
  Role role_;
  Settings settings_;
  StreamHandler on_stream_;
  nghttp2_session* session_ = nullptr;

  std::unordered_map<int32_t, std::shared_ptr<Stream>> streams_;
  std::string out_;      // serialized frames waiting for the socket
  std::string writing_;  // frames being written (swapped with out_)
  bool writing_busy_ = false;
  size_t out_peak_ = 0;           // largest write since the last keep-alive tick
  bool release_pending_ = false;  // the last stream ended while the writer was busy
  async::Event write_event_;
  bool closed_ = false;
  bool draining_ = false;
  bool goaway_received_ = false;
  bool ping_outstanding_ = false;
  bool peer_unresponsive_ = false;
  std::chrono::steady_clock::time_point ping_sent_;
  std::chrono::steady_clock::time_point last_active_;
  uint64_t streams_total_ = 0;
};

}  // namespace zt::h2
