// Request path normalisation as Istio configures Envoy (meshConfig.pathNormalization, facts
// §3.3). The normalised path is what L7 authorization checks AND what is forwarded, so a policy
// on "/admin" cannot be bypassed with "/a/../admin", "/%61dmin" or (with merging) "//admin".
//
// Steps, in Envoy's order, on the path only (the query is kept verbatim):
//   1. "%00" anywhere -> 400;
//   2. escaped slashes %2F / %5C (any case): kept, refused (400) or decoded, per EscapedSlashes;
//   3. percent-encoded unreserved characters (ALPHA, DIGIT, '-', '.', '_', '~') are decoded once,
//      other escapes keep their meaning with upper-case hex; a '%' that starts no escape stays
//      as it is, unless decoding put two hex digits after it: then it becomes "%25", so
//      decoding never makes a new escape ("%%32%65" -> "%252e", not "%2e");
//   4. '\' becomes '/';
//   5. "." and ".." segments are resolved (RFC 3986 §5.2.4);
//   6. runs of '/' are merged (MERGE_SLASHES and DECODE_AND_MERGE_SLASHES).
// The result is canonical: normalising it again changes nothing (tests/fuzz/fuzz_http1_head).
// kNone leaves the target untouched.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "waypoint/http/request_checks.h"

namespace zt::waypoint::authz {

enum class PathNormalization { kNone, kBase, kMergeSlashes, kDecodeAndMergeSlashes };

// Envoy's path_with_escaped_slashes_action.
enum class EscapedSlashes { kKeep, kReject, kDecode };

struct NormalizeOptions {
  PathNormalization mode = PathNormalization::kBase;  // Istio's default
  // nullopt: kDecode for kDecodeAndMergeSlashes, kKeep otherwise.
  std::optional<EscapedSlashes> escaped_slashes;
};

// `target` is an origin-form request target ("/a/b?x"); anything else ("*", authority-form) is
// returned unchanged. Fails with a 400 Rejection.
tl::expected<std::string, http::Rejection> normalize_target(std::string_view target,
                                                            const NormalizeOptions& options = {});

// RFC 3986 §5.2.4 remove_dot_segments on an absolute path.
std::string remove_dot_segments(std::string_view path);

}  // namespace zt::waypoint::authz
