// Reading and writing certificates and keys (PEM), and the fields of a certificate the mesh
// looks at: URI SANs (SPIFFE ids), validity and serial. Parsing never trusts its input: bad PEM
// is an error value, never a crash.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/tls/openssl.h"
#include "common/tls/spiffe.h"

namespace zt::tls {

// Every certificate in `pem`, in order. Non-certificate PEM blocks are skipped; no certificate at
// all, or a certificate block that does not decode, is an error.
Result<std::vector<X509Ptr>> parse_pem_certs(std::string_view pem);

// One private key (PKCS#8 "PRIVATE KEY" or the traditional "EC PRIVATE KEY"/"RSA PRIVATE KEY").
// Encrypted keys are refused instead of prompting for a password.
Result<EvpPkeyPtr> parse_pem_key(std::string_view pem);

// PEM text; empty on an OpenSSL failure (which only happens when out of memory).
std::string cert_to_pem(X509* cert);
std::string key_to_pem(EVP_PKEY* key);  // unencrypted PKCS#8, as Istio writes keys
std::string certs_to_pem(const std::vector<X509Ptr>& certs);

// The URI entries of the subjectAltName extension, in certificate order.
std::vector<std::string> uri_sans(X509* cert);

// The first URI SAN that parses as a SPIFFE id: the peer identity Istio uses for policy and
// telemetry.
Result<SpiffeId> spiffe_id_of(X509* cert);

std::chrono::system_clock::time_point not_before(X509* cert);
std::chrono::system_clock::time_point not_after(X509* cert);

// RFC 3339 in UTC with second precision ("2026-01-02T03:04:05Z"), for logs and config dumps.
std::string format_time(std::chrono::system_clock::time_point t);

// Lower-case hex without leading zeros ("0" for zero); negative serials get a leading '-'.
std::string serial_hex(X509* cert);

// The subject/issuer as a one-line RFC 2253 string (empty for an empty name), for logs.
std::string subject_of(X509* cert);
std::string issuer_of(X509* cert);

}  // namespace zt::tls
