// The HTTP front of a node: matches routes, authenticates, and decides for each request
// whether it is answered here, forwarded to the user's home region (token-carrying
// requests), or redirected there (personal-data requests with no token). Runs on the
// event loops; all blocking work goes to the worker pool.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "accounts/accounts.h"
#include "audit/log.h"
#include "common/clock.h"
#include "common/worker_pool.h"
#include "config/cluster.h"
#include "keys/keys.h"
#include "net/http.h"
#include "node/inter_region.h"
#include "node/metrics.h"
#include "node/migration.h"
#include "node/policy_service.h"
#include "shop/shop.h"

namespace meridian::node {

// Where the node keeps the KEK version it last wrote into the audit log, so a rotation is
// logged once: by the rotate call, or at the next start when done offline.
inline constexpr std::string_view kLoggedKekVersionKey = "audit/seen/kek";

// Signals the background job that rewraps data keys after a KEK rotation.
using RewrapTrigger = std::function<void()>;

struct NodeContext {
  const config::ClusterConfig& config;
  const config::RegionConfig& self;
  std::string admin_token;
  keys::KeyProvider& keys;
  std::string phone_key;         // cluster-wide phone pseudonym key
  accounts::Accounts* accounts;  // null in an edge region: it holds no personal data
  shop::Shop& shop;
  audit::AuditLog& audit;
  PolicyService& policies;
  Migrations* migrations;  // null in an edge region
  std::function<Json()> audit_alarms;
  RewrapTrigger rewrap;
  InterRegion& inter;
  Metrics& metrics;
  WorkerPool& workers;
  WorkerPool& internal_workers;  // for /internal/ requests only (config::NodeKnobs)
};

std::unique_ptr<net::Handler> MakeRouter(NodeContext ctx);

// The route template a path matches ("/v1/me/records/{collection}/{key}"), "unmatched" if
// none, with its percent-decoded parameters. The only form of a path that is logged.
std::string_view RouteTemplateOf(std::string_view path, std::vector<std::string>* params);

}  // namespace meridian::node
