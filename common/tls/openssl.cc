#include "common/tls/openssl.h"

#include <openssl/err.h>

#include <climits>

namespace zt::tls {

std::string openssl_errors() {
  std::string out;
  const char* file = nullptr;
  int line = 0;
  const char* func = nullptr;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long e = ERR_get_error_all(&file, &line, &func, &data, &flags)) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
    // The data string often names the thing that failed (a file, a PEM header, a verify error).
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  if (out.empty()) out = "no OpenSSL error detail";
  return out;
}

tl::unexpected<Error> fail_openssl(std::string_view what) {
  return fail(fmt::format("{}: {}", what, openssl_errors()));
}

X509Ptr up_ref(X509* cert) {
  if (cert == nullptr || X509_up_ref(cert) != 1) return nullptr;
  return X509Ptr(cert);
}

EvpPkeyPtr up_ref(EVP_PKEY* key) {
  if (key == nullptr || EVP_PKEY_up_ref(key) != 1) return nullptr;
  return EvpPkeyPtr(key);
}

BioPtr memory_bio(std::string_view data) {
  // BIO_new_mem_buf takes an int length; nothing we parse is anywhere near that size, and a
  // null BIO makes the caller report a failure instead of reading a truncated buffer.
  if (data.size() > static_cast<size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

BioPtr memory_bio() { return BioPtr(BIO_new(BIO_s_mem())); }

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return {};
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace zt::tls
