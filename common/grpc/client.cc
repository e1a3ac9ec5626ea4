#include "common/grpc/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <unistd.h>

#include "common/base/log.h"
#include "common/tls/openssl.h"

namespace zt::grpc {
namespace {

constexpr size_t kReadChunk = 32 * 1024;
constexpr uint32_t kStreamWindow = 1024 * 1024;
constexpr int32_t kConnectionWindow = 2 * 1024 * 1024;
constexpr size_t kMaxResponseHeaderBytes = 64 * 1024;
constexpr size_t kMessagePrefix = 5;

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

bool valid_metadata_key(std::string_view k) {
  if (k.empty() || k.front() == ':') return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

bool valid_metadata_value(std::string_view v) {
  return std::all_of(v.begin(), v.end(),
                     [](char c) { return c != '\r' && c != '\n' && c != '\0'; });
}

uint32_t read_be32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

}  // namespace

std::string_view code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN_CODE";
}

std::string CallStatus::describe() const {
  return fmt::format("{} ({}): {}", code_name(code), static_cast<int>(code), message);
}

StatusCode code_for_http_status(int http_status) {
  switch (http_status) {
    case 400:
      return StatusCode::kInternal;
    case 401:
      return StatusCode::kUnauthenticated;
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return StatusCode::kUnavailable;
    default:
      return StatusCode::kUnknown;
  }
}

StatusCode code_for_rst_stream(uint32_t http2_error) {
  switch (http2_error) {
    case NGHTTP2_REFUSED_STREAM:
      return StatusCode::kUnavailable;
    case NGHTTP2_CANCEL:
      return StatusCode::kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return StatusCode::kResourceExhausted;
    case NGHTTP2_INADEQUATE_SECURITY:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kInternal;
  }
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int h = hex(s[i + 1]), l = hex(s[i + 2]);
      if (h >= 0 && l >= 0) {
        out.push_back(static_cast<char>(h * 16 + l));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string format_timeout(std::chrono::nanoseconds remaining) {
  using namespace std::chrono;
  int64_t ns = std::max<int64_t>(remaining.count(), 1);
  constexpr int64_t kMax = 99'999'999;
  // The finest unit that fits in 8 digits, rounding up so the server never sees a shorter time.
  struct Unit {
    int64_t ns;
    char c;
  };
  static constexpr Unit kUnits[] = {{1, 'n'},
                                    {1'000, 'u'},
                                    {1'000'000, 'm'},
                                    {1'000'000'000, 'S'},
                                    {60'000'000'000, 'M'},
                                    {3'600'000'000'000, 'H'}};
  for (const auto& u : kUnits) {
    int64_t v = (ns + u.ns - 1) / u.ns;
    if (v <= kMax) return fmt::format("{}{}", v, u.c);
  }
  return fmt::format("{}H", kMax);
}

Result<Target> parse_target(std::string_view address) {
  Target t;
  std::string_view a = address;
  if (a.starts_with("https://")) {
    t.tls = true;
    a.remove_prefix(8);
  } else if (a.starts_with("http://")) {
    a.remove_prefix(7);
  } else {
    return failf("gRPC address {}: must start with http:// or https://", address);
  }
  while (!a.empty() && a.back() == '/') a.remove_suffix(1);
  auto colon = a.rfind(':');
  if (a.empty() || a.find('/') != std::string_view::npos || colon == std::string_view::npos ||
      colon == 0 || colon + 1 == a.size()) {
    return failf("gRPC address {}: expected scheme://host:port", address);
  }
  std::string_view host = a.substr(0, colon), port = a.substr(colon + 1);
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      port.size() > 5) {
    return failf("gRPC address {}: bad port", address);
  }
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return failf("gRPC address {}: bad IPv6 host", address);
    host = host.substr(1, host.size() - 2);
  }
  t.host = std::string(host);
  t.port = std::string(port);
  t.authority = std::string(a);
  return t;
}

// ---------------------------------------------------------------------------------------------

struct Call::Impl {
  ChannelOptions options;
  std::string path;
  Metadata metadata;
  std::optional<Clock::time_point> deadline;
  Target target;

  // Cancellation: cancel() sets the flag and wakes poll() through the eventfd.
  std::atomic<bool> cancelled{false};
  int wake_fd = -1;

  int fd = -1;
  tls::SslCtxPtr ssl_ctx;
  tls::SslPtr ssl;
  nghttp2_session* session = nullptr;
  bool started = false;
  bool transport_eof = false;

  std::string out;  // frames serialized by nghttp2, not yet on the socket
  size_t out_off = 0;

  // The stream.
  int32_t stream_id = -1;
  std::string send;  // framed messages not yet taken by nghttp2
  size_t send_off = 0;
  bool send_eof = false;
  bool deferred = false;

  std::string recv;  // DATA payload not yet returned by read()
  size_t recv_off = 0;
  size_t unacked = 0;  // received bytes not yet given back to the flow-control window

  bool in_trailers = false;
  size_t header_bytes = 0;
  int http_status = 0;
  std::string content_type;
  std::optional<std::string> grpc_status;
  std::string grpc_message;
  bool headers_done = false;
  bool remote_closed = false;  // END_STREAM received
  bool stream_closed = false;
  uint32_t rst_code = 0;

  // The first error ends the call; ok until then.
  std::optional<CallStatus> error;
  std::optional<CallStatus> final_status;

  Impl(ChannelOptions o, std::string p, Metadata m, std::optional<Clock::time_point> d)
      : options(std::move(o)), path(std::move(p)), metadata(std::move(m)), deadline(d) {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }

  ~Impl() {
    if (session != nullptr) nghttp2_session_del(session);
    ssl.reset();
    if (fd >= 0) ::close(fd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  const std::string& addr() const { return options.address; }

  bool failed() const { return error.has_value(); }

  // Records the first error; later ones are consequences.
  void set_error(StatusCode code, std::string message) {
    if (error) return;
    error = CallStatus{code, std::move(message)};
    ZT_LOG_DEBUG("component=grpc msg=\"call {} to {} failed: {}\"", path, addr(),
                 error->describe());
  }

  // Fails the call and tells the server (RST_STREAM CANCEL), without waiting for it.
  void abort_call(StatusCode code, std::string message) {
    set_error(code, std::move(message));
    if (session != nullptr && stream_id > 0 && !stream_closed) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
      stream_closed = true;
      flush_nonblocking();
    }
  }

  // ---- waiting -------------------------------------------------------------------------------

  // Checks cancel and deadline; false (with the error set) when the call must stop.
  bool check_live() {
    if (failed()) return false;
    if (cancelled.load(std::memory_order_acquire)) {
      abort_call(StatusCode::kCancelled, fmt::format("call {} to {} cancelled", path, addr()));
      return false;
    }
    if (deadline && Clock::now() >= *deadline) {
      abort_call(StatusCode::kDeadlineExceeded,
                 fmt::format("deadline exceeded calling {} on {}", path, addr()));
      return false;
    }
    return true;
  }

  // Waits until `events` on fd, cancel, or `until` (or the deadline). Returns the revents
  // (0 on timeout); -1 when the call was cancelled or its deadline passed.
  int wait_fd(short events, std::optional<Clock::time_point> until) {
    for (;;) {
      if (!check_live()) return -1;
      std::optional<Clock::time_point> limit = deadline;
      if (until && (!limit || *until < *limit)) limit = until;
      int timeout_ms = -1;
      if (limit) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*limit - Clock::now());
        timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 3'600'000));
      }
      pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
      int n = ::poll(p, 2, timeout_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        set_error(StatusCode::kUnavailable,
                  fmt::format("poll for {} failed: {}", addr(), std::strerror(errno)));
        return -1;
      }
      if (!check_live()) return -1;
      if (n == 0) {
        if (until && Clock::now() >= *until) return 0;
        continue;
      }
      if (p[0].revents != 0) return p[0].revents;
    }
  }

  // ---- connecting ----------------------------------------------------------------------------

  bool connect_tcp(Clock::time_point until) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(target.host.c_str(), target.port.c_str(), &hints, &res);
    if (rc != 0) {
      set_error(StatusCode::kUnavailable,
                fmt::format("cannot resolve {}: {}", addr(), ::gai_strerror(rc)));
      return false;
    }
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
    std::string last = "no address";
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      int s =
          ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (s < 0) {
        last = std::strerror(errno);
        continue;
      }
      fd = s;
      if (::connect(s, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        last = std::strerror(errno);
        ::close(s);
        fd = -1;
        continue;
      }
      int ev = wait_fd(POLLOUT, until);
      if (ev < 0) return false;
      int err = 0;
      socklen_t len = sizeof(err);
      if (ev == 0) {
        err = ETIMEDOUT;
      } else if (::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
      }
      if (err == 0) {
        int one = 1;
        ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return true;
      }
      last = std::strerror(err);
      ::close(s);
      fd = -1;
    }
    set_error(StatusCode::kUnavailable, fmt::format("cannot connect to {}: {}", addr(), last));
    return false;
  }

  bool handshake_tls(Clock::time_point until) {
    ssl_ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (!ssl_ctx) return tls_setup_failed("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ssl_ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_mode(ssl_ctx.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ssl_ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (options.root_pem) {
      X509_STORE* store = SSL_CTX_get_cert_store(ssl_ctx.get());
      auto bio = tls::memory_bio(*options.root_pem);
      int added = 0;
      for (;;) {
        tls::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
        if (!cert) break;
        if (X509_STORE_add_cert(store, cert.get()) == 1) ++added;
      }
      ERR_clear_error();
      if (added == 0) {
        set_error(StatusCode::kUnavailable,
                  fmt::format("TLS to {}: no certificate in the root CA PEM", addr()));
        return false;
      }
    } else if (SSL_CTX_set_default_verify_paths(ssl_ctx.get()) != 1) {
      return tls_setup_failed("loading the system roots");
    }
    static const unsigned char kAlpn[] = {2, 'h', '2'};
    if (SSL_CTX_set_alpn_protos(ssl_ctx.get(), kAlpn, sizeof(kAlpn)) != 0)
      return tls_setup_failed("ALPN");
    ssl.reset(SSL_new(ssl_ctx.get()));
    if (!ssl) return tls_setup_failed("SSL_new");
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    if (is_ip_literal(target.host)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(param, target.host.c_str()) != 1)
        return tls_setup_failed("IP check");
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (X509_VERIFY_PARAM_set1_host(param, target.host.c_str(), target.host.size()) != 1)
        return tls_setup_failed("host check");
      SSL_set_tlsext_host_name(ssl.get(), target.host.c_str());
    }
    SSL_set_fd(ssl.get(), fd);
    for (;;) {
      ERR_clear_error();
      int rc = SSL_connect(ssl.get());
      if (rc == 1) break;
      int e = SSL_get_error(ssl.get(), rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int ev = wait_fd(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, until);
        if (ev < 0) return false;
        if (ev == 0) {
          set_error(StatusCode::kUnavailable,
                    fmt::format("TLS handshake with {} timed out", addr()));
          return false;
        }
        continue;
      }
      long verify = SSL_get_verify_result(ssl.get());
      std::string why = verify != X509_V_OK ? fmt::format("certificate verify failed: {}",
                                                          X509_verify_cert_error_string(verify))
                                            : tls::openssl_errors();
      if (e == SSL_ERROR_SYSCALL && verify == X509_V_OK && why == "no OpenSSL error detail")
        why = "connection closed during the handshake";
      set_error(StatusCode::kUnavailable,
                fmt::format("TLS handshake with {} failed: {}", addr(), why));
      return false;
    }
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl.get(), &proto, &len);
    if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
      set_error(StatusCode::kUnavailable,
                fmt::format("TLS to {}: the server did not select ALPN h2", addr()));
      return false;
    }
    return true;
  }

  bool tls_setup_failed(std::string_view what) {
    set_error(StatusCode::kInternal,
              fmt::format("TLS to {}: {} failed: {}", addr(), what, tls::openssl_errors()));
    return false;
  }

  // ---- nghttp2 -------------------------------------------------------------------------------

  static Impl& self(void* user_data) { return *static_cast<Impl*>(user_data); }

  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
    auto& c = self(user_data);
    size_t avail = c.send.size() - c.send_off;
    if (avail == 0) {
      if (c.send_eof) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
      }
      c.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(avail, length);
    std::memcpy(buf, c.send.data() + c.send_off, n);
    c.send_off += n;
    if (c.send_off == c.send.size()) {
      c.send.clear();
      c.send_off = 0;
      if (c.send_eof) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = self(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != c.stream_id) return 0;
    // Until a final (non-1xx) status arrived, a header block is the response's.
    c.in_trailers = c.headers_done;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void* user_data) {
    auto& c = self(user_data);
    if (frame->hd.stream_id != c.stream_id) return 0;
    c.header_bytes += namelen + valuelen + 32;
    if (c.header_bytes > kMaxResponseHeaderBytes) {
      c.set_error(StatusCode::kInternal, fmt::format("response headers from {} exceed {} bytes",
                                                     c.addr(), kMaxResponseHeaderBytes));
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      for (char ch : v) status = status * 10 + (ch - '0');  // nghttp2 validated 3 digits
      c.http_status = status;
    } else if (n == "content-type" && !c.in_trailers) {
      c.content_type = v;
    } else if (n == "grpc-status") {
      c.grpc_status = std::string(v);
    } else if (n == "grpc-message") {
      c.grpc_message = percent_decode(v);
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = self(user_data);
    if (frame->hd.stream_id != c.stream_id || c.stream_id <= 0) return 0;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && c.http_status >= 200) {
      c.headers_done = true;
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) c.remote_closed = true;
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                           const uint8_t* data, size_t len, void* user_data) {
    auto& c = self(user_data);
    // Not ours, a failed call, or the body of a non-200 answer: nobody reads it.
    if (stream_id != c.stream_id || c.failed() || c.http_status != 200) {
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    c.recv.append(reinterpret_cast<const char*>(data), len);
    c.unacked += len;
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                             void* user_data) {
    auto& c = self(user_data);
    if (stream_id != c.stream_id) return 0;
    c.stream_closed = true;
    c.rst_code = error_code;
    return 0;
  }

  bool init_session() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
      set_error(StatusCode::kInternal, "out of memory");
      return false;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_reserved_remote_streams(opt, 0);
    int rv = nghttp2_session_client_new2(&session, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
      set_error(StatusCode::kInternal,
                fmt::format("HTTP/2 session for {}: {}", addr(), nghttp2_strerror(rv)));
      return false;
    }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxResponseHeaderBytes},
    };
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
    return true;
  }

  bool submit_request() {
    const std::string scheme = target.tls ? "https" : "http";
    std::vector<std::pair<std::string, std::string>> h = {
        {":method", "POST"},
        {":scheme", scheme},
        {":path", path},
        {":authority", target.authority},
        {"te", "trailers"},
        {"content-type", "application/grpc"},
        {"user-agent", options.user_agent},
    };
    if (deadline) h.emplace_back("grpc-timeout", format_timeout(*deadline - Clock::now()));
    for (const auto& [k, v] : metadata) {
      if (!valid_metadata_key(k) || !valid_metadata_value(v)) {
        set_error(StatusCode::kInternal,
                  fmt::format("call {} to {}: invalid metadata {}", path, addr(), k));
        return false;
      }
      h.emplace_back(k, v);
    }
    std::vector<nghttp2_nv> nva;
    nva.reserve(h.size());
    for (const auto& [k, v] : h) nva.push_back(make_nv(k, v));
    nghttp2_data_provider prd;
    prd.source.ptr = this;
    prd.read_callback = read_data;
    int32_t id = nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), &prd, this);
    if (id < 0) {
      set_error(StatusCode::kInternal,
                fmt::format("call {} to {}: {}", path, addr(), nghttp2_strerror(id)));
      return false;
    }
    stream_id = id;
    return true;
  }

  // ---- transport -----------------------------------------------------------------------------

  enum class Io { kProgress, kWouldBlock, kEof, kError };

  Io transport_write(const char* data, size_t len, size_t* written) {
    *written = 0;
    if (ssl) {
      ERR_clear_error();
      size_t n = 0;
      int rc = SSL_write_ex(ssl.get(), data, len, &n);
      if (rc == 1) {
        *written = n;
        return Io::kProgress;
      }
      int e = SSL_get_error(ssl.get(), rc);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return Io::kWouldBlock;
      set_error(StatusCode::kUnavailable,
                fmt::format("connection to {} lost: write: {}", addr(), tls::openssl_errors()));
      return Io::kError;
    }
    ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return Io::kProgress;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kWouldBlock;
    set_error(StatusCode::kUnavailable,
              fmt::format("connection to {} lost: write: {}", addr(), std::strerror(errno)));
    return Io::kError;
  }

  Io transport_read(char* buf, size_t len, size_t* got) {
    *got = 0;
    if (ssl) {
      ERR_clear_error();
      size_t n = 0;
      int rc = SSL_read_ex(ssl.get(), buf, len, &n);
      if (rc == 1) {
        *got = n;
        return Io::kProgress;
      }
      int e = SSL_get_error(ssl.get(), rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Io::kWouldBlock;
      if (e == SSL_ERROR_ZERO_RETURN) return Io::kEof;
      if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return Io::kEof;
      set_error(StatusCode::kUnavailable,
                fmt::format("connection to {} lost: read: {}", addr(), tls::openssl_errors()));
      return Io::kError;
    }
    ssize_t n = ::recv(fd, buf, len, 0);
    if (n > 0) {
      *got = static_cast<size_t>(n);
      return Io::kProgress;
    }
    if (n == 0) return Io::kEof;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kWouldBlock;
    set_error(StatusCode::kUnavailable,
              fmt::format("connection to {} lost: read: {}", addr(), std::strerror(errno)));
    return Io::kError;
  }

  // Serializes what nghttp2 has to send and writes as much as the socket takes. False on a
  // transport error (the error is set).
  bool flush_nonblocking() {
    if (session == nullptr || fd < 0) return true;
    for (;;) {
      if (out_off == out.size()) {
        out.clear();
        out_off = 0;
        const uint8_t* data = nullptr;
        ssize_t n = nghttp2_session_mem_send(session, &data);
        if (n < 0) {
          set_error(StatusCode::kInternal,
                    fmt::format("HTTP/2 to {}: {}", addr(), nghttp2_strerror(static_cast<int>(n))));
          return false;
        }
        if (n == 0) return true;
        out.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      }
      size_t written = 0;
      Io r = transport_write(out.data() + out_off, out.size() - out_off, &written);
      if (r == Io::kError) return false;
      if (r == Io::kWouldBlock) return true;
      out_off += written;
    }
  }

  bool out_pending() const { return out_off < out.size(); }

  // Reads everything available and feeds nghttp2. False on a transport or protocol error.
  bool read_available() {
    char buf[kReadChunk];
    for (;;) {
      size_t got = 0;
      Io r = transport_read(buf, sizeof(buf), &got);
      if (r == Io::kWouldBlock) return true;
      if (r == Io::kError) return false;
      if (r == Io::kEof) {
        transport_eof = true;
        return true;
      }
      ssize_t rv = nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(buf), got);
      if (rv < 0) {
        set_error(StatusCode::kInternal, fmt::format("HTTP/2 protocol error from {}: {}", addr(),
                                                     nghttp2_strerror(static_cast<int>(rv))));
        return false;
      }
      give_back_window();
      check_next_message();
    }
  }

  // Flow control: acknowledge received bytes only while no complete message waits for read()
  // (so a message larger than the window can arrive, but unread messages stop the server).
  void give_back_window() {
    if (unacked == 0 || failed() || stream_closed) return;
    size_t avail = recv.size() - recv_off;
    if (avail >= kMessagePrefix) {
      uint32_t len = read_be32(recv.data() + recv_off + 1);
      if (len > options.max_receive_message_bytes) return;
      if (avail >= kMessagePrefix + len) return;  // a complete message waits
    }
    nghttp2_session_consume(session, stream_id, unacked);
    unacked = 0;
  }

  // Validates the prefix of the next message as soon as it is complete.
  void check_next_message() {
    if (failed()) return;
    size_t avail = recv.size() - recv_off;
    if (avail < kMessagePrefix) return;
    auto flag = static_cast<unsigned char>(recv[recv_off]);
    uint32_t len = read_be32(recv.data() + recv_off + 1);
    if (flag == 1) {
      abort_call(
          StatusCode::kInternal,
          fmt::format("{} sent a compressed message, but no compression was negotiated", addr()));
    } else if (flag != 0) {
      abort_call(StatusCode::kInternal,
                 fmt::format("{} sent a message with an invalid flags byte {}", addr(), flag));
    } else if (len > options.max_receive_message_bytes) {
      abort_call(StatusCode::kResourceExhausted,
                 fmt::format("received message larger than max ({} vs. {}) from {}", len,
                             options.max_receive_message_bytes, addr()));
    }
  }

  bool stream_done() const { return remote_closed || stream_closed; }

  // Drives the connection until `done()` holds. False when the call failed first.
  template <class Pred>
  bool run_until(Pred done) {
    for (;;) {
      if (!check_live()) return false;
      if (!flush_nonblocking()) return false;
      if (done()) return true;
      if (failed()) return false;
      if (stream_done() || transport_eof ||
          (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0)) {
        // Nothing more will come: done() cannot become true.
        connection_ended();
        return done();
      }
      if (ssl && SSL_pending(ssl.get()) > 0) {
        if (!read_available()) return false;
        continue;
      }
      short events = POLLIN;
      if (out_pending()) events |= POLLOUT;
      int ev = wait_fd(events, std::nullopt);
      if (ev < 0) return false;
      if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0 || (ssl && (ev & POLLOUT) != 0)) {
        if (!read_available()) return false;
      }
    }
  }

  // The connection is gone while the stream was open.
  void connection_ended() {
    if (stream_done()) return;
    set_error(StatusCode::kUnavailable,
              fmt::format("connection to {} closed before the call {} ended", addr(), path));
  }

  bool start() {
    if (started) return !failed();
    started = true;
    if (!check_live()) return false;
    if (wake_fd < 0) {
      set_error(StatusCode::kInternal, fmt::format("eventfd: {}", std::strerror(errno)));
      return false;
    }
    auto t = parse_target(options.address);
    if (!t) {
      set_error(StatusCode::kInvalidArgument, t.error().message);
      return false;
    }
    target = std::move(*t);
    auto until = Clock::now() + options.connect_timeout;
    if (!connect_tcp(until)) return false;
    if (target.tls && !handshake_tls(until)) return false;
    if (!init_session() || !submit_request()) return false;
    return run_until([this] { return !out_pending(); });
  }

  // Messages ready for read(): the next one complete in recv.
  bool message_ready() const {
    size_t avail = recv.size() - recv_off;
    if (avail < kMessagePrefix) return false;
    return avail >= kMessagePrefix + read_be32(recv.data() + recv_off + 1);
  }

  bool take_message(std::string* message) {
    uint32_t len = read_be32(recv.data() + recv_off + 1);
    message->assign(recv, recv_off + kMessagePrefix, len);
    recv_off += kMessagePrefix + len;
    if (recv_off == recv.size()) {
      recv.clear();
      recv_off = 0;
    } else if (recv_off >= 64 * 1024 && recv_off * 2 >= recv.size()) {
      recv.erase(0, recv_off);
      recv_off = 0;
    }
    check_next_message();
    give_back_window();
    flush_nonblocking();
    return true;
  }

  CallStatus compute_status() {
    if (error) return *error;
    if (!remote_closed) {
      if (rst_code != 0 || stream_closed) {
        return {code_for_rst_stream(rst_code),
                fmt::format("call {} to {}: stream reset by the server (HTTP/2 error {})", path,
                            addr(), rst_code)};
      }
      return {StatusCode::kUnavailable,
              fmt::format("connection to {} closed before the call {} ended", addr(), path)};
    }
    if (http_status != 200) {
      std::string msg = fmt::format("call {} to {}: HTTP status {}", path, addr(), http_status);
      if (!grpc_message.empty()) msg += ": " + grpc_message;
      return {code_for_http_status(http_status), std::move(msg)};
    }
    if (!content_type.empty() && !content_type.starts_with("application/grpc")) {
      return {StatusCode::kUnknown,
              fmt::format("call {} to {}: unexpected content-type {}", path, addr(), content_type)};
    }
    if (!grpc_status) {
      return {StatusCode::kUnknown,
              fmt::format("call {} to {}: the response has no grpc-status", path, addr())};
    }
    int code = 0;
    const std::string& s = *grpc_status;
    if (s.empty() || s.size() > 3 ||
        !std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      return {StatusCode::kUnknown,
              fmt::format("call {} to {}: invalid grpc-status \"{}\"", path, addr(), s)};
    }
    code = std::stoi(s);
    if (code > 16) code = static_cast<int>(StatusCode::kUnknown);
    if (code == 0 && recv.size() > recv_off && !message_ready()) {
      return {StatusCode::kInternal,
              fmt::format("call {} to {}: the stream ended inside a message", path, addr())};
    }
    return {static_cast<StatusCode>(code), grpc_message};
  }

  // Ends the connection politely (GOAWAY, best effort) once the call is over.
  void shutdown() {
    if (session == nullptr || fd < 0 || transport_eof) return;
    if (stream_id > 0 && !stream_closed) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
      stream_closed = true;
    }
    nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR);
    flush_nonblocking();
  }
};

Call::Call(ChannelOptions options, std::string path, Metadata metadata,
           std::optional<Clock::time_point> deadline)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(path), std::move(metadata),
                                   deadline)) {}

Call::~Call() {
  if (impl_->started && !impl_->final_status) impl_->shutdown();
}

bool Call::start() { return impl_->start(); }

std::string frame_message(std::string_view message) {
  std::string out(kMessagePrefix, '\0');
  auto len = static_cast<uint32_t>(message.size());
  out[1] = static_cast<char>(len >> 24);
  out[2] = static_cast<char>(len >> 16);
  out[3] = static_cast<char>(len >> 8);
  out[4] = static_cast<char>(len);
  out.append(message);
  return out;
}

std::optional<std::string_view> single_message(std::string_view body) {
  if (body.size() < kMessagePrefix || body[0] != '\0') return std::nullopt;
  if (body.size() - kMessagePrefix != read_be32(body.data() + 1)) return std::nullopt;
  return body.substr(kMessagePrefix);
}

bool Call::write(std::string_view message) {
  auto& c = *impl_;
  if (!c.start()) return false;
  if (c.send_eof || c.stream_done()) return false;
  if (message.size() > 0xffffffffu) {
    c.abort_call(StatusCode::kInternal, "message too large to send");
    return false;
  }
  c.send.append(frame_message(message));
  if (c.deferred) {
    c.deferred = false;
    nghttp2_session_resume_data(c.session, c.stream_id);
  }
  return c.run_until([&c] {
    return (c.send.size() == c.send_off && !c.out_pending()) || c.stream_done();
  }) && c.send.size() == c.send_off;
}

bool Call::half_close() {
  auto& c = *impl_;
  if (!c.start()) return false;
  if (c.send_eof) return true;
  c.send_eof = true;
  if (c.stream_done()) return true;
  if (c.deferred) {
    c.deferred = false;
    nghttp2_session_resume_data(c.session, c.stream_id);
  }
  return c.run_until(
      [&c] { return (c.send.size() == c.send_off && !c.out_pending()) || c.stream_done(); });
}

bool Call::read(std::string* message) {
  auto& c = *impl_;
  if (!c.start()) return false;
  if (!c.run_until([&c] { return c.message_ready() || c.stream_done(); })) return false;
  if (c.failed() || !c.message_ready()) return false;
  return c.take_message(message);
}

CallStatus Call::finish() {
  auto& c = *impl_;
  if (c.final_status) return *c.final_status;
  if (c.start()) c.run_until([&c] { return c.stream_done(); });
  CallStatus st = c.compute_status();
  c.shutdown();
  c.final_status = st;
  return st;
}

void Call::cancel() {
  impl_->cancelled.store(true, std::memory_order_release);
  if (impl_->wake_fd >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof(one));
  }
}

CallStatus unary(const ChannelOptions& options, std::string path, Metadata metadata,
                 std::string_view request, std::string* response,
                 std::optional<Call::Clock::time_point> deadline) {
  Call call(options, path, std::move(metadata), deadline);
  if (call.write(request) && call.half_close()) {
    std::string extra;
    if (call.read(response)) {
      if (call.read(&extra)) {
        call.cancel();
        call.finish();
        return {StatusCode::kInternal, fmt::format("call {} to {}: more than one response message",
                                                   path, options.address)};
      }
      auto st = call.finish();
      return st;
    }
    auto st = call.finish();
    if (st.ok()) {
      return {StatusCode::kInternal,
              fmt::format("call {} to {}: no response message", path, options.address)};
    }
    return st;
  }
  return call.finish();
}

}  // namespace zt::grpc
