// The decisions of the HBONE server that need no socket: what a CONNECT authority is bound to
// (bind_target) and what protocol the first bytes of a stream speak (sniff). See server.h.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/async/asio.h"
#include "waypoint/proxy/context.h"
#include "ztunnel/state/state.h"

namespace zt::waypoint::server {

// Bytes read before a stream is classified at most; an HTTP request line in progress at this
// size goes to the HTTP/1.1 codec (which answers it), never to the TCP relay.
inline constexpr size_t kMaxSniffBytes = 8 * 1024;

// What the first bytes of an accepted stream are.
enum class Sniffed {
  kNeedMore,  // a prefix of something we would recognise: read more
  kHttp2,     // starts with the HTTP/2 client preface
  kHttp1,     // an HTTP/1.x request line ("GET /x HTTP/1.1\r\n")
  kOther,     // anything else: relay as TCP
};

// Pure classification of the bytes read so far. `complete` means no more bytes will come soon
// (EOF, or the sniff timeout passed): a prefix then counts as kOther.
Sniffed sniff(std::string_view bytes, bool complete = false);

// The outcome of binding a CONNECT authority to what this waypoint serves.
struct Binding {
  int status = 200;    // 200 bound, 503 unknown address, 401 not bound to this waypoint
  std::string reason;  // empty when bound
  std::shared_ptr<const zt::state::Service> service;
  std::shared_ptr<const zt::state::Workload> workload;
};

// A service VIP wins over a workload IP (as ztunnel resolves a destination). `network` is the
// network the address is looked up in ("" = default).
Binding bind_target(const zt::state::State& state, const proxy::Self& self,
                    const asio::ip::address& ip, uint16_t port, std::string_view network = {});

}  // namespace zt::waypoint::server
