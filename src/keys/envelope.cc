#include "keys/envelope.h"

#include <sodium.h>

#include <functional>

#include <fmt/format.h>

#include "common/encoding.h"
#include "common/log.h"
#include "crypto/crypto.h"

namespace meridian::keys {
namespace {
constexpr std::string_view kValueMagic = "me1";
constexpr uint8_t kAlgAes256Gcm = 1;
constexpr std::string_view kDekMagic = "dk1";
constexpr size_t kDekIdSize = 16;

void PutU32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

std::string DekAad(std::string_view region, std::string_view user, std::string_view dek_id) {
  return fmt::format("meridian dek v1\n{}\n{}\n{}", region, user, dek_id);
}

// The associated data of a value: its header and everything it belongs to.
std::string ValueAad(std::string_view header, const storage::CodecContext& c) {
  std::string aad;
  aad.reserve(header.size() + c.region.size() + c.user_id.size() + c.collection.size() +
              c.key.size() + 32);
  aad.append(header);
  for (std::string_view part : {c.region, c.user_id, c.collection, c.key}) {
    aad.push_back('\n');
    aad.append(part);
  }
  aad.push_back('\n');
  aad.append(std::to_string(c.version));
  return aad;
}

Status Integrity(std::string_view what) {
  // Logged without any content: which check failed is enough to investigate.
  log::Error("integrity_error", {{"check", std::string(what)}});
  return Error(Code::kIntegrityError, "stored data failed its integrity check");
}
}  // namespace

void EnvelopeCodec::Wipe(std::string& s) { sodium_memzero(s.data(), s.size()); }

EnvelopeCodec::EnvelopeCodec(KeyProvider& keys, storage::Store& store, Random& random,
                             const Clock& clock, int64_t cache_ttl_ms, size_t cache_max)
    : keys_(keys),
      store_(store),
      random_(random),
      clock_(clock),
      cache_ttl_ms_(cache_ttl_ms),
      cache_max_(cache_max) {}

std::mutex& EnvelopeCodec::StripeFor(std::string_view user_id) {
  return stripes_[std::hash<std::string_view>{}(user_id) % stripes_.size()];
}

Result<std::string> EnvelopeCodec::WrappedRow(std::string_view user_id, std::string_view raw_id,
                                              std::string_view key) {
  const uint32_t kek = keys_.PrimaryKekVersion();
  ASSIGN_OR_RETURN(auto wrapped,
                   keys_.Wrap(kek, key, DekAad(keys_.region(), user_id, HexEncode(raw_id))));
  std::string value(kDekMagic);
  PutU32(value, kek);
  value.append(raw_id);
  value += wrapped;
  return value;
}

Result<EnvelopeCodec::ExportedKey> EnvelopeCodec::ExportUserKey(std::string_view user_id) {
  ASSIGN_OR_RETURN(auto dek, LoadDek(user_id, /*create=*/false));
  return ExportedKey{dek->raw_id, dek->key};
}

Status EnvelopeCodec::InstallUserKey(std::string_view user_id, const ExportedKey& key) {
  if (key.raw_id.size() != kDekIdSize || key.key.size() != 32) {
    return Integrity("data key to install is malformed");
  }
  std::lock_guard user_lock(StripeFor(user_id));
  ASSIGN_OR_RETURN(auto row, store_.Get(storage::Space::kKeys, user_id));
  if (row) {
    // A retried hand-over: the same key is already here.
    if (row->size() >= 7 + kDekIdSize && row->substr(7, kDekIdSize) == key.raw_id) {
      return Status::Ok();
    }
    return Error(Code::kConflict, "the user already has another data key here");
  }
  ASSIGN_OR_RETURN(auto value, WrappedRow(user_id, key.raw_id, key.key));
  storage::WriteBatch b;
  b.Put(storage::Space::kKeys, std::string(user_id), std::move(value));
  return store_.Write(b);
}

Result<EnvelopeCodec::DekPtr> EnvelopeCodec::LoadDek(std::string_view user_id, bool create,
                                                     Wait wait) {
  const int64_t now = clock_.NowMs();
  DekPtr cached;
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(user_id);
    if (it != cache_.end() && it->second->expires_ms > now) cached = it->second;
  }
  // Over a database other nodes share, one of them may have shredded the key: the cached
  // copy is used only while the stored row still names it (a read, not an unwrap).
  if (cached && !store_.Shared()) return cached;
  if (wait == Wait::kNever) return Error(Code::kWouldBlock, "the data key is not in memory");
  std::lock_guard user_lock(StripeFor(user_id));
  ASSIGN_OR_RETURN(auto row, store_.Get(storage::Space::kKeys, user_id));
  if (cached) {
    if (row && row->size() >= 7 + kDekIdSize && row->substr(7, kDekIdSize) == cached->raw_id) {
      return cached;
    }
    std::lock_guard lock(cache_mu_);
    cache_.erase(std::string(user_id));
  }
  auto fresh = std::make_shared<Dek>();
  Dek& dek = *fresh;
  if (row) {
    if (row->size() < kDekMagic.size() + 4 + kDekIdSize || row->substr(0, 3) != kDekMagic) {
      return Integrity("data key row malformed");
    }
    dek.kek_version = GetU32(std::string_view(*row).substr(3));
    dek.raw_id = row->substr(7, kDekIdSize);
    dek.id = HexEncode(dek.raw_id);
    auto plain = keys_.Unwrap(dek.kek_version, std::string_view(*row).substr(7 + kDekIdSize),
                              DekAad(keys_.region(), user_id, dek.id));
    if (!plain.ok()) return Integrity("data key unwrap");
    dek.key = std::move(plain).value();
  } else {
    if (!create) return Error(Code::kNotFound, "user has no data key");
    dek.raw_id = random_.Bytes(kDekIdSize);
    dek.id = HexEncode(dek.raw_id);
    dek.key = random_.Bytes(32);
    dek.kek_version = keys_.PrimaryKekVersion();
    ASSIGN_OR_RETURN(auto value, WrappedRow(user_id, dek.raw_id, dek.key));
    storage::WriteBatch b;
    b.Put(storage::Space::kKeys, std::string(user_id), std::move(value));
    RETURN_IF_ERROR(store_.Write(b));
  }
  dek.expires_ms = now + cache_ttl_ms_;
  dek.prepared = std::make_unique<crypto::AesGcmKey>(dek.key);
  DekPtr shared = std::move(fresh);
  std::vector<DekPtr> evicted;  // wiped and freed once the lock is released
  {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= cache_max_) EvictOne(now, &evicted);
    cache_[std::string(user_id)] = shared;
  }
  return shared;
}

void EnvelopeCodec::EvictOne(int64_t now, std::vector<DekPtr>* evicted) {
  // Expired keys go first (swept at most once a second: a sweep reads every entry).
  if (now - swept_ms_ >= 1000) {
    swept_ms_ = now;
    std::erase_if(cache_, [&](auto& kv) {
      if (kv.second->expires_ms > now) return false;
      evicted->push_back(std::move(kv.second));
      return true;
    });
    if (cache_.size() < cache_max_) return;
  }
  // Else the first key of the next non-empty bucket, round robin: not begin(), where a new
  // key often lands, which would keep evicting the newest and never the oldest.
  const size_t buckets = cache_.bucket_count();
  for (size_t tried = 0; tried < buckets; ++tried) {
    const size_t b = evict_cursor_++ % buckets;
    if (cache_.bucket_size(b) > 0) {
      auto victim = cache_.find(cache_.begin(b)->first);
      evicted->push_back(std::move(victim->second));
      cache_.erase(victim);
      return;
    }
  }
}

Result<std::string> EnvelopeCodec::Seal(const storage::CodecContext& ctx,
                                        std::string_view plaintext, Wait wait) {
  ASSIGN_OR_RETURN(auto dek, LoadDek(ctx.user_id, /*create=*/true, wait));
  std::string header(kValueMagic);
  header.push_back(static_cast<char>(kAlgAes256Gcm));
  header.push_back(static_cast<char>(ctx.region.size()));
  header.append(ctx.region);
  PutU32(header, dek->kek_version);
  header += dek->raw_id;
  std::string nonce = random_.Bytes(crypto::kGcmNonceSize);
  header += nonce;
  ASSIGN_OR_RETURN(auto ct, dek->prepared->Seal(nonce, ValueAad(header, ctx), plaintext));
  return header + ct;
}

Result<std::string> EnvelopeCodec::Open(const storage::CodecContext& ctx, std::string_view stored) {
  if (stored.size() < 5 || stored.substr(0, 3) != kValueMagic ||
      static_cast<uint8_t>(stored[3]) != kAlgAes256Gcm) {
    return Integrity("value format");
  }
  const size_t region_len = static_cast<uint8_t>(stored[4]);
  const size_t header_len = 5 + region_len + 4 + kDekIdSize + crypto::kGcmNonceSize;
  if (stored.size() < header_len + crypto::kGcmTagSize) return Integrity("value length");
  std::string_view region = stored.substr(5, region_len);
  if (region != ctx.region) return Integrity("value from another region");
  std::string_view dek_id = stored.substr(5 + region_len + 4, kDekIdSize);
  std::string_view nonce = stored.substr(5 + region_len + 4 + kDekIdSize, crypto::kGcmNonceSize);
  auto dek = LoadDek(ctx.user_id, /*create=*/false);
  if (!dek.ok()) return Integrity("no data key for the value's user");
  if (dek_id != (*dek)->raw_id) return Integrity("value under another data key");
  auto plain = (*dek)->prepared->Open(nonce, ValueAad(stored.substr(0, header_len), ctx),
                                      stored.substr(header_len));
  if (!plain.ok()) return Integrity("value authentication");
  return plain;
}

Result<std::optional<DekInfo>> EnvelopeCodec::DekOf(std::string_view user_id) {
  auto dek = LoadDek(user_id, /*create=*/false);
  if (!dek.ok()) {
    if (dek.status().code() == Code::kNotFound) return std::optional<DekInfo>();
    return dek.status();
  }
  return std::optional<DekInfo>(DekInfo{(*dek)->id, (*dek)->kek_version});
}

Result<std::optional<DekInfo>> EnvelopeCodec::DestroyUserKey(std::string_view user_id) {
  ASSIGN_OR_RETURN(auto info, DekOf(user_id));
  {
    std::lock_guard user_lock(StripeFor(user_id));
    storage::WriteBatch b;
    b.Delete(storage::Space::kKeys, std::string(user_id));
    RETURN_IF_ERROR(store_.Write(b));
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(user_id);
    if (it != cache_.end()) cache_.erase(it);
  }
  return info;
}

Status EnvelopeCodec::PurgeShredded() {
  std::unique_lock lock(purge_mu_);
  const uint64_t ticket = ++purge_tickets_;
  while (purged_upto_ < ticket) {
    if (purging_) {
      purge_cv_.wait(lock);
      continue;
    }
    purging_ = true;
    const uint64_t covers = purge_tickets_;  // every delete so far happened before this purge
    lock.unlock();
    Status st = store_.Purge(storage::Space::kKeys);
    lock.lock();
    purging_ = false;
    if (st.ok()) purged_upto_ = std::max(purged_upto_, covers);
    purge_cv_.notify_all();
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

Result<std::string> EnvelopeCodec::ShredDeferred(std::string_view user_id) {
  ASSIGN_OR_RETURN(auto info, DestroyUserKey(user_id));
  return info ? info->dek_id : std::string();
}

Result<int64_t> EnvelopeCodec::RewrapAll() {
  const uint32_t primary = keys_.PrimaryKekVersion();
  std::vector<std::string> users;
  RETURN_IF_ERROR(
      store_.Scan(storage::Space::kKeys, "", [&](std::string_view k, std::string_view v) {
        if (v.size() >= 7 && GetU32(v.substr(3)) != primary) users.emplace_back(k);
        return true;
      }));
  int64_t n = 0;
  for (const auto& user : users) {
    std::lock_guard user_lock(StripeFor(user));
    ASSIGN_OR_RETURN(auto row, store_.Get(storage::Space::kKeys, user));
    if (!row || row->size() < 7 + kDekIdSize) continue;  // deleted meanwhile
    uint32_t old = GetU32(std::string_view(*row).substr(3));
    if (old == primary) continue;
    std::string raw_id = row->substr(7, kDekIdSize);
    std::string aad = DekAad(keys_.region(), user, HexEncode(raw_id));
    ASSIGN_OR_RETURN(auto key,
                     keys_.Unwrap(old, std::string_view(*row).substr(7 + kDekIdSize), aad));
    auto value = WrappedRow(user, raw_id, key);  // under the primary KEK
    sodium_memzero(key.data(), key.size());
    if (!value.ok()) return value.status();
    storage::WriteBatch b;
    b.Put(storage::Space::kKeys, user, std::move(value).value());
    RETURN_IF_ERROR(store_.Write(b));
    {
      std::lock_guard lock(cache_mu_);
      cache_.erase(user);
    }
    ++n;
  }
  return n;
}

Result<int64_t> EnvelopeCodec::CountUnder(uint32_t kek_version) {
  int64_t n = 0;
  RETURN_IF_ERROR(store_.Scan(storage::Space::kKeys, "", [&](std::string_view, std::string_view v) {
    if (v.size() >= 7 && GetU32(v.substr(3)) == kek_version) ++n;
    return true;
  }));
  return n;
}

}  // namespace meridian::keys
