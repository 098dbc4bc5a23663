// The region's tamper-evident log: an append-only RFC 6962 Merkle tree of canonical JSON
// entries, stored in the region's store next to the data it describes.
//
// Commit() writes a caller's batch and its log entries in one synced write, so there is no
// operation without its entry and no entry without its operation. Concurrent callers are
// grouped (leader/follower group commit): one fsync for many operations, contiguous
// indexes, and O(log n) stored subtree hashes per appended leaf.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "audit/merkle.h"
#include "common/clock.h"
#include "common/json.h"
#include "storage/store.h"

namespace meridian::audit {

// The subject of a user's log entries: a keyed pseudonym of the user id (names key,
// purpose "user"), never the id itself, so entries can be published.
std::string SubjectPseudonym(std::string_view names_key, std::string_view user_id);
// A log entry (canonical JSON once dumped): what happened, where, to whom (pseudonym or
// empty for region-wide operations such as key rotation), when, and non-personal details.
Json MakeEntry(std::string_view op, std::string_view region, std::string_view subject,
               int64_t at_ms, Json details = Json::object());

// Where operations that must be logged commit their writes.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Writes `batch` and appends `entries` (canonical JSON, no personal data) atomically.
  // `first_index`, when given, receives the log index of the first entry.
  virtual Status Commit(storage::WriteBatch batch, std::vector<Json> entries,
                        uint64_t* first_index = nullptr) = 0;
};

// A sink that writes without logging: for tests of services that do not audit.
class UnauditedSink final : public AuditSink {
 public:
  explicit UnauditedSink(storage::Store& store) : store_(store) {}
  Status Commit(storage::WriteBatch batch, std::vector<Json>, uint64_t* = nullptr) override {
    return batch.empty() ? Status::Ok() : store_.Write(batch);
  }

 private:
  storage::Store& store_;
};

// Signs note text with the region's Ed25519 key (returns the 64-byte signature).
using SignFn = std::function<std::string(std::string_view)>;

class AuditLog final : public AuditSink {
 public:
  AuditLog(storage::Store& store, std::string region, const Clock& clock, SignFn sign,
           std::string signing_public_key);
  Status Start();  // reads the size and the right edge of the tree

  Status Commit(storage::WriteBatch batch, std::vector<Json> entries,
                uint64_t* first_index = nullptr) override;

  uint64_t size() const;
  Result<Hash> Root(uint64_t size) const;
  // The exact leaf bytes of entries [start, end).
  Result<std::vector<std::string>> Entries(uint64_t start, uint64_t end) const;
  Result<std::vector<Hash>> Inclusion(uint64_t index, uint64_t size) const;
  Result<std::vector<Hash>> Consistency(uint64_t first, uint64_t second) const;
  // The C2SP tlog-checkpoint of the current tree as a signed note.
  Result<std::string> Checkpoint() const;
  // Signs and stores a new checkpoint when the tree grew since the last one (called every
  // second); witnesses' cosignatures attach to the latest one.
  Status Publish();
  // The latest published checkpoint with the cosignatures it has collected.
  Result<std::string> Latest();
  // A witness's signature line over the latest checkpoint's text; refused unless it
  // verifies under `witness_verifier_key`.
  Status AddCosignature(std::string_view line, std::string_view witness_verifier_key);
  const std::string& origin() const { return origin_; }

 private:
  struct Pending {
    storage::WriteBatch batch;
    std::vector<Json> entries;
    Status result;
    uint64_t first_index = 0;
    bool done = false;
  };
  Result<Hash> Subtree(int level, uint64_t index) const;
  Status PublishLocked();  // publish_mu_ held
  Result<std::string> CheckpointAt(uint64_t size) const;
  void AppendLeaf(const std::string& leaf, storage::WriteBatch* out);

  storage::Store& store_;
  std::string region_;
  std::string origin_;
  const Clock& clock_;
  SignFn sign_;
  std::string public_key_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending*> queue_;
  bool leader_active_ = false;
  uint64_t size_ = 0;  // committed leaves
  std::mutex publish_mu_;
  uint64_t published_size_ = UINT64_MAX;
  std::string published_;                            // the region's own signed note
  std::map<std::string, std::string> cosignatures_;  // witness name -> signature line
  std::vector<Hash> frontier_;  // per level, the last complete even-indexed subtree
};

// Verifies a signed note checkpoint against a verifier key ("<name>+<hash>+<base64>").
// Returns the size and root, or which check failed.
struct CheckpointBody {
  std::string origin;
  uint64_t size = 0;
  Hash root;
};
Result<CheckpointBody> VerifyCheckpoint(std::string_view note, std::string_view verifier_key);
// A note signature line by `name` over a checkpoint's text (the part before the blank line).
std::string SignatureLine(std::string_view name, std::string_view public_key,
                          std::string_view signature);
// The text a checkpoint note's signatures cover.
std::string_view NoteText(std::string_view note);

}  // namespace meridian::audit
