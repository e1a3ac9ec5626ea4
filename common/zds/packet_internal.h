// Internal to zt_zds: the raw receive under recv_packet(), which reports truncation and every fd
// received instead of failing, so a side can answer a bad packet with a NACK naming the problem.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace zt::zds::detail {

struct RawPacket {
  std::string bytes;
  std::vector<UniqueFd> fds;       // every fd in SCM_RIGHTS, owned (closed unless moved out)
  bool closed = false;             // the peer closed the connection (nothing else is set)
  bool truncated = false;          // MSG_TRUNC: the packet was larger than max_size
  bool control_truncated = false;  // MSG_CTRUNC: more fds than we take (the rest were closed)
};

// One recvmsg. Errors are only transport errors (errno); EAGAIN is one when `dont_wait`.
Result<RawPacket> recv_raw(int sock, size_t max_size, bool dont_wait);

// Wakes a poll() on an eventfd; a small RAII pair used by Client and Server threads.
class Waker {
 public:
  Waker();
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  void wake() const;
  void drain() const;

 private:
  UniqueFd fd_;
};

}  // namespace zt::zds::detail
