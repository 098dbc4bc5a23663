// AES-256-GCM (OpenSSL EVP): the record and key-wrapping cipher.
#include <openssl/evp.h>

#include <memory>

#include "crypto/crypto.h"
#include "crypto/openssl_ptr.h"

namespace meridian::crypto {
namespace {
using CtxPtr = CipherCtxPtr;
const auto* U(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
}  // namespace

Result<std::string> AesGcmSeal(std::string_view key, std::string_view nonce, std::string_view aad,
                               std::string_view plaintext) {
  if (key.size() != 32 || nonce.size() != kGcmNonceSize) {
    return Error(Code::kInternal, "AES-GCM: bad key or nonce size");
  }
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kGcmTagSize, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  int total = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), o, &len, U(plaintext), static_cast<int>(plaintext.size())) !=
          1) {
    return Error(Code::kInternal, "AES-GCM: encryption failed");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), o + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagSize, o + plaintext.size()) !=
          1) {
    return Error(Code::kInternal, "AES-GCM: encryption failed");
  }
  return out;
}

Result<std::string> AesGcmOpen(std::string_view key, std::string_view nonce, std::string_view aad,
                               std::string_view sealed) {
  if (key.size() != 32 || nonce.size() != kGcmNonceSize || sealed.size() < kGcmTagSize) {
    return Error(Code::kIntegrityError, "AES-GCM: malformed ciphertext");
  }
  const size_t n = sealed.size() - kGcmTagSize;
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(n, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  std::string tag(sealed.substr(n));
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), o, &len, U(sealed), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), o + len, &len) != 1) {
    return Error(Code::kIntegrityError, "AES-GCM: authentication failed");
  }
  return out;
}

}  // namespace meridian::crypto
