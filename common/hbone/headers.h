// The request headers an HBONE CONNECT carries besides the authority (facts §2.2), as builders
// for the outbound side and lenient parsers for the inbound side. Parsers never fail loudly:
// these headers only feed telemetry and logs, so a malformed one is ignored, not refused.
#pragma once

#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "common/net/address.h"

namespace zt::hbone {

inline constexpr std::string_view kBaggageHeader = "baggage";
inline constexpr std::string_view kForwardedHeader = "forwarded";
inline constexpr std::string_view kTraceparentHeader = "traceparent";

// RFC 7239: `for="10.0.0.1:1234"`, `for="[::1]:1234"`; with a service host name,
// `for="10.0.0.1:1234";host=example.default.svc.cluster.local`.
std::string make_forwarded(const tcp::endpoint& client, std::string_view service_host = {});

// The client of the first forwarded element. An address without a port gives port 0;
// "unknown", obfuscated identifiers ("_abc") and garbage give nullopt.
std::optional<tcp::endpoint> parse_forwarded_for(std::string_view value);

// The `host` parameter of the first forwarded element, if any.
std::optional<std::string> parse_forwarded_host(std::string_view value);

// W3C trace context: "00-<32 hex trace id>-<16 hex parent id>-00", ids random and never zero.
std::string make_traceparent(std::mt19937_64& rng);

// Syntax check of a received traceparent (version 00 layout, lower-case hex, non-zero ids).
bool is_valid_traceparent(std::string_view value);

// What the peer learns about the workload at this end of the tunnel.
struct BaggageFields {
  std::string cluster{};          // k8s.cluster.name
  std::string namespace_name{};   // k8s.namespace.name
  std::string workload_type{};    // deployment|cronjob|pod|job -> k8s.<type>.name ("" = deployment)
  std::string workload_name{};
  std::string service_name{};     // service.name (canonical service)
  std::string service_version{};  // service.version (canonical revision)
  std::string region{};           // cloud.region
  std::string zone{};             // cloud.availability_zone

  friend bool operator==(const BaggageFields&, const BaggageFields&) = default;
};

// "k8s.cluster.name=c,k8s.namespace.name=ns,k8s.deployment.name=w,service.name=s,...":
// empty values are left out; values are percent-encoded where the W3C baggage syntax needs it.
std::string make_baggage(const BaggageFields& fields);

// The fields above out of a baggage header; unknown keys and properties are ignored.
BaggageFields parse_baggage(std::string_view value);

}  // namespace zt::hbone
