// The store of a region: the catalog and sale definitions (public data, replicated to every
// region), this region's stock quota of each sale, and the orders of users homed here.
//
// A region's units are in one of three places: its pool (a stored count), a lease held by
// one of its nodes, or an order. A node leases a chunk of units from the pool (one
// conditional write) and sells from memory: a purchase takes the next slot of the node's
// lease and writes the order, its idempotency entry, the buyer's purchase count, the quota
// ledger entry and the slot in one durable batch that expects the slot free and the buyer's
// entries unchanged, so nodes sharing a database neither oversell nor double a buyer's
// order. Closing a lease (unused, the node stopping, or its node silent past the lease
// timeout) marks its free slots taken and returns them to the pool in one write: a late
// order on such a slot fails. Sold out is answered from memory.
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
  int64_t quota = 0;     // allocation + units received - units given away
  int64_t reserved = 0;  // with counts only (a scan of the sale's ledger)
  int64_t paid = 0;
  int64_t expired = 0;
  int64_t remaining = 0;  // pool + free slots of the nodes' leases
  int64_t pool = 0;
  int64_t leased = 0;  // free slots of open leases
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

// Pulls units of a sale from other regions into this one for a buyer who found none here
// (the node wires it to the inter-region channel). Returns how many units arrived: 0 when
// every region answered that it has none and no transfer is in flight; kUnitsElsewhere
// when units exist but none came now (kept, on a donor's nodes' leases, in flight, or a
// region did not answer).
// `asker_out`: for a buyer who found none, not for a low-water top-up.
using PullFn = std::function<int64_t(const std::string& sale_id, bool asker_out)>;
inline constexpr int64_t kUnitsElsewhere = -1;

struct Order {
  std::string order_id;
  std::string sale_id;
  std::string sku;
  std::string state;  // reserved, paid, expired
  int64_t created_ms = 0;
  int64_t pay_by_ms = 0;
};
Json OrderJson(const Order& o);
// DumpJson(OrderJson(o)) without building the document (the purchase path seals it).
std::string OrderText(const Order& o);
// The answer to a purchase: order_id, sale_id, state and pay_by of OrderJson.
std::string PurchaseAnswerText(const Order& o);
// The inverse of OrderJson (stored orders, moved accounts); invalid_field when malformed.
Result<Order> OrderFromJson(const Json& j);

// An Idempotency-Key a purchase accepts: 1 to 128 bytes.
inline bool IsValidIdempotencyKey(std::string_view key) {
  return !key.empty() && key.size() <= 128;
}

struct ShopSettings {
  std::string region;
  bool home = true;                 // only home regions hold quota and orders
  int64_t max_in_flight = 512;      // purchases being processed at once, past it 429
  int64_t sweep_interval_ms = 200;  // how often expired reservations are looked for
  std::string node = "n0";          // this node among the region's (its leases carry it)
  int64_t lease_units = 2048;       // most units one lease takes from the pool
  int64_t lease_idle_ms = 1000;     // an unused lease returns its units after this
  int64_t lease_timeout_ms = 3000;  // a node silent this long loses its leases
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
  // Also a sale another node of the region created since this one started.
  std::optional<Sale> FindSale(std::string_view id);

  // Memory only, without a lock shared with other threads: true when the sale is open at
  // `now_ms`, this region has no unit of it left and, as last heard, neither has any other
  // region (nor is any unit in flight), and "sold out" is all `user_id` can hear: no order,
  // idempotency entry or purchase count of theirs is stored here and no purchase of theirs
  // may be taking a unit. (Over a database shared with other nodes that takes a read: false.)
  // The event loops answer "sold out" with it.
  bool SoldOutNow(std::string_view sale_id, std::string_view user_id, int64_t now_ms) const;
  // What the other regions last reported as remaining (with units in flight).
  void SetPeerRemaining(std::string_view sale_id, int64_t units);
  std::vector<std::string> OpenSales() const;
  // The region's view of the sale's stock, read from storage (all nodes' leases);
  // `counts` adds the reserved, paid and expired counts (a scan of the sale's ledger).
  Result<QuotaView> Quota(std::string_view sale_id, bool counts = true);

  struct Purchased {
    Order order;
    bool created = true;  // false: the same idempotency key returned an earlier order
  };
  // Calls `done` once the order is durable (or refused), possibly on the audit log's
  // writer thread: the caller's thread is free while the write waits for the disk.
  void PurchaseAsync(const std::string& user_id, const std::string& sale_id,
                     std::string_view idempotency_key, std::function<void(Result<Purchased>)> done);
  // The same, returning true. With Wait::kNever (an event loop), false instead, having
  // changed nothing and without calling `done`, when the purchase would wait (a read or a
  // data key not in memory, the buyer's earlier operation still running, a new lease or a
  // pull needed, an earlier order to return): the caller then runs it on a thread that may.
  bool StartPurchase(const std::string& user_id, const std::string& sale_id,
                     std::string_view idempotency_key, Wait wait,
                     const std::function<void(Result<Purchased>)>& done);
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

  // The demarcation protocol. A donor durably lowers its own pool before it grants; the
  // grant carries a transfer id and is applied idempotently (once for the whole region,
  // whichever node receives it); the donor's nodes re-deliver it until the receiver
  // acknowledges. No unit is counted twice or lost.
  void SetPull(PullFn pull) { pull_ = std::move(pull); }
  // Gives up to `units` for transfer `tid`; the same tid returns the same grant. While this
  // region has buyers of its own it keeps half of what is left: rounded down for a buyer
  // who found none (`asker_out`), so a last unit goes where a buyer waits for it; rounded
  // up for a low-water top-up, so a last unit does not swing between two regions.
  Result<int64_t> Donate(const std::string& sale_id, const std::string& to, int64_t units,
                         const std::string& tid, bool asker_out);
  Status ApplyGrant(const std::string& sale_id, const std::string& from, int64_t units,
                    const std::string& tid);
  Status AckGrant(const std::string& sale_id, const std::string& tid);
  std::vector<PendingGrant> UnackedGrants();
  // Pulls units for each sale open now whose local remaining is at or under the low-water
  // mark and that saw demand in the last two seconds (the rebalancer runs it); a sale whose
  // buyer is pulling already is passed over.
  void TopUpLowStock();

  // Lease upkeep (the sweeper runs it every second): this node's heartbeat, its idle
  // leases returned, and the leases of nodes silent past the timeout closed.
  Status MaintainLeases();

 private:
  // This node's lease of a sale: slots [0, units), the next one to sell.
  struct Lease {
    std::string id;
    std::string value;  // as stored: "<node>|<units>"
    int64_t units = 0;
    int64_t next = 0;
    int64_t used_ms = 0;  // when a slot was last taken
    int64_t created_ms = 0;
    // Purchases on its slots not yet durable: it closes only once they are done, or
    // closing it would refuse them.
    std::shared_ptr<std::atomic<int64_t>> pending = std::make_shared<std::atomic<int64_t>>(0);
  };
  struct Slot {
    std::string lease_id;
    int64_t index = 0;
    std::shared_ptr<std::atomic<int64_t>> pending;  // the lease's
  };
  struct SaleRuntime {
    Sale sale;
    std::atomic<int64_t> remaining{0};  // free slots of this node's lease
    // Units of the region outside this node's lease (pool and other nodes' leases), as
    // last read; unknown until the first read.
    std::atomic<int64_t> elsewhere{INT64_MAX};
    std::atomic<int64_t> empty_until_ms{0};      // a purchase just found no unit anywhere
    std::atomic<int64_t> elsewhere_until_ms{0};  // ... but some on another node's lease
    std::atomic<int64_t> last_demand_ms{0};
    std::atomic<int64_t> peer_remaining{INT64_MAX};  // unknown until first heard
    std::mutex lease_mu;                             // the slot counter of `lease`, and `used_up`
    std::optional<Lease> lease;
    std::vector<Lease> used_up;  // leases with every slot handed out, closed once settled
    std::mutex pull_mu;          // one buyer's lease-or-pull, or one top-up, at a time
    // Held across a lease's write and its install in `lease` (never across a remote call):
    // the upkeep and a hand-back never see a lease of this node written but not installed.
    std::mutex leasing_mu;
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
    // With Wait::kNever, not held (held() false) when the user is busy.
    UserLock(UserStripe& stripe, std::string user_id, Wait wait);
    UserLock(UserLock&& o) noexcept : stripe_(o.stripe_), user_id_(std::move(o.user_id_)) {
      o.stripe_ = nullptr;
    }
    UserLock(const UserLock&) = delete;
    UserLock& operator=(const UserLock&) = delete;
    UserLock& operator=(UserLock&&) = delete;
    ~UserLock();
    bool held() const { return stripe_ != nullptr; }

   private:
    UserStripe* stripe_;
    std::string user_id_;
  };

  // A sale's transfers as stored: net units received, grants not yet acknowledged, and
  // the transfers this region applied.
  struct Transfers {
    int64_t net = 0;
    std::vector<PendingGrant> unacked;
    std::vector<std::string> applied;
  };
  Result<Transfers> ScanTransfers(const std::string& sale_id);
  struct OpenLease {
    std::string id;
    std::string value;
    std::string node;
    int64_t units = 0;
    int64_t taken = 0;  // slots sold (or marked taken)
  };
  Result<std::vector<OpenLease>> OpenLeases(const std::string& sale_id);
  SaleRuntime* Runtime(std::string_view sale_id) const;  // memory only
  // The same without the catalog's lock: what this thread found before (a sale is never
  // removed, so its runtime lives as long as the shop), else Runtime().
  SaleRuntime* RuntimeSeenByThisThread(std::string_view sale_id) const;
  SaleRuntime* LoadRuntime(std::string_view sale_id);  // or the sale as stored
  // A slot of this node's lease, or nullopt when it has none left. The caller decrements
  // the slot's `pending` once its purchase is settled.
  std::optional<Slot> TakeSlot(SaleRuntime* rt);
  // Units just returned to the pool (an expiry, a grant): "sold out" from memory no more.
  void BackOnSale(SaleRuntime* rt, int64_t units);
  // Hands this node's leases of the sale back to the pool (those with purchases still in
  // flight once they are settled).
  Status ReturnLeases(SaleRuntime* rt);
  // Asks this region's other nodes to hand their leases of the sale back (at their next
  // upkeep).
  void AskForLeases(const std::string& sale_id);
  // Free slots of the other nodes' open leases of the sale.
  Result<int64_t> FreeInOtherLeases(SaleRuntime* rt);
  // Leases units for this node: units now free here.
  Result<int64_t> LeaseMore(SaleRuntime* rt);
  // Returns a lease's free slots to the pool, marking them taken (idempotent).
  Status CloseLease(const std::string& sale_id, const std::string& lease_id,
                    const std::string& value);
  // The pool's count, computed from the ledger and written once when missing.
  Result<int64_t> Pool(const std::string& sale_id);
  // Adds `delta` to the pool in `batch`, expecting the count read (a conflict means retry).
  Status AddToPool(const std::string& sale_id, int64_t delta, storage::WriteBatch* batch);
  UserLock LockUser(const std::string& user_id, Wait wait = Wait::kMay);
  Result<std::optional<Order>> LoadOrder(const std::string& user_id, const std::string& order_id);
  storage::WriteBatch OrderUpdate(const std::string& user_id, const Order& o,
                                  Result<std::string>* sealed, Wait wait = Wait::kMay);
  Status ExpireOne(const Due& due);
  // One log entry about a user's order.
  audit::EntryText OrderEntry(std::string_view op, const std::string& user_id,
                              const Order& o) const;
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

  const uint64_t instance_;  // tells this shop's entries in a thread's memory from another's
  // Users with orders here, or a purchase that may get a unit: a Bloom filter of atomic
  // words (no lock; a false "maybe" only sends a request the slow way, a "no" is always
  // right). Filled at start from the stored orders, before a purchase takes a unit and when
  // a user moves in.
  class Buyers {
   public:
    Buyers() : words_(new std::atomic<uint64_t>[kWords]()) {}
    void Add(std::string_view user_id);
    bool MayContain(std::string_view user_id) const;

   private:
    static constexpr size_t kWords = size_t{1} << 16;  // 4 Mbit: about 1% false "maybe" at 400k
    template <typename Fn>
    static void ForEachBit(std::string_view user_id, Fn fn);
    std::unique_ptr<std::atomic<uint64_t>[]> words_;
  };
  Buyers buyers_;
  std::array<UserStripe, 64> stripes_;
  int64_t last_heartbeat_ms_ = 0;
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
