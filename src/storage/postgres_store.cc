// The shared engine for regions that outgrow one machine: the same Store over PostgreSQL
// (or a PostgreSQL-compatible database) through libpqxx. One table per space, keys and
// values as bytea (compared bytewise, as RocksDB does), a batch is one transaction, and a
// commit returns only once the database has made it durable (synchronous_commit = on;
// concurrent commits share its WAL flush). Several nodes may share one database.
//
// libpqxx reports errors by throwing; nothing is thrown past this file. Error texts name
// the SQLSTATE only: the database's own messages may quote keys or values.
#include <pqxx/pqxx>

#include <array>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "storage/store.h"

namespace meridian::storage {
namespace {

constexpr int kAdvisoryLock = 0x6d657264;  // "merd": serialises schema migrations

// Versioned schema: migration i brings the database from version i to i + 1. Append only.
std::vector<std::string> Migrations() {
  std::string first;
  for (int i = 0; i < kSpaceCount; ++i) {
    first += fmt::format("CREATE TABLE kv_{} (key bytea PRIMARY KEY, value bytea NOT NULL);\n",
                         SpaceName(static_cast<Space>(i)));
  }
  return {first};
}

std::string Table(Space s) { return fmt::format("kv_{}", SpaceName(s)); }

pqxx::binarystring Bytes(std::string_view s) { return pqxx::binarystring(s.data(), s.size()); }

// The smallest key greater than every key starting with `prefix`, or nullopt if none.
std::optional<std::string> PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return std::nullopt;
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

template <typename Fn>
auto Guarded(std::string_view what, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const pqxx::in_doubt_error&) {
    return Error(Code::kUnavailable,
                 fmt::format("database {}: the commit's outcome is unknown", what));
  } catch (const pqxx::broken_connection&) {
    return Error(Code::kUnavailable, fmt::format("database {}: connection lost", what));
  } catch (const pqxx::sql_error& e) {
    return Error(Code::kUnavailable,
                 fmt::format("database {} failed (SQLSTATE {})", what, e.sqlstate()));
  } catch (const std::exception&) {
    return Error(Code::kUnavailable, fmt::format("database {} failed", what));
  }
}

class PostgresStore final : public Store {
 public:
  PostgresStore(std::string url, int connections) : url_(std::move(url)) {
    free_.resize(static_cast<size_t>(std::max(1, connections)));
  }

  Status Migrate() {
    return Guarded("schema migration", [&]() -> Status {
      ASSIGN_OR_RETURN(auto lease, Borrow());
      pqxx::work tx(*lease.conn);
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kAdvisoryLock);
      tx.exec("CREATE TABLE IF NOT EXISTS meridian_schema (version integer NOT NULL)");
      auto r = tx.exec("SELECT version FROM meridian_schema");
      int version = r.empty() ? 0 : r[0][0].as<int>();
      if (r.empty()) tx.exec("INSERT INTO meridian_schema VALUES (0)");
      const auto steps = Migrations();
      if (version > static_cast<int>(steps.size())) {
        return Error(Code::kInternal,
                     fmt::format("database schema version {} is newer than this binary ({})",
                                 version, steps.size()));
      }
      for (size_t v = static_cast<size_t>(version); v < steps.size(); ++v) tx.exec(steps[v]);
      tx.exec_params("UPDATE meridian_schema SET version = $1", static_cast<int>(steps.size()));
      tx.commit();
      return Status::Ok();
    });
  }

  Result<std::optional<std::string>> Get(Space space, std::string_view key) override {
    return Guarded("read", [&]() -> Result<std::optional<std::string>> {
      ASSIGN_OR_RETURN(auto lease, Borrow());
      pqxx::nontransaction tx(*lease.conn);
      auto r = tx.exec_prepared(Statement("get", space), Bytes(key));
      if (r.empty()) return std::optional<std::string>();
      return std::optional<std::string>(pqxx::binarystring(r[0][0]).str());
    });
  }

  Status Write(const WriteBatch& batch) override {
    if (batch.empty() && batch.expectations().empty()) return Status::Ok();
    return Guarded("write", [&]() -> Status {
      ASSIGN_OR_RETURN(auto lease, Borrow());
      pqxx::work tx(*lease.conn);
      RETURN_IF_ERROR(CheckExpectations(tx, batch));
      Apply(tx, batch);
      tx.commit();
      return Status::Ok();
    });
  }

  bool Shared() const override { return true; }

  Status Scan(Space space, std::string_view prefix, const ScanFn& fn) override {
    return Guarded("scan", [&]() -> Status {
      ASSIGN_OR_RETURN(auto lease, Borrow());
      const auto end = PrefixEnd(prefix);
      std::string from(prefix);
      // Pages in key order, each its own statement: no transaction is held open while the
      // caller works on the rows.
      for (;;) {
        pqxx::nontransaction tx(*lease.conn);
        pqxx::result r = end ? tx.exec_prepared(Statement("scan", space), Bytes(from), Bytes(*end))
                             : tx.exec_prepared(Statement("scan_all", space), Bytes(from));
        for (const auto& row : r) {
          pqxx::binarystring k(row[0]);
          pqxx::binarystring v(row[1]);
          if (!fn(std::string_view(k.get(), k.size()), std::string_view(v.get(), v.size()))) {
            return Status::Ok();
          }
          from = k.str();
        }
        if (r.size() < kPage) return Status::Ok();
        from.push_back('\0');  // the next key after the last one read
      }
    });
  }

  Status Purge(Space space) override {
    // Rewrites the table without its dead rows (a crypto-shredded key leaves the table's
    // files). The database's WAL keeps old pages until its next checkpoints recycle it.
    return Guarded("purge", [&]() -> Status {
      ASSIGN_OR_RETURN(auto lease, Borrow());
      pqxx::nontransaction tx(*lease.conn);
      tx.exec("VACUUM (FULL) " + Table(space));
      return Status::Ok();
    });
  }

 private:
  // Every writer expecting a key queues on the key's advisory lock until the holder
  // commits, then reads what it wrote (a row lock cannot serialise writers of a key not yet
  // there). Locks are taken in one order, so two batches never wait on each other.
  Status CheckExpectations(pqxx::work& tx, const WriteBatch& batch) {
    if (batch.expectations().empty()) return Status::Ok();
    std::set<int64_t> locks;  // in ascending order, so two batches never wait on each other
    // Every expectation is checked, also two on one key (members of one group).
    std::array<std::multimap<std::string_view, const WriteBatch::Expectation*>, kSpaceCount>
        by_space;
    for (const auto& e : batch.expectations()) {
      locks.insert(static_cast<int64_t>(std::hash<std::string>{}(Table(e.space) + "/" + e.key)));
      by_space[static_cast<size_t>(e.space)].emplace(e.key, &e);
    }
    // Every lock in one statement, taken in the sorted subquery's order.
    std::string ids;
    for (int64_t id : locks) ids += fmt::format("{}{}", ids.empty() ? "" : ",", id);
    tx.exec("SELECT pg_advisory_xact_lock(x) FROM (SELECT unnest(ARRAY[" + ids +
            "]::bigint[]) AS x ORDER BY x) AS sorted");
    // Then every expected key's value, one statement per space.
    for (size_t i = 0; i < by_space.size(); ++i) {
      if (by_space[i].empty()) continue;
      std::vector<pqxx::binarystring> keys;
      std::string list;
      std::string_view previous;
      for (const auto& [key, _] : by_space[i]) {
        if (!keys.empty() && key == previous) continue;
        previous = key;
        keys.push_back(Bytes(key));
        list += fmt::format("{}${}", keys.size() > 1 ? "," : "", keys.size());
      }
      pqxx::result r = tx.exec_params(
          "SELECT key, value FROM " + Table(static_cast<Space>(i)) + " WHERE key IN (" + list + ")",
          pqxx::prepare::make_dynamic_params(keys));
      std::map<std::string, std::string, std::less<>> found;
      for (const auto& row : r) {
        found.emplace(pqxx::binarystring(row[0]).str(), pqxx::binarystring(row[1]).str());
      }
      for (const auto& [key, e] : by_space[i]) {
        auto it = found.find(key);
        const std::optional<std::string> current =
            it == found.end() ? std::nullopt : std::optional<std::string>(it->second);
        if (current != e->value)
          return Error(Code::kConflict, "the condition of the write changed");
      }
    }
    return Status::Ok();
  }

  static constexpr size_t kPage = 1000;
  static constexpr size_t kRowsPerStatement = 1000;  // PostgreSQL takes 65535 parameters

  // A connection borrowed from the pool for one call; a broken one is replaced next time.
  struct Lease {
    PostgresStore* store;
    size_t slot;
    pqxx::connection* conn;
    Lease(PostgresStore* s, size_t i, pqxx::connection* c) : store(s), slot(i), conn(c) {}
    Lease(Lease&& o) noexcept
        : store(std::exchange(o.store, nullptr)), slot(o.slot), conn(o.conn) {}
    Lease(const Lease&) = delete;
    ~Lease() {
      if (store != nullptr) store->Return(slot);
    }
    pqxx::connection* operator*() const { return conn; }
  };

  Result<Lease> Borrow() {
    size_t slot;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !idle_.empty() || opened_ < free_.size(); });
      if (!idle_.empty()) {
        slot = idle_.back();
        idle_.pop_back();
      } else {
        slot = opened_++;
      }
    }
    Lease lease(this, slot, nullptr);
    auto& conn = free_[slot];
    if (!conn || !conn->is_open()) {
      conn.reset();
      try {
        conn = std::make_unique<pqxx::connection>(url_);
        pqxx::nontransaction(*conn).exec("SET synchronous_commit = on");
        Prepare(*conn);
      } catch (const std::exception&) {
        conn.reset();
        return Error(Code::kUnavailable, "cannot connect to the database");
      }
    }
    lease.conn = conn.get();
    return lease;
  }

  void Return(size_t slot) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(slot);
    }
    cv_.notify_one();
  }

  // The last operation on each key decides, so the statements need no order among
  // themselves: one multi-row upsert and one delete per space (in chunks), a handful of
  // round trips per batch however many keys it holds.
  static void Apply(pqxx::work& tx, const WriteBatch& batch) {
    std::array<std::map<std::string_view, const WriteBatch::Op*>, kSpaceCount> last;
    for (const auto& op : batch.ops()) last[static_cast<size_t>(op.space)][op.key] = &op;
    for (size_t i = 0; i < last.size(); ++i) {
      const std::string table = Table(static_cast<Space>(i));
      std::vector<pqxx::binarystring> puts, dels;
      std::string put_rows, del_keys;
      auto flush = [&](bool all) {
        if (!puts.empty() && (all || puts.size() >= 2 * kRowsPerStatement)) {
          tx.exec_params("INSERT INTO " + table + " (key, value) VALUES " + put_rows +
                             " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                         pqxx::prepare::make_dynamic_params(puts));
          puts.clear();
          put_rows.clear();
        }
        if (!dels.empty() && (all || dels.size() >= kRowsPerStatement)) {
          tx.exec_params("DELETE FROM " + table + " WHERE key IN (" + del_keys + ")",
                         pqxx::prepare::make_dynamic_params(dels));
          dels.clear();
          del_keys.clear();
        }
      };
      for (const auto& [key, op] : last[i]) {
        if (op->is_delete) {
          dels.push_back(Bytes(key));
          del_keys += fmt::format("{}${}", dels.size() > 1 ? "," : "", dels.size());
        } else {
          puts.push_back(Bytes(key));
          puts.push_back(Bytes(op->value));
          put_rows +=
              fmt::format("{}(${},${})", puts.size() > 2 ? "," : "", puts.size() - 1, puts.size());
        }
        flush(false);
      }
      flush(true);
    }
  }

  static std::string Statement(std::string_view verb, Space s) {
    return fmt::format("{}_{}", verb, SpaceName(s));
  }

  static void Prepare(pqxx::connection& c) {
    for (int i = 0; i < kSpaceCount; ++i) {
      const auto s = static_cast<Space>(i);
      const std::string t = Table(s);
      c.prepare(Statement("get", s), "SELECT value FROM " + t + " WHERE key = $1");
      c.prepare(Statement("scan", s), fmt::format("SELECT key, value FROM {} WHERE key >= $1 AND "
                                                  "key < $2 ORDER BY key LIMIT {}",
                                                  t, kPage));
      c.prepare(
          Statement("scan_all", s),
          fmt::format("SELECT key, value FROM {} WHERE key >= $1 ORDER BY key LIMIT {}", t, kPage));
    }
  }

  std::string url_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> free_;  // one slot per connection
  std::vector<size_t> idle_;
  size_t opened_ = 0;
};

}  // namespace

Result<StorePtr> OpenPostgres(const std::string& url, int connections) {
  auto store = std::make_unique<PostgresStore>(url, connections);
  RETURN_IF_ERROR(store->Migrate());
  return StorePtr(std::move(store));
}

}  // namespace meridian::storage
