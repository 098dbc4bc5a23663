// The region's tamper-evident log: an append-only RFC 6962 Merkle tree of canonical JSON
// entries, stored in the region's store next to the data it describes.
//
// A commit writes a caller's batch and its log entries in one write, so there is no
// operation without its entry and no entry without its operation. One writer thread takes
// everything queued since its last write as one group (group commit): contiguous indexes
// and O(log n) stored subtree hashes per appended leaf. A second thread syncs once for every
// group written meanwhile (one fsync for many operations, overlapping the next write).
// Callers either wait (Commit) or are called back once durable (CommitAsync), so a request
// waiting for the disk holds no thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audit/merkle.h"
#include "common/clock.h"
#include "common/json.h"
#include "storage/store.h"

namespace meridian::audit {

// The subject of a user's log entries: a keyed pseudonym of the user id (names key,
// purpose "user"), never the id itself, so entries can be published.
std::string SubjectPseudonym(std::string_view names_key, std::string_view user_id);
// A log entry's canonical bytes (what its leaf hash covers): a JSON document dumped, or
// text already in that form (MakeEntry).
struct EntryText {
  EntryText(const Json& entry) : bytes(DumpJson(entry)) {}  // NOLINT: a document converts
  explicit EntryText(std::string canonical) : bytes(std::move(canonical)) {}
  std::string bytes;
};

// A log entry: what happened, where, to whom (pseudonym or empty for region-wide operations
// such as key rotation), when, and non-personal details (a JSON object in DumpJson's form,
// or empty for none).
EntryText MakeEntry(std::string_view op, std::string_view region, std::string_view subject,
                    int64_t at_ms, std::string_view details_json = {});
inline EntryText MakeEntry(std::string_view op, std::string_view region, std::string_view subject,
                           int64_t at_ms, const Json& details) {
  const std::string text = details.empty() ? std::string() : DumpJson(details);
  return MakeEntry(op, region, subject, at_ms, std::string_view(text));
}

// Where operations that must be logged commit their writes.
class AuditSink {
 public:
  // Called once the write is durable (or failed), with the log index of the first entry.
  using CommitDone = std::function<void(Status, uint64_t first_index)>;
  virtual ~AuditSink() = default;
  // Writes `batch` and appends `entries` (canonical JSON, no personal data) atomically,
  // then calls `done`, possibly on another thread. `done` must not block on the sink.
  // When the batch's expectations do not hold, nothing is written and `done` gets kConflict.
  virtual void CommitAsync(storage::WriteBatch batch, std::vector<EntryText> entries,
                           CommitDone done) = 0;
  // The same, waiting for the outcome. `first_index`, when given, receives the log index
  // of the first entry.
  Status Commit(storage::WriteBatch batch, std::vector<EntryText> entries,
                uint64_t* first_index = nullptr);
};

// A sink that writes without logging: for tests of services that do not audit.
class UnauditedSink final : public AuditSink {
 public:
  explicit UnauditedSink(storage::Store& store) : store_(store) {}
  void CommitAsync(storage::WriteBatch batch, std::vector<EntryText>, CommitDone done) override {
    done(batch.empty() ? Status::Ok() : store_.Write(batch), 0);
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
  ~AuditLog() override;  // writes what is queued, then stops the writer
  Status Start();        // reads the size and the right edge of the tree, starts the writer

  void CommitAsync(storage::WriteBatch batch, std::vector<EntryText> entries,
                   CommitDone done) override;
  // Returns once everything queued before the call is written and its callers called back.
  void Flush();

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
  // A witness's signature line over the text of a checkpoint of this log (stored, so
  // every node of the region shows it); refused unless it verifies under
  // `witness_verifier_key`. It is shown while that checkpoint is the latest.
  Status AddCosignature(std::string_view text, std::string_view line,
                        std::string_view witness_verifier_key);
  const std::string& origin() const { return origin_; }

 private:
  struct Pending {
    storage::WriteBatch batch;
    std::vector<std::string> leaves;  // the entries' canonical bytes
    std::vector<Hash> leaf_hashes;    // computed by the caller, off the writer's path
    CommitDone done;
    Status result;
    uint64_t first_index = 0;
    bool refused = false;  // its batch's own expectations failed: result says so
  };
  void WriterLoop();
  void CompleterLoop();
  // The tree's right edge as stored: its size, the frontier hashes and the stored size value.
  struct Edge {
    uint64_t size = 0;
    std::vector<Hash> frontier;         // per level, the last complete even-indexed subtree
    std::optional<std::string> stored;  // audit/size as read or written (nullopt: none yet)
  };
  Result<Edge> LoadEdge() const;
  // Writes one group in one unsynced batch (each alone if the group's write fails) on
  // `*edge`, moving it on, and sets each member's result and first index. Durable once the
  // completer's next sync returns.
  void WriteGroup(std::vector<Pending>& group, Edge* edge);
  struct Written {
    std::vector<Pending> group;
    Edge edge;  // the tree once the group is in
  };
  // Writes `members` with their entries on `*edge`; when another writer of the region's
  // database moved the edge meanwhile, reloads it and writes them after its entries.
  // A member whose batch's expectations (storage::WriteBatch::Expect) no longer hold is
  // refused with kConflict, alone.
  Status Append(const std::vector<Pending*>& members, Edge* edge);
  Result<Hash> Subtree(int level, uint64_t index) const;
  Status PublishLocked();  // publish_mu_ held
  Result<std::string> CheckpointAt(uint64_t size) const;

  storage::Store& store_;
  std::string region_;
  std::string origin_;
  const Clock& clock_;
  SignFn sign_;
  std::string public_key_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // the writer waits for work
  std::condition_variable done_cv_;  // the completer waits for written groups
  std::condition_variable idle_cv_;  // Flush() waits for the completer
  std::vector<Pending> queue_;
  // Written groups whose callers are still to be called back. A second thread syncs them
  // (one sync for all that are waiting) and then answers them, while the writer goes on
  // with the next groups: the disk flush overlaps the next write.
  std::deque<Written> written_;
  uint64_t submitted_ = 0;  // commits queued so far
  uint64_t completed_ = 0;  // of those, written and called back (in order)
  bool stopping_ = false;
  bool writer_done_ = false;
  std::thread writer_;
  std::thread completer_;
  // Committed (synced) leaves: edge_.size; the writer may be ahead of it. Over a shared
  // database, also what other nodes appended as last read (Refresh).
  mutable Edge edge_;
  void Refresh() const;
  std::mutex publish_mu_;
  uint64_t published_size_ = UINT64_MAX;
  std::string published_;  // the region's own signed note
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
