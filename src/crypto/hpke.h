// HPKE (RFC 9180), base mode, for the one suite Meridian uses: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305. Built from OpenSSL 3.0 primitives, which has no HPKE API
// before 3.2. Also the `sealed` message framing of API.md ("Sealed messages (HPKE)").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace meridian::crypto::hpke {

inline constexpr uint16_t kKemId = 0x0020;   // DHKEM(X25519, HKDF-SHA256)
inline constexpr uint16_t kKdfId = 0x0001;   // HKDF-SHA256
inline constexpr uint16_t kAeadId = 0x0003;  // ChaCha20-Poly1305
inline constexpr size_t kPrivateKeySize = 32;
inline constexpr size_t kPublicKeySize = 32;
inline constexpr size_t kEncSize = 32;
inline constexpr size_t kTagSize = 16;

// Raw 32-byte X25519 keys.
struct KeyPair {
  std::string private_key;
  std::string public_key;
};

Result<KeyPair> GenerateKeyPair();
// RFC 9180 section 7.1.3: deterministic, from at least 32 bytes of entropy.
Result<KeyPair> DeriveKeyPair(std::string_view ikm);
Result<std::string> PublicKeyOf(std::string_view private_key);

// Single-shot base mode (RFC 9180 section 6.1).
struct Sealed {
  std::string enc;  // the encapsulated key, kEncSize bytes
  std::string ct;   // ciphertext and tag
};
Result<Sealed> Seal(std::string_view pk_r, std::string_view info, std::string_view aad,
                    std::string_view plaintext);
Result<std::string> Open(std::string_view sk_r, std::string_view enc, std::string_view info,
                         std::string_view aad, std::string_view ct);

// The `sealed` field of API.md: unpadded base64url of hdr || enc || ct, where
// hdr = key_id || kem_id || kdf_id || aead_id (big-endian), info = "meridian sealed v1" ||
// 0x00 || hdr, and aad is empty.
inline constexpr size_t kHeaderSize = 7;
inline constexpr size_t kMaxSealedSize = 64 * 1024;  // of the base64url text
inline constexpr std::string_view kSealedInfoPrefix{"meridian sealed v1\0", 19};

struct ParsedSealed {
  uint8_t key_id = 0;
  std::string hdr;
  std::string enc;
  std::string ct;
};

Result<std::string> SealMessage(uint8_t key_id, std::string_view pk_r, std::string_view plaintext);
// Checks framing and suite ids only, without the key: a node reads key_id here and forwards
// a message for another region unread.
Result<ParsedSealed> ParseSealed(std::string_view b64);
Result<std::string> OpenMessage(const ParsedSealed& message, std::string_view sk_r);

// The steps of RFC 9180 exposed for the known-answer tests; not for other callers.
namespace internal {

struct Context {
  std::string key;
  std::string base_nonce;
  std::string exporter_secret;
  uint64_t seq = 0;
};

struct SenderSetup {
  std::string enc;
  std::string shared_secret;
  Context context;
};

// SetupBaseS with a given ephemeral key pair instead of a fresh one.
Result<SenderSetup> SetupBaseS(std::string_view pk_r, std::string_view info,
                               const KeyPair& ephemeral);
Result<Context> SetupBaseR(std::string_view enc, std::string_view sk_r, std::string_view info);
// Context.Seal / Context.Open: each success uses one sequence number.
Result<std::string> ContextSeal(Context& context, std::string_view aad, std::string_view plaintext);
Result<std::string> ContextOpen(Context& context, std::string_view aad, std::string_view ct);
// Seal() with a given ephemeral key pair.
Result<Sealed> SealWithEphemeral(std::string_view pk_r, std::string_view info, std::string_view aad,
                                 std::string_view plaintext, const KeyPair& ephemeral);

}  // namespace internal
}  // namespace meridian::crypto::hpke
