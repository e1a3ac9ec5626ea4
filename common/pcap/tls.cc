#include "common/pcap/tls.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace zt::pcap {
namespace {

constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;

// RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
constexpr unsigned char kHelloRetryRandom[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};

struct Extensions {
  std::map<uint16_t, std::string_view> by_type;
  bool ok = true;
};

Extensions parse_extensions(Reader& r) {
  Extensions e;
  uint16_t total = r.u16();
  Reader x(r.take(total));
  e.ok = r.ok();
  while (e.ok && !x.done()) {
    uint16_t type = x.u16();
    uint16_t len = x.u16();
    auto data = x.take(len);
    e.ok = x.ok();
    if (e.ok) e.by_type[type] = data;
  }
  return e;
}

// Application-data bytes after the hellos; anything else in the clear is a problem.
size_t check_encrypted(const TlsRecords& recs, const char* dir,
                       std::vector<std::string>& problems) {
  size_t app = 0, ccs = 0;
  for (const auto& r : recs.records) {
    if (r.type == kTlsHandshake) continue;  // the hellos, checked separately
    if (r.type == kTlsAlert) problems.push_back(fmt::format("{}: plaintext alert", dir));
    if (r.type == kTlsChangeCipherSpec) {
      ++ccs;
      if (r.body != std::string_view("\x01", 1)) {
        problems.push_back(fmt::format("{}: unexpected change_cipher_spec body", dir));
      }
    } else if (r.type == kTlsApplicationData) {
      if (r.version != 0x0303) {
        problems.push_back(
            fmt::format("{}: application data record version 0x{:04x}", dir, r.version));
      }
      app += r.body.size();
    }
  }
  if (ccs > 1) problems.push_back(fmt::format("{}: {} change_cipher_spec records", dir, ccs));
  return app;
}

}  // namespace

TlsRecords split_records(std::string_view s) {
  TlsRecords out;
  while (!s.empty()) {
    Reader r(s);
    TlsRecord rec;
    rec.type = r.u8();
    rec.version = r.u16();
    uint16_t len = r.u16();
    if (!r.ok()) {
      out.trailing = s.size();
      break;
    }
    if (rec.type < kTlsChangeCipherSpec || rec.type > kTlsApplicationData ||
        (rec.version != 0x0301 && rec.version != 0x0303) || len > (1 << 14) + 256) {
      out.malformed = true;
      break;
    }
    if (r.left() < len) {
      out.trailing = s.size();
      break;
    }
    rec.body = r.take(len);
    out.records.push_back(rec);
    s.remove_prefix(5 + len);
  }
  return out;
}

std::vector<HandshakeMessage> handshake_messages(const TlsRecords& recs, std::string& joined,
                                                 bool& malformed) {
  joined.clear();
  for (const auto& r : recs.records) {
    if (r.type == kTlsHandshake) joined.append(r.body);
  }
  std::vector<HandshakeMessage> out;
  Reader rd(joined);
  malformed = false;
  while (!rd.done()) {
    HandshakeMessage m;
    m.type = rd.u8();
    uint32_t len = rd.u24();
    m.body = rd.take(len);
    if (!rd.ok()) {
      malformed = true;
      break;
    }
    out.push_back(m);
  }
  return out;
}

ServerHello parse_server_hello(std::string_view body) {
  ServerHello h;
  Reader r(body);
  h.legacy_version = r.u16();
  auto random = r.take(32);
  r.take(r.u8());  // legacy_session_id_echo
  h.cipher_suite = r.u16();
  r.u8();  // legacy_compression_method
  auto ext = parse_extensions(r);
  if (!r.ok() || !ext.ok) return h;
  h.parsed = true;
  h.hello_retry = random == std::string_view(reinterpret_cast<const char*>(kHelloRetryRandom), 32);
  if (auto it = ext.by_type.find(kExtSupportedVersions);
      it != ext.by_type.end() && it->second.size() == 2) {
    Reader v(it->second);
    h.selected_version = v.u16();
  }
  return h;
}

ClientHello parse_client_hello(std::string_view body) {
  ClientHello h;
  Reader r(body);
  r.u16();         // legacy_version
  r.take(32);      // random
  r.take(r.u8());  // legacy_session_id
  Reader suites(r.take(r.u16()));
  r.take(r.u8());  // legacy_compression_methods
  auto ext = parse_extensions(r);
  if (!r.ok() || !ext.ok) return h;
  while (suites.ok() && !suites.done()) h.cipher_suites.push_back(suites.u16());
  h.has_sni = ext.by_type.count(kExtServerName) != 0;
  if (auto it = ext.by_type.find(kExtSupportedVersions); it != ext.by_type.end()) {
    Reader v(it->second);
    Reader list(v.take(v.u8()));
    while (list.ok() && !list.done()) h.versions.push_back(list.u16());
  }
  if (auto it = ext.by_type.find(kExtAlpn); it != ext.by_type.end()) {
    Reader a(it->second);
    Reader list(a.take(a.u16()));
    while (list.ok() && !list.done()) {
      auto name = list.take(list.u8());
      if (list.ok()) h.alpn.emplace_back(name);
    }
  }
  h.parsed = true;
  return h;
}

std::string cipher_suite_name(uint16_t suite) {
  switch (suite) {
    case 0x1301:
      return "TLS_AES_128_GCM_SHA256";
    case 0x1302:
      return "TLS_AES_256_GCM_SHA384";
    case 0x1303:
      return "TLS_CHACHA20_POLY1305_SHA256";
    default:
      return fmt::format("0x{:04x}", suite);
  }
}

TlsReport inspect_tls(const TcpFlow& flow) {
  TlsReport rep;
  auto& problems = rep.problems;
  bool gap_up = false, gap_down = false;
  const std::string up = flow.to_server.assemble(gap_up);
  const std::string down = flow.to_client.assemble(gap_down);
  if (gap_up) problems.emplace_back("client-to-server stream has a hole (capture missed data)");
  if (gap_down) problems.emplace_back("server-to-client stream has a hole (capture missed data)");

  auto up_recs = split_records(up);
  auto down_recs = split_records(down);
  if (up_recs.malformed) problems.emplace_back("client-to-server bytes are not TLS records");
  if (down_recs.malformed) problems.emplace_back("server-to-client bytes are not TLS records");
  if (up_recs.records.empty() || down_recs.records.empty()) {
    problems.emplace_back("no TLS records in one direction");
    return rep;
  }
  if (up_recs.records.front().type != kTlsHandshake ||
      down_recs.records.front().type != kTlsHandshake) {
    problems.emplace_back("the connection does not start with a TLS handshake");
  }

  std::string up_joined, down_joined;
  bool up_bad = false, down_bad = false;
  auto up_hs = handshake_messages(up_recs, up_joined, up_bad);
  auto down_hs = handshake_messages(down_recs, down_joined, down_bad);
  if (up_bad || down_bad) problems.emplace_back("malformed plaintext handshake message");
  if (up_hs.empty() || down_hs.empty()) {
    problems.emplace_back("no hello in one direction");
    return rep;
  }
  // Only hellos travel in the clear in TLS 1.3; every other handshake message is encrypted.
  for (const auto& m : up_hs) {
    if (m.type != kClientHello) {
      problems.push_back(
          fmt::format("plaintext handshake message type {} from the client", m.type));
    }
  }
  for (const auto& m : down_hs) {
    if (m.type != kServerHello) {
      problems.push_back(
          fmt::format("plaintext handshake message type {} from the server", m.type));
    }
  }
  rep.client_hello = parse_client_hello(up_hs.back().body);
  rep.server_hello = parse_server_hello(down_hs.back().body);
  const auto& ch = rep.client_hello;
  const auto& sh = rep.server_hello;
  if (!ch.parsed) problems.emplace_back("malformed ClientHello");
  if (!sh.parsed) problems.emplace_back("malformed ServerHello");
  if (ch.parsed) {
    if (std::find(ch.versions.begin(), ch.versions.end(), kTls13) == ch.versions.end()) {
      problems.emplace_back("ClientHello does not offer TLS 1.3");
    }
    if (std::find(ch.alpn.begin(), ch.alpn.end(), "h2") == ch.alpn.end()) {
      problems.emplace_back("ClientHello without ALPN h2");
    }
    if (ch.has_sni) problems.emplace_back("ClientHello carries SNI (HBONE sends none)");
  }
  if (sh.parsed) {
    if (sh.hello_retry) problems.emplace_back("the last ServerHello is a HelloRetryRequest");
    if (sh.legacy_version != 0x0303) {
      problems.push_back(fmt::format("ServerHello legacy version 0x{:04x}", sh.legacy_version));
    }
    if (!sh.selected_version || *sh.selected_version != kTls13) {
      problems.emplace_back("ServerHello does not select TLS 1.3");
    }
    if (sh.cipher_suite != 0x1301 && sh.cipher_suite != 0x1302) {
      problems.push_back("cipher suite " + cipher_suite_name(sh.cipher_suite) + " is not AES-GCM");
    }
  }
  rep.app_data_to_server = check_encrypted(up_recs, "client-to-server", problems);
  rep.app_data_to_client = check_encrypted(down_recs, "server-to-client", problems);
  return rep;
}

std::string TlsReport::summary() const {
  std::string version = server_hello.selected_version && *server_hello.selected_version == kTls13
                            ? "TLS 1.3"
                            : "not TLS 1.3";
  std::string alpn;
  for (const auto& a : client_hello.alpn) alpn += (alpn.empty() ? "" : ",") + a;
  return fmt::format("{} {} ALPN {}, {} B encrypted to the server, {} B to the client", version,
                     cipher_suite_name(server_hello.cipher_suite), alpn.empty() ? "-" : alpn,
                     app_data_to_server, app_data_to_client);
}

}  // namespace zt::pcap
