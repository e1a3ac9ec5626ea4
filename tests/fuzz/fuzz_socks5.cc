// Fuzzes the SOCKS5 parser with what a client may send: a greeting followed by a request.
// Besides "no crash", checks the incremental contract: a parse consumes no more than it was
// given, and every shorter prefix of a complete message asks for more bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ztunnel/socks5/socks5.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

template <class Parse>
void check_prefixes(std::span<const uint8_t> bytes, size_t consumed, Parse parse) {
  for (size_t n = 0; n < consumed; ++n) {
    auto r = parse(bytes.first(n));
    check(r.has_value() && !r->has_value());
  }
}

void request(std::span<const uint8_t> bytes) {
  auto parse = [](std::span<const uint8_t> b) { return zt::socks5::parse_request(b); };
  auto r = parse(bytes);
  if (!r) {
    (void)zt::socks5::reply_for(r.error());
    return;
  }
  if (!*r) return;
  size_t consumed = (*r)->second;
  check(consumed <= bytes.size());
  check_prefixes(bytes, consumed, parse);
  (void)zt::socks5::make_connect_reply(zt::socks5::Reply::kSucceeded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  request(bytes);  // a request on its own

  auto parse = [](std::span<const uint8_t> b) { return zt::socks5::parse_greeting(b); };
  auto greeting = parse(bytes);
  if (!greeting || !*greeting) return 0;
  size_t consumed = (*greeting)->consumed;
  check(consumed <= size && consumed == 2 + (*greeting)->methods.size());
  check_prefixes(bytes, consumed, parse);
  request(bytes.subspan(consumed));
  return 0;
}
