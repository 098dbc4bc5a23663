// The whole cluster at a glance, for the web console (`GET /v1/admin/overview`): each
// region describes itself (`/internal/v1/overview`) and any node gathers every region's
// part into one answer. Only counts, states and public data travel: region roles and
// health, users homed (a number), the policy's country map, sale quotas, migration
// counters and audit checkpoints. No user id, phone, email, name, device or order.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "accounts/accounts.h"
#include "audit/log.h"
#include "common/json.h"
#include "config/cluster.h"
#include "node/inter_region.h"
#include "node/metrics.h"
#include "node/migration.h"
#include "node/policy_service.h"
#include "shop/shop.h"

namespace meridian::node {

// The purchase route, as metrics name it: answers to it are what the console charts.
inline constexpr std::string_view kPurchaseRoute = "/v1/sales/{id}/purchase";

struct OverviewSources {
  const config::ClusterConfig& config;
  const config::RegionConfig& self;
  accounts::Accounts* accounts;  // null in an edge region
  shop::Shop& shop;
  audit::AuditLog& audit;
  PolicyService& policies;
  Migrations* migrations;  // null in an edge region
  std::function<Json()> audit_alarms;
  InterRegion& inter;
  Metrics& metrics;
};

// A value that costs a scan to compute (users homed, migrations): recomputed at most once
// a second and never more than a tenth of the time, so a region of millions of users is
// not rescanned for every poll of every console.
class Throttled {
 public:
  Json Get(const std::function<Json()>& compute);

 private:
  std::mutex mu_;
  Json value_;
  std::chrono::steady_clock::time_point at_{};
  std::chrono::steady_clock::duration cost_{};
};

class Overview {
 public:
  explicit Overview(OverviewSources s) : s_(std::move(s)) {}

  // This region's part. Blocks on storage reads: call from a worker.
  Json Local();
  // Every region's part gathered here (this one's directly, the others' over the
  // inter-region channel at once); a region that does not answer is "unreachable". Answers
  // are shared for half a second, so many open consoles cost the cluster one gathering.
  Json Cluster();

 private:
  Json Checkpoint();
  Json Sales();
  Json LocalMigrations();
  Json Gather();

  OverviewSources s_;
  Throttled users_homed_;
  Throttled migrations_;

  std::mutex sales_mu_;
  // Sales seen open by this node, with when they were last seen so: closed ones stay on
  // the console for a while.
  std::map<std::string, int64_t> recent_sales_;

  std::mutex cluster_mu_;  // held while gathering: concurrent callers share one answer
  Json cached_;
  std::chrono::steady_clock::time_point cached_at_{};
  std::map<std::string, std::string> sold_out_at_;  // sale id -> first seen sold out
  std::map<std::string, Json> last_migrations_;     // id -> last status seen (coordinator down)
};

}  // namespace meridian::node
