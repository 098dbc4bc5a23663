// Private to crypto/: owning pointers for OpenSSL objects.
#pragma once

#include <openssl/evp.h>

#include <memory>

namespace meridian::crypto {

template <auto Fn>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
template <typename T, auto Fn>
using OpenSslPtr = std::unique_ptr<T, OpenSslDeleter<Fn>>;

using KeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = OpenSslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using CipherCtxPtr = OpenSslPtr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;

}  // namespace meridian::crypto
