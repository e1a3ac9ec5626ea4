// Request-head checks the waypoint runs before (raw bytes) and after (field list) Boost.Beast
// parses an HTTP/1.1 head, and on every HTTP/2 head, so that no two hops can disagree about where
// a request ends (request smuggling) and no client can make us buffer without limit.
//
// Why our own checks: Debian's Beast (1.81) accepts `Transfer-Encoding` whose last coding is not
// `chunked` (then treats the body as absent), `Transfer-Encoding` together with `Content-Length`
// when TE is not chunked, and TE in HTTP/1.0 (facts §0.7, §4.2). Everything here is strict on
// purpose: an ambiguous head is refused with 400 (framing, syntax), 431 (too large) or 501
// (a transfer coding we do not implement), and the connection is closed afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "waypoint/http/headers.h"

namespace zt::waypoint::http {

enum class Version { kHttp10, kHttp11, kHttp2 };

struct HeadLimits {
  // Envoy's defaults: 60 KiB of request line + headers, 100 headers.
  size_t max_head_bytes = 60 * 1024;
  size_t max_headers = 100;
};

// Why a head was refused: the status to answer and a short reason for the access log
// (Envoy-like response code details, e.g. "http1.content_length_and_chunked_not_allowed").
struct Rejection {
  int status = 400;
  std::string reason;
};

// How the request body is delimited once the head is accepted.
struct BodyFraming {
  enum class Kind { kNone, kContentLength, kChunked, kHttp2Stream };
  Kind kind = Kind::kNone;
  uint64_t content_length = 0;  // kContentLength, and kHttp2Stream when content-length was sent
  bool has_content_length = false;
};

// Where the head ends in `buffer`: the offset just past the first "\r\n\r\n", or npos.
size_t find_head_end(std::string_view buffer);

// Checks the raw bytes of an HTTP/1.x request head, `head` being everything received so far up
// to and including the blank line when it has arrived. Refuses:
// - 431 when the head (complete or not) exceeds limits.max_head_bytes or has more than
//   limits.max_headers fields;
// - 400 for a NUL byte, a bare CR or bare LF line ending, obs-fold (a line starting with SP/HTAB),
//   whitespace between a field name and its colon, a field line without a colon, and a request
//   line that is not exactly "METHOD SP target SP HTTP/1.x".
// An incomplete head that is within limits passes (call again with more bytes).
tl::expected<void, Rejection> check_raw_head(std::string_view head, const HeadLimits& limits);

// Checks a parsed head (from Beast or nghttp2). `head.headers` holds every field as received,
// duplicates included. Refuses with 400:
// - a method that is not an upper-case token; a target that is not origin-form ("/..."), "*" for
//   OPTIONS, or authority-form for CONNECT; a target with CTL, SP or '#';
// - a field name that is not a token; a field value with NUL, CR, LF or another CTL except HTAB;
// - HTTP/1.1 without exactly one Host, HTTP/1.0 with more than one;
// - Content-Length and Transfer-Encoding together; Content-Length repeated (even with equal
//   values) or not 1*DIGIT or overflowing; Transfer-Encoding whose last coding is not `chunked`,
//   `chunked` applied twice, or any Transfer-Encoding in HTTP/1.0 or HTTP/2;
// with 501 a Transfer-Encoding other than plain `chunked` (e.g. "gzip, chunked"), and with 431
// more than limits.max_headers fields or more than limits.max_head_bytes of names and values
// (each counted with 4 bytes of ": " and CRLF).
tl::expected<BodyFraming, Rejection> check_request_head(const RequestHead& head, Version version,
                                                        const HeadLimits& limits);

// RFC 9110 token characters.
bool is_token(std::string_view s);
// A field value: VCHAR, obs-text, SP, HTAB; any other control byte (NUL, CR, LF ...) is refused.
bool is_field_value(std::string_view v);

}  // namespace zt::waypoint::http
