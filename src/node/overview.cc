#include "node/overview.h"

#include <algorithm>
#include <set>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "node/rebalancer.h"
#include "policy/policy.h"

namespace meridian::node {
namespace {

using namespace std::chrono_literals;

// Typed reads of parts that other regions sent: a field of the wrong type reads as the
// default instead of throwing (nlohmann's value() throws on a type mismatch).
int64_t IntOr(const Json& j, std::string_view key, int64_t def = 0) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}
double NumOr(const Json& j, std::string_view key, double def = 0) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : def;
}
std::string StrOr(const Json& j, std::string_view key, std::string def = {}) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}
bool BoolOr(const Json& j, std::string_view key, bool def = false) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}
Json ObjOr(const Json& j, std::string_view key) {
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : Json::object();
}
Json ArrOr(const Json& j, std::string_view key) {
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : Json::array();
}

// A closed sale stays on the console this long after this node last saw it open.
constexpr int64_t kRecentSaleMs = 3600'000;
// Finished migrations listed besides the running ones.
constexpr size_t kRecentMigrations = 5;

}  // namespace

Json Throttled::Get(const std::function<Json()>& compute) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  const auto max_age = std::max<std::chrono::steady_clock::duration>(1s, cost_ * 10);
  if (at_ != std::chrono::steady_clock::time_point{} && now - at_ < max_age) return value_;
  value_ = compute();
  at_ = std::chrono::steady_clock::now();
  cost_ = at_ - now;
  return value_;
}

Json Overview::Checkpoint() {
  // The latest signed note: "<origin>\n<size>\n<root>\n\n" then one signature line per
  // signer ("— <name> <base64>"), the region's own first, then its witnesses.
  auto note = s_.audit.Latest();
  if (!note.ok()) return {{"error", note.status().message()}};
  std::vector<std::string> lines;
  std::string_view rest = *note;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    lines.emplace_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  if (lines.size() < 3) return {{"error", "malformed checkpoint"}};
  int64_t size = 0;
  for (char ch : lines[1]) {
    if (ch < '0' || ch > '9') return {{"error", "malformed checkpoint"}};
    size = size * 10 + (ch - '0');
  }
  Json witnesses = Json::array();
  const std::string own = s_.audit.origin();
  for (size_t i = 4; i < lines.size(); ++i) {
    std::string_view l = lines[i];
    size_t sp = l.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view name = l.substr(sp + 1);
    name = name.substr(0, name.find(' '));
    if (name == own || name.empty()) continue;
    if (name.substr(0, 9) == "meridian/") name.remove_prefix(9);
    witnesses.push_back(std::string(name));
  }
  Json out = {{"size", size}, {"root", lines[2]}, {"witnesses", witnesses}};
  // The log does not keep when a checkpoint was signed; one is signed within a second of
  // the newest entry it covers, so that entry's time dates it.
  if (size > 0) {
    auto leaf = s_.audit.Entries(static_cast<uint64_t>(size) - 1, static_cast<uint64_t>(size));
    if (leaf.ok() && leaf->size() == 1) {
      auto entry = ParseJsonObject((*leaf)[0]);
      const std::string at = entry.ok() ? StrOr(*entry, "at") : std::string();
      auto at_ms = shop::ParseRfc3339(at);
      if (at_ms.ok()) {
        out["latest_entry_at"] = at;
        out["age_s"] = std::max<int64_t>(0, (SystemClock::Instance().NowMs() - *at_ms) / 1000);
      }
    }
  }
  return out;
}

Json Overview::Sales() {
  const int64_t now = SystemClock::Instance().NowMs();
  std::vector<std::string> ids;
  {
    std::lock_guard lock(sales_mu_);
    for (const auto& id : s_.shop.OpenSales()) recent_sales_[id] = now;
    std::erase_if(recent_sales_, [&](const auto& kv) { return now - kv.second > kRecentSaleMs; });
    for (const auto& [id, _] : recent_sales_) ids.push_back(id);
  }
  Json out = Json::object();
  for (const auto& id : ids) {
    if (s_.self.role != policy::Role::kHome) {
      out[id] = nullptr;  // an edge holds no quota: the sale is only named
      continue;
    }
    auto q = s_.shop.Quota(id);
    if (!q.ok()) continue;
    Json unacked = Json::object();
    for (const auto& [tid, n] : q->unacked_out) unacked[tid] = n;
    out[id] = {{"quota", q->quota},         {"reserved", q->reserved},
               {"paid", q->paid},           {"expired", q->expired},
               {"remaining", q->remaining}, {"sold", q->reserved + q->paid},
               {"unacked_out", unacked},    {"applied_in", q->applied_in}};
  }
  return out;
}

Json Overview::LocalMigrations() {
  if (s_.migrations == nullptr) return Json::array();
  auto list = s_.migrations->List();
  if (!list.ok()) {
    log::Error("overview_migrations_failed", {{"error", list.status().message()}});
    return Json::array();
  }
  std::vector<Json> running, finished;
  for (auto& m : *list) (StrOr(m, "state") == "running" ? running : finished).push_back(m);
  // The most recent finished ones ("started_at" is RFC 3339 UTC: text order is time order).
  std::sort(finished.begin(), finished.end(), [](const Json& a, const Json& b) {
    return StrOr(a, "started_at") > StrOr(b, "started_at");
  });
  if (finished.size() > kRecentMigrations) finished.resize(kRecentMigrations);
  Json out = Json::array();
  for (auto& m : running) out.push_back(std::move(m));
  for (auto& m : finished) out.push_back(std::move(m));
  return out;
}

Json Overview::Local() {
  const auto pol = s_.policies.Current();
  Json part = {{"region", s_.self.name},
               {"role", policy::RoleName(s_.self.role)},
               {"health", "ok"},
               {"policy_version", pol->version()},
               {"checkpoint", Checkpoint()},
               {"alarms", s_.audit_alarms ? s_.audit_alarms() : Json::array()},
               {"answers",
                {{"purchases", s_.metrics.Answers(kPurchaseRoute, 201)},
                 {"sold_out", s_.metrics.Answers(kPurchaseRoute, 409)}}},
               {"sales", Sales()},
               {"migrations", migrations_.Get([this] { return LocalMigrations(); })},
               {"at", FormatRfc3339(SystemClock::Instance().NowMs())}};
  part["users_homed"] = nullptr;  // an edge holds no users
  if (s_.accounts != nullptr) {
    part["users_homed"] = users_homed_.Get([this]() -> Json {
      auto n = s_.accounts->CountUsers();
      if (n.ok()) return *n;
      log::Error("overview_count_failed", {{"error", n.status().message()}});
      return nullptr;
    });
  }
  return part;
}

Json Overview::Cluster() {
  std::lock_guard lock(cluster_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!cached_.is_null() && now - cached_at_ < 500ms) return cached_;
  cached_ = Gather();
  cached_at_ = std::chrono::steady_clock::now();
  return cached_;
}

Json Overview::Gather() {
  const int64_t now_ms = SystemClock::Instance().NowMs();
  std::map<std::string, Json> parts;
  parts[s_.self.name] = Local();
  net::HttpRequest ask;
  ask.method = "GET";
  ask.target = "/internal/v1/overview";
  for (auto& [region, res] : s_.inter.FanOutAll(ask)) {
    if (res.ok() && res->status == 200) {
      auto j = ParseJsonObject(res->body);
      if (j.ok()) {
        parts[region] = std::move(*j);
        continue;
      }
    }
    parts[region] = {{"health", "unreachable"}};
  }

  // Regions, in the cluster's order.
  Json regions = Json::array();
  int64_t users_total = 0;
  int64_t purchases = 0, sold_out_answers = 0;
  for (const auto& r : s_.config.regions) {
    const Json& p = parts[r.name];
    const std::string health = StrOr(p, "health", "unreachable");
    Json out = {
        {"name", r.name}, {"role", policy::RoleName(r.role)}, {"url", r.url}, {"health", health}};
    if (health == "ok") {
      auto users = p.find("users_homed");
      out["users_homed"] = users != p.end() && users->is_number_integer() ? *users : Json(nullptr);
      users_total += IntOr(p, "users_homed");
      out["policy_version"] = IntOr(p, "policy_version");
      out["checkpoint"] = ObjOr(p, "checkpoint");
      out["alarms"] = ArrOr(p, "alarms");
      const Json answers = ObjOr(p, "answers");
      out["answers"] = {{"purchases", IntOr(answers, "purchases")},
                        {"sold_out", IntOr(answers, "sold_out")}};
      purchases += IntOr(answers, "purchases");
      sold_out_answers += IntOr(answers, "sold_out");
    }
    regions.push_back(std::move(out));
  }

  // Sales: every home region's quota of each sale, added up as the stats endpoint does.
  std::set<std::string> sale_ids;
  for (const auto& [_, p] : parts) {
    const Json part_sales = ObjOr(p, "sales");  // named: items() does not extend its life
    for (const auto& [id, _q] : part_sales.items()) sale_ids.insert(id);
  }
  Json sales = Json::array();
  for (const auto& id : sale_ids) {
    auto def = s_.shop.FindSale(id);
    if (!def) continue;
    std::map<std::string, Json> quotas;
    bool complete = true;
    for (const auto* r : s_.config.HomeRegions()) {
      const Json q = ObjOr(ObjOr(parts[r->name], "sales"), id);
      if (q.empty()) {
        complete = false;
        continue;
      }
      quotas[r->name] = q;
    }
    int64_t sold = 0, reserved = 0, paid = 0, expired = 0, remaining = InFlight(quotas);
    Json per_region = Json::object();
    for (const auto& [region, q] : quotas) {
      reserved += IntOr(q, "reserved");
      paid += IntOr(q, "paid");
      expired += IntOr(q, "expired");
      remaining += IntOr(q, "remaining");
      per_region[region] = {{"quota", IntOr(q, "quota")},
                            {"sold", IntOr(q, "sold")},
                            {"remaining", IntOr(q, "remaining")}};
    }
    sold = reserved + paid;
    const std::string state = now_ms < def->starts_at_ms   ? "scheduled"
                              : now_ms >= def->ends_at_ms  ? "closed"
                              : complete && remaining <= 0 ? "sold_out"
                                                           : "open";
    Json sale = {{"id", def->id},
                 {"sku", def->sku},
                 {"state", state},
                 {"stock", def->stock},
                 {"sold", sold},
                 {"remaining", remaining},
                 {"reserved", reserved},
                 {"paid", paid},
                 {"expired", expired},
                 // Units sold beyond the stock: the invariant says this is always 0.
                 {"oversold", std::max<int64_t>(0, sold - def->stock)},
                 {"complete", complete},
                 {"starts_at", FormatRfc3339(def->starts_at_ms)},
                 {"ends_at", FormatRfc3339(def->ends_at_ms)},
                 {"per_region", per_region}};
    // The sell-out moment as this node first saw it (to the second: consoles poll every
    // second); an expired reservation that puts a unit back clears it.
    if (state == "sold_out") {
      sold_out_at_.try_emplace(id, FormatRfc3339(now_ms));
    } else if (complete && remaining > 0) {
      sold_out_at_.erase(id);
    }
    auto at = sold_out_at_.find(id);
    sale["sold_out_at"] = at != sold_out_at_.end() ? Json(at->second) : Json(nullptr);
    sales.push_back(std::move(sale));
  }

  // Migrations, from their coordinators; a coordinator that is down shows its last status.
  std::map<std::string, Json> migrations;
  for (const auto& [region, p] : parts) {
    if (StrOr(p, "health") != "ok") continue;
    const Json list = ArrOr(p, "migrations");
    for (const auto& m : list) {
      const std::string id = StrOr(m, "id");
      if (id.empty()) continue;
      Json dest = Json::object();
      const Json moved_to = ObjOr(m, "moved_to");
      const Json destinations = ObjOr(m, "destinations");
      for (const auto& [to, n] : destinations.items()) {
        dest[to] = {{"users", n.is_number_integer() ? n.get<int64_t>() : 0},
                    {"moved", IntOr(moved_to, to)}};
      }
      Json out = {{"id", id},
                  {"from", StrOr(m, "from", region)},
                  {"state", StrOr(m, "state")},
                  {"paused", BoolOr(m, "paused")},
                  {"users_total", IntOr(m, "users_total")},
                  {"users_moved", IntOr(m, "users_moved")},
                  {"users_failed", IntOr(m, "users_failed")},
                  {"bytes", IntOr(m, "bytes")},
                  {"rate_users_per_s", NumOr(m, "rate_users_per_s")},
                  {"eta_s", NumOr(m, "eta_s", -1)},
                  {"started_at", StrOr(m, "started_at")},
                  {"finished_at",
                   m.contains("finished_at") ? Json(StrOr(m, "finished_at")) : Json(nullptr)},
                  {"destinations", dest},
                  {"coordinator_reachable", true}};
      last_migrations_[id] = out;
      migrations[id] = std::move(out);
    }
  }
  for (const auto& [id, m] : last_migrations_) {
    if (migrations.count(id) != 0) continue;
    if (StrOr(parts[StrOr(m, "from")], "health") == "ok") continue;  // gone from its list
    Json stale = m;
    stale["coordinator_reachable"] = false;
    migrations[id] = std::move(stale);
  }
  std::vector<Json> ordered;
  for (auto& [_, m] : migrations) ordered.push_back(std::move(m));
  std::sort(ordered.begin(), ordered.end(), [](const Json& a, const Json& b) {
    const bool ra = StrOr(a, "state") == "running", rb = StrOr(b, "state") == "running";
    if (ra != rb) return ra;
    return StrOr(a, "started_at") > StrOr(b, "started_at");
  });

  const auto pol = s_.policies.Current();
  Json countries = Json::object();
  for (const auto& [k, v] : pol->countries()) countries[k] = v;
  return {{"as_of", FormatRfc3339(now_ms)},
          {"answered_by", s_.self.name},
          {"policy",
           {{"version", pol->version()},
            {"name", pol->name()},
            {"default_region", pol->default_region()},
            {"countries", countries}}},
          {"regions", regions},
          {"users_homed_total", users_total},
          {"answers", {{"purchases", purchases}, {"sold_out", sold_out_answers}}},
          {"sales", sales},
          {"migrations", ordered}};
}

}  // namespace meridian::node
