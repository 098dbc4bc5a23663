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

#include <mutex>

#include <fmt/format.h>

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

  Result<std::optional<std::string>> Get(Space space, std::string_view key) override {
    return GetFrom(rocksdb::ReadOptions(), space, key);
  }
  Result<std::optional<std::string>> GetNow(Space space, std::string_view key) override {
    rocksdb::ReadOptions memory_only;
    memory_only.read_tier = rocksdb::kBlockCacheTier;  // Incomplete where a file read is needed
    return GetFrom(memory_only, space, key);
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

  Status Write(const WriteBatch& batch) override {
    if (!batch.expectations().empty()) {
      // One process owns the database: a lock makes the check and the write one step.
      std::lock_guard lock(conditional_mu_);
      for (const auto& e : batch.expectations()) {
        ASSIGN_OR_RETURN(auto current, Get(e.space, e.key));
        if (current != e.value) return Error(Code::kConflict, "the condition of the write changed");
      }
      return WriteOps(batch);
    }
    return WriteOps(batch);
  }

  Status WriteOps(const WriteBatch& batch) {
    rocksdb::WriteBatch wb;
    for (const auto& op : batch.ops()) {
      auto s = op.is_delete ? wb.Delete(Handle(op.space), ToSlice(op.key))
                            : wb.Put(Handle(op.space), ToSlice(op.key), ToSlice(op.value));
      RETURN_IF_ERROR(FromRocks(s, "batch"));
    }
    return FromRocks(db_->Write(sync_, &wb), "write");
  }

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
    return FromRocks(it->status(), "scan");
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

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::WriteOptions sync_;
  std::mutex conditional_mu_;
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
