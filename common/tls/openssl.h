// Owning handles for OpenSSL objects, and the error-queue reader every OpenSSL failure message
// uses. Invariant: code outside this header never calls a *_free function by hand; a raw pointer
// from OpenSSL is put into one of these handles on the line that receives it.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace zt::tls {

// A deleter calling one OpenSSL free function; a stateless type so the handles stay one pointer wide.
template <auto kFree>
struct OpensslDeleter {
  template <class T>
  void operator()(T* p) const {
    kFree(p);
  }
};

using X509Ptr = std::unique_ptr<X509, OpensslDeleter<&X509_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, OpensslDeleter<&X509_REQ_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OpensslDeleter<&X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OpensslDeleter<&X509_STORE_CTX_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OpensslDeleter<&X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, OpensslDeleter<&X509_EXTENSION_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<&EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpensslDeleter<&EVP_PKEY_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslDeleter<&BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpensslDeleter<&BN_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, OpensslDeleter<&ASN1_INTEGER_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OpensslDeleter<&GENERAL_NAMES_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpensslDeleter<&SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OpensslDeleter<&SSL_free>>;

inline void free_x509_stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
inline void free_extension_stack(STACK_OF(X509_EXTENSION) * s) {
  sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
}
inline void free_openssl_string(char* s) { OPENSSL_free(s); }
// Stacks own their elements: freeing the stack frees what is in it.
using X509StackPtr = std::unique_ptr<STACK_OF(X509), OpensslDeleter<&free_x509_stack>>;
using X509ExtensionStackPtr =
    std::unique_ptr<STACK_OF(X509_EXTENSION), OpensslDeleter<&free_extension_stack>>;
using OpensslStringPtr = std::unique_ptr<char, OpensslDeleter<&free_openssl_string>>;

// Drains this thread's OpenSSL error queue into one line ("error:...; error:..."), so the next
// failure does not report stale entries. Returns "no OpenSSL error detail" when the queue is empty.
std::string openssl_errors();

// fail("<what>: <openssl_errors()>"): the usual way to turn a failed OpenSSL call into a Result.
tl::unexpected<Error> fail_openssl(std::string_view what);

// New owning handles to objects already owned elsewhere (reference count + 1).
X509Ptr up_ref(X509* cert);
EvpPkeyPtr up_ref(EVP_PKEY* key);

// A read-only memory BIO over `data`; the data must outlive the BIO.
BioPtr memory_bio(std::string_view data);
// A writable memory BIO whose contents bio_contents() returns.
BioPtr memory_bio();
std::string bio_contents(BIO* bio);

}  // namespace zt::tls
