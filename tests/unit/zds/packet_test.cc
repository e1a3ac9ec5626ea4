// ZDS framing over a socketpair(AF_UNIX, SOCK_SEQPACKET): one message per packet, at most one fd,
// every error path closes what it received.
#include <sys/socket.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/base/unique_fd.h"
#include "common/zds/zds.h"

namespace zt::zds {
namespace {

size_t open_fd_count() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct Pair {
  UniqueFd a, b;
};

Pair seqpacket_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return {};
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

struct Pipe {
  UniqueFd read, write;
};

Pipe make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

// Sends `bytes` with any number of fds, bypassing send_packet's one-fd limit (a bad peer).
bool send_with_fds(int sock, const std::string& bytes, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

TEST(ZdsPacket, PacketWithOneFdArrivesWithAUsableCloseOnExecFd) {
  auto s = seqpacket_pair();
  auto p = make_pipe();
  ASSERT_TRUE(s.a && p.write);
  ASSERT_TRUE(send_packet(s.a.get(), "add", p.write.get()));
  p.write.reset();  // only the received copy remains

  auto got = recv_packet(s.b.get());
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(got->bytes, "add");
  ASSERT_EQ(got->fds.size(), 1u);
  int fd = got->fds[0].get();
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  ASSERT_EQ(::write(fd, "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(p.read.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(ZdsPacket, PacketsKeepTheirBoundariesAndMayCarryNoFd) {
  auto s = seqpacket_pair();
  ASSERT_TRUE(send_packet(s.a.get(), "first"));
  ASSERT_TRUE(send_packet(s.a.get(), std::string(1000, 'z')));
  auto one = recv_packet(s.b.get());
  auto two = recv_packet(s.b.get());
  ASSERT_TRUE(one && two);
  EXPECT_EQ(one->bytes, "first");
  EXPECT_TRUE(one->fds.empty());
  EXPECT_EQ(two->bytes, std::string(1000, 'z'));
}

TEST(ZdsPacket, EmptyMessageIsRefusedBecauseItWouldReadAsAClose) {
  auto s = seqpacket_pair();
  auto sent = send_packet(s.a.get(), "");
  ASSERT_FALSE(sent);
  EXPECT_NE(sent.error().message.find("empty"), std::string::npos);
}

TEST(ZdsPacket, MoreThanOneFdIsAnErrorAndAllAreClosed) {
  auto s = seqpacket_pair();
  size_t before = open_fd_count();
  {
    auto p1 = make_pipe();
    auto p2 = make_pipe();
    ASSERT_TRUE(send_with_fds(s.a.get(), "two", {p1.read.get(), p2.read.get()}));
  }
  auto got = recv_packet(s.b.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("2 fds"), std::string::npos) << got.error().describe();
  EXPECT_EQ(open_fd_count(), before);
  // The connection stays usable for the next packet.
  ASSERT_TRUE(send_packet(s.a.get(), "next"));
  auto next = recv_packet(s.b.get());
  ASSERT_TRUE(next);
  EXPECT_EQ(next->bytes, "next");
}

TEST(ZdsPacket, ManyFdsTruncateTheControlDataAndLeakNothing) {
  auto s = seqpacket_pair();
  size_t before = open_fd_count();
  {
    std::vector<Pipe> pipes(20);
    std::vector<int> fds;
    for (auto& p : pipes) {
      p = make_pipe();
      fds.push_back(p.read.get());
    }
    ASSERT_TRUE(send_with_fds(s.a.get(), "many", fds));
  }
  auto got = recv_packet(s.b.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("fds"), std::string::npos) << got.error().describe();
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ZdsPacket, OversizedPacketIsATruncationErrorAndItsFdIsClosed) {
  auto s = seqpacket_pair();
  size_t before = open_fd_count();
  {
    auto p = make_pipe();
    ASSERT_TRUE(send_packet(s.a.get(), std::string(100, 'a'), p.read.get()));
  }
  auto got = recv_packet(s.b.get(), 10);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("truncated"), std::string::npos) << got.error().describe();
  EXPECT_EQ(open_fd_count(), before);
  // The rest of the oversized packet is gone; the next one reads whole.
  ASSERT_TRUE(send_packet(s.a.get(), "ok"));
  auto next = recv_packet(s.b.get(), 10);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->bytes, "ok");
}

TEST(ZdsPacket, ClosedPeerIsAnError) {
  auto s = seqpacket_pair();
  s.a.reset();
  auto got = recv_packet(s.b.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("closed"), std::string::npos) << got.error().describe();
  auto sent = send_packet(s.b.get(), "x");
  EXPECT_FALSE(sent);  // EPIPE, without SIGPIPE killing the process
}

TEST(ZdsPacket, FdsQueuedWithAnUnreadPacketAreClosedWithTheSocket) {
  size_t before = open_fd_count();
  {
    auto s = seqpacket_pair();
    auto p = make_pipe();
    ASSERT_TRUE(send_packet(s.a.get(), "never read", p.read.get()));
  }
  EXPECT_EQ(open_fd_count(), before);
}

}  // namespace
}  // namespace zt::zds
