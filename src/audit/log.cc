#include "audit/log.h"

#include <charconv>

#include <fmt/format.h>

#include "common/await.h"
#include "common/encoding.h"
#include "common/thread.h"
#include "crypto/crypto.h"

namespace meridian::audit {
namespace {
using storage::Space;

constexpr std::string_view kSizeKey = "audit/size";
std::string EntryKey(uint64_t i) { return fmt::format("audit/e/{:016x}", i); }
std::string NodeKey(int level, uint64_t i) {
  return fmt::format("audit/n/{:02}/{:016x}", level, i);
}
constexpr std::string_view kDash = "\xE2\x80\x94";  // U+2014, the signature line's em dash

// Appends one leaf (with its hash) to a tree of `*size` leaves whose right edge is
// `*frontier`, putting the new complete subtree hashes into `out`.
void Append(const std::string& leaf, Hash h, uint64_t* size, std::vector<Hash>* frontier,
            storage::WriteBatch* out) {
  const uint64_t n = (*size)++;
  out->Put(Space::kMeta, EntryKey(n), leaf);
  out->Put(Space::kMeta, NodeKey(0, n), h);
  uint64_t idx = n;
  size_t level = 0;
  while (idx & 1) {
    h = NodeHash((*frontier)[level], h);
    idx >>= 1;
    ++level;
    out->Put(Space::kMeta, NodeKey(static_cast<int>(level), idx), h);
  }
  if (frontier->size() <= level) frontier->resize(level + 1);
  (*frontier)[level] = h;
}
}  // namespace

std::string SubjectPseudonym(std::string_view names_key, std::string_view user_id) {
  // 128 bits are plenty for a per-user name and keep entries short.
  return crypto::Pseudonym(names_key, "user", user_id).substr(0, 32);
}

EntryText MakeEntry(std::string_view op, std::string_view region, std::string_view subject,
                    int64_t at_ms, std::string_view details_json) {
  JsonObjectWriter w;
  w.String("at", FormatRfc3339(at_ms));
  if (!details_json.empty()) w.Raw("details", details_json);
  w.String("op", op).String("region", region);
  if (!subject.empty()) w.String("subject", subject);
  return EntryText(w.Finish());
}

AuditLog::AuditLog(storage::Store& store, std::string region, const Clock& clock, SignFn sign,
                   std::string signing_public_key)
    : store_(store),
      region_(std::move(region)),
      origin_("meridian/" + region_),
      clock_(clock),
      sign_(std::move(sign)),
      public_key_(std::move(signing_public_key)) {}

Result<AuditLog::Edge> AuditLog::LoadEdge() const {
  Edge e;
  ASSIGN_OR_RETURN(e.stored, store_.Get(Space::kMeta, kSizeKey));
  if (e.stored) std::from_chars(e.stored->data(), e.stored->data() + e.stored->size(), e.size);
  for (int level = 0; (e.size >> level) > 0; ++level) {
    uint64_t count = e.size >> level;
    e.frontier.emplace_back();
    if (count & 1) {
      ASSIGN_OR_RETURN(auto h, store_.Get(Space::kMeta, NodeKey(level, count - 1)));
      if (!h) return Error(Code::kIntegrityError, "audit log: a stored subtree hash is missing");
      e.frontier.back() = *h;
    }
  }
  return e;
}

Status AuditLog::Start() {
  ASSIGN_OR_RETURN(auto edge, LoadEdge());
  std::lock_guard lock(mu_);
  edge_ = std::move(edge);
  if (!writer_.joinable()) {
    writer_ = NamedThread("audit-write", [this] { WriterLoop(); });
    completer_ = NamedThread("audit-sync", [this] { CompleterLoop(); });
  }
  return Status::Ok();
}

Status AuditSink::Commit(storage::WriteBatch batch, std::vector<EntryText> entries,
                         uint64_t* first_index) {
  auto [st, first] = Await<std::pair<Status, uint64_t>>([&](auto done) {
    CommitAsync(std::move(batch), std::move(entries), [done](Status s, uint64_t i) {
      done({std::move(s), i});
    });
  });
  if (first_index != nullptr) *first_index = first;
  return st;
}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (completer_.joinable()) completer_.join();
}

void AuditLog::CommitAsync(storage::WriteBatch batch, std::vector<EntryText> entries,
                           CommitDone done) {
  // Hashing the entries is the caller's work, done in parallel: the writer only links the
  // hashes into the tree.
  Pending p{std::move(batch), {}, {}, std::move(done)};
  for (EntryText& e : entries) {
    p.leaves.push_back(std::move(e.bytes));
    p.leaf_hashes.push_back(LeafHash(p.leaves.back()));
  }
  {
    std::lock_guard lock(mu_);
    if (writer_.joinable() && !stopping_) {
      queue_.push_back(std::move(p));
      ++submitted_;
      cv_.notify_one();
      return;
    }
  }
  p.done(Error(Code::kUnavailable, "the audit log is not running"), 0);
}

void AuditLog::Flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = submitted_;
  idle_cv_.wait(lock, [&] { return completed_ >= target || !completer_.joinable(); });
}

void AuditLog::WriterLoop() {
  std::unique_lock lock(mu_);
  Edge tail = edge_;  // the tree as written, maybe ahead of what is durable (edge_)
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, and everything queued is written
    Written w;
    w.group.swap(queue_);
    if (edge_.size > tail.size) tail = edge_;  // another node appended (Refresh)
    lock.unlock();

    WriteGroup(w.group, &tail);
    w.edge = tail;

    lock.lock();
    written_.push_back(std::move(w));
    done_cv_.notify_one();
  }
  writer_done_ = true;
  done_cv_.notify_one();
}

void AuditLog::CompleterLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    done_cv_.wait(lock, [&] { return writer_done_ || !written_.empty(); });
    if (written_.empty()) return;  // the writer stopped and every caller was answered
    std::deque<Written> ready;
    ready.swap(written_);
    lock.unlock();
    // One flush makes every group written so far durable, while the writer goes on with the
    // next: only then are their callers answered and their entries in the tree readers see.
    // (Also when every write failed: a failed write may have left its users waiting.)
    const Status synced = store_.Sync();
    lock.lock();
    if (synced.ok() && ready.back().edge.size >= edge_.size) {
      edge_ = ready.back().edge;  // a refresh may have seen more: the view never shrinks
    }
    lock.unlock();
    size_t answered = 0;
    for (Written& w : ready) {
      for (Pending& p : w.group) {
        if (!synced.ok() && p.result.ok()) p.result = synced;
        p.done(std::move(p.result), p.first_index);
      }
      answered += w.group.size();
    }
    lock.lock();
    completed_ += answered;
    idle_cv_.notify_all();
  }
}

Status AuditLog::Append(const std::vector<Pending*>& members, Edge* edge) {
  std::vector<Pending*> live = members;
  for (int attempt = 0;; ++attempt) {
    if (live.empty()) return Status::Ok();  // every member's own condition failed
    storage::WriteBatch all;
    Edge next = *edge;
    for (Pending* p : live) {
      all.Append(p->batch);
      p->first_index = next.size;
      for (size_t i = 0; i < p->leaves.size(); ++i) {
        audit::Append(p->leaves[i], p->leaf_hashes[i], &next.size, &next.frontier, &all);
      }
    }
    next.stored = std::to_string(next.size);
    all.Put(Space::kMeta, std::string(kSizeKey), *next.stored);
    all.Expect(Space::kMeta, std::string(kSizeKey), edge->stored);
    Status st = store_.WriteUnsynced(all);  // durable at the completer's next sync
    if (st.ok()) {
      *edge = std::move(next);
      return st;
    }
    if (st.code() != Code::kConflict || attempt >= 1000) return st;
    // Another node appended, or a member's own expectation no longer holds: reload the
    // edge, fail the members whose conditions changed, write the others after it.
    ASSIGN_OR_RETURN(*edge, LoadEdge());
    std::vector<Pending*> still;
    for (Pending* p : live) {
      Status holds = store_.ExpectationsHold(p->batch);
      if (holds.ok()) {
        still.push_back(p);
      } else {
        p->result = holds;
        p->refused = true;
      }
    }
    live = std::move(still);
  }
}

void AuditLog::WriteGroup(std::vector<Pending>& group, Edge* edge) {
  std::vector<Pending*> all;
  for (Pending& p : group) all.push_back(&p);
  Status st = Append(all, edge);  // a failed write changes nothing: the edge stays
  if (st.ok() || group.size() == 1) {
    for (Pending& p : group) {
      if (!p.refused) p.result = st;
    }
    return;
  }
  // One member's batch may be what failed (a residency refusal, say): commit each alone
  // so the others are not failed with it.
  for (Pending& p : group) {
    if (!p.refused) p.result = Append({&p}, edge);
  }
}

uint64_t AuditLog::size() const {
  Refresh();
  std::lock_guard lock(mu_);
  return edge_.size;
}

void AuditLog::Refresh() const {
  // Other nodes of the region append to the same log: their entries count here too (for
  // checkpoints, proofs and reads), so every node of the region shows one growing tree.
  if (!store_.Shared()) return;
  auto stored = LoadEdge();
  if (!stored.ok()) return;
  std::lock_guard lock(mu_);
  if (stored->size > edge_.size) edge_ = std::move(stored).value();
}

Result<Hash> AuditLog::Subtree(int level, uint64_t index) const {
  ASSIGN_OR_RETURN(auto h, store_.Get(Space::kMeta, NodeKey(level, index)));
  if (!h || h->size() != 32) {
    return Error(Code::kIntegrityError, "audit log: a stored subtree hash is missing");
  }
  return *h;
}

Result<Hash> AuditLog::Root(uint64_t size) const {
  if (size > this->size()) return Error(Code::kInvalidField, "the log is not that large");
  return RootHash(size, [this](int l, uint64_t i) { return Subtree(l, i); });
}

Result<std::vector<std::string>> AuditLog::Entries(uint64_t start, uint64_t end) const {
  if (start > end || end > size()) return Error(Code::kInvalidField, "range outside the log");
  std::vector<std::string> out;
  for (uint64_t i = start; i < end; ++i) {
    ASSIGN_OR_RETURN(auto e, store_.Get(Space::kMeta, EntryKey(i)));
    if (!e) return Error(Code::kIntegrityError, "audit log: an entry is missing");
    out.push_back(std::move(*e));
  }
  return out;
}

Result<std::vector<Hash>> AuditLog::Inclusion(uint64_t index, uint64_t size) const {
  if (size > this->size()) return Error(Code::kInvalidField, "the log is not that large");
  return InclusionProof(index, size, [this](int l, uint64_t i) { return Subtree(l, i); });
}

Result<std::vector<Hash>> AuditLog::Consistency(uint64_t first, uint64_t second) const {
  if (second > size()) return Error(Code::kInvalidField, "the log is not that large");
  return ConsistencyProof(first, second, [this](int l, uint64_t i) { return Subtree(l, i); });
}

std::string SignatureLine(std::string_view name, std::string_view public_key,
                          std::string_view signature) {
  return fmt::format("{} {} {}\n", kDash, name,
                     Base64Encode(crypto::NoteKeyHash(name, public_key) + std::string(signature)));
}

std::string_view NoteText(std::string_view note) {
  size_t blank = note.find("\n\n");
  return blank == std::string_view::npos ? note : note.substr(0, blank + 1);
}

Result<std::string> AuditLog::Checkpoint() const { return CheckpointAt(size()); }

Result<std::string> AuditLog::CheckpointAt(uint64_t n) const {
  ASSIGN_OR_RETURN(auto root, Root(n));
  std::string text = fmt::format("{}\n{}\n{}\n", origin_, n, Base64Encode(root));
  return text + "\n" + SignatureLine(origin_, public_key_, sign_(text));
}

Status AuditLog::Publish() {
  std::lock_guard lock(publish_mu_);
  return PublishLocked();
}

Status AuditLog::PublishLocked() {
  const uint64_t n = size();
  if (n == published_size_) return Status::Ok();
  ASSIGN_OR_RETURN(auto note, CheckpointAt(n));
  published_ = std::move(note);
  published_size_ = n;
  return Status::Ok();
}

Result<std::string> AuditLog::Latest() {
  std::lock_guard lock(publish_mu_);
  // As of now: over a shared database another node may have appended and published, and a
  // reader must never see the tree shrink from one node to the next.
  RETURN_IF_ERROR(PublishLocked());
  std::string note = published_;
  const std::string_view text = NoteText(published_);
  RETURN_IF_ERROR(store_.Scan(Space::kMeta, "cosig/", [&](auto, std::string_view v) {
    // "<checkpoint text>\n<signature line>": kept while the checkpoint is the latest.
    if (v.size() > text.size() && v.substr(0, text.size()) == text && v[text.size()] == '\n') {
      note += std::string(v.substr(text.size() + 1));
    }
    return true;
  }));
  return note;
}

Status AuditLog::AddCosignature(std::string_view text, std::string_view line,
                                std::string_view witness_verifier_key) {
  // The checkpoint the witness cosigned must be one of this log's: its origin, a size the
  // tree reached, and the root at that size.
  std::string note = std::string(text) + "\n" + std::string(line);
  if (line.empty() || line.back() != '\n') note += "\n";
  auto body = VerifyCheckpoint(note, witness_verifier_key);
  if (!body.ok() || NoteText(note) != text) {
    return Error(Code::kInvalidField, "cosignature does not verify");
  }
  if (body->origin != origin_ || body->size > size()) {
    return Error(Code::kInvalidField, "not a checkpoint of this log");
  }
  ASSIGN_OR_RETURN(auto root, Root(body->size));
  if (root != body->root) return Error(Code::kInvalidField, "not a checkpoint of this log");
  std::string name(witness_verifier_key.substr(0, witness_verifier_key.find('+')));
  storage::WriteBatch b;
  b.Put(Space::kMeta, "cosig/" + name, note);  // the text, a blank line, the signature
  return store_.Write(b);
}

Result<CheckpointBody> VerifyCheckpoint(std::string_view note, std::string_view verifier_key) {
  // Verifier key: <name>+<hex hash>+<base64(0x01 || key)>.
  size_t p1 = verifier_key.find('+');
  size_t p2 = verifier_key.find('+', p1 + 1);
  if (p1 == std::string_view::npos || p2 == std::string_view::npos) {
    return Error(Code::kInvalidField, "malformed verifier key");
  }
  std::string name(verifier_key.substr(0, p1));
  auto keydata = Base64Decode(verifier_key.substr(p2 + 1));
  if (!keydata || keydata->size() != 33 || (*keydata)[0] != '\x01') {
    return Error(Code::kInvalidField, "verifier key is not an Ed25519 note key");
  }
  std::string pub = keydata->substr(1);
  size_t blank = note.find("\n\n");
  if (blank == std::string_view::npos)
    return Error(Code::kIntegrityError, "note has no signatures");
  std::string_view text = note.substr(0, blank + 1);
  std::string_view sigs = note.substr(blank + 2);
  bool verified = false;
  const std::string prefix = std::string(kDash) + " " + name + " ";
  while (!sigs.empty()) {
    size_t nl = sigs.find('\n');
    std::string_view line = sigs.substr(0, nl);
    sigs = nl == std::string_view::npos ? std::string_view() : sigs.substr(nl + 1);
    if (line.substr(0, prefix.size()) != prefix) continue;
    auto sig = Base64Decode(line.substr(prefix.size()));
    if (sig && sig->size() == 68 && sig->substr(0, 4) == crypto::NoteKeyHash(name, pub) &&
        crypto::VerifyEd25519(pub, text, sig->substr(4))) {
      verified = true;
    }
  }
  if (!verified) return Error(Code::kIntegrityError, "checkpoint signature does not verify");
  CheckpointBody body;
  size_t a = text.find('\n'), b = text.find('\n', a + 1), c = text.find('\n', b + 1);
  if (a == std::string_view::npos || b == std::string_view::npos || c == std::string_view::npos) {
    return Error(Code::kIntegrityError, "checkpoint body is malformed");
  }
  body.origin = std::string(text.substr(0, a));
  std::string_view size = text.substr(a + 1, b - a - 1);
  auto [ptr, ec] = std::from_chars(size.data(), size.data() + size.size(), body.size);
  auto root = Base64Decode(text.substr(b + 1, c - b - 1));
  if (ec != std::errc() || !root || root->size() != 32) {
    return Error(Code::kIntegrityError, "checkpoint body is malformed");
  }
  body.root = *root;
  return body;
}

}  // namespace meridian::audit
