#include "waypoint/authz/normalize.h"

#include <vector>

#include "waypoint/base/strings.h"

namespace zt::waypoint::authz {
namespace {

bool is_unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

constexpr char kUpperHex[] = "0123456789ABCDEF";

tl::unexpected<http::Rejection> reject(std::string reason) {
  return tl::unexpected<http::Rejection>(http::Rejection{400, std::move(reason)});
}

}  // namespace

std::string remove_dot_segments(std::string_view in) {
  std::string input(in);
  std::string output;
  output.reserve(input.size());
  std::string_view rest = input;
  auto drop_last_segment = [&] {
    const size_t slash = output.rfind('/');
    output.erase(slash == std::string::npos ? 0 : slash);
  };
  while (!rest.empty()) {
    if (rest.starts_with("../")) {
      rest.remove_prefix(3);
    } else if (rest.starts_with("./")) {
      rest.remove_prefix(2);
    } else if (rest.starts_with("/./")) {
      rest.remove_prefix(2);  // leaves "/"
    } else if (rest == "/.") {
      rest = "/";
    } else if (rest.starts_with("/../")) {
      rest.remove_prefix(3);  // leaves "/"
      drop_last_segment();
    } else if (rest == "/..") {
      rest = "/";
      drop_last_segment();
    } else if (rest == "." || rest == "..") {
      rest = {};
    } else {
      // Move the first segment (with its leading '/') to the output.
      size_t end = rest.find('/', rest.front() == '/' ? 1 : 0);
      if (end == std::string_view::npos) end = rest.size();
      output.append(rest.substr(0, end));
      rest.remove_prefix(end);
    }
  }
  return output;
}

tl::expected<std::string, http::Rejection> normalize_target(std::string_view target,
                                                            const NormalizeOptions& options) {
  if (options.mode == PathNormalization::kNone) return std::string(target);
  if (target.empty() || target.front() != '/') return std::string(target);
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == target.npos ? std::string_view() : target.substr(q);

  const EscapedSlashes slashes = options.escaped_slashes.value_or(
      options.mode == PathNormalization::kDecodeAndMergeSlashes ? EscapedSlashes::kDecode
                                                                : EscapedSlashes::kKeep);
  std::string out;
  out.reserve(path.size());
  std::vector<size_t> bare_percents;  // where a '%' that starts no escape landed in `out`
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '\0') return reject("path_with_nul");
    if (c != '%') {
      out.push_back(c == '\\' ? '/' : c);
      continue;
    }
    const int hi = i + 2 < path.size() ? hex_digit_value(path[i + 1]) : -1;
    const int lo = i + 2 < path.size() ? hex_digit_value(path[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      bare_percents.push_back(out.size());  // not an escape: passed on as is, as Envoy does
      out.push_back('%');
      continue;
    }
    const unsigned char decoded = static_cast<unsigned char>(hi << 4 | lo);
    i += 2;
    if (decoded == 0) return reject("path_with_escaped_nul");
    if (decoded == '/' || decoded == '\\') {
      switch (slashes) {
        case EscapedSlashes::kReject:
          return reject("path_with_escaped_slashes");
        case EscapedSlashes::kDecode:
          out.push_back('/');  // '\' also becomes '/' (step 4)
          continue;
        case EscapedSlashes::kKeep:
          break;
      }
    } else if (is_unreserved(decoded)) {
      out.push_back(static_cast<char>(decoded));
      continue;
    }
    out.push_back('%');
    out.push_back(kUpperHex[decoded >> 4]);
    out.push_back(kUpperHex[decoded & 0xf]);
  }
  // A bare '%' that decoding has put two hex digits after would now read as an escape ("%%32%65"
  // gave "%2e", which the next hop may take for '.', a dot segment authorization never saw), so
  // it is escaped itself, as Envoy's canonicaliser does with nested escapes: "%252e". Dot
  // segments and slash merging below never put other characters after a '%' (they remove whole
  // segments and slashes).
  for (auto it = bare_percents.rbegin(); it != bare_percents.rend(); ++it) {
    const size_t at = *it;
    if (at + 2 < out.size() && hex_digit_value(out[at + 1]) >= 0 &&
        hex_digit_value(out[at + 2]) >= 0) {
      out.insert(at + 1, "25");
    }
  }
  out = remove_dot_segments(out);
  if (out.empty()) out.push_back('/');
  if (options.mode == PathNormalization::kMergeSlashes ||
      options.mode == PathNormalization::kDecodeAndMergeSlashes) {
    std::string merged;
    merged.reserve(out.size());
    for (char c : out) {
      if (c == '/' && !merged.empty() && merged.back() == '/') continue;
      merged.push_back(c);
    }
    out = std::move(merged);
  }
  out.append(query);
  return out;
}

}  // namespace zt::waypoint::authz
