// The embedded engine: one RocksDB database per node, one column family per space, every
// acknowledged write synced to the WAL. Concurrent synced writers share one fsync through
// RocksDB's write group.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <condition_variable>
#include <mutex>

#include <fmt/format.h>

#include "common/string_hash.h"
#include "storage/store.h"

namespace meridian::storage {
namespace {

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  // The engine's message may quote keys; keys hold no personal data, but keep it short.
  return Error(Code::kUnavailable, fmt::format("storage {} failed: {}", what, s.ToString()));
}

// Orders, idempotency entries and purchase counts ("<user>/...") are read and written one
// user at a time, and a purchase inserts three of them at random places: in a memtable hashed
// by user each lands in its user's small skip list instead of a search of one large one.
bool HashedByUser(Space s) { return s == Space::kCommerce; }

class UserPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "meridian.UserPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    std::string_view k(key.data(), key.size());
    const size_t slash = k.find('/');
    return {key.data(), slash == std::string_view::npos ? k.size() : slash + 1};
  }
  bool InDomain(const rocksdb::Slice&) const override { return true; }
};

class RocksStore final : public Store {
 public:
  RocksStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles)
      : db_(std::move(db)), handles_(std::move(handles)) {
    sync_.sync = true;
  }
  ~RocksStore() override {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
  }

  // Each read waits after it has read: whatever it saw of an unsynced write was marked
  // before it was written (WriteUnsynced), so once its owner's marks are synced, all of it
  // is durable; a mark made after the read only makes it wait longer.
  Result<std::optional<std::string>> Get(Space space, std::string_view key) override {
    auto value = GetFrom(rocksdb::ReadOptions(), space, key);
    RETURN_IF_ERROR(AwaitSynced(space, key, Wait::kMay));
    return value;
  }
  Result<std::optional<std::string>> GetNow(Space space, std::string_view key) override {
    rocksdb::ReadOptions memory_only;
    memory_only.read_tier = rocksdb::kBlockCacheTier;  // Incomplete where a file read is needed
    auto value = GetFrom(memory_only, space, key);
    RETURN_IF_ERROR(AwaitSynced(space, key, Wait::kNever));
    return value;
  }
  Result<std::optional<std::string>> GetFrom(const rocksdb::ReadOptions& ro, Space space,
                                             std::string_view key) {
    std::string value;
    auto s = db_->Get(ro, Handle(space), ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (s.IsIncomplete() && ro.read_tier == rocksdb::kBlockCacheTier) {
      return Error(Code::kWouldBlock, "the value is not in memory");
    }
    RETURN_IF_ERROR(FromRocks(s, "read"));
    return std::optional<std::string>(std::move(value));
  }

  Status Write(const WriteBatch& batch) override { return WriteWith(sync_, batch, nullptr); }

  // The engine shows an unsynced write to readers at once. So that nobody reads a user's
  // personal data that a crash could still take back, each user whose personal data it holds
  // is marked with the write's number until a sync covers it, and reads of that user's
  // personal data wait (or answer kWouldBlock) meanwhile. Data of no user is read at once:
  // the audit log shows only synced entries, anything written after reading it follows it
  // in the WAL (its synced write makes both durable), and a sale's counts may include a
  // purchase being synced, as its remaining stock in memory always did.
  Status WriteUnsynced(const WriteBatch& batch) override {
    std::lock_guard one_at_a_time(unsynced_write_mu_);  // numbers complete in order
    uint64_t number = 0;
    Status st = WriteWith(rocksdb::WriteOptions(), batch, &number);
    if (number != 0) {
      std::lock_guard lock(unsynced_.mu);
      unsynced_.written = number;  // a failed write's marks go with the next sync
    }
    return st;
  }
  // One fsync of the WAL covers every write before it (the WAL is one sequence).
  Status Sync() override {
    uint64_t target;
    {
      std::lock_guard lock(unsynced_.mu);
      RETURN_IF_ERROR(unsynced_.failed);
      target = unsynced_.written;
    }
    Status st = FromRocks(db_->SyncWAL(), "sync");
    std::lock_guard lock(unsynced_.mu);
    if (!st.ok()) {
      // After a failed fsync the kernel may have dropped the unsynced pages: a later sync
      // would not bring them back, and the WAL would have a hole. Nothing more is written
      // (WriteWith) or synced, and readers waiting for a sync are told.
      unsynced_.failed = st;
      unsynced_.cv.notify_all();
      return st;
    }
    if (target > unsynced_.synced) {
      unsynced_.synced = target;
      std::erase_if(unsynced_.last, [&](const auto& kv) { return kv.second <= target; });
      unsynced_.cv.notify_all();
    }
    return Status::Ok();
  }

  // Synced or not, without waiting: a write that depends on it follows it in the WAL.
  Result<std::optional<std::string>> GetLatest(Space space, std::string_view key) override {
    return GetFrom(rocksdb::ReadOptions(), space, key);
  }

  // With `mark` (an unsynced write), the users whose personal data the batch holds are marked
  // with the next number, set in `*mark`, once its expectations hold and just before the
  // engine shows it.
  Status WriteWith(const rocksdb::WriteOptions& wo, const WriteBatch& batch, uint64_t* mark) {
    {
      std::lock_guard lock(unsynced_.mu);
      RETURN_IF_ERROR(unsynced_.failed);
    }
    std::unique_lock<std::mutex> conditional;
    if (!batch.expectations().empty()) {
      // One process owns the database: a lock makes the check and the write one step.
      conditional = std::unique_lock(conditional_mu_);
      RETURN_IF_ERROR(ExpectationsHold(batch));
    }
    rocksdb::WriteBatch wb;
    for (const auto& op : batch.ops()) {
      auto s = op.is_delete ? wb.Delete(Handle(op.space), ToSlice(op.key))
                            : wb.Put(Handle(op.space), ToSlice(op.key), ToSlice(op.value));
      RETURN_IF_ERROR(FromRocks(s, "batch"));
    }
    if (mark != nullptr) *mark = MarkUnsynced(batch);
    return FromRocks(db_->Write(wo, &wb), "write");
  }

  // Callers act on what a scan gave once it returns: the wait comes before that, after the
  // scan (see Get).
  Status Scan(Space space, std::string_view prefix, const ScanFn& fn) override {
    rocksdb::ReadOptions ro;
    // A user's keys in a space hashed by user (UserPrefix) are read within the user's bucket;
    // any other scan (a whole space, in tests and tools) in key order across buckets.
    if (HashedByUser(space) && prefix.find('/') != std::string_view::npos) {
      ro.prefix_same_as_start = true;
    } else {
      ro.total_order_seek = true;
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, Handle(space)));
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      std::string_view k(it->key().data(), it->key().size());
      if (k.substr(0, prefix.size()) != prefix) break;
      if (!fn(k, std::string_view(it->value().data(), it->value().size()))) break;
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan"));
    return AwaitSynced(space, prefix, Wait::kMay);
  }

  Status Purge(Space space) override {
    // Flush so the deletes leave the WAL, then rewrite the space's files without them.
    RETURN_IF_ERROR(FromRocks(db_->Flush(rocksdb::FlushOptions(), Handle(space)), "flush"));
    rocksdb::CompactRangeOptions opts;
    opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    return FromRocks(db_->CompactRange(opts, Handle(space), nullptr, nullptr), "compact");
  }

 private:
  rocksdb::ColumnFamilyHandle* Handle(Space s) { return handles_[static_cast<size_t>(s)]; }

  // Gives an unsynced write its number and marks each user whose personal data it holds.
  uint64_t MarkUnsynced(const WriteBatch& batch) {
    std::lock_guard lock(unsynced_.mu);
    const uint64_t number = ++unsynced_.marked;
    for (const auto& op : batch.ops()) {
      if (policy::IsPersonal(ClassOf(op.space))) {
        unsynced_.last.insert_or_assign(std::string(OwnerOf(op.key)), number);
      }
    }
    return number;
  }

  // After a read of `key` (or of the keys under a prefix) of `space`: returns once no
  // unsynced write of its owner's personal data is pending. A prefix naming no user (a scan
  // of a whole space) waits for every unsynced write so far.
  Status AwaitSynced(Space space, std::string_view key, Wait wait) {
    if (!policy::IsPersonal(ClassOf(space))) return Status::Ok();
    std::unique_lock lock(unsynced_.mu);
    if (unsynced_.synced == unsynced_.marked) return Status::Ok();
    uint64_t needed = unsynced_.marked;
    if (key.find('/') != std::string_view::npos) {
      auto it = unsynced_.last.find(OwnerOf(key));
      if (it == unsynced_.last.end()) return Status::Ok();
      needed = it->second;
    }
    if (unsynced_.synced >= needed) return Status::Ok();
    if (!unsynced_.failed.ok()) return unsynced_.failed;
    if (wait == Wait::kNever) return Error(Code::kWouldBlock, "a write of it is being synced");
    unsynced_.cv.wait(lock, [&] { return unsynced_.synced >= needed || !unsynced_.failed.ok(); });
    return unsynced_.synced >= needed ? Status::Ok() : unsynced_.failed;
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::WriteOptions sync_;
  std::mutex conditional_mu_;
  std::mutex unsynced_write_mu_;
  struct {
    std::mutex mu;
    std::condition_variable cv;  // readers wait for `synced` to pass their user's number
    uint64_t marked = 0;         // numbers given to unsynced writes
    uint64_t written = 0;        // the last of them whose write returned
    uint64_t synced = 0;         // covered by a sync
    StringMap<uint64_t> last;    // owner -> number of their last unsynced write
    Status failed;               // a sync failed: what it did not cover may be lost
  } unsynced_;
};

// Keys appended in order under one prefix (the audit log's entries and tree nodes, a lease's
// slots, a sale's ledger of time-ordered order ids) are inserted into the memtable from the
// previous insert with that prefix instead of a search from the top of the skip list: in a
// purchase's write these are most of the keys.
class AppendPrefixes final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "meridian.AppendPrefixes"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    std::string_view k(key.data(), key.size());
    return {key.data(), k.rfind('/') + 1};
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.starts_with("audit/") || key.starts_with("unit/") || key.starts_with("ledger/");
  }
};

}  // namespace

Result<StorePtr> OpenRocksDb(const std::string& dir) {
  rocksdb::DBOptions opts;
  opts.create_if_missing = true;
  opts.create_missing_column_families = true;
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  opts.keep_log_file_num = 2;
  // The hashed memtable (UserPrefix) takes one inserter at a time; writes are grouped anyway.
  opts.allow_concurrent_memtable_write = false;
  // Most point reads on the hot paths miss (no idempotency entry yet, no purchase count
  // yet): Bloom filters on the tables and on the memtable answer those without a search.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(64 << 20);
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.memtable_prefix_bloom_size_ratio = 0.05;
  cf.memtable_whole_key_filtering = true;
  cf.memtable_insert_with_hint_prefix_extractor = std::make_shared<AppendPrefixes>();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  rocksdb::ColumnFamilyOptions by_user = cf;
  by_user.prefix_extractor = std::make_shared<UserPrefix>();
  by_user.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(1 << 18));
  by_user.memtable_insert_with_hint_prefix_extractor.reset();
  for (int i = 0; i < kSpaceCount; ++i) {
    const auto space = static_cast<Space>(i);
    std::string name(SpaceName(space));
    cfs.emplace_back(i == 0 ? rocksdb::kDefaultColumnFamilyName : name,
                     HashedByUser(space) ? by_user : cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(opts, dir, cfs, &handles, &raw);
  if (!s.ok()) return FromRocks(s, "open");
  return StorePtr(std::make_unique<RocksStore>(std::unique_ptr<rocksdb::DB>(raw), handles));
}

}  // namespace meridian::storage
