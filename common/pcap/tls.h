// What a captured TCP connection says about its TLS: record framing, the plaintext hellos
// (versions, cipher suite, ALPN, SNI) and how much application data followed. inspect_tls()
// turns a reassembled flow into a report whose `problems` is empty exactly when the connection
// looks like HBONE's TLS 1.3 (DESIGN §4): only the hellos in the clear, TLS 1.3 selected with an
// AES-GCM suite, ALPN h2, no SNI, and everything after the hellos encrypted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/pcap/packets.h"

namespace zt::pcap {

inline constexpr uint8_t kTlsChangeCipherSpec = 20;
inline constexpr uint8_t kTlsAlert = 21;
inline constexpr uint8_t kTlsHandshake = 22;
inline constexpr uint8_t kTlsApplicationData = 23;
inline constexpr uint8_t kClientHello = 1;
inline constexpr uint8_t kServerHello = 2;
inline constexpr uint16_t kTls13 = 0x0304;

struct TlsRecord {
  uint8_t type = 0;
  uint16_t version = 0;
  std::string_view body;
};

struct TlsRecords {
  std::vector<TlsRecord> records;
  bool malformed = false;  // a header that is not a TLS record header
  size_t trailing = 0;     // bytes of a last record the capture holds only part of
};
TlsRecords split_records(std::string_view s);

struct HandshakeMessage {
  uint8_t type = 0;
  std::string_view body;
};
// Every plaintext handshake message of one direction (the bodies of its type-22 records, which
// in TLS 1.3 hold only the hellos). A message may span records, so the bodies are joined first
// into `joined`, which must outlive the result.
std::vector<HandshakeMessage> handshake_messages(const TlsRecords& recs, std::string& joined,
                                                 bool& malformed);

struct ClientHello {
  bool parsed = false;
  std::vector<uint16_t> versions;  // supported_versions
  std::vector<uint16_t> cipher_suites;
  std::vector<std::string> alpn;
  bool has_sni = false;
};
ClientHello parse_client_hello(std::string_view body);

struct ServerHello {
  bool parsed = false;
  bool hello_retry = false;
  uint16_t legacy_version = 0;
  uint16_t cipher_suite = 0;
  std::optional<uint16_t> selected_version;
};
ServerHello parse_server_hello(std::string_view body);

struct TlsReport {
  ClientHello client_hello;
  ServerHello server_hello;  // the last one (an earlier one may be a HelloRetryRequest)
  size_t app_data_to_server = 0, app_data_to_client = 0;  // bytes in application_data records
  std::vector<std::string> problems;                      // empty: HBONE-shaped TLS 1.3
  bool ok() const { return problems.empty(); }
  // "TLS 1.3 TLS_AES_128_GCM_SHA256 ALPN h2, 1234 B encrypted up, 5678 B down"
  std::string summary() const;
};
TlsReport inspect_tls(const TcpFlow& flow);

// "TLS_AES_128_GCM_SHA256" for the TLS 1.3 suites, else "0x1301"-style hex.
std::string cipher_suite_name(uint16_t suite);

}  // namespace zt::pcap
