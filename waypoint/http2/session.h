// Private to waypoint/http2: what the downstream server and the upstream client share. One
// nghttp2 session driven over a Duplex by two coroutines (a reader feeding nghttp2, a writer
// draining it), and outgoing message bodies handed to nghttp2 without copies.
//
// Invariants:
// - Everything runs on one executor; nghttp2 is only entered from it; nothing locks.
// - At most kOutHighWater bytes of serialized frames wait for the peer: nghttp2 is told to
//   wait (WOULDBLOCK) beyond that, so a peer that does not read does not grow our memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nghttp2/nghttp2.h>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "common/base/result.h"
#include "waypoint/http/headers.h"
#include "waypoint/message/duplex.h"

namespace zt::waypoint::http2 {

// A message body (and its trailers) being sent on one stream; nghttp2's data source.
struct OutBody {
  int32_t stream_id = -1;
  std::string data;
  size_t offset = 0;
  http::HeaderList trailers;  // sent as a final HEADERS frame when not empty
  // A streamed body: more data is coming, so an empty buffer defers the stream (the role
  // appends, then nghttp2_session_resume_data) instead of ending it.
  bool more = false;
  async::Event* sent = nullptr;  // notified whenever a DATA frame of it was written
};

// Name/value pairs for nghttp2, pointing into strings the builder owns.
class HeaderBlock {
 public:
  void add(std::string name, std::string value);
  // Regular fields: names lower-cased; pseudo-headers and empty names dropped.
  void add_regular(const http::HeaderList& headers);
  const nghttp2_nv* data();
  size_t size() const { return fields_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
  std::vector<nghttp2_nv> nva_;
};

class Session {
 public:
  static constexpr size_t kReadBufferSize = 32 * 1024;
  static constexpr size_t kOutHighWater = 256 * 1024;

  Session(asio::any_io_executor ex, Duplex io);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  nghttp2_session* ng() const { return ng_; }
  const asio::any_io_executor& executor() const { return ex_; }
  bool ended() const { return ended_; }
  // Asks the writer to run nghttp2 again (after a submit or a consumed window).
  void wake() { writer_.notify(); }

  // How a role's nghttp2 session is made.
  struct Setup {
    bool server = false;
    bool http_messaging = true;  // nghttp2's own HTTP checks (off: the server checks itself)
    size_t max_send_header_block = 64 * 1024;
    std::vector<nghttp2_settings_entry> settings;
    int32_t connection_window = 65535;
    // WINDOW_UPDATE only for what the role says it consumed (nghttp2_session_consume), so a
    // body nobody reads yet stops its sender instead of growing our memory.
    bool manual_window = false;
    // Registers the role's callbacks on top of the common ones (output, DATA from OutBody).
    void (*add_callbacks)(nghttp2_session_callbacks*) = nullptr;
  };
  // Creates the session (user data: this Session) and queues SETTINGS and the window.
  Status start_session(const Setup& setup);
  // A data provider sending `body` (then its trailers); nullopt-like `has` false when the
  // message has neither body nor trailers (END_STREAM on the HEADERS frame).
  static nghttp2_data_provider provider(OutBody& body);
  static bool needs_provider(const OutBody& body) {
    return !body.data.empty() || !body.trailers.empty() || body.more;
  }

 protected:
  // Runs until the peer closes (and, then, until idle_after_peer_eof()), an I/O error, a
  // protocol error or nghttp2 has nothing left to read or write (GOAWAY sent after terminate).
  // `already_read` is fed to nghttp2 first.
  awaitable<void> pump(std::string already_read);
  // True when nothing is left to answer once the peer stopped sending.
  virtual bool idle_after_peer_eof() const = 0;

  asio::any_io_executor ex_;
  Duplex io_;
  nghttp2_session* ng_ = nullptr;
  bool ended_ = false;
  bool peer_eof_ = false;
  bool fatal_ = false;  // protocol or I/O error: flush what nghttp2 queued (GOAWAY) and end

 private:
  friend struct CommonCallbacks;
  awaitable<void> read_loop(std::string already_read);
  awaitable<void> write_loop();
  bool feed(const uint8_t* data, size_t n);

  std::string out_;
  async::Event writer_;
  async::Event parked_;  // never notified: a finished reader waits here until the writer ends
};

// "PROTOCOL_ERROR", "REFUSED_STREAM", ... for an HTTP/2 error code.
std::string_view error_code_name(uint32_t code);

}  // namespace zt::waypoint::http2
