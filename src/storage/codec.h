// The record codec: the one place where stored personal values are turned into bytes and
// back. Today a framing-only codec; envelope encryption (AES-256-GCM under per-user data
// keys, bound to region/user/collection/key/version) replaces it here without touching
// any service.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace meridian::storage {

// What a stored value is bound to: a value copied to another row must not open.
struct CodecContext {
  std::string_view region;
  std::string_view user_id;
  std::string_view collection;  // the space or record collection pseudonym
  std::string_view key;         // the row key (pseudonymous)
  int64_t version = 0;
};

class ValueCodec {
 public:
  virtual ~ValueCodec() = default;
  Result<std::string> Seal(const CodecContext& ctx, std::string_view plaintext) {
    return Seal(ctx, plaintext, Wait::kMay);
  }
  // With Wait::kNever: kWouldBlock, nothing done, when the user's key is not in memory.
  virtual Result<std::string> Seal(const CodecContext& ctx, std::string_view plaintext,
                                   Wait wait) = 0;
  virtual Result<std::string> Open(const CodecContext& ctx, std::string_view stored) = 0;
  // Crypto-shredding: makes every value of the user unreadable for good, the key gone from
  // the engine's files too, before it returns. Returns the id of the destroyed key (""
  // when the codec holds no per-user key).
  Result<std::string> Shred(std::string_view user_id);
  // The same in two steps, for many users at once: the key is deleted now (unusable from
  // here), and its old copies leave the engine's files at the next PurgeShredded(), which
  // covers every key shredded before it was called (and runs at each node start).
  virtual Result<std::string> ShredDeferred(std::string_view user_id) = 0;
  virtual Status PurgeShredded() = 0;
};

// Version-tagged framing without encryption (until the envelope codec lands).
std::unique_ptr<ValueCodec> MakeFramingCodec();

}  // namespace meridian::storage
