// A small SOCKS5 client (RFC 1928, no authentication, CONNECT only): how the load generator
// reaches a target through ztunnel's SOCKS5 listener.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "tools/loadgen/config.h"

namespace zt::loadgen::socks5 {

// The CONNECT request for `target` (IPv4/IPv6 literal, or a domain name up to 255 bytes).
Result<std::vector<uint8_t>> connect_request(const HostPort& target);
// The length of the whole reply given its first 5 bytes (VER REP RSV ATYP + 1), or an error
// naming what is wrong (bad version, REP != 0 with its meaning, unknown address type).
Result<size_t> reply_length(const uint8_t* first5);
std::string reply_text(uint8_t rep);

// Runs the handshake on a connected socket: greeting, CONNECT, reply.
awaitable<Status> handshake(tcp::socket& s, const HostPort& target);

}  // namespace zt::loadgen::socks5
