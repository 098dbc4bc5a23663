#include "shop/shop.h"

#include <charconv>
#include <ctime>

#include <fmt/format.h>

#include "common/await.h"
#include "common/log.h"
#include "crypto/crypto.h"

namespace meridian::shop {
namespace {
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
      settings_(std::move(settings)) {}

Json Shop::OrderEntry(std::string_view op, const std::string& user_id, const Order& o) const {
  return audit::MakeEntry(op, settings_.region, audit::SubjectPseudonym(names_key_, user_id),
                          clock_.NowMs(), {{"order_id", o.order_id}, {"sale_id", o.sale_id}});
}

Shop::~Shop() { Stop(); }

Shop::UserLock::UserLock(UserStripe& stripe, std::string user_id)
    : stripe_(&stripe), user_id_(std::move(user_id)) {
  std::unique_lock lock(stripe_->mu);
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

Shop::UserLock Shop::LockUser(const std::string& user_id) {
  return UserLock(stripes_[std::hash<std::string_view>{}(user_id) % stripes_.size()], user_id);
}

Shop::SaleRuntime* Shop::Runtime(std::string_view sale_id) const {
  std::shared_lock lock(catalog_mu_);
  auto it = sales_.find(sale_id);
  return it == sales_.end() ? nullptr : it->second.get();
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
    auto j = ParseJsonObject(v);
    if (!j.ok()) return true;
    std::vector<std::string> regions;
    const Json allocation = j->value("allocation", Json::object());
    for (const auto& [r, _] : allocation.items()) regions.push_back(r);
    auto s = ParseSale(*j, regions);
    if (s.ok()) sales.push_back(*s);
    return true;
  }));
  for (const auto& s : sales) RETURN_IF_ERROR(PutSale(s));
  std::lock_guard lock(sweep_mu_);
  stopping_ = false;
  if (settings_.home && !sweeper_.joinable()) sweeper_ = std::thread([this] { SweepLoop(); });
  return Status::Ok();
}

void Shop::Stop() {
  {
    std::lock_guard lock(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
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
  // This region's ledger: every order that holds or held one of its units.
  int64_t reserved = 0, paid = 0, expired = 0;
  std::vector<std::pair<int64_t, Due>> due;
  if (settings_.home) {
    RETURN_IF_ERROR(store_.Scan(
        Space::kMeta, "ledger/" + s.id + "/", [&](std::string_view k, std::string_view v) {
          size_t a = v.find('|'), b = v.find('|', a + 1);
          if (a == std::string_view::npos || b == std::string_view::npos) return true;
          int64_t pay_by = 0;
          ParseInt(v.substr(a + 1, b - a - 1), &pay_by);
          std::string oid(k.substr(k.rfind('/') + 1));
          if (v[0] == kReserved) {
            ++reserved;
            due.push_back({pay_by, Due{s.id, oid, std::string(v.substr(b + 1))}});
          } else if (v[0] == kPaid) {
            ++paid;
          } else {
            ++expired;
          }
          return true;
        }));
  }
  auto it = s.allocation.find(settings_.region);
  int64_t quota = settings_.home && it != s.allocation.end() ? it->second : 0;
  if (settings_.home) {
    RETURN_IF_ERROR(store_.Scan(
        Space::kMeta, "xfer/" + s.id + "/", [&](std::string_view k, std::string_view v) {
          // "out|<to>|<units>|<acked>" at a donor, "in|<from>|<units>" at a receiver.
          std::string tid(k.substr(k.rfind('/') + 1));
          std::vector<std::string_view> f;
          for (size_t start = 0;;) {
            size_t bar = v.find('|', start);
            f.push_back(v.substr(start, bar - start));
            if (bar == std::string_view::npos) break;
            start = bar + 1;
          }
          int64_t units = 0;
          if (f.size() < 3 || !ParseInt(f[2], &units)) return true;
          if (f[0] == "out") {
            quota -= units;
            rt->given[tid] = units;
            if (f.size() < 4 || f[3] != "1") {
              rt->unacked[tid] = PendingGrant{s.id, tid, std::string(f[1]), units};
            }
          } else if (f[0] == "in") {
            quota += units;
            rt->applied.insert(tid);
          }
          return true;
        }));
  }
  rt->quota = quota;
  rt->reserved = reserved;
  rt->paid = paid;
  rt->expired = expired;
  rt->remaining = quota - reserved - paid;
  storage::WriteBatch b;
  b.Put(Space::kPublic, SaleKey(s.id), def);
  RETURN_IF_ERROR(store_.Write(b));
  {
    std::unique_lock lock(catalog_mu_);
    sales_.emplace(s.id, std::move(rt));
  }
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

std::optional<Sale> Shop::FindSale(std::string_view id) const {
  auto* rt = Runtime(id);
  if (rt == nullptr) return std::nullopt;
  return rt->sale;
}

bool Shop::SoldOutHere(std::string_view sale_id) const {
  auto* rt = Runtime(sale_id);
  return rt != nullptr && rt->remaining.load(std::memory_order_relaxed) <= 0 &&
         rt->peer_remaining.load(std::memory_order_relaxed) <= 0;
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

Result<QuotaView> Shop::Quota(std::string_view sale_id) const {
  auto* rt = Runtime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  auto it = rt->sale.allocation.find(settings_.region);
  QuotaView v;
  (void)it;
  v.quota = rt->quota;
  v.reserved = rt->reserved;
  v.paid = rt->paid;
  v.expired = rt->expired;
  v.remaining = rt->remaining;
  std::lock_guard lock(rt->transfers_mu);
  for (const auto& [tid, g] : rt->unacked) v.unacked_out[tid] = g.units;
  v.applied_in.assign(rt->applied.begin(), rt->applied.end());
  return v;
}

Result<Shop::Purchased> Shop::Purchase(const std::string& user_id, const std::string& sale_id,
                                       std::string_view idempotency_key) {
  return Await<Result<Purchased>>(
      [&](auto done) { PurchaseAsync(user_id, sale_id, idempotency_key, done); });
}

void Shop::PurchaseAsync(const std::string& user_id, const std::string& sale_id,
                         std::string_view idempotency_key,
                         std::function<void(Result<Purchased>)> done) {
  if (!settings_.home) return done(Error(Code::kWrongRegion, "purchases run in home regions"));
  SaleRuntime* rt = Runtime(sale_id);
  if (rt == nullptr) return done(Error(Code::kNotFound, "no such sale"));
  if (idempotency_key.empty() || idempotency_key.size() > 128) {
    return done(
        Error(Code::kInvalidField, "an Idempotency-Key header of 1 to 128 bytes is required"));
  }
  const int64_t now = clock_.NowMs();
  // Bounded work: past the limit the newest arrivals are turned away at once. A purchase
  // counts until its write is durable.
  if (in_flight_.fetch_add(1) >= settings_.max_in_flight) {
    in_flight_.fetch_sub(1);
    return done(Error(Code::kOverloaded, "too many purchases in progress"));
  }
  // Held until the answer: the user's slot and the in-flight count.
  struct Hold {
    UserLock user;
    std::atomic<int64_t>& in_flight;
    ~Hold() { in_flight.fetch_sub(1); }
  };
  // Taken before anything is read, so a user's check and write are atomic.
  std::shared_ptr<Hold> hold(new Hold{LockUser(user_id), in_flight_});
  auto result = [&]() -> Result<std::optional<Purchased>> {
    const std::string idem_key =
        user_id + "/idem/" +
        crypto::Pseudonym(idempotency_key_, "idempotency", idempotency_key).substr(0, 32);
    ASSIGN_OR_RETURN(auto idem, store_.Get(Space::kCommerce, idem_key));
    if (idem) {
      size_t nl = idem->find('\n');
      std::string earlier_sale = idem->substr(0, nl);
      if (earlier_sale != sale_id) {
        return Error(Code::kConflict, "this Idempotency-Key was used for another sale");
      }
      ASSIGN_OR_RETURN(auto order, LoadOrder(user_id, idem->substr(nl + 1)));
      if (!order) return Error(Code::kInternal, "idempotency entry without its order");
      return std::optional<Purchased>(Purchased{*order, false});
    }
    // After the idempotency check: a retried purchase gets its order even once the sale ends.
    if (now < rt->sale.starts_at_ms || now >= rt->sale.ends_at_ms) {
      return Error(Code::kNotOpen, "the sale is not open");
    }
    rt->last_demand_ms.store(now, std::memory_order_relaxed);
    ASSIGN_OR_RETURN(auto count_raw, store_.Get(Space::kCommerce, CountKey(user_id, sale_id)));
    int64_t count = 0;
    if (count_raw) ParseInt(*count_raw, &count);
    if (count >= rt->sale.per_user_limit) {
      return Error(Code::kLimitReached, "the per-user limit of this sale is reached");
    }
    // Take a unit: a lock-free decrement that never goes below zero. Out of local units,
    // pull some from the other regions once before answering sold out.
    for (int attempt = 0;; ++attempt) {
      int64_t left = rt->remaining.load();
      while (left > 0 && !rt->remaining.compare_exchange_weak(left, left - 1)) {
      }
      if (left > 0) break;
      if (attempt > 0 || !pull_) return Error(Code::kSoldOut, "sold out");
      std::lock_guard pull_lock(rt->pull_mu);  // the first buyer pulls, the others wait
      if (rt->remaining.load() <= 0 && pull_(sale_id) <= 0) {
        return Error(Code::kSoldOut, "sold out");
      }
    }

    Order o{"o_" + random_.Hex(12),
            sale_id,
            rt->sale.sku,
            "reserved",
            now,
            now + rt->sale.payment_window_s * 1000};
    Result<std::string> sealed = std::string();
    storage::WriteBatch batch = OrderUpdate(user_id, o, &sealed);
    if (!sealed.ok()) {
      rt->remaining.fetch_add(1);
      return sealed.status();
    }
    batch.Put(Space::kMeta, LedgerKey(sale_id, o.order_id),
              LedgerValue(kReserved, o.pay_by_ms, user_id));
    batch.Put(Space::kCommerce, idem_key, sale_id + "\n" + o.order_id);
    batch.Put(Space::kCommerce, CountKey(user_id, sale_id), std::to_string(count + 1));
    Json entry = OrderEntry("order.create", user_id, o);
    audit_.CommitAsync(
        std::move(batch), {std::move(entry)},
        [this, rt, user_id, o = std::move(o), hold, done](Status st, uint64_t) mutable {
          if (!st.ok()) {
            rt->remaining.fetch_add(1);
            hold.reset();
            return done(st);
          }
          rt->reserved.fetch_add(1);
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
    return done(result.status());
  }
  if (result->has_value()) {
    hold.reset();
    done(std::move(**result));
  }
}

storage::WriteBatch Shop::OrderUpdate(const std::string& user_id, const Order& o,
                                      Result<std::string>* sealed) {
  const std::string key = OrderKey(user_id, o.order_id);
  *sealed = codec_.Seal({settings_.region, user_id, "order", key, 0}, DumpJson(OrderJson(o)));
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
      SaleRuntime* rt = Runtime(order->sale_id);
      order->state = "paid";
      Result<std::string> sealed = std::string();
      storage::WriteBatch b = OrderUpdate(user_id, *order, &sealed);
      if (!sealed.ok()) return sealed.status();
      b.Put(Space::kMeta, LedgerKey(order->sale_id, order_id),
            LedgerValue(kPaid, order->pay_by_ms, user_id));
      RETURN_IF_ERROR(audit_.Commit(std::move(b), {OrderEntry("order.pay", user_id, *order)}));
      if (rt != nullptr) {
        rt->reserved.fetch_sub(1);
        rt->paid.fetch_add(1);
      }
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
  ASSIGN_OR_RETURN(auto order, LoadOrder(due.user_id, due.order_id));
  if (!order || order->state != "reserved") return Status::Ok();  // paid or done meanwhile
  order->state = "expired";
  Result<std::string> sealed = std::string();
  storage::WriteBatch b = OrderUpdate(due.user_id, *order, &sealed);
  if (!sealed.ok()) return sealed.status();
  b.Put(Space::kMeta, LedgerKey(due.sale_id, due.order_id),
        LedgerValue(kExpired, order->pay_by_ms, due.user_id));
  // The buyer may try again: the unit they held no longer counts against their limit.
  ASSIGN_OR_RETURN(auto count_raw,
                   store_.Get(Space::kCommerce, CountKey(due.user_id, due.sale_id)));
  int64_t count = 0;
  if (count_raw) ParseInt(*count_raw, &count);
  b.Put(Space::kCommerce, CountKey(due.user_id, due.sale_id),
        std::to_string(std::max<int64_t>(0, count - 1)));
  RETURN_IF_ERROR(audit_.Commit(std::move(b), {OrderEntry("order.expire", due.user_id, *order)}));
  if (SaleRuntime* rt = Runtime(due.sale_id)) {
    rt->reserved.fetch_sub(1);
    rt->expired.fetch_add(1);
    rt->remaining.fetch_add(1);  // durable first, then back on sale
  }
  return Status::Ok();
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
  while (!stopping_) {
    sweep_cv_.wait_for(lock, std::chrono::milliseconds(settings_.sweep_interval_ms),
                       [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (void)ExpireDue();
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
                             const std::string& tid) {
  SaleRuntime* rt = Runtime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  if (!IsSafeId(tid) || !IsSafeId(to) || units <= 0) {
    return Error(Code::kInvalidField, "bad transfer request");
  }
  std::lock_guard lock(rt->transfers_mu);
  if (auto it = rt->given.find(tid); it != rt->given.end()) return it->second;  // a retry
  // While this region has buyers of its own, it keeps half of what is left (rounded up);
  // once they are gone, everything may go to where the demand is.
  const bool local_demand = clock_.NowMs() - rt->last_demand_ms.load() < 2000;
  int64_t left = rt->remaining.load();
  int64_t grant = 0;
  do {
    grant = std::min(units, local_demand ? left / 2 : left);
    if (grant <= 0) return int64_t{0};
  } while (!rt->remaining.compare_exchange_weak(left, left - grant));
  storage::WriteBatch b;
  b.Put(Space::kMeta, "xfer/" + sale_id + "/" + tid, fmt::format("out|{}|{}|0", to, grant));
  Status st = store_.Write(b);
  if (!st.ok()) {
    rt->remaining.fetch_add(grant);
    return st;
  }
  rt->quota.fetch_sub(grant);
  rt->given[tid] = grant;
  rt->unacked[tid] = PendingGrant{sale_id, tid, to, grant};
  return grant;
}

Status Shop::ApplyGrant(const std::string& sale_id, const std::string& from, int64_t units,
                        const std::string& tid) {
  SaleRuntime* rt = Runtime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  if (!IsSafeId(tid) || !IsSafeId(from) || units <= 0) {
    return Error(Code::kInvalidField, "bad transfer");
  }
  std::lock_guard lock(rt->transfers_mu);
  if (rt->applied.count(tid)) return Status::Ok();  // applied before: idempotent
  storage::WriteBatch b;
  b.Put(Space::kMeta, "xfer/" + sale_id + "/" + tid, fmt::format("in|{}|{}", from, units));
  RETURN_IF_ERROR(store_.Write(b));
  rt->applied.insert(tid);
  rt->quota.fetch_add(units);
  rt->remaining.fetch_add(units);
  return Status::Ok();
}

Status Shop::AckGrant(const std::string& sale_id, const std::string& tid) {
  SaleRuntime* rt = Runtime(sale_id);
  if (rt == nullptr) return Error(Code::kNotFound, "no such sale");
  std::lock_guard lock(rt->transfers_mu);
  auto it = rt->unacked.find(tid);
  if (it == rt->unacked.end()) return Status::Ok();
  storage::WriteBatch b;
  b.Put(Space::kMeta, "xfer/" + sale_id + "/" + tid,
        fmt::format("out|{}|{}|1", it->second.to, it->second.units));
  RETURN_IF_ERROR(store_.Write(b));
  rt->unacked.erase(it);
  return Status::Ok();
}

std::vector<PendingGrant> Shop::UnackedGrants() const {
  std::vector<PendingGrant> out;
  std::shared_lock lock(catalog_mu_);
  for (const auto& [_, rt] : sales_) {
    std::lock_guard tl(rt->transfers_mu);
    for (const auto& [tid, g] : rt->unacked) out.push_back(g);
  }
  return out;
}

std::vector<std::string> Shop::SalesNeedingStock() const {
  const int64_t now = clock_.NowMs();
  std::vector<std::string> out;
  std::shared_lock lock(catalog_mu_);
  for (const auto& [id, rt] : sales_) {
    if (now < rt->sale.starts_at_ms || now >= rt->sale.ends_at_ms) continue;
    const int64_t low_water = std::max<int64_t>(1, rt->sale.stock / 50);
    if (rt->remaining.load() <= low_water && now - rt->last_demand_ms.load() < 2000) {
      out.push_back(id);
    }
  }
  return out;
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
