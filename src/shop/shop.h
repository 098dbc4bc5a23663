// The store of a region: the catalog and sale definitions (public data, replicated to every
// region), this region's stock quota of each sale, and the orders of users homed here.
//
// A purchase takes a unit from this region's in-memory quota (an atomic decrement, so
// "sold out" costs no storage read and no shared lock), then writes the order, its
// idempotency entry, the buyer's purchase count and the quota ledger entry in one synced
// batch; concurrent purchases share fsyncs through RocksDB's write group. The quota's
// durable truth is the ledger: remaining = quota - units held by reserved or paid orders,
// recomputed at start, so a crash can neither lose nor double a unit.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "audit/log.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/random.h"
#include "common/status.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::shop {

struct Product {
  std::string sku;
  std::string name;
  int64_t price = 0;  // minor units
  std::string currency;
};

struct Sale {
  std::string id;
  std::string sku;
  int64_t stock = 0;
  int64_t per_user_limit = 1;
  int64_t starts_at_ms = 0;
  int64_t ends_at_ms = 0;
  int64_t payment_window_s = 900;
  std::map<std::string, int64_t> allocation;  // region -> initial quota
};

// Validation of admin input (pure; the home regions are the ones that may hold quota).
Result<Product> ParseProduct(const Json& body);
Result<Sale> ParseSale(const Json& body, const std::vector<std::string>& home_regions);
Json ProductJson(const Product& p);
Json SaleJson(const Sale& s);
Result<int64_t> ParseRfc3339(std::string_view text);

struct QuotaView {
  int64_t quota = 0;  // allocation + units received - units given away
  int64_t reserved = 0;
  int64_t paid = 0;
  int64_t expired = 0;
  int64_t remaining = 0;
  // Units given away whose receipt is not yet acknowledged, by transfer id; and every
  // transfer this region has applied. A unit in flight is counted once: at the donor until
  // the receiver has applied it.
  std::map<std::string, int64_t> unacked_out;
  std::vector<std::string> applied_in;
};

// A transfer this region owes a receiver an acknowledged delivery of.
struct PendingGrant {
  std::string sale_id;
  std::string transfer_id;
  std::string to;
  int64_t units = 0;
};

// Pulls units of a sale from other regions into this one (the node wires it to the
// inter-region channel). Returns how many units arrived.
using PullFn = std::function<int64_t(const std::string& sale_id)>;

struct Order {
  std::string order_id;
  std::string sale_id;
  std::string sku;
  std::string state;  // reserved, paid, expired
  int64_t created_ms = 0;
  int64_t pay_by_ms = 0;
};
Json OrderJson(const Order& o);
// The inverse of OrderJson (stored orders, moved accounts); invalid_field when malformed.
Result<Order> OrderFromJson(const Json& j);

struct ShopSettings {
  std::string region;
  bool home = true;                 // only home regions hold quota and orders
  int64_t max_in_flight = 512;      // purchases being processed at once, past it 429
  int64_t sweep_interval_ms = 200;  // how often expired reservations are looked for
};

class Shop {
 public:
  // Orders are personal data: every write and read of them commits through `audit` with
  // its log entry. `names_key` names users in those entries; `idempotency_key` (the same in
  // every region, so a user's entries stay valid when the user moves) names the
  // Idempotency-Key values in storage.
  Shop(storage::Store& store, storage::ValueCodec& codec, audit::AuditSink& audit,
       const Clock& clock, Random& random, std::string names_key, std::string idempotency_key,
       ShopSettings settings);
  ~Shop();

  // Loads the catalog, the sales and this region's ledger; starts the expiry sweeper.
  Status Start();
  void Stop();

  Status PutProduct(const Product& p);  // idempotent for an identical product
  Status PutSale(const Sale& s);        // conflict if a different sale has the id
  std::vector<Product> Products() const;
  std::optional<Sale> FindSale(std::string_view id) const;

  // Memory only: true when this region has no unit of the sale left and, as last heard,
  // neither has any other region (nor is any unit in flight).
  bool SoldOutHere(std::string_view sale_id) const;
  // What the other regions last reported as remaining (with units in flight).
  void SetPeerRemaining(std::string_view sale_id, int64_t units);
  std::vector<std::string> OpenSales() const;
  Result<QuotaView> Quota(std::string_view sale_id) const;

  struct Purchased {
    Order order;
    bool created = true;  // false: the same idempotency key returned an earlier order
  };
  // Calls `done` once the order is durable (or refused), possibly on the audit log's
  // writer thread: the caller's thread is free while the write waits for the disk.
  void PurchaseAsync(const std::string& user_id, const std::string& sale_id,
                     std::string_view idempotency_key, std::function<void(Result<Purchased>)> done);
  // The same, waiting for the outcome.
  Result<Purchased> Purchase(const std::string& user_id, const std::string& sale_id,
                             std::string_view idempotency_key);
  Result<Order> Pay(const std::string& user_id, const std::string& order_id);
  Result<std::vector<Order>> OrdersOf(const std::string& user_id);
  // Deletes the user's orders, idempotency entries and purchase counts; returns how many
  // orders. (Their units stay accounted in the sale's ledger.)
  Result<int64_t> DeleteUserData(const std::string& user_id);

  // Moving a user: their orders, idempotency entries and purchase counts as one canonical
  // document (orders sorted by id), and its import in the destination (replacing what an
  // earlier attempt left). The sale ledgers stay where the units were sold.
  Result<Json> SnapshotUser(const std::string& user_id);
  Status ImportUser(const std::string& user_id, const Json& snapshot);
  // True while the user holds a reservation not yet paid or expired: such a user moves
  // after it settles (the unit belongs to this region's quota and expiry sweeper).
  Result<bool> HasReservation(const std::string& user_id);

  // Expires every reservation past its payment window now (the sweeper calls it).
  Result<int64_t> ExpireDue();

  // The demarcation protocol. A donor durably lowers its own quota before it grants;
  // the grant carries a transfer id and is applied idempotently; the donor re-delivers
  // it until the receiver acknowledges. No unit is counted twice or lost.
  void SetPull(PullFn pull) { pull_ = std::move(pull); }
  // Gives up to `units` (keeping half of what is left, at most) for transfer `tid`;
  // the same tid returns the same grant.
  Result<int64_t> Donate(const std::string& sale_id, const std::string& to, int64_t units,
                         const std::string& tid);
  Status ApplyGrant(const std::string& sale_id, const std::string& from, int64_t units,
                    const std::string& tid);
  Status AckGrant(const std::string& sale_id, const std::string& tid);
  std::vector<PendingGrant> UnackedGrants() const;
  // Sales open now whose local remaining is at or under the low-water mark and that saw
  // demand in the last two seconds: candidates for a pull.
  std::vector<std::string> SalesNeedingStock() const;

 private:
  struct SaleRuntime {
    Sale sale;
    std::atomic<int64_t> remaining{0};
    std::atomic<int64_t> reserved{0};
    std::atomic<int64_t> paid{0};
    std::atomic<int64_t> expired{0};
    std::atomic<int64_t> quota{0};
    std::atomic<int64_t> last_demand_ms{0};
    std::atomic<int64_t> peer_remaining{INT64_MAX};  // unknown until first heard
    std::mutex transfers_mu;
    std::map<std::string, PendingGrant> unacked;  // tid -> grant (donor side)
    std::map<std::string, int64_t> given;         // tid -> units (donor side, all)
    std::set<std::string> applied;                // tid (receiver side)
    std::mutex pull_mu;                           // one pull at a time per sale
  };
  struct Due {
    std::string sale_id;
    std::string order_id;
    std::string user_id;
  };

  // One operation at a time on a user's orders, counts and idempotency entries. Unlike a
  // mutex it may be released on another thread: a purchase keeps it until its write is
  // durable, without keeping a thread.
  struct UserStripe {
    std::mutex mu;
    std::condition_variable cv;
    std::unordered_set<std::string> busy;
  };
  class UserLock {
   public:
    UserLock(UserStripe& stripe, std::string user_id);
    UserLock(UserLock&& o) noexcept : stripe_(o.stripe_), user_id_(std::move(o.user_id_)) {
      o.stripe_ = nullptr;
    }
    UserLock(const UserLock&) = delete;
    UserLock& operator=(const UserLock&) = delete;
    UserLock& operator=(UserLock&&) = delete;
    ~UserLock();

   private:
    UserStripe* stripe_;
    std::string user_id_;
  };

  SaleRuntime* Runtime(std::string_view sale_id) const;
  UserLock LockUser(const std::string& user_id);
  Result<std::optional<Order>> LoadOrder(const std::string& user_id, const std::string& order_id);
  storage::WriteBatch OrderUpdate(const std::string& user_id, const Order& o,
                                  Result<std::string>* sealed);
  Status ExpireOne(const Due& due);
  // One log entry about a user's order.
  Json OrderEntry(std::string_view op, const std::string& user_id, const Order& o) const;
  void SweepLoop();

  storage::Store& store_;
  storage::ValueCodec& codec_;
  audit::AuditSink& audit_;
  const Clock& clock_;
  Random& random_;
  std::string names_key_;
  std::string idempotency_key_;
  ShopSettings settings_;

  mutable std::shared_mutex catalog_mu_;
  std::map<std::string, Product, std::less<>> products_;
  std::map<std::string, std::unique_ptr<SaleRuntime>, std::less<>> sales_;

  std::array<UserStripe, 64> stripes_;
  std::atomic<int64_t> in_flight_{0};

  std::mutex due_mu_;
  std::multimap<int64_t, Due> due_;  // pay_by -> reservation

  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;
  std::thread sweeper_;
  PullFn pull_;
};

}  // namespace meridian::shop
