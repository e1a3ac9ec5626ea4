// UTF-8 validity, one sequence at a time: what text taken from traffic must be before it goes
// where UTF-8 is required (Prometheus label values, protobuf `string` fields).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace zt {

// The length (1-4) of the well-formed UTF-8 sequence starting at text[i], or 0 when the bytes
// there are not one (a stray continuation byte, a truncated sequence, an overlong form, a
// surrogate, a code point past U+10FFFF).
size_t utf8_sequence_length(std::string_view text, size_t i);

// `text` with every byte that starts no well-formed sequence replaced by `replacement`.
std::string utf8_sanitized(std::string_view text, std::string_view replacement);

}  // namespace zt
