// Crypto mechanisms shared by the services: keyed MACs and pseudonyms, password hashing,
// user tokens, and the dev CA. Knows nothing of HTTP or storage.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace meridian::crypto {

// Call once at start-up (libsodium).
Status Init();

std::string HmacSha256(std::string_view key, std::string_view message);
// SHA-256 of the parts' concatenation (OpenSSL: the CPU's SHA instructions, about 5x
// libsodium's portable code on a 300-byte audit entry).
std::string Sha256(std::initializer_list<std::string_view> parts);
// Constant-time comparison of equal-length secrets.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Keyed pseudonym of an identifier for one purpose ("phone", "device", "name"):
// HMAC-SHA256(key, purpose || 0x00 || value) in hex. Never a plain hash: phone numbers and
// IMEIs are small spaces that a hash would not protect.
std::string Pseudonym(std::string_view key, std::string_view purpose, std::string_view value);

// Argon2id (libsodium). `dev_fast` uses the minimum cost: for local development only.
Result<std::string> HashPassword(std::string_view password, bool dev_fast);
bool VerifyPassword(std::string_view stored_hash, std::string_view password);

// Bearer tokens: "mt1.<payload>.<mac>", HMAC-SHA256 with the home region's token key.
struct TokenClaims {
  std::string user_id;
  std::string region;
  int64_t epoch = 0;  // bumped to revoke every earlier token of the user
  int64_t expires_ms = 0;
};
std::string IssueToken(const TokenClaims& claims, std::string_view key);
// Reads the claims without checking the MAC: only for routing a request to the region that
// can verify it.
std::optional<TokenClaims> PeekToken(std::string_view token);
// Checks format, MAC (constant time) and expiry.
Result<TokenClaims> VerifyToken(std::string_view token, std::string_view key, int64_t now_ms);
// The claims of a token this thread verified under `key` and that has not expired, found
// with one lookup and no copy; nullptr when the token needs the full check. The pointer is
// valid until this thread's next token check.
const TokenClaims* RecentlyVerified(std::string_view token, std::string_view key, int64_t now_ms);

// AES-256-GCM. Seal returns ciphertext || tag; Open fails with integrity_error.
inline constexpr size_t kGcmNonceSize = 12;
inline constexpr size_t kGcmTagSize = 16;
Result<std::string> AesGcmSeal(std::string_view key, std::string_view nonce, std::string_view aad,
                               std::string_view plaintext);
Result<std::string> AesGcmOpen(std::string_view key, std::string_view nonce, std::string_view aad,
                               std::string_view sealed);

// An AES-256-GCM key prepared once (key schedule and GHASH tables) for many values: the
// per-user data key of envelope encryption. Same format as AesGcmSeal/AesGcmOpen. Uses
// libsodium's AES-NI implementation where the CPU has it, else OpenSSL.
class AesGcmKey {
 public:
  explicit AesGcmKey(std::string_view key);
  ~AesGcmKey();
  AesGcmKey(const AesGcmKey&) = delete;
  AesGcmKey& operator=(const AesGcmKey&) = delete;
  Result<std::string> Seal(std::string_view nonce, std::string_view aad,
                           std::string_view plaintext) const;
  Result<std::string> Open(std::string_view nonce, std::string_view aad,
                           std::string_view sealed) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Ed25519 (libsodium): 64-byte secret key, 32-byte public key, 64-byte signatures.
struct SigningKeyPair {
  std::string secret_key;
  std::string public_key;
};
SigningKeyPair NewSigningKey();
std::string SignEd25519(std::string_view secret_key, std::string_view message);
bool VerifyEd25519(std::string_view public_key, std::string_view message,
                   std::string_view signature);

// The C2SP signed-note verifier key of an Ed25519 key: "<name>+<hex key hash>+<base64>".
std::string NoteVerifierKey(std::string_view name, std::string_view ed25519_public_key);
// Its 4-byte key hash: SHA-256(name || "\n" || 0x01 || key)[:4].
std::string NoteKeyHash(std::string_view name, std::string_view ed25519_public_key);

// A development certificate authority and the node certificates it signs (P-256, PEM).
struct KeyAndCert {
  std::string key_pem;
  std::string cert_pem;
};
Result<KeyAndCert> GenerateCa(std::string_view common_name);
Result<KeyAndCert> IssueNodeCert(const KeyAndCert& ca, std::string_view common_name,
                                 std::string_view ip_address);

}  // namespace meridian::crypto
