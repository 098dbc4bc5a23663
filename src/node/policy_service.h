// The residency policy in force in this region, changed at run time by `PUT
// /v1/admin/policy`: a new version is validated, stored next to the region's data, logged,
// and applied to every region; a region that was down adopts the newest version its peers
// hold when it starts. Readers take an immutable snapshot (no lock held while they use it).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "audit/log.h"
#include "config/cluster.h"
#include "policy/policy.h"
#include "storage/store.h"

namespace meridian::node {

class InterRegion;

class PolicyService {
 public:
  PolicyService(const config::ClusterConfig& config, std::string region, storage::Store& store,
                audit::AuditSink& audit);

  // The configured policy, or the newer one stored here by an earlier PUT.
  Status Start();
  // Asks the other regions for their policy and adopts a newer one (a node that was down
  // when the policy changed catches up). Regions that do not answer are skipped.
  void CatchUp(InterRegion& inter);

  // Over a database the region's nodes share, at most half a second behind a version
  // another node adopted (Refresh() reads it at once).
  std::shared_ptr<const policy::Policy> Current();
  // The latest version any node of the region adopted, read now: for decisions a stale
  // copy would get wrong for good (where a user registers, moves or is received).
  std::shared_ptr<const policy::Policy> Latest();
  Status Refresh();
  std::string CurrentSource() const;

  // A policy document (TOML) or {"builtin":"current"|"legacy"}: its text, or invalid_field.
  static Result<std::string> SourceOf(std::string_view body);
  // Validates `source` against the cluster and makes it current here: a newer version is
  // stored and logged; the same version with the same text is accepted again (a retry);
  // an older version, or the same version with other text, is a conflict.
  Result<std::shared_ptr<const policy::Policy>> Adopt(const std::string& source);

 private:
  Result<policy::Policy> Parse(const std::string& source) const;

  const config::ClusterConfig& config_;
  std::string region_;
  storage::Store& store_;
  audit::AuditSink& audit_;
  mutable std::mutex mu_;
  std::shared_ptr<const policy::Policy> current_;
  std::string source_;
  int64_t refreshed_ms_ = 0;
};

}  // namespace meridian::node
