// AES-256-GCM (OpenSSL EVP): the record and key-wrapping cipher. The cipher is fetched
// once and each thread reuses one context: OpenSSL 3's per-call lookup and allocation cost
// more than sealing a 1 KiB record.
#include <openssl/evp.h>
#include <sodium.h>

#include <memory>

#include "crypto/crypto.h"
#include "crypto/openssl_ptr.h"

namespace meridian::crypto {
namespace {
const auto* U(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

const EVP_CIPHER* Aes256Gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

// This thread's context. Each use starts with a full Init (cipher, key, nonce), which
// reinitialises it without freeing and reallocating its cipher state.
EVP_CIPHER_CTX* ThreadContext() {
  thread_local CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  return ctx.get();
}
}  // namespace

Result<std::string> AesGcmSeal(std::string_view key, std::string_view nonce, std::string_view aad,
                               std::string_view plaintext) {
  if (key.size() != 32 || nonce.size() != kGcmNonceSize) {
    return Error(Code::kInternal, "AES-GCM: bad key or nonce size");
  }
  EVP_CIPHER_CTX* ctx = ThreadContext();
  std::string out(plaintext.size() + kGcmTagSize, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  int total = 0;
  if (EVP_EncryptInit_ex2(ctx, Aes256Gcm(), U(key), U(nonce), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx, nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx, o, &len, U(plaintext), static_cast<int>(plaintext.size())) != 1) {
    return Error(Code::kInternal, "AES-GCM: encryption failed");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx, o + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kGcmTagSize, o + plaintext.size()) != 1) {
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
  EVP_CIPHER_CTX* ctx = ThreadContext();
  std::string out(n, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  unsigned char tag[kGcmTagSize];
  std::copy(sealed.end() - kGcmTagSize, sealed.end(), tag);
  if (EVP_DecryptInit_ex2(ctx, Aes256Gcm(), U(key), U(nonce), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx, nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx, o, &len, U(sealed), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag) != 1 ||
      EVP_DecryptFinal_ex(ctx, o + len, &len) != 1) {
    return Error(Code::kIntegrityError, "AES-GCM: authentication failed");
  }
  return out;
}

struct AesGcmKey::State {
  alignas(16) crypto_aead_aes256gcm_state prepared;
  bool hardware = false;
  std::string key;  // for the OpenSSL path only
};

AesGcmKey::AesGcmKey(std::string_view key) : state_(std::make_unique<State>()) {
  state_->hardware = key.size() == 32 && crypto_aead_aes256gcm_is_available() == 1;
  if (state_->hardware) {
    crypto_aead_aes256gcm_beforenm(&state_->prepared, U(key));
  } else {
    state_->key = std::string(key);
  }
}

AesGcmKey::~AesGcmKey() {
  sodium_memzero(&state_->prepared, sizeof state_->prepared);
  sodium_memzero(state_->key.data(), state_->key.size());
}

Result<std::string> AesGcmKey::Seal(std::string_view nonce, std::string_view aad,
                                    std::string_view plaintext) const {
  if (!state_->hardware) return AesGcmSeal(state_->key, nonce, aad, plaintext);
  if (nonce.size() != kGcmNonceSize) return Error(Code::kInternal, "AES-GCM: bad nonce size");
  std::string out(plaintext.size() + kGcmTagSize, '\0');
  unsigned long long len = 0;
  crypto_aead_aes256gcm_encrypt_afternm(reinterpret_cast<unsigned char*>(out.data()), &len,
                                        U(plaintext), plaintext.size(), U(aad), aad.size(), nullptr,
                                        U(nonce), &state_->prepared);
  out.resize(len);
  return out;
}

Result<std::string> AesGcmKey::Open(std::string_view nonce, std::string_view aad,
                                    std::string_view sealed) const {
  if (!state_->hardware) return AesGcmOpen(state_->key, nonce, aad, sealed);
  if (nonce.size() != kGcmNonceSize || sealed.size() < kGcmTagSize) {
    return Error(Code::kIntegrityError, "AES-GCM: malformed ciphertext");
  }
  std::string out(sealed.size() - kGcmTagSize, '\0');
  unsigned long long len = 0;
  if (crypto_aead_aes256gcm_decrypt_afternm(reinterpret_cast<unsigned char*>(out.data()), &len,
                                            nullptr, U(sealed), sealed.size(), U(aad), aad.size(),
                                            U(nonce), &state_->prepared) != 0) {
    return Error(Code::kIntegrityError, "AES-GCM: authentication failed");
  }
  out.resize(len);
  return out;
}

}  // namespace meridian::crypto
