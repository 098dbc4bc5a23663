// The storage boundary. A Store holds keyed values in spaces (one per data class, plus
// system spaces), writes atomic batches durably, and scans by prefix: the shape both an
// embedded engine (RocksDB) and a SQL database can implement. No engine type leaks out.
//
// Keys never hold personal data: personal spaces are keyed "<user_id>/..." with pseudonyms
// after the user id. Values of personal spaces pass through a ValueCodec (codec.h).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policy/policy.h"

namespace meridian::storage {

enum class Space : uint8_t {
  kMeta,       // node metadata (schema version, counters)
  kPlacement,  // user id -> home region, state, epochs
  kDirectory,  // pseudonym -> user id (phone lookups)
  kIdentity,   // profile: phone, email, name, password hash
  kDevice,     // devices by pseudonymous id
  kContent,    // cloud records
  kCommerce,   // orders
  kPublic,     // catalog, sales
  kKeys,       // per-user data keys, wrapped by the region's KEK
};
inline constexpr int kSpaceCount = 9;
std::string_view SpaceName(Space s);
policy::DataClass ClassOf(Space s);

class WriteBatch {
 public:
  struct Op {
    Space space;
    bool is_delete;
    std::string key;
    std::string value;
  };
  // A condition of the batch: `key` of `space` holds `value` (nullopt: absent).
  struct Expectation {
    Space space;
    std::string key;
    std::optional<std::string> value;
  };
  void Put(Space space, std::string key, std::string value) {
    ops_.push_back({space, false, std::move(key), std::move(value)});
  }
  void Delete(Space space, std::string key) { ops_.push_back({space, true, std::move(key), {}}); }
  // The batch is written only while every expected value is still stored: writers that
  // share one database (the nodes of a region) make read-check-write steps atomic with it.
  void Expect(Space space, std::string key, std::optional<std::string> value) {
    expected_.push_back({space, std::move(key), std::move(value)});
  }
  void Append(const WriteBatch& other) {
    ops_.insert(ops_.end(), other.ops_.begin(), other.ops_.end());
    expected_.insert(expected_.end(), other.expected_.begin(), other.expected_.end());
  }
  const std::vector<Op>& ops() const { return ops_; }
  const std::vector<Expectation>& expectations() const { return expected_; }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<Op> ops_;
  std::vector<Expectation> expected_;
};

// Return false to stop the scan.
using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<std::optional<std::string>> Get(Space space, std::string_view key) = 0;
  // Get from memory only (the engine's memtables and caches): kWouldBlock where the answer
  // needs a file or network read. The default has no memory to answer from.
  virtual Result<std::optional<std::string>> GetNow(Space space, std::string_view key);
  // Get or GetNow, as `wait` allows.
  Result<std::optional<std::string>> Read(Space space, std::string_view key, Wait wait) {
    return wait == Wait::kNever ? GetNow(space, key) : Get(space, key);
  }
  // All or nothing, and durable (synced to disk) when it returns Ok. When one of the
  // batch's expectations does not hold, kConflict and nothing is written.
  virtual Status Write(const WriteBatch& batch) = 0;
  // Like Write, but durable only once a later Sync() (or Write) returns Ok; meanwhile reads
  // of the personal data it holds wait for that sync (RocksDB). For a writer that overlaps
  // its next batch with the disk flush of this one (the audit log), and answers nobody
  // before that flush. The default writes durably.
  virtual Status WriteUnsynced(const WriteBatch& batch) { return Write(batch); }
  // Makes every write made before it durable.
  virtual Status Sync() { return Status::Ok(); }
  // The latest value, written durably or not: what a conditional write checks against.
  // (Get may wait until a value is durable; the default is Get.)
  virtual Result<std::optional<std::string>> GetLatest(Space space, std::string_view key) {
    return Get(space, key);
  }
  // Ok while every expectation of `batch` holds against the latest values (kConflict when
  // one does not): the check a conditional write makes, for a writer deciding what to retry.
  Status ExpectationsHold(const WriteBatch& batch);
  // True when other processes write the same data (a database several nodes share): what
  // a node read may have changed since, unless a write's expectations check it.
  virtual bool Shared() const { return false; }
  // Every key starting with `prefix`, in key order.
  virtual Status Scan(Space space, std::string_view prefix, const ScanFn& fn) = 0;
  // Physically drops deleted values of a space from the engine's files (used after
  // crypto-shredding, so a destroyed data key does not linger in old files).
  virtual Status Purge(Space space) = 0;
};
using StorePtr = std::unique_ptr<Store>;

Result<StorePtr> OpenRocksDb(const std::string& dir);
// A PostgreSQL (or compatible) database, e.g. "postgresql:///meridian?host=/run/pg". The
// schema is created or upgraded at open (versioned migrations, one node at a time).
// `connections` bounds the pool; several nodes may open the same database.
Result<StorePtr> OpenPostgres(const std::string& url, int connections = 8);

// Where a user lives. Not personal data: an opaque id and a region name.
struct Placement {
  std::string region;
  std::string state = "active";
  int64_t epoch = 1;        // bumped when the user moves
  int64_t token_epoch = 1;  // bumped to revoke every token
};
std::string EncodePlacement(const Placement& p);
std::optional<Placement> DecodePlacement(std::string_view bytes);
// The user id that owns a key of a personal space ("<user_id>/...").
std::string_view OwnerOf(std::string_view key);

// Residency at the storage boundary (defence in depth, independent of the router): refuses
// with residency_violation any write of a data class this region's role may not hold, and
// any write of personal data for a user not placed in `region`.
using MayHoldFn = std::function<bool(policy::DataClass)>;
StorePtr WithResidencyGuard(StorePtr inner, std::string region, MayHoldFn may_hold);

}  // namespace meridian::storage
