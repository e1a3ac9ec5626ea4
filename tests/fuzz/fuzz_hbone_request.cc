// Fuzzes what an HBONE server parses from a peer: the CONNECT method and authority, and the
// forwarded / baggage / traceparent headers. Input: newline-separated fields
// "method\nauthority\nforwarded\nbaggage\ntraceparent". Beyond "no crash", it checks that
// accepted authorities and forwarded nodes survive a format/parse round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/hbone/authority.h"
#include "common/hbone/headers.h"
#include "common/hbone/request.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<std::string_view> fields(std::string_view input, size_t count) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < count) {
    auto nl = input.find('\n');
    if (nl == std::string_view::npos) break;
    out.push_back(input.substr(0, nl));
    input.remove_prefix(nl + 1);
  }
  out.push_back(input);
  out.resize(count);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zt;
  auto f = fields(std::string_view(reinterpret_cast<const char*>(data), size), 5);

  if (auto authority = hbone::parse_authority(f[1])) {
    check(authority->port != 0);
    check(authority->ip.has_value() != !authority->host.empty());
    auto again = hbone::parse_authority(authority->to_string());
    check(again && *again == *authority);
  }

  hbone::ConnectRequest request{std::string(f[0]),
                                std::string(f[1]),
                                {{"forwarded", std::string(f[2])},
                                 {"baggage", std::string(f[3])},
                                 {"traceparent", std::string(f[4])}}};
  for (const char* pod : {"10.0.0.2", "fd00::2", "::ffff:10.0.0.2"}) {
    auto decision = hbone::check_connect_request(request, asio::ip::make_address(pod));
    check(decision.status == hbone::kStatusOk || decision.status == hbone::kStatusBadRequest);
    check((decision.status == hbone::kStatusOk) == decision.reason.empty());
  }

  if (auto forwarded = hbone::find_header(request, "Forwarded")) {
    if (auto client = hbone::parse_forwarded_for(*forwarded)) {
      check(hbone::parse_forwarded_for(hbone::make_forwarded(*client)) == client);
    }
    (void)hbone::parse_forwarded_host(*forwarded);
  }
  auto baggage = hbone::parse_baggage(f[3]);
  (void)hbone::parse_baggage(hbone::make_baggage(baggage));
  (void)hbone::is_valid_traceparent(f[4]);
  return 0;
}
