// The audit daemon of a node: publishes the region's checkpoint every second while its log
// grows and, in a home region, witnesses the other home regions' logs: checks each new
// checkpoint's signature and its consistency with the last one seen, cosigns it, and raises
// an alarm (metric, error log line, /v1/admin/audit/alarms) on any inconsistency.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audit/log.h"
#include "common/json.h"
#include "keys/keys.h"
#include "node/inter_region.h"
#include "node/metrics.h"

namespace meridian::node {

class AuditDaemon {
 public:
  AuditDaemon(audit::AuditLog& log, storage::Store& store, InterRegion& inter,
              const config::ClusterConfig& config, keys::KeyProvider& keys, Metrics& metrics,
              bool witness);
  ~AuditDaemon();
  void Start();
  void Stop();
  Json Alarms() const;
  // One round now (the loop runs it every second).
  void RunOnce();

 private:
  void Witness(const std::string& region);
  void Alarm(const std::string& region, const std::string& reason);

  audit::AuditLog& log_;
  storage::Store& store_;
  InterRegion& inter_;
  const config::ClusterConfig& config_;
  keys::KeyProvider& keys_;
  Metrics& metrics_;
  bool witness_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  Json alarms_ = Json::array();
  std::thread thread_;
};

}  // namespace meridian::node
