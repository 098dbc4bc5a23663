#include "shop/shop.h"

#include <charconv>
#include <ctime>

#include <fmt/format.h>

#include "common/await.h"
#include "common/log.h"
#include "common/string_hash.h"
#include "common/thread.h"
#include "crypto/crypto.h"

namespace meridian::shop {
namespace {
uint64_t NextInstance() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

using storage::Space;

constexpr char kReserved = 'r';
constexpr char kPaid = 'p';
constexpr char kExpired = 'x';

std::string ProductKey(std::string_view sku) { return "product/" + std::string(sku); }
std::string SaleKey(std::string_view id) { return "sale/" + std::string(id); }
std::string LedgerKey(std::string_view sid, std::string_view oid) {
  return fmt::format("ledger/{}/{}", sid, oid);
}
std::string LedgerValue(char state, int64_t pay_by, std::string_view uid) {
  return fmt::format("{}|{}|{}", state, pay_by, uid);
}
std::string OrderKey(std::string_view uid, std::string_view oid) {
  return fmt::format("{}/order/{}", uid, oid);
}
std::string CountKey(std::string_view uid, std::string_view sid) {
  return fmt::format("{}/count/{}", uid, sid);
}
// The region's unleased units of a sale, its nodes' leases and their slots, and each
// node's heartbeat (meta space: stock accounting, no personal data).
std::string PoolKey(std::string_view sid) { return fmt::format("pool/{}", sid); }
std::string LeaseKey(std::string_view sid, std::string_view lid) {
  return fmt::format("lease/{}/{}", sid, lid);
}
std::string UnitPrefix(std::string_view sid, std::string_view lid) {
  return fmt::format("unit/{}/{}/", sid, lid);
}
std::string UnitKey(std::string_view sid, std::string_view lid, int64_t slot) {
  return fmt::format("unit/{}/{}/{:06}", sid, lid, slot);
}
std::string AliveKey(std::string_view node) { return fmt::format("alive/{}", node); }
// When a node out of units last asked the others to hand their leases of a sale back (ms).
std::string ReleaseKey(std::string_view sid) { return fmt::format("release/{}", sid); }

// A stored sale definition (its allocation names the regions it was checked against).
Result<Sale> ParseStoredSale(std::string_view stored) {
  ASSIGN_OR_RETURN(auto j, ParseJsonObject(stored));
  std::vector<std::string> regions;
  const Json allocation = j.value("allocation", Json::object());
  for (const auto& [r, _] : allocation.items()) regions.push_back(r);
  return ParseSale(j, regions);
}

std::vector<std::string_view> SplitBars(std::string_view v) {
  std::vector<std::string_view> f;
  for (size_t start = 0;;) {
    size_t bar = v.find('|', start);
    f.push_back(v.substr(start, bar - start));
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  return f;
}

bool ParseInt(std::string_view s, int64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Names and ids chosen by admins appear in storage keys: keep them to a safe alphabet.
bool IsSafeId(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<int64_t> ParseRfc3339(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  std::tm tm{};
  int64_t y, mo, d, h, mi, s;
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
      t[13] != ':' || t[16] != ':' || !ParseInt(t.substr(0, 4), &y) ||
      !ParseInt(t.substr(5, 2), &mo) || !ParseInt(t.substr(8, 2), &d) ||
      !ParseInt(t.substr(11, 2), &h) || !ParseInt(t.substr(14, 2), &mi) ||
      !ParseInt(t.substr(17, 2), &s) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      s > 60) {
    return Error(Code::kInvalidField, "times must be RFC 3339, e.g. 2026-11-25T10:00:00Z");
  }
  size_t pos = 19;
  int64_t ms = 0;
  if (pos < t.size() && t[pos] == '.') {
    size_t start = ++pos;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) ++pos;
    std::string frac(t.substr(start, pos - start));
    if (frac.empty()) return Error(Code::kInvalidField, "bad fractional seconds");
    frac.resize(3, '0');
    ParseInt(frac, &ms);
  }
  int64_t offset_s = 0;
  std::string_view zone = t.substr(pos);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int64_t oh, om;
    if (!ParseInt(zone.substr(1, 2), &oh) || !ParseInt(zone.substr(4, 2), &om)) {
      return Error(Code::kInvalidField, "bad time zone offset");
    }
    offset_s = (oh * 3600 + om * 60) * (zone[0] == '+' ? 1 : -1);
  } else {
    return Error(Code::kInvalidField, "times must end with Z or an offset");
  }
  tm.tm_year = static_cast<int>(y - 1900);
  tm.tm_mon = static_cast<int>(mo - 1);
  tm.tm_mday = static_cast<int>(d);
  tm.tm_hour = static_cast<int>(h);
  tm.tm_min = static_cast<int>(mi);
  tm.tm_sec = static_cast<int>(s);
  return (static_cast<int64_t>(timegm(&tm)) - offset_s) * 1000 + ms;
}

Result<Product> ParseProduct(const Json& body) {
  Product p;
  ASSIGN_OR_RETURN(p.sku, RequireString(body, "sku", 64));
  if (!IsSafeId(p.sku)) return Error(Code::kInvalidField, "sku must be 1-64 of [A-Za-z0-9._-]");
  ASSIGN_OR_RETURN(p.name, RequireString(body, "name", 256));
  auto price = body.find("price");
  if (price == body.end() || !price->is_number() || price->get<double>() < 0) {
    return Error(Code::kInvalidField, "price must be a non-negative number (minor units)");
  }
  p.price = price->is_number_integer() ? price->get<int64_t>()
                                       : static_cast<int64_t>(price->get<double>());
  ASSIGN_OR_RETURN(p.currency, RequireString(body, "currency", 3));
  if (p.currency.size() != 3) return Error(Code::kInvalidField, "currency is an ISO 4217 code");
  return p;
}

Result<Sale> ParseSale(const Json& body, const std::vector<std::string>& home_regions) {
  Sale s;
  ASSIGN_OR_RETURN(s.id, RequireString(body, "id", 64));
  if (!IsSafeId(s.id)) return Error(Code::kInvalidField, "id must be 1-64 of [A-Za-z0-9._-]");
  ASSIGN_OR_RETURN(s.sku, RequireString(body, "sku", 64));
  auto stock = body.find("stock");
  if (stock == body.end() || !stock->is_number_integer() || stock->get<int64_t>() <= 0 ||
      stock->get<int64_t>() > 1'000'000'000) {
    return Error(Code::kInvalidField, "stock must be a positive integer");
  }
  s.stock = stock->get<int64_t>();
  ASSIGN_OR_RETURN(auto limit, OptionalInt(body, "per_user_limit"));
  s.per_user_limit = limit.value_or(1);
  if (s.per_user_limit < 1) return Error(Code::kInvalidField, "per_user_limit must be >= 1");
  ASSIGN_OR_RETURN(auto window, OptionalInt(body, "payment_window_s"));
  s.payment_window_s = window.value_or(900);
  if (s.payment_window_s < 1 || s.payment_window_s > 7 * 24 * 3600) {
    return Error(Code::kInvalidField, "payment_window_s must be 1 s to 7 days");
  }
  ASSIGN_OR_RETURN(auto starts, RequireString(body, "starts_at", 64));
  ASSIGN_OR_RETURN(s.starts_at_ms, ParseRfc3339(starts));
  ASSIGN_OR_RETURN(auto ends, RequireString(body, "ends_at", 64));
  ASSIGN_OR_RETURN(s.ends_at_ms, ParseRfc3339(ends));
  if (s.ends_at_ms <= s.starts_at_ms) {
    return Error(Code::kInvalidField, "ends_at must be after starts_at");
  }
  auto alloc = body.find("allocation");
  if (alloc != body.end() && !alloc->is_null()) {
    if (!alloc->is_object() || alloc->empty()) {
      return Error(Code::kInvalidField, "allocation must map home regions to units");
    }
    int64_t sum = 0;
    for (const auto& [region, units] : alloc->items()) {
      if (std::find(home_regions.begin(), home_regions.end(), region) == home_regions.end()) {
        return Error(Code::kInvalidField, "allocation names '" + region + "', not a home region");
      }
      if (!units.is_number_integer() || units.get<int64_t>() < 0) {
        return Error(Code::kInvalidField, "allocation units must be non-negative integers");
      }
      s.allocation[region] = units.get<int64_t>();
      sum += units.get<int64_t>();
    }
    if (sum != s.stock) {
      return Error(Code::kInvalidField, "allocation must add up to the stock");
    }
  } else {
    // An even split over the home regions; the remainder goes to the first ones.
    const auto n = static_cast<int64_t>(home_regions.size());
    for (int64_t i = 0; i < n; ++i) {
      s.allocation[home_regions[i]] = s.stock / n + (i < s.stock % n ? 1 : 0);
    }
  }
  return s;
}

Json ProductJson(const Product& p) {
  return {{"sku", p.sku}, {"name", p.name}, {"price", p.price}, {"currency", p.currency}};
}

Json SaleJson(const Sale& s) {
  Json alloc = Json::object();
  for (const auto& [r, n] : s.allocation) alloc[r] = n;
  return {{"id", s.id},
          {"sku", s.sku},
          {"stock", s.stock},
          {"per_user_limit", s.per_user_limit},
          {"starts_at", FormatRfc3339(s.starts_at_ms)},
          {"ends_at", FormatRfc3339(s.ends_at_ms)},
          {"payment_window_s", s.payment_window_s},
          {"allocation", alloc}};
}

Result<Order> OrderFromJson(const Json& j) {
  if (!j.is_object()) return Error(Code::kInvalidField, "an order must be an object");
  Order o;
  ASSIGN_OR_RETURN(o.order_id, RequireString(j, "order_id", 64));
  ASSIGN_OR_RETURN(o.sale_id, RequireString(j, "sale_id", 128));
  ASSIGN_OR_RETURN(o.sku, RequireString(j, "sku", 128));
  ASSIGN_OR_RETURN(o.state, RequireString(j, "state", 32));
  ASSIGN_OR_RETURN(auto created, RequireString(j, "created_at", 64));
  ASSIGN_OR_RETURN(auto pay_by, RequireString(j, "pay_by", 64));
  ASSIGN_OR_RETURN(o.created_ms, ParseRfc3339(created));
  ASSIGN_OR_RETURN(o.pay_by_ms, ParseRfc3339(pay_by));
  return o;
}

Json OrderJson(const Order& o) {
  return {{"order_id", o.order_id},
          {"sale_id", o.sale_id},
          {"sku", o.sku},
          {"state", o.state},
          {"created_at", FormatRfc3339(o.created_ms)},
          {"pay_by", FormatRfc3339(o.pay_by_ms)}};
}

std::string OrderText(const Order& o) {
  return JsonObjectWriter()
      .String("created_at", FormatRfc3339(o.created_ms))
      .String("order_id", o.order_id)
      .String("pay_by", FormatRfc3339(o.pay_by_ms))
      .String("sale_id", o.sale_id)
      .String("sku", o.sku)
      .String("state", o.state)
      .Finish();
}

std::string PurchaseAnswerText(const Order& o) {
  return JsonObjectWriter()
      .String("order_id", o.order_id)
      .String("pay_by", FormatRfc3339(o.pay_by_ms))
      .String("sale_id", o.sale_id)
      .String("state", o.state)
      .Finish();
}

Shop::Shop(storage::Store& store, storage::ValueCodec& codec, audit::AuditSink& audit,
           const Clock& clock, Random& random, std::string names_key, std::string idempotency_key,
           ShopSettings settings)
    : store_(store),
      codec_(codec),
      audit_(audit),
      clock_(clock),
      random_(random),
      names_key_(std::move(names_key)),
      idempotency_key_(std::move(idempotency_key)),
      settings_(std::move(settings)),
      instance_(NextInstance()) {}

audit::EntryText Shop::OrderEntry(std::string_view op, const std::string& user_id,
                                  const Order& o) const {
  return audit::MakeEntry(
      op, settings_.region, audit::SubjectPseudonym(names_key_, user_id), clock_.NowMs(),
      std::string_view(
          JsonObjectWriter().String("order_id", o.order_id).String("sale_id", o.sale_id).Finish()));
}

Shop::~Shop() { Stop(); }

Shop::UserLock::UserLock(UserStripe& stripe, std::string user_id, Wait wait)
    : stripe_(&stripe), user_id_(std::move(user_id)) {
  std::unique_lock lock(stripe_->mu);
  if (wait == Wait::kNever && stripe_->busy.contains(user_id_)) {
    stripe_ = nullptr;
    return;
  }
  stripe_->cv.wait(lock, [&] { return !stripe_->busy.contains(user_id_); });
  stripe_->busy.insert(user_id_);
}

Shop::UserLock::~UserLock() {
  if (stripe_ == nullptr) return;
  {
    std::lock_guard lock(stripe_->mu);
    stripe_->busy.erase(user_id_);
  }
  stripe_->cv.notify_all();
}

Shop::UserLock Shop::LockUser(const std::string& user_id, Wait wait) {
  return UserLock(stripes_[std::hash<std::string_view>{}(user_id) % stripes_.size()], user_id,
                  wait);
}

Shop::SaleRuntime* Shop::Runtime(std::string_view sale_id) const {
  std::shared_lock lock(catalog_mu_);
  auto it = sales_.find(sale_id);
  return it == sales_.end() ? nullptr : it->second.get();
}

Shop::SaleRuntime* Shop::LoadRuntime(std::string_view sale_id) {
  if (SaleRuntime* rt = Runtime(sale_id)) return rt;
  // Another node of the region may have created it: the definition is in storage.
  if (!IsSafeId(sale_id)) return nullptr;
  auto stored = store_.Get(Space::kPublic, SaleKey(sale_id));
  if (!stored.ok() || !stored->has_value()) return nullptr;
  auto s = ParseStoredSale(**stored);
  if (!s.ok() || !PutSale(*s).ok()) return nullptr;
  return Runtime(sale_id);
}

Status Shop::Start() {
  Status inner;
  RETURN_IF_ERROR(store_.Scan(Space::kPublic, "product/", [&](auto, std::string_view v) {
    auto j = ParseJsonObject(v);
    auto p = j.ok() ? ParseProduct(*j) : Result<Product>(j.status());
    if (p.ok()) products_[p->sku] = *p;
    return true;
  }));
  std::vector<Sale> sales;
  RETURN_IF_ERROR(store_.Scan(Space::kPublic, "sale/", [&](auto, std::string_view v) {
    if (auto s = ParseStoredSale(v); s.ok()) sales.push_back(*s);
    return true;
  }));
  for (const auto& s : sales) RETURN_IF_ERROR(PutSale(s));
  // Who has orders, idempotency entries or counts here ("<user>/..."): their purchases must
  // reach the stored entries, never the sold-out answer from memory.
  RETURN_IF_ERROR(store_.Scan(Space::kCommerce, "", [&](std::string_view k, auto) {
    buyers_.Add(storage::OwnerOf(k));
    return true;
  }));
  // Leases this node held before a restart go back to the pool before it sells again.
  if (settings_.home) RETURN_IF_ERROR(MaintainLeases());
  std::lock_guard lock(sweep_mu_);
  stopping_ = false;
  if (settings_.home && !sweeper_.joinable())
    sweeper_ = NamedThread("shop-sweep", [this] { SweepLoop(); });
  return Status::Ok();
}

void Shop::Stop() {
  {
    std::lock_guard lock(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  // Unsold leased units go back to the region's pool for the other nodes.
  std::vector<std::tuple<std::string, std::string, std::string>> open;
  {
    std::shared_lock lock(catalog_mu_);
    for (const auto& [id, rt] : sales_) {
      std::lock_guard ll(rt->lease_mu);
      if (rt->lease) open.emplace_back(id, rt->lease->id, rt->lease->value);
      for (const auto& l : rt->used_up) open.emplace_back(id, l.id, l.value);
      rt->lease.reset();
      rt->used_up.clear();
      rt->remaining = 0;
    }
  }
  for (const auto& [sale, lease, value] : open) {
    if (Status st = CloseLease(sale, lease, value); !st.ok()) {
      log::Error("lease_return_failed", {{"sale", sale}, {"error", st.message()}});
    }
  }
}

Status Shop::PutProduct(const Product& p) {
  {
    std::shared_lock lock(catalog_mu_);
    auto it = products_.find(p.sku);
    if (it != products_.end()) {
      if (DumpJson(ProductJson(it->second)) == DumpJson(ProductJson(p))) return Status::Ok();
      return Error(Code::kConflict, "a different product has this sku");
    }
  }
  storage::WriteBatch b;
  b.Put(Space::kPublic, ProductKey(p.sku), DumpJson(ProductJson(p)));
  RETURN_IF_ERROR(store_.Write(b));
  std::unique_lock lock(catalog_mu_);
  products_[p.sku] = p;
  return Status::Ok();
}

Status Shop::PutSale(const Sale& s) {
  const std::string def = DumpJson(SaleJson(s));
  if (auto* existing = Runtime(s.id)) {
    if (DumpJson(SaleJson(existing->sale)) == def) return Status::Ok();
    return Error(Code::kConflict, "a different sale has this id");
  }
  auto rt = std::make_unique<SaleRuntime>();
  rt->sale = s;
  // Reservations of this region's orders, to expire when their window ends.
  std::vector<std::pair<int64_t, Due>> due;
  if (settings_.home) {
    RETURN_IF_ERROR(store_.Scan(
        Space::kMeta, "ledger/" + s.id + "/", [&](std::string_view k, std::string_view v) {
          size_t a = v.find('|'), b = v.find('|', a + 1);
          if (v.empty() || v[0] != kReserved || b == std::string_view::npos) return true;
          int64_t pay_by = 0;
          ParseInt(v.substr(a + 1, b - a - 1), &pay_by);
          due.push_back({pay_by, Due{s.id, std::string(k.substr(k.rfind('/') + 1)),
                                     std::string(v.substr(b + 1))}});
          return true;
        }));
  }
  storage::WriteBatch b;
  b.Put(Space::kPublic, SaleKey(s.id), def);
  RETURN_IF_ERROR(store_.Write(b));
  {
    std::unique_lock lock(catalog_mu_);
    sales_.emplace(s.id, std::move(rt));
  }
  if (settings_.home) RETURN_IF_ERROR(Pool(s.id).status());  // created once, by any node
  std::lock_guard lock(due_mu_);
  for (auto& [t, d] : due) due_.emplace(t, std::move(d));
  return Status::Ok();
}

std::vector<Product> Shop::Products() const {
  std::shared_lock lock(catalog_mu_);
  std::vector<Product> out;
  for (const auto& [_, p] : products_) out.push_back(p);
  return out;
}

std::optional<Sale> Shop::FindSale(std::string_view id) {
  auto* rt = LoadRuntime(id);
  if (rt == nullptr) return std::nullopt;
  return rt->sale;
}

Shop::SaleRuntime* Shop::RuntimeSeenByThisThread(std::string_view sale_id) const {
  struct Seen {
    uint64_t shop = 0;
    StringMap<SaleRuntime*> sales;
  };
  thread_local Seen seen;
  if (seen.shop != instance_) {  // another shop's (a test process holds several)
    seen.shop = instance_;
    seen.sales.clear();
  }
  if (auto it = seen.sales.find(sale_id); it != seen.sales.end()) return it->second;
  SaleRuntime* rt = Runtime(sale_id);
  if (rt != nullptr && seen.sales.size() < 1024) seen.sales.emplace(sale_id, rt);
  return rt;
}

template <typename Fn>
void Shop::Buyers::ForEachBit(std::string_view user_id, Fn fn) {
  // Four bits by double hashing of one 64-bit hash.
  const uint64_t h = std::hash<std::string_view>{}(user_id);
  const uint64_t step = (h >> 32) | 1;
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t bit = (h + i * step) % (kWords * 64);
    fn(static_cast<size_t>(bit / 64), uint64_t{1} << (bit % 64));
  }
}

void Shop::Buyers::Add(std::string_view user_id) {
  ForEachBit(user_id, [&](size_t w, uint64_t mask) { words_[w].fetch_or(mask); });
}

bool Shop::Buyers::MayContain(std::string_view user_id) const {
  bool all = true;
  ForEachBit(user_id, [&](size_t w, uint64_t mask) { all = all && (words_[w].load() & mask); });
  return all;
}

bool Shop::SoldOutNow(std::string_view sale_id, std::string_view user_id, int64_t now_ms) const {
  if (store_.Shared()) return false;
  auto* rt = RuntimeSeenByThisThread(sale_id);
  // The counter first (acquire), the buyers after: a purchase adds its buyer before it takes
  // a unit, so a zero left by that purchase comes with its buyer's bits.
  if (rt == nullptr || now_ms < rt->sale.starts_at_ms || now_ms >= rt->sale.ends_at_ms ||
      rt->remaining.load(std::memory_order_acquire) > 0 ||
      rt->peer_remaining.load(std::memory_order_relaxed) > 0) {
    return false;
  }
  if (rt->elsewhere.load(std::memory_order_relaxed) > 0 &&
      now_ms >= rt->empty_until_ms.load(std::memory_order_relaxed)) {
    return false;
  }
  return !buyers_.MayContain(user_id);
}

void Shop::SetPeerRemaining(std::string_view sale_id, int64_t units) {
  if (SaleRuntime* rt = Runtime(sale_id)) rt->peer_remaining.store(units);
}

std::vector<std::string> Shop::OpenSales() const {
  const int64_t now = clock_.NowMs();
  std::vector<std::string> out;
  std::shared_lock lock(catalog_mu_);
  for (const auto& [id, rt] : sales_) {
    if (now >= rt->sale.starts_at_ms && now < rt->sale.ends_at_ms) out.push_back(id);
  }
  return out;
}

Result<Shop::Transfers> Shop::ScanTransfers(const std::string& sale_id) {
  Transfers t;
  RETURN_IF_ERROR(store_.Scan(
      Space::kMeta, "xfer/" + sale_id + "/", [&](std::string_view k, std::string_view v) {
        // "out|<to>|<units>|<acked>" at a donor, "in|<from>|<units>" at a receiver.
        std::string tid(k.substr(k.rfind('/') + 1));
        auto f = SplitBars(v);
        int64_t units = 0;
        if (f.size() < 3 || !ParseInt(f[2], &units)) return true;
        if (f[0] == "out") {
          t.net -= units;
          if (f.size() < 4 || f[3] != "1") {
            t.unacked.push_back(PendingGrant{sale_id, tid, std::string(f[1]), units});
          }
        } else if (f[0] == "in") {
          t.net += units;
          t.applied.push_back(tid);
        }
        return true;
      }));
  return t;
}

Result<std::vector<Shop::OpenLease>> Shop::OpenLeases(const std::string& sale_id) {
  std::vector<OpenLease> out;
  RETURN_IF_ERROR(store_.Scan(Space::kMeta, "lease/" + sale_id + "/",
                              [&](std::string_view k, std::string_view v) {
                                auto f = SplitBars(v);
                                OpenLease l{std::string(k.substr(k.rfind('/') + 1)), std::string(v),
                                            f.empty() ? "" : std::string(f[0])};
                                if (f.size() >= 2) ParseInt(f[1], &l.units);
                                out.push_back(std::move(l));
                                return true;
                              }));
  for (auto& l : out) {
    RETURN_IF_ERROR(store_.Scan(Space::kMeta, UnitPrefix(sale_id, l.id), [&](auto, auto) {
      ++l.taken;
      return true;
    }));
  }
  return out;
}

Result<int64_t> Shop::Pool(const std::string& sale_id) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, PoolKey(sale_id)));
    int64_t pool = 0;
    if (stored) {
      if (!ParseInt(*stored, &pool))
        return Error(Code::kIntegrityError, "a sale's pool is unreadable");
      return pool;
    }
    // First use: everything of this region's quota not held by orders nor leased.
    SaleRuntime* rt = Runtime(sale_id);
    if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
    auto it = rt->sale.allocation.find(settings_.region);
    ASSIGN_OR_RETURN(auto transfers, ScanTransfers(sale_id));
    pool = (it == rt->sale.allocation.end() ? 0 : it->second) + transfers.net;
    RETURN_IF_ERROR(store_.Scan(Space::kMeta, "ledger/" + sale_id + "/", [&](auto, auto v) {
      pool -= !v.empty() && (v[0] == kReserved || v[0] == kPaid);
      return true;
    }));
    ASSIGN_OR_RETURN(auto leases, OpenLeases(sale_id));
    for (const auto& l : leases) pool -= l.units - l.taken;
    storage::WriteBatch b;
    b.Put(Space::kMeta, PoolKey(sale_id), std::to_string(pool));
    b.Expect(Space::kMeta, PoolKey(sale_id), std::nullopt);
    Status st = store_.Write(b);
    if (st.ok()) return pool;
    if (st.code() != Code::kConflict) return st;  // another node wrote it first: read it
  }
  return Error(Code::kUnavailable, "the sale's stock is busy; retry");
}

Status Shop::AddToPool(const std::string& sale_id, int64_t delta, storage::WriteBatch* batch) {
  ASSIGN_OR_RETURN(int64_t pool, Pool(sale_id));
  if (pool + delta < 0) return Error(Code::kSoldOut, "not enough units in the pool");
  batch->Put(Space::kMeta, PoolKey(sale_id), std::to_string(pool + delta));
  batch->Expect(Space::kMeta, PoolKey(sale_id), std::to_string(pool));
  return Status::Ok();
}

Result<QuotaView> Shop::Quota(std::string_view sale_id, bool counts) {
  auto* rt = LoadRuntime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  const std::string id(sale_id);
  QuotaView v;
  if (!settings_.home) return v;
  auto it = rt->sale.allocation.find(settings_.region);
  ASSIGN_OR_RETURN(auto transfers, ScanTransfers(id));
  v.quota = (it == rt->sale.allocation.end() ? 0 : it->second) + transfers.net;
  for (const auto& g : transfers.unacked) v.unacked_out[g.transfer_id] = g.units;
  v.applied_in = transfers.applied;
  ASSIGN_OR_RETURN(v.pool, Pool(id));
  ASSIGN_OR_RETURN(auto leases, OpenLeases(id));
  for (const auto& l : leases) v.leased += std::max<int64_t>(0, l.units - l.taken);
  v.remaining = v.pool + v.leased;
  rt->elsewhere = v.remaining - rt->remaining.load();
  if (counts) {
    RETURN_IF_ERROR(store_.Scan(Space::kMeta, "ledger/" + id + "/", [&](auto, auto val) {
      if (val.empty()) return true;
      (val[0] == kReserved ? v.reserved : val[0] == kPaid ? v.paid : v.expired) += 1;
      return true;
    }));
  }
  return v;
}

std::optional<Shop::Slot> Shop::TakeSlot(SaleRuntime* rt) {
  std::lock_guard lock(rt->lease_mu);
  if (!rt->lease || rt->lease->next >= rt->lease->units) return std::nullopt;
  Slot slot{rt->lease->id, rt->lease->next++, rt->lease->pending};
  slot.pending->fetch_add(1);
  rt->lease->used_ms = clock_.NowMs();
  rt->remaining = rt->lease->units - rt->lease->next;
  return slot;
}

void Shop::BackOnSale(SaleRuntime* rt, int64_t units) {
  // Units came: neither "sold out" nor "retry shortly" holds for the next buyer.
  rt->empty_until_ms = 0;
  rt->elsewhere_until_ms = 0;
  int64_t seen = rt->elsewhere.load();
  while (seen != INT64_MAX && !rt->elsewhere.compare_exchange_weak(seen, seen + units)) {
  }
}

Status Shop::ReturnLeases(SaleRuntime* rt) {
  std::lock_guard leasing(rt->leasing_mu);
  std::vector<Lease> settled;
  {
    std::lock_guard lock(rt->lease_mu);
    if (rt->lease) rt->used_up.push_back(std::move(*rt->lease));
    rt->lease.reset();
    rt->remaining = 0;
    for (auto it = rt->used_up.begin(); it != rt->used_up.end();) {
      if (it->pending->load() > 0) {
        ++it;  // closed by the upkeep once its purchases are settled
      } else {
        settled.push_back(std::move(*it));
        it = rt->used_up.erase(it);
      }
    }
  }
  for (const auto& l : settled) RETURN_IF_ERROR(CloseLease(rt->sale.id, l.id, l.value));
  return Status::Ok();
}

void Shop::AskForLeases(const std::string& sale_id) {
  // Best effort: a lost ask only means the other nodes keep their leases until they idle.
  storage::WriteBatch ask;
  ask.Put(Space::kMeta, ReleaseKey(sale_id), std::to_string(clock_.NowMs()));
  (void)store_.Write(ask);
}

Result<int64_t> Shop::FreeInOtherLeases(SaleRuntime* rt) {
  std::string mine;
  {
    std::lock_guard lock(rt->lease_mu);
    if (rt->lease) mine = rt->lease->id;
  }
  ASSIGN_OR_RETURN(auto leases, OpenLeases(rt->sale.id));
  int64_t free = 0;
  for (const auto& l : leases) {
    // This node's own leases hold no spare units: the current one is empty, and the used-up
    // ones' slots are sold or in flight (a failed slot comes back when the lease closes).
    if (l.id != mine && l.node != settings_.node) free += std::max<int64_t>(0, l.units - l.taken);
  }
  return free;
}

Result<int64_t> Shop::LeaseMore(SaleRuntime* rt) {
  const std::string& sale_id = rt->sale.id;
  std::lock_guard leasing(rt->leasing_mu);
  {
    std::lock_guard lock(rt->lease_mu);
    if (rt->lease && rt->lease->next < rt->lease->units) return rt->lease->units - rt->lease->next;
    // Slots of failed purchases in a used-up lease go back to the pool when the upkeep
    // closes it, once its purchases are settled.
    if (rt->lease) rt->used_up.push_back(std::move(*rt->lease));
    rt->lease.reset();
  }
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(int64_t pool, Pool(sale_id));
    if (pool <= 0) return int64_t{0};
    // A quarter of what is left, at most lease_units: near the end the nodes share.
    const int64_t units = std::min(settings_.lease_units, std::max<int64_t>(1, pool / 4));
    Lease lease{"l" + random_.Hex(8),
                settings_.node + "|" + std::to_string(units),
                units,
                0,
                clock_.NowMs(),
                clock_.NowMs()};
    storage::WriteBatch b;
    b.Put(Space::kMeta, PoolKey(sale_id), std::to_string(pool - units));
    b.Expect(Space::kMeta, PoolKey(sale_id), std::to_string(pool));
    b.Put(Space::kMeta, LeaseKey(sale_id, lease.id), lease.value);
    b.Expect(Space::kMeta, LeaseKey(sale_id, lease.id), std::nullopt);
    Status st = store_.Write(b);
    if (st.code() == Code::kConflict) continue;  // another node took from the pool: again
    RETURN_IF_ERROR(st);
    {
      // The units are on sale here before "elsewhere" drops: the sold-out check, which reads
      // both without a lock, never sees neither.
      std::lock_guard lock(rt->lease_mu);
      rt->lease = std::move(lease);
      rt->remaining = units;
    }
    rt->elsewhere = pool - units;
    return units;
  }
  return Error(Code::kUnavailable, "the sale's stock is busy; retry");
}

Status Shop::CloseLease(const std::string& sale_id, const std::string& lease_id,
                        const std::string& value) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, LeaseKey(sale_id, lease_id)));
    if (stored != value) return Status::Ok();  // closed already
    int64_t units = 0;
    auto f = SplitBars(value);
    if (f.size() < 2 || !ParseInt(f[1], &units)) {
      return Error(Code::kIntegrityError, "a lease is unreadable");
    }
    std::set<std::string, std::less<>> taken;
    RETURN_IF_ERROR(store_.Scan(Space::kMeta, UnitPrefix(sale_id, lease_id), [&](auto k, auto) {
      taken.emplace(k);
      return true;
    }));
    // Each free slot is marked taken in the same write that returns it: an order still
    // on its way for that slot fails instead of selling the unit twice.
    storage::WriteBatch b;
    int64_t free = 0;
    for (int64_t slot = 0; slot < units; ++slot) {
      std::string key = UnitKey(sale_id, lease_id, slot);
      if (taken.contains(key)) continue;
      b.Put(Space::kMeta, key, "-");
      b.Expect(Space::kMeta, std::move(key), std::nullopt);
      ++free;
    }
    RETURN_IF_ERROR(AddToPool(sale_id, free, &b));
    b.Delete(Space::kMeta, LeaseKey(sale_id, lease_id));
    b.Expect(Space::kMeta, LeaseKey(sale_id, lease_id), value);
    Status st = store_.Write(b);
    if (st.code() != Code::kConflict) return st;  // else a slot or the pool moved: again
  }
  return Error(Code::kUnavailable, "a lease could not be closed; retried later");
}

Status Shop::MaintainLeases() {
  const int64_t now = clock_.NowMs();
  // This node's heartbeat: other nodes close its leases once it stops.
  if (now - last_heartbeat_ms_ >= std::min<int64_t>(1000, settings_.lease_timeout_ms / 3)) {
    storage::WriteBatch b;
    b.Put(Space::kMeta, AliveKey(settings_.node), std::to_string(now));
    RETURN_IF_ERROR(store_.Write(b));
    last_heartbeat_ms_ = now;
  }
  std::vector<std::string> sale_ids;
  {
    std::shared_lock lock(catalog_mu_);
    for (const auto& [id, _] : sales_) sale_ids.push_back(id);
  }
  std::map<std::string, int64_t> heard;  // node -> last heartbeat
  for (const auto& sale_id : sale_ids) {
    SaleRuntime* rt = Runtime(sale_id);
    // No lease of this node is half made meanwhile; a pull under way (which may wait
    // seconds on a slow region) does not hold this up.
    std::lock_guard leasing(rt->leasing_mu);
    std::set<std::string> mine;  // this node's leases still in use
    std::vector<Lease> settled;
    // Another node ran out while this one holds units: hand the lease back (the pool then
    // splits what is left between the nodes still selling).
    ASSIGN_OR_RETURN(auto release, store_.Get(Space::kMeta, ReleaseKey(sale_id)));
    int64_t asked_ms = 0;
    if (release) ParseInt(*release, &asked_ms);
    {
      std::lock_guard lock(rt->lease_mu);
      if (rt->lease && (now - rt->lease->used_ms >= settings_.lease_idle_ms ||
                        asked_ms > rt->lease->created_ms)) {
        // Unused for a while: its units may sell better on another node or region.
        rt->used_up.push_back(std::move(*rt->lease));
        rt->lease.reset();
        rt->remaining = 0;
      }
      if (rt->lease) mine.insert(rt->lease->id);
      for (auto it = rt->used_up.begin(); it != rt->used_up.end();) {
        if (it->pending->load() > 0) {
          mine.insert(it->id);
          ++it;
        } else {
          settled.push_back(std::move(*it));
          it = rt->used_up.erase(it);
        }
      }
    }
    for (const auto& l : settled) RETURN_IF_ERROR(CloseLease(sale_id, l.id, l.value));
    ASSIGN_OR_RETURN(auto leases, OpenLeases(sale_id));
    bool reclaimed = false;
    for (const auto& l : leases) {
      if (mine.contains(l.id)) continue;
      if (l.node != settings_.node) {
        if (!heard.contains(l.node)) {
          ASSIGN_OR_RETURN(auto beat, store_.Get(Space::kMeta, AliveKey(l.node)));
          int64_t at = 0;
          if (beat) ParseInt(*beat, &at);
          heard[l.node] = at;
        }
        if (now - heard[l.node] < settings_.lease_timeout_ms) continue;
      }
      // This node's lease from before a restart, or a silent node's.
      RETURN_IF_ERROR(CloseLease(sale_id, l.id, l.value));
      log::Info("lease_closed", {{"sale", sale_id}, {"node", l.node}});
      reclaimed = reclaimed || l.node != settings_.node;
    }
    if (reclaimed) {
      // The silent node's reservations expire here.
      std::vector<std::pair<int64_t, Due>> due;
      RETURN_IF_ERROR(store_.Scan(
          Space::kMeta, "ledger/" + sale_id + "/", [&](std::string_view k, std::string_view v) {
            auto f = SplitBars(v);
            int64_t pay_by = 0;
            if (f.size() < 3 || f[0] != "r" || !ParseInt(f[1], &pay_by)) return true;
            due.push_back(
                {pay_by, Due{sale_id, std::string(k.substr(k.rfind('/') + 1)), std::string(f[2])}});
            return true;
          }));
      std::lock_guard lock(due_mu_);
      for (auto& [t, d] : due) due_.emplace(t, std::move(d));
    }
  }
  return Status::Ok();
}

Result<Shop::Purchased> Shop::Purchase(const std::string& user_id, const std::string& sale_id,
                                       std::string_view idempotency_key) {
  return Await<Result<Purchased>>(
      [&](auto done) { PurchaseAsync(user_id, sale_id, idempotency_key, done); });
}

void Shop::PurchaseAsync(const std::string& user_id, const std::string& sale_id,
                         std::string_view idempotency_key,
                         std::function<void(Result<Purchased>)> done) {
  StartPurchase(user_id, sale_id, idempotency_key, Wait::kMay, done);
}

bool Shop::StartPurchase(const std::string& user_id, const std::string& sale_id,
                         std::string_view idempotency_key, Wait wait,
                         const std::function<void(Result<Purchased>)>& done) {
  const bool may_wait = wait == Wait::kMay;
  if (!settings_.home) {
    done(Error(Code::kWrongRegion, "purchases run in home regions"));
    return true;
  }
  // Not waiting, only a sale this thread has met (a sale it does not know may need a read).
  SaleRuntime* rt = may_wait ? LoadRuntime(sale_id) : RuntimeSeenByThisThread(sale_id);
  if (rt == nullptr) {
    if (!may_wait) return false;
    done(Error(Code::kNotFound, "no such sale"));
    return true;
  }
  if (!IsValidIdempotencyKey(idempotency_key)) {
    done(Error(Code::kInvalidField, "an Idempotency-Key header of 1 to 128 bytes is required"));
    return true;
  }
  const int64_t now = clock_.NowMs();
  // Held until the answer: the user's slot and the in-flight count.
  struct Hold {
    UserLock user;
    std::atomic<int64_t>& in_flight;
    ~Hold() { in_flight.fetch_sub(1); }
  };
  // Bounded work: past the limit the newest arrivals are turned away at once. A purchase
  // counts until its write is durable.
  if (in_flight_.fetch_add(1) >= settings_.max_in_flight) {
    in_flight_.fetch_sub(1);
    done(Error(Code::kOverloaded, "too many purchases in progress"));
    return true;
  }
  // Taken before anything is read, so a user's check and write are atomic on this node
  // (across nodes, the write expects what was read).
  std::shared_ptr<Hold> hold(new Hold{LockUser(user_id, wait), in_flight_});
  if (!hold->user.held()) return false;  // the buyer's earlier operation is still running
  // Each step that would wait comes before anything changes (without waiting, it answers
  // kWouldBlock and the purchase starts again on a worker).
  auto result = [&]() -> Result<std::optional<Purchased>> {
    const std::string idem_key =
        user_id + "/idem/" +
        crypto::Pseudonym(idempotency_key_, "idempotency", idempotency_key).substr(0, 32);
    ASSIGN_OR_RETURN(auto idem, store_.Read(Space::kCommerce, idem_key, wait));
    if (idem) {
      size_t nl = idem->find('\n');
      std::string earlier_sale = idem->substr(0, nl);
      if (earlier_sale != sale_id) {
        return Error(Code::kConflict, "this Idempotency-Key was used for another sale");
      }
      if (!may_wait) return Error(Code::kWouldBlock, "the earlier order is to be read");
      ASSIGN_OR_RETURN(auto order, LoadOrder(user_id, idem->substr(nl + 1)));
      if (!order) return Error(Code::kInternal, "idempotency entry without its order");
      return std::optional<Purchased>(Purchased{*order, false});
    }
    // After the idempotency check: a retried purchase gets its order even once the sale ends.
    if (now < rt->sale.starts_at_ms || now >= rt->sale.ends_at_ms) {
      return Error(Code::kNotOpen, "the sale is not open");
    }
    rt->last_demand_ms.store(now, std::memory_order_relaxed);
    ASSIGN_OR_RETURN(auto count_raw,
                     store_.Read(Space::kCommerce, CountKey(user_id, sale_id), wait));
    int64_t count = 0;
    if (count_raw) ParseInt(*count_raw, &count);
    if (count >= rt->sale.per_user_limit) {
      return Error(Code::kLimitReached, "the per-user limit of this sale is reached");
    }
    // Time first: the region's ledger, keyed by order id, grows at its end (a memtable insert
    // next to the last one, not a search), and ids still carry 56 random bits.
    Order o{fmt::format("o_{:011x}{}", std::max<int64_t>(now, 0), random_.Hex(7)),
            sale_id,
            rt->sale.sku,
            "reserved",
            now,
            now + rt->sale.payment_window_s * 1000};
    Result<std::string> sealed = std::string();
    storage::WriteBatch batch;
    auto seal = [&] {
      batch = OrderUpdate(user_id, o, &sealed, wait);
      return sealed.status();
    };
    // Without waiting the order is sealed before a unit is taken: a data key not in memory
    // leaves nothing to give back. (Waiting, a buyer who finds none left seals nothing.)
    if (!may_wait) RETURN_IF_ERROR(seal());
    // Take a slot of this node's lease. Out of slots, lease more from the region's pool,
    // and when the pool is empty pull units from the other regions (at most twice) before
    // answering sold out or, when units exist elsewhere but none came, "retry shortly".
    std::optional<Slot> slot;
    // Others may take the slots of a lease another buyer just made: try again while the
    // pool gives units (sold out is said only when it gives none).
    // A buyer who may get a unit is among the buyers (SoldOutNow) before the unit is taken,
    // so a retry that finds none left here goes the slow way and meets this purchase; one
    // who finds nothing to take is not added (the sold-out answers stay in memory).
    auto take = [&] {
      const bool some = rt->remaining.load() > 0;
      if (some) buyers_.Add(user_id);
      auto taken = TakeSlot(rt);
      if (taken && !some) buyers_.Add(user_id);
      return taken;
    };
    // Units that exist but are not here now are no "sold out": the buyer retries shortly,
    // and the next buyers need not look for them for a while.
    auto retry_shortly = [] {
      return Error(Code::kUnavailable, "the last units are elsewhere; retry shortly");
    };
    auto elsewhere = [&] {
      rt->elsewhere_until_ms = clock_.NowMs() + 100;
      return retry_shortly();
    };
    int pulls_taken_meanwhile = 0;
    for (int attempt = 0; !(slot = take()); ++attempt) {
      if (!may_wait) return Error(Code::kWouldBlock, "no unit in this node's lease");
      if (attempt >= 64) return Error(Code::kUnavailable, "the sale is busy; retry shortly");
      std::lock_guard pull_lock(rt->pull_mu);  // the first buyer leases, the others wait
      if (rt->remaining.load() > 0) continue;
      // Looked at once the lock is held: a buyer who waited for another's pull takes its word.
      if (clock_.NowMs() < rt->elsewhere_until_ms.load()) return retry_shortly();
      ASSIGN_OR_RETURN(int64_t units, LeaseMore(rt));
      if (units <= 0 && pull_) {
        const int64_t pulled = pull_(sale_id, true);
        // Whatever the pull says, units may have come to the pool meanwhile: its own grant,
        // or another node's, or a grant re-delivered by a donor.
        ASSIGN_OR_RETURN(units, LeaseMore(rt));
        if (units <= 0 && pulled != 0) {
          // Pulled, then leased by this region's other nodes or granted on meanwhile: look
          // again, once. Or units exist elsewhere but none came.
          if (pulled > 0 && ++pulls_taken_meanwhile < 2) continue;
          return elsewhere();
        }
      }
      if (units <= 0) {
        // Units on another node's lease are not sold out: that node is asked to hand its
        // lease back (it does within a second).
        ASSIGN_OR_RETURN(int64_t leased_elsewhere, FreeInOtherLeases(rt));
        if (leased_elsewhere > 0) {
          AskForLeases(sale_id);
          return elsewhere();
        }
        rt->empty_until_ms = clock_.NowMs() + 250;  // "sold out" from memory for a while
        return Error(Code::kSoldOut, "sold out");
      }
    }
    if (may_wait) {
      if (Status st = seal(); !st.ok()) {
        slot->pending->fetch_sub(1);
        return st;  // the slot stays free; its lease returns it
      }
    }
    const std::string unit = UnitKey(sale_id, slot->lease_id, slot->index);
    batch.Put(Space::kMeta, unit, o.order_id);
    batch.Expect(Space::kMeta, unit, std::nullopt);  // its lease was not closed meanwhile
    batch.Put(Space::kMeta, LedgerKey(sale_id, o.order_id),
              LedgerValue(kReserved, o.pay_by_ms, user_id));
    batch.Put(Space::kCommerce, idem_key, sale_id + "\n" + o.order_id);
    batch.Expect(Space::kCommerce, idem_key, std::nullopt);
    batch.Put(Space::kCommerce, CountKey(user_id, sale_id), std::to_string(count + 1));
    batch.Expect(Space::kCommerce, CountKey(user_id, sale_id), count_raw);
    audit::EntryText entry = OrderEntry("order.create", user_id, o);
    audit_.CommitAsync(std::move(batch), {std::move(entry)},
                       [this, rt, slot = std::move(*slot), user_id, o = std::move(o), hold, done](
                           Status st, uint64_t) mutable {
                         slot.pending->fetch_sub(1);
                         if (!st.ok()) {
                           if (st.code() == Code::kConflict) {
                             // Another node closed this lease, or served the same buyer at once:
                             // the buyer's retry (same Idempotency-Key) gets the one order. Stop
                             // selling from the lease; the upkeep closes it once it is settled.
                             std::lock_guard lock(rt->lease_mu);
                             if (rt->lease && rt->lease->id == slot.lease_id) {
                               rt->used_up.push_back(std::move(*rt->lease));
                               rt->lease.reset();
                               rt->remaining = 0;
                             }
                             st = Error(Code::kUnavailable,
                                        "the purchase met a concurrent change; retry");
                           }
                           hold.reset();
                           return done(st);
                         }
                         {
                           std::lock_guard lock(due_mu_);
                           due_.emplace(o.pay_by_ms, Due{o.sale_id, o.order_id, user_id});
                         }
                         hold.reset();  // the user's next operation may start
                         done(Purchased{std::move(o), true});
                       });
    return std::optional<Purchased>();  // answered by the commit
  }();
  if (!result.ok()) {
    hold.reset();
    if (result.status().code() == Code::kWouldBlock && !may_wait) return false;  // unchanged
    done(result.status());
    return true;
  }
  if (result->has_value()) {
    hold.reset();
    done(std::move(**result));
  }
  return true;
}

storage::WriteBatch Shop::OrderUpdate(const std::string& user_id, const Order& o,
                                      Result<std::string>* sealed, Wait wait) {
  const std::string key = OrderKey(user_id, o.order_id);
  *sealed = codec_.Seal({settings_.region, user_id, "order", key, 0}, OrderText(o), wait);
  storage::WriteBatch b;
  if (sealed->ok()) b.Put(Space::kCommerce, key, **sealed);
  return b;
}

Result<std::optional<Order>> Shop::LoadOrder(const std::string& user_id,
                                             const std::string& order_id) {
  const std::string key = OrderKey(user_id, order_id);
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kCommerce, key));
  if (!stored) return std::optional<Order>();
  ASSIGN_OR_RETURN(auto plain, codec_.Open({settings_.region, user_id, "order", key, 0}, *stored));
  ASSIGN_OR_RETURN(auto j, ParseJsonObject(plain));
  ASSIGN_OR_RETURN(auto o, OrderFromJson(j));
  return std::optional<Order>(std::move(o));
}

Result<Order> Shop::Pay(const std::string& user_id, const std::string& order_id) {
  if (!IsSafeId(order_id)) return Error(Code::kNotFound, "no such order");
  Due due;
  {
    UserLock user_lock = LockUser(user_id);
    ASSIGN_OR_RETURN(auto order, LoadOrder(user_id, order_id));
    if (!order) return Error(Code::kNotFound, "no such order");
    if (order->state == "paid") return *order;  // paying twice is harmless
    if (order->state == "expired") return Error(Code::kExpired, "the reservation expired");
    if (clock_.NowMs() < order->pay_by_ms) {
      order->state = "paid";
      Result<std::string> sealed = std::string();
      storage::WriteBatch b = OrderUpdate(user_id, *order, &sealed);
      if (!sealed.ok()) return sealed.status();
      const std::string ledger = LedgerKey(order->sale_id, order_id);
      b.Put(Space::kMeta, ledger, LedgerValue(kPaid, order->pay_by_ms, user_id));
      // Still reserved: another node may not have expired it meanwhile.
      b.Expect(Space::kMeta, ledger, LedgerValue(kReserved, order->pay_by_ms, user_id));
      Status st = audit_.Commit(std::move(b), {OrderEntry("order.pay", user_id, *order)});
      if (st.code() == Code::kConflict) {
        return Error(Code::kUnavailable, "the order changed meanwhile; retry");
      }
      RETURN_IF_ERROR(st);
      return *order;
    }
    due = Due{order->sale_id, order_id, user_id};
  }
  // Past the window: expire it now (its unit goes back) and say so.
  RETURN_IF_ERROR(ExpireOne(due));
  return Error(Code::kExpired, "the reservation expired");
}

Status Shop::ExpireOne(const Due& due) {
  UserLock user_lock = LockUser(due.user_id);
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto order, LoadOrder(due.user_id, due.order_id));
    if (!order || order->state != "reserved") return Status::Ok();  // paid or done meanwhile
    order->state = "expired";
    Result<std::string> sealed = std::string();
    storage::WriteBatch b = OrderUpdate(due.user_id, *order, &sealed);
    if (!sealed.ok()) return sealed.status();
    const std::string ledger = LedgerKey(due.sale_id, due.order_id);
    b.Put(Space::kMeta, ledger, LedgerValue(kExpired, order->pay_by_ms, due.user_id));
    b.Expect(Space::kMeta, ledger, LedgerValue(kReserved, order->pay_by_ms, due.user_id));
    // The buyer may try again: the unit they held no longer counts against their limit.
    const std::string count_key = CountKey(due.user_id, due.sale_id);
    ASSIGN_OR_RETURN(auto count_raw, store_.Get(Space::kCommerce, count_key));
    int64_t count = 0;
    if (count_raw) ParseInt(*count_raw, &count);
    b.Put(Space::kCommerce, count_key, std::to_string(std::max<int64_t>(0, count - 1)));
    b.Expect(Space::kCommerce, count_key, count_raw);
    RETURN_IF_ERROR(AddToPool(due.sale_id, 1, &b));  // durable first, then back on sale
    Status st = audit_.Commit(std::move(b), {OrderEntry("order.expire", due.user_id, *order)});
    if (st.ok()) {
      if (SaleRuntime* rt = Runtime(due.sale_id)) BackOnSale(rt, 1);
    }
    if (st.code() != Code::kConflict) return st;  // else the pool or the order moved: again
  }
  return Error(Code::kUnavailable, "the reservation could not be expired yet");
}

Result<int64_t> Shop::ExpireDue() {
  const int64_t now = clock_.NowMs();
  std::vector<Due> ready;
  {
    std::lock_guard lock(due_mu_);
    auto end = due_.upper_bound(now);
    for (auto it = due_.begin(); it != end; ++it) ready.push_back(it->second);
    due_.erase(due_.begin(), end);
  }
  int64_t n = 0;
  for (const auto& d : ready) {
    Status st = ExpireOne(d);
    if (!st.ok()) {
      log::Error("expiry_failed", {{"error", st.message()}});
      std::lock_guard lock(due_mu_);
      due_.emplace(now + 1000, d);  // try again shortly
      continue;
    }
    ++n;
  }
  return n;
}

void Shop::SweepLoop() {
  std::unique_lock lock(sweep_mu_);
  int64_t last_upkeep = 0;
  while (!stopping_) {
    sweep_cv_.wait_for(lock, std::chrono::milliseconds(settings_.sweep_interval_ms),
                       [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (void)ExpireDue();
    if (clock_.NowMs() - last_upkeep >= 500) {
      last_upkeep = clock_.NowMs();
      if (Status st = MaintainLeases(); !st.ok()) {
        log::Error("lease_upkeep_failed", {{"error", st.message()}});
      }
    }
    lock.lock();
  }
}

Result<std::vector<Order>> Shop::OrdersOf(const std::string& user_id) {
  std::vector<std::string> ids;
  RETURN_IF_ERROR(store_.Scan(Space::kCommerce, user_id + "/order/", [&](std::string_view k, auto) {
    ids.emplace_back(k.substr(k.rfind('/') + 1));
    return true;
  }));
  std::vector<Order> out;
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(auto o, LoadOrder(user_id, id));
    if (o) out.push_back(std::move(*o));
  }
  std::sort(out.begin(), out.end(),
            [](const Order& a, const Order& b) { return a.created_ms < b.created_ms; });
  RETURN_IF_ERROR(audit_.Commit({}, {audit::MakeEntry("order.list", settings_.region,
                                                      audit::SubjectPseudonym(names_key_, user_id),
                                                      clock_.NowMs(), {{"orders", out.size()}})}));
  return out;
}

Result<int64_t> Shop::Donate(const std::string& sale_id, const std::string& to, int64_t units,
                             const std::string& tid, bool asker_out) {
  SaleRuntime* rt = LoadRuntime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  if (!IsSafeId(tid) || !IsSafeId(to) || units <= 0) {
    return Error(Code::kInvalidField, "bad transfer request");
  }
  const std::string key = "xfer/" + sale_id + "/" + tid;
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto earlier, store_.Get(Space::kMeta, key));
    if (earlier) {  // a retry, perhaps to another node of this region
      auto f = SplitBars(*earlier);
      int64_t granted = 0;
      if (f.size() < 3 || f[0] != "out" || !ParseInt(f[2], &granted)) {
        return Error(Code::kConflict, "this transfer id is taken");
      }
      return granted;
    }
    // While this region has buyers of its own, it keeps half of its pool; once they are
    // gone, everything may go to where the demand is. An asker that is out gets the odd
    // unit (its buyer would hear "sold out"); a low-water top-up does not (a last unit would
    // swing back and forth between two regions that both have buyers).
    const bool local_demand = clock_.NowMs() - rt->last_demand_ms.load() < 2000;
    ASSIGN_OR_RETURN(int64_t pool, Pool(sale_id));
    if (pool < units && attempt == 0) {
      // Units on leases may be asked for: this node's go back to the pool now, the other
      // nodes' within a second.
      RETURN_IF_ERROR(ReturnLeases(rt));
      AskForLeases(sale_id);
      ASSIGN_OR_RETURN(pool, Pool(sale_id));
    }
    const int64_t kept = local_demand ? (asker_out ? pool / 2 : (pool + 1) / 2) : 0;
    const int64_t grant = std::min(units, pool - kept);
    if (grant <= 0) return int64_t{0};
    storage::WriteBatch b;
    RETURN_IF_ERROR(AddToPool(sale_id, -grant, &b));  // lowered durably before granting
    b.Put(Space::kMeta, key, fmt::format("out|{}|{}|0", to, grant));
    b.Expect(Space::kMeta, key, std::nullopt);
    Status st = store_.Write(b);
    if (st.ok()) return grant;
    if (st.code() != Code::kConflict) return st;
  }
  return Error(Code::kUnavailable, "the sale's stock is busy; retry");
}

Status Shop::ApplyGrant(const std::string& sale_id, const std::string& from, int64_t units,
                        const std::string& tid) {
  SaleRuntime* rt = LoadRuntime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  if (!IsSafeId(tid) || !IsSafeId(from) || units <= 0) {
    return Error(Code::kInvalidField, "bad transfer");
  }
  const std::string key = "xfer/" + sale_id + "/" + tid;
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto earlier, store_.Get(Space::kMeta, key));
    if (earlier) return Status::Ok();  // applied before (by any node): idempotent
    storage::WriteBatch b;
    RETURN_IF_ERROR(AddToPool(sale_id, units, &b));
    b.Put(Space::kMeta, key, fmt::format("in|{}|{}", from, units));
    b.Expect(Space::kMeta, key, std::nullopt);
    Status st = store_.Write(b);
    if (st.code() != Code::kConflict) {
      if (st.ok()) BackOnSale(rt, units);
      return st;
    }
  }
  return Error(Code::kUnavailable, "the sale's stock is busy; retry");
}

Status Shop::AckGrant(const std::string& sale_id, const std::string& tid) {
  if (LoadRuntime(sale_id) == nullptr) return Error(Code::kNotFound, "no such sale");
  if (!IsSafeId(tid)) return Error(Code::kInvalidField, "bad transfer");
  const std::string key = "xfer/" + sale_id + "/" + tid;
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, key));
  if (!stored) return Status::Ok();
  auto f = SplitBars(*stored);
  if (f.size() != 4 || f[0] != "out" || f[3] == "1") return Status::Ok();
  storage::WriteBatch b;
  b.Put(Space::kMeta, key, fmt::format("out|{}|{}|1", f[1], f[2]));
  return store_.Write(b);
}

std::vector<PendingGrant> Shop::UnackedGrants() {
  std::vector<std::string> ids;
  {
    std::shared_lock lock(catalog_mu_);
    for (const auto& [id, _] : sales_) ids.push_back(id);
  }
  std::vector<PendingGrant> out;
  for (const auto& id : ids) {
    auto t = ScanTransfers(id);  // whichever node of this region made the grant
    if (t.ok()) out.insert(out.end(), t->unacked.begin(), t->unacked.end());
  }
  return out;
}

void Shop::TopUpLowStock() {
  if (!pull_) return;
  for (const auto& sale_id : OpenSales()) {
    SaleRuntime* rt = Runtime(sale_id);
    const int64_t now = clock_.NowMs();
    const int64_t low_water = std::max<int64_t>(1, rt->sale.stock / 50);
    const int64_t elsewhere = rt->elsewhere.load();  // the rest of the region, as last read
    if (elsewhere == INT64_MAX || rt->remaining.load() + elsewhere > low_water ||
        now - rt->last_demand_ms.load() >= 2000) {
      continue;
    }
    // Not alongside a buyer's pull on this node (that one is the top-up): both would ask
    // the same donor, one would be given everything and the other would tell its buyer
    // "retry" while the units arrive here.
    std::unique_lock pulling(rt->pull_mu, std::try_to_lock);
    if (pulling.owns_lock()) (void)pull_(sale_id, false);
  }
}

Result<Json> Shop::SnapshotUser(const std::string& user_id) {
  UserLock user_lock = LockUser(user_id);
  Json orders = Json::array();
  Json rows = Json::object();  // idempotency entries and purchase counts, verbatim
  const std::string prefix = user_id + "/";
  const std::string order_prefix = prefix + "order/";
  std::vector<std::string> order_ids;
  RETURN_IF_ERROR(
      store_.Scan(Space::kCommerce, prefix, [&](std::string_view k, std::string_view v) {
        if (k.substr(0, order_prefix.size()) == order_prefix) {
          order_ids.emplace_back(k.substr(order_prefix.size()));
        } else {
          rows[std::string(k.substr(prefix.size()))] = std::string(v);
        }
        return true;
      }));
  for (const auto& id : order_ids) {  // scan order: sorted by id
    ASSIGN_OR_RETURN(auto o, LoadOrder(user_id, id));
    if (o) orders.push_back(OrderJson(*o));
  }
  return Json{{"orders", std::move(orders)}, {"rows", std::move(rows)}};
}

Status Shop::ImportUser(const std::string& user_id, const Json& snapshot) {
  auto orders = snapshot.find("orders");
  auto rows = snapshot.find("rows");
  if (orders == snapshot.end() || !orders->is_array() || rows == snapshot.end() ||
      !rows->is_object()) {
    return Error(Code::kInvalidField, "malformed order snapshot");
  }
  UserLock user_lock = LockUser(user_id);
  storage::WriteBatch b;
  RETURN_IF_ERROR(store_.Scan(Space::kCommerce, user_id + "/", [&](std::string_view k, auto) {
    b.Delete(Space::kCommerce, std::string(k));  // an earlier attempt's rows
    return true;
  }));
  for (const auto& j : *orders) {
    ASSIGN_OR_RETURN(auto o, OrderFromJson(j));
    if (!IsSafeId(o.order_id)) return Error(Code::kInvalidField, "malformed order in snapshot");
    Result<std::string> sealed = std::string();
    storage::WriteBatch one = OrderUpdate(user_id, o, &sealed);
    if (!sealed.ok()) return sealed.status();
    b.Append(one);
  }
  for (const auto& [k, v] : rows->items()) {
    if (!v.is_string() || k.find("order/") == 0) {
      return Error(Code::kInvalidField, "malformed row in snapshot");
    }
    b.Put(Space::kCommerce, user_id + "/" + k, v.get<std::string>());
  }
  buyers_.Add(user_id);  // before the entries exist, so no answer from memory skips them
  if (b.empty()) return Status::Ok();
  return store_.Write(b);
}

Result<bool> Shop::HasReservation(const std::string& user_id) {
  bool reserved = false;
  std::vector<std::string> ids;
  const std::string prefix = user_id + "/order/";
  RETURN_IF_ERROR(store_.Scan(Space::kCommerce, prefix, [&](std::string_view k, auto) {
    ids.emplace_back(k.substr(prefix.size()));
    return true;
  }));
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(auto o, LoadOrder(user_id, id));
    if (o && o->state == "reserved") reserved = true;
  }
  return reserved;
}

Result<int64_t> Shop::DeleteUserData(const std::string& user_id) {
  UserLock user_lock = LockUser(user_id);
  storage::WriteBatch b;
  int64_t orders = 0;
  const std::string order_prefix = user_id + "/order/";
  RETURN_IF_ERROR(store_.Scan(Space::kCommerce, user_id + "/", [&](std::string_view k, auto) {
    if (k.substr(0, order_prefix.size()) == order_prefix) ++orders;
    b.Delete(Space::kCommerce, std::string(k));
    return true;
  }));
  RETURN_IF_ERROR(
      audit_.Commit(std::move(b), {audit::MakeEntry("order.delete", settings_.region,
                                                    audit::SubjectPseudonym(names_key_, user_id),
                                                    clock_.NowMs(), {{"orders", orders}})}));
  return orders;
}

}  // namespace meridian::shop
