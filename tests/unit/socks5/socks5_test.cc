#include "ztunnel/socks5/socks5.h"

#include <gtest/gtest.h>

namespace zt::socks5 {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes domain_request(std::string_view name, uint16_t port) {
  Bytes b = {5, 1, 0, 3, static_cast<uint8_t>(name.size())};
  // push_back, not insert: g++ 12 at -O3 reports a false -Warray-bounds on insert here.
  for (char c : name) b.push_back(static_cast<uint8_t>(c));
  b.push_back(static_cast<uint8_t>(port >> 8));
  b.push_back(static_cast<uint8_t>(port & 0xff));
  return b;
}

// Every strict prefix of a valid message must ask for more bytes, never fail or succeed.
template <class Parse>
void expect_needs_more_for_every_prefix(const Bytes& full, Parse parse) {
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = parse(std::span<const uint8_t>(full.data(), n));
    ASSERT_TRUE(r) << "prefix " << n << ": " << r.error().message;
    EXPECT_FALSE(r->has_value()) << "prefix " << n << " parsed";
  }
}

TEST(Greeting, AcceptsNoAuthAmongOthers) {
  Bytes b = {5, 2, 2, 0, 0xaa};  // trailing byte belongs to the next message
  auto r = parse_greeting(b);
  ASSERT_TRUE(r);
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->methods, (Bytes{2, 0}));
  EXPECT_EQ((*r)->consumed, 4u);
}

TEST(Greeting, TruncatedAtEveryByteNeedsMore) {
  expect_needs_more_for_every_prefix(Bytes{5, 3, 1, 2, 0}, [](auto s) { return parse_greeting(s); });
}

TEST(Greeting, Rejects) {
  struct Case {
    Bytes bytes;
    const char* contains;
  } cases[] = {
      {{4, 1, 0}, "version 4 is not 5"},
      {{0x16, 3, 1}, "version 22"},  // a TLS client hello
      {{5, 0}, "no methods"},
      {{5, 1, 2}, "no-authentication"},
      {{5, 2, 1, 2}, "no-authentication"},
  };
  for (const auto& c : cases) {
    auto r = parse_greeting(c.bytes);
    ASSERT_FALSE(r) << c.contains;
    EXPECT_NE(r.error().message.find(c.contains), std::string::npos) << r.error().message;
  }
}

TEST(Request, Ipv4) {
  Bytes b = {5, 1, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, 0xee};
  auto r = parse_request(b);
  ASSERT_TRUE(r);
  ASSERT_TRUE(*r);
  auto [request, consumed] = **r;
  EXPECT_EQ(request.host, (std::variant<asio::ip::address, std::string>(
                              asio::ip::make_address("10.0.0.1"))));
  EXPECT_EQ(request.port, 8080);
  EXPECT_EQ(consumed, 10u);
}

TEST(Request, Ipv6) {
  Bytes b = {5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
  auto r = parse_request(b);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(std::get<asio::ip::address>((*r)->first.host), asio::ip::make_address("fd00::1"));
  EXPECT_EQ((*r)->first.port, 80);
  EXPECT_EQ((*r)->second, b.size());
}

TEST(Request, DomainName) {
  auto b = domain_request("echo.default.svc.cluster.local", 443);
  auto r = parse_request(b);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(std::get<std::string>((*r)->first.host), "echo.default.svc.cluster.local");
  EXPECT_EQ((*r)->first.port, 443);
  EXPECT_EQ((*r)->second, b.size());
}

TEST(Request, DomainThatIsAnIpLiteralBecomesAnAddress) {
  auto r = parse_request(domain_request("127.0.0.2", 80));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(std::get<asio::ip::address>((*r)->first.host), asio::ip::make_address("127.0.0.2"));
}

TEST(Request, TruncatedAtEveryByteNeedsMore) {
  auto parse = [](auto s) { return parse_request(s); };
  expect_needs_more_for_every_prefix(Bytes{5, 1, 0, 1, 10, 0, 0, 1, 0, 80}, parse);
  expect_needs_more_for_every_prefix(
      Bytes{5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}, parse);
  expect_needs_more_for_every_prefix(domain_request("example.com", 80), parse);
}

TEST(Request, RejectsWithTheRightReplyCode) {
  struct Case {
    Bytes bytes;
    Reply reply;
    const char* contains;
  } cases[] = {
      {{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::kGeneralFailure, "version 4"},
      {{5, 2, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::kCommandNotSupported, "command 2"},  // BIND
      {{5, 3, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::kCommandNotSupported, "command 3"},  // UDP
      {{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, Reply::kAddressTypeNotSupported, "address type 2"},
      {{5, 1, 0, 3, 0, 0, 80}, Reply::kHostUnreachable, "empty domain"},
      {domain_request("bad_name", 80), Reply::kHostUnreachable, "host name"},
      {domain_request("a..b", 80), Reply::kHostUnreachable, "empty label"},
      {domain_request(std::string("a\0b", 3), 80), Reply::kHostUnreachable, "host name"},
      {domain_request("1.2.3", 80), Reply::kHostUnreachable, "last label is a number"},
      {domain_request(std::string(64, 'a'), 80), Reply::kHostUnreachable, "longer than 63"},
  };
  for (const auto& c : cases) {
    auto r = parse_request(c.bytes);
    ASSERT_FALSE(r) << c.contains;
    EXPECT_EQ(reply_for(r.error()), c.reply) << r.error().message;
    EXPECT_NE(r.error().message.find(c.contains), std::string::npos) << r.error().message;
  }
}

TEST(Request, LongestDomainNameIsAccepted) {
  std::string name;
  while (name.size() < 240) name += "abcdefghi.";
  name += "example";  // 247 characters
  auto r = parse_request(domain_request(name, 1));
  ASSERT_TRUE(r && *r) << (r ? "" : r.error().message);
}

TEST(ReplyFor, OtherErrorsAreGeneralFailure) {
  EXPECT_EQ(reply_for(Error{{}, "x"}), Reply::kGeneralFailure);
  EXPECT_EQ(reply_for(Error{std::make_error_code(std::errc::connection_refused), "x"}),
            Reply::kGeneralFailure);
}

TEST(Replies, MethodSelection) {
  EXPECT_EQ(make_method_reply(true), (std::array<uint8_t, 2>{5, 0}));
  EXPECT_EQ(make_method_reply(false), (std::array<uint8_t, 2>{5, 0xff}));
}

TEST(Replies, ConnectReplyCodesAndBoundAddress) {
  EXPECT_EQ(make_connect_reply(Reply::kSucceeded), (Bytes{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  const std::pair<Reply, uint8_t> codes[] = {
      {Reply::kSucceeded, 0},         {Reply::kGeneralFailure, 1},
      {Reply::kHostUnreachable, 4},   {Reply::kConnectionRefused, 5},
      {Reply::kCommandNotSupported, 7}, {Reply::kAddressTypeNotSupported, 8}};
  for (auto [reply, code] : codes) EXPECT_EQ(make_connect_reply(reply)[1], code);
  EXPECT_EQ(make_connect_reply(Reply::kSucceeded,
                               tcp::endpoint(asio::ip::make_address("10.1.2.3"), 0x1234)),
            (Bytes{5, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34}));
  auto v6 = make_connect_reply(Reply::kSucceeded, tcp::endpoint(asio::ip::make_address("::1"), 80));
  ASSERT_EQ(v6.size(), 22u);
  EXPECT_EQ(v6[3], 4);
  EXPECT_EQ(v6[19], 1);
  EXPECT_EQ(v6[21], 80);
}

}  // namespace
}  // namespace zt::socks5
