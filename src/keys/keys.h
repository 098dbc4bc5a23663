// Key custody of a region. A KeyProvider holds the region's versioned key-encryption keys
// (KEKs), pseudonym keys, HPKE key pairs, its Ed25519 signing key and its token key, and
// performs the operations that need them, so callers never hold a KEK.
//
// FileKeystore keeps them in one file encrypted under an operator secret (Argon2id-stretched,
// XSalsa20-Poly1305). An external KMS plugs in behind the same interface: Wrap/Unwrap map
// to the KMS's encrypt/decrypt calls with the KEK version as its key version, Sign to its
// signing call; the other keys are small secrets the KMS would wrap at rest.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "common/status.h"

namespace meridian::keys {

struct HpkeKey {
  uint8_t key_id = 0;  // unique across the cluster
  std::string private_key;
  std::string public_key;
  int64_t created_ms = 0;
  int64_t retire_at_ms = 0;  // 0: current; else valid for opening until then
};

class KeyProvider {
 public:
  virtual ~KeyProvider() = default;
  virtual const std::string& region() const = 0;

  // AES-256-GCM under a KEK version; `aad` binds the wrapped key to its owner.
  virtual uint32_t PrimaryKekVersion() const = 0;
  virtual std::vector<uint32_t> KekVersions() const = 0;
  virtual Result<std::string> Wrap(uint32_t kek_version, std::string_view plaintext,
                                   std::string_view aad) const = 0;
  virtual Result<std::string> Unwrap(uint32_t kek_version, std::string_view wrapped,
                                     std::string_view aad) const = 0;
  // A new primary KEK version (older ones stay until destroyed).
  virtual Result<uint32_t> RotateKek() = 0;
  // Destroys an old KEK version for good: whatever only it wraps becomes unreadable.
  virtual Status DestroyKek(uint32_t version) = 0;

  // HMAC key for pseudonyms of one purpose ("phone" is cluster-wide, "names" and "device"
  // are this region's).
  virtual Result<std::string> PseudonymKey(std::string_view purpose) const = 0;
  virtual const std::string& TokenKey() const = 0;
  virtual const std::string& InternalToken() const = 0;

  // HPKE: the current key pair, and any key (current or in its grace period) by id.
  virtual HpkeKey CurrentHpke() const = 0;
  virtual std::optional<HpkeKey> HpkeById(uint8_t key_id, int64_t now_ms) const = 0;
  virtual std::vector<HpkeKey> HpkeKeys() const = 0;
  // A new current HPKE key; the previous one stays valid for `grace_ms`.
  virtual Result<HpkeKey> RotateHpke(int64_t now_ms, int64_t grace_ms) = 0;

  // Ed25519 over `message`; the note verifier key names this region's public key.
  virtual std::string Sign(std::string_view message) const = 0;
  virtual const std::string& SigningPublicKey() const = 0;
};

// Cluster-wide secrets every region's keystore starts with.
struct ClusterKeys {
  std::string phone_pseudonym_key;
  std::string internal_token;
};
ClusterKeys NewClusterKeys(Random& random);

class FileKeystore final : public KeyProvider {
 public:
  // Creates a new keystore file; refuses to overwrite one.
  static Result<std::unique_ptr<FileKeystore>> Create(const std::string& path,
                                                      const std::string& region,
                                                      uint8_t hpke_key_id_base,
                                                      const ClusterKeys& cluster,
                                                      std::string_view secret, bool fast_kdf,
                                                      Random& random, const Clock& clock);
  // Opens and decrypts; a wrong or missing secret is an error that says so.
  static Result<std::unique_ptr<FileKeystore>> Open(const std::string& path,
                                                    std::string_view secret, Random& random);

  const std::string& region() const override { return region_; }
  uint32_t PrimaryKekVersion() const override;
  std::vector<uint32_t> KekVersions() const override;
  Result<std::string> Wrap(uint32_t kek_version, std::string_view plaintext,
                           std::string_view aad) const override;
  Result<std::string> Unwrap(uint32_t kek_version, std::string_view wrapped,
                             std::string_view aad) const override;
  Result<uint32_t> RotateKek() override;
  Status DestroyKek(uint32_t version) override;
  Result<std::string> PseudonymKey(std::string_view purpose) const override;
  const std::string& TokenKey() const override { return token_key_; }
  const std::string& InternalToken() const override { return internal_token_; }
  HpkeKey CurrentHpke() const override;
  std::optional<HpkeKey> HpkeById(uint8_t key_id, int64_t now_ms) const override;
  std::vector<HpkeKey> HpkeKeys() const override;
  Result<HpkeKey> RotateHpke(int64_t now_ms, int64_t grace_ms) override;
  std::string Sign(std::string_view message) const override;
  const std::string& SigningPublicKey() const override { return signing_public_; }

 private:
  FileKeystore(std::string path, std::string secret, bool fast_kdf, Random& random)
      : path_(std::move(path)), secret_(std::move(secret)), fast_kdf_(fast_kdf), random_(random) {}
  Status Save() const;  // with mu_ held
  Status Load(std::string_view plain);

  mutable std::mutex mu_;
  std::string path_;
  std::string secret_;
  bool fast_kdf_;
  Random& random_;
  std::string region_;
  std::map<uint32_t, std::string> keks_;
  uint32_t primary_kek_ = 0;
  std::map<std::string, std::string, std::less<>> pseudonym_keys_;
  std::string token_key_;
  std::string internal_token_;
  std::vector<HpkeKey> hpke_;
  uint8_t hpke_key_id_base_ = 0;
  std::string signing_secret_;  // libsodium's 64-byte Ed25519 secret key
  std::string signing_public_;
};

// The keystore secret: `MERIDIAN_KEYSTORE_SECRET` if set, else the first line of `file`.
Result<std::string> ReadSecret(const std::string& file);

}  // namespace meridian::keys

namespace meridian::config {
struct ClusterConfig;
}

namespace meridian::keys {
// Creates the keystores of the cluster's regions that are missing, all sharing the
// cluster-wide keys (taken from an existing keystore when there is one). HPKE key ids are
// region index * 16 + generation, unique across up to 16 regions. Returns how many it made.
Result<int> InitKeystores(const config::ClusterConfig& config, std::string_view secret,
                          Random& random, const Clock& clock);
// Opens the keystore of `region` with the cluster's secret (environment or secret file).
Result<std::unique_ptr<FileKeystore>> OpenRegionKeystore(const config::ClusterConfig& config,
                                                         std::string_view region, Random& random);
// The region that owns an HPKE key id (by the id's high nibble), if any.
const std::string* RegionOfKeyId(const config::ClusterConfig& config, uint8_t key_id);

}  // namespace meridian::keys
