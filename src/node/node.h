// Wiring of one region node: storage, keys, services, router and server.
#pragma once

#include <string>

#include "config/cluster.h"
#include "storage/store.h"

namespace meridian::node {

// The region's storage engine as its node opens it: PostgreSQL when the region has a
// database_url, else RocksDB under its data folder (no residency guard: the caller adds it).
Result<storage::StorePtr> OpenRegionStore(const config::ClusterConfig& cfg,
                                          const config::RegionConfig& region);

// Runs node `node_index` (of the region's `nodes`) of `region` described by the cluster
// config until SIGTERM or SIGINT, then shuts down gracefully. Returns the process exit code.
int RunNode(const std::string& config_path, const std::string& region, int node_index = 0);

}  // namespace meridian::node
