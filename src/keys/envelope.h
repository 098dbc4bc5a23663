// Envelope encryption of personal values: every user has a data key (DEK), stored only
// wrapped by the region's KEK; every value is AES-256-GCM under the user's DEK with a
// versioned header, and the associated data binds region, user, row and version, so a
// ciphertext moved to another row, user or region does not open. Destroying the DEK
// (crypto-shredding) makes every copy of the user's data unreadable.
#pragma once

#include <array>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "common/string_hash.h"
#include "crypto/crypto.h"
#include "keys/keys.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::keys {

struct DekInfo {
  std::string dek_id;  // hex, names the key in receipts (not secret)
  uint32_t kek_version = 0;
};

class EnvelopeCodec final : public storage::ValueCodec {
 public:
  // The cache holds the keys of users active in the last `cache_ttl_ms`: a flash sale's
  // buyers (who signed in shortly before) seal their orders without a read and an unwrap.
  // A cached key takes about 0.7 KB (its prepared AES-GCM state), so 200,000 keys ~140 MB.
  // (It adds no exposure a memory dump would not have: the KEK that unwraps every key is in
  // memory all the time. A shredded key leaves the cache at once.)
  EnvelopeCodec(KeyProvider& keys, storage::Store& store, Random& random, const Clock& clock,
                int64_t cache_ttl_ms = 600'000, size_t cache_max = 200'000);

  using storage::ValueCodec::Seal;
  Result<std::string> Seal(const storage::CodecContext& ctx, std::string_view plaintext,
                           Wait wait) override;
  Result<std::string> Open(const storage::CodecContext& ctx, std::string_view stored) override;

  Result<std::string> ShredDeferred(std::string_view user_id) override;
  // Rewrites the key space's files without the deleted keys. Concurrent callers share one
  // purge (a purge started after a caller's call covers every delete before it), so
  // shredding many users at once costs a few compactions, not one each.
  Status PurgeShredded() override;
  Result<std::optional<DekInfo>> DekOf(std::string_view user_id);
  // Crypto-shredding: deletes the wrapped DEK (PurgeShredded() then purges its old copies
  // from the engine's files).
  Result<std::optional<DekInfo>> DestroyUserKey(std::string_view user_id);
  // Moving a user to another region: the data key leaves only sealed to the destination
  // (HPKE) and is installed there wrapped by the destination's KEK, so values re-sealed
  // there keep the same key id.
  struct ExportedKey {
    std::string raw_id;
    std::string key;
    ~ExportedKey() { Wipe(key); }
  };
  Result<ExportedKey> ExportUserKey(std::string_view user_id);
  // Idempotent for the same key; a different key for a user who has one is a conflict.
  Status InstallUserKey(std::string_view user_id, const ExportedKey& key);
  // Rewraps every DEK not under the primary KEK; returns how many it rewrapped.
  Result<int64_t> RewrapAll();
  // DEKs still wrapped under `kek_version`.
  Result<int64_t> CountUnder(uint32_t kek_version);

 private:
  struct Dek {
    std::string key;
    std::string id;      // hex
    std::string raw_id;  // as in value headers
    uint32_t kek_version = 0;
    int64_t expires_ms = 0;
    std::unique_ptr<crypto::AesGcmKey> prepared;  // the key, ready for many values
    // The key bytes are wiped when the last holder lets go.
    ~Dek() { Wipe(key); }
  };
  // Shared, immutable: a read takes a reference instead of copying the key.
  using DekPtr = std::shared_ptr<const Dek>;
  static void Wipe(std::string& s);
  // With Wait::kNever, only a key in memory (else kWouldBlock).
  Result<DekPtr> LoadDek(std::string_view user_id, bool create, Wait wait = Wait::kMay);
  // The stored form of a data key: magic, KEK version, key id, key wrapped by the KEK.
  Result<std::string> WrappedRow(std::string_view user_id, std::string_view raw_id,
                                 std::string_view key);
  std::mutex& StripeFor(std::string_view user_id);

  KeyProvider& keys_;
  storage::Store& store_;
  Random& random_;
  const Clock& clock_;
  int64_t cache_ttl_ms_;
  size_t cache_max_;
  std::mutex cache_mu_;
  // Under cache_mu_: makes room for one key in a full cache, handing the keys it drops to
  // `evicted` (to be released outside the lock).
  void EvictOne(int64_t now, std::vector<DekPtr>* evicted);
  int64_t swept_ms_ = 0;
  size_t evict_cursor_ = 0;
  StringMap<DekPtr> cache_;
  std::array<std::mutex, 32> stripes_;
  std::mutex purge_mu_;
  std::condition_variable purge_cv_;
  uint64_t purge_tickets_ = 0;  // deletes waiting for a purge, numbered
  uint64_t purged_upto_ = 0;    // every ticket up to this one is purged
  bool purging_ = false;
};

}  // namespace meridian::keys
