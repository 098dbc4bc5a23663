// Moves stock between regions (the demarcation protocol of the shop): pulls units to a
// region whose quota runs low while buyers are there, re-delivers grants until their
// receiver acknowledges them, and keeps each region's view of the others' remaining stock
// fresh so "sold out" is answered from memory only when the whole sale is sold out.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "common/json.h"
#include "node/inter_region.h"
#include "shop/shop.h"

namespace meridian::node {

// Units in flight: given by a donor, not yet applied by its receiver (counted once).
// `quotas` maps each home region to its quota view as /internal/v1/sales/{id}/quota says.
int64_t InFlight(const std::map<std::string, Json>& quotas);

class Rebalancer {
 public:
  Rebalancer(shop::Shop& shop, InterRegion& inter, const config::ClusterConfig& config);
  ~Rebalancer();
  void Start();
  void Stop();
  // Pulls units of a sale from the regions with units, the most first, until one grants:
  // for a buyer who found none (`asker_out`) or a region under its low-water mark (both
  // through the shop's PullFn, which the shop calls one at a time per sale). Returns units
  // received; 0 when every region answered with none and no grant is in flight; otherwise
  // shop::kUnitsElsewhere (units exist but none came now).
  int64_t Pull(const std::string& sale_id, bool asker_out);

 private:
  // Every home region's quota view of a sale (as /internal/v1/sales/{id}/quota?counts=0
  // says; this region's read locally); `complete` is false when one could not be read.
  struct QuotaViews {
    std::map<std::string, Json> by_region;
    bool complete = true;
  };
  QuotaViews Views(const std::string& sale_id);
  void Loop();
  void Redeliver();
  void RefreshPeers();

  shop::Shop& shop_;
  InterRegion& inter_;
  const config::ClusterConfig& config_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace meridian::node
