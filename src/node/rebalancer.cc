#include "node/rebalancer.h"

#include <algorithm>

#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"

namespace meridian::node {
namespace {
Result<Json> JsonCall(InterRegion& inter, const std::string& region, const std::string& method,
                      const std::string& target, const Json& body) {
  net::HttpRequest req;
  req.method = method;
  req.target = target;
  if (!body.is_null()) req.body = DumpJson(body);
  ASSIGN_OR_RETURN(auto r, inter.CallSync(region, std::move(req)));
  if (r.status != 200)
    return Error(Code::kUnavailable, "region answered " + std::to_string(r.status));
  return ParseJsonObject(r.body);
}
net::HttpRequest Get(std::string target) {
  net::HttpRequest req;
  req.method = "GET";
  req.target = std::move(target);
  return req;
}
}  // namespace

int64_t InFlight(const std::map<std::string, Json>& quotas) {
  std::set<std::string> applied;
  for (const auto& [_, q] : quotas) {
    for (const auto& tid : q.value("applied_in", Json::array())) {
      if (tid.is_string()) applied.insert(tid.get<std::string>());
    }
  }
  int64_t units = 0;
  for (const auto& [_, q] : quotas) {
    const Json out = q.value("unacked_out", Json::object());
    for (const auto& [tid, n] : out.items()) {
      if (!applied.count(tid) && n.is_number_integer()) units += n.get<int64_t>();
    }
  }
  return units;
}

Rebalancer::Rebalancer(shop::Shop& shop, InterRegion& inter, const config::ClusterConfig& config)
    : shop_(shop), inter_(inter), config_(config) {}

Rebalancer::~Rebalancer() { Stop(); }

void Rebalancer::Start() {
  thread_ = NamedThread("rebalancer", [this] { Loop(); });
}

void Rebalancer::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Rebalancer::QuotaViews Rebalancer::Views(const std::string& sale_id) {
  QuotaViews views;
  for (auto& [region, res] :
       inter_.FanOutHomes(Get("/internal/v1/sales/" + sale_id + "/quota?counts=0"))) {
    auto q = res.ok() && res->status == 200 ? ParseJsonObject(res->body)
                                            : Result<Json>(Error(Code::kUnavailable, ""));
    if (q.ok()) {
      views.by_region[region] = *std::move(q);
    } else {
      views.complete = false;
    }
  }
  auto own = shop_.Quota(sale_id, false);
  if (!own.ok()) {
    views.complete = false;
    return views;
  }
  Json mine = {{"remaining", own->remaining}};
  Json out = Json::object();
  for (const auto& [tid, n] : own->unacked_out) out[tid] = n;
  mine["unacked_out"] = out;
  mine["applied_in"] = own->applied_in;
  views.by_region[inter_.self()] = mine;
  return views;
}

int64_t Rebalancer::Pull(const std::string& sale_id, bool asker_out) {
  // Largest spare quota first; a donor that grants nothing (it keeps its units for its own
  // buyers, they are on its nodes' leases, went to another asker meanwhile, or it did not
  // answer) is not the last word.
  const QuotaViews views = Views(sale_id);
  std::vector<std::pair<int64_t, std::string>> donors;
  for (const auto& [region, q] : views.by_region) {
    const int64_t remaining = q.value("remaining", int64_t{0});
    if (region != inter_.self() && remaining > 0) donors.emplace_back(remaining, region);
  }
  std::sort(donors.begin(), donors.end(), std::greater<>());
  for (const auto& [remaining, donor] : donors) {
    const std::string tid = "t" + SystemRandom::Instance().Hex(12);
    auto grant = JsonCall(inter_, donor, "POST", "/internal/v1/sales/" + sale_id + "/grant",
                          Json{{"to", inter_.self()},
                               {"units", remaining},
                               {"transfer_id", tid},
                               {"asker_out", asker_out}});
    if (!grant.ok()) continue;  // the donor re-delivers a grant it made
    const int64_t units = grant->value("units", int64_t{0});
    if (units <= 0) continue;
    // Not applied now: the donor re-delivers it, and the buyer hears "retry", not "sold out".
    if (!shop_.ApplyGrant(sale_id, donor, units, tid).ok()) return shop::kUnitsElsewhere;
    log::Info("stock_received",
              {{"sale", sale_id}, {"from", donor}, {"units", std::to_string(units)}});
    (void)JsonCall(inter_, donor, "POST",
                   "/internal/v1/sales/" + sale_id + "/transfers/" + tid + "/ack", Json());
    return units;
  }
  // Sold out only when every region answered with none and no grant is on its way.
  if (!donors.empty() || !views.complete || InFlight(views.by_region) > 0) {
    return shop::kUnitsElsewhere;
  }
  return 0;
}

void Rebalancer::Redeliver() {
  for (const auto& g : shop_.UnackedGrants()) {
    auto r = JsonCall(inter_, g.to, "PUT",
                      "/internal/v1/sales/" + g.sale_id + "/transfers/" + g.transfer_id,
                      Json{{"from", inter_.self()}, {"units", g.units}});
    if (r.ok()) (void)shop_.AckGrant(g.sale_id, g.transfer_id);
  }
}

void Rebalancer::RefreshPeers() {
  for (const auto& sale_id : shop_.OpenSales()) {
    const QuotaViews views = Views(sale_id);
    if (!views.complete) continue;  // unknown stays "not sold out"
    int64_t others = InFlight(views.by_region);
    for (const auto& [region, q] : views.by_region) {
      if (region != inter_.self()) others += q.value("remaining", int64_t{0});
    }
    shop_.SetPeerRemaining(sale_id, others);
  }
}

void Rebalancer::Loop() {
  int tick = 0;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    shop_.TopUpLowStock();  // calls Pull(sale, false) unless a buyer's pull is under way
    if (tick % 3 == 0) RefreshPeers();
    if (tick % 5 == 0) Redeliver();
    ++tick;
    lock.lock();
  }
}

}  // namespace meridian::node
