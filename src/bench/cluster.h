// A private cluster for one benchmark run, started the way the tests start theirs:
// `meridian dev --write-config --plaintext --no-latency` into a temporary folder, then one
// `meridian node` process per region on free loopback ports. Any node can be killed (kill -9)
// and restarted on its own; everything is stopped and the folder removed at the end.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/loadgen.h"
#include "common/status.h"
#include "config/cluster.h"
#include "net/http.h"
#include "storage/private_postgres.h"

namespace meridian::bench {

struct PrivateClusterOptions {
  std::string self_exe;  // the meridian binary
  int io_threads = 1;    // event loops per node
  bool keep_dir = false;
  std::string policy;      // passed as `dev --policy` (current, legacy, a file); empty: default
  std::string node_knobs;  // `key = value` lines added to the [node] table of cluster.toml
  // "rocksdb", or "postgres" (a private PostgreSQL server per region, started and stopped
  // with the cluster); more than one node per region needs postgres.
  std::string storage = "rocksdb";
  int nodes_per_region = 1;
};

class PrivateCluster {
 public:
  static Result<std::unique_ptr<PrivateCluster>> Start(const PrivateClusterOptions& options);
  ~PrivateCluster();
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  const config::ClusterConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  const std::string& admin_token() const { return admin_token_; }
  std::string Url(const std::string& region) const;  // its first node
  std::vector<std::string> Urls(const std::string& region) const;
  // The region's nodes for the load generator (its first node, the others' ports).
  Result<HttpEndpoint> Endpoint(const std::string& region) const;
  // The region's private PostgreSQL server (postgres storage), e.g. for pgbench.
  storage::PrivatePostgres* Database(const std::string& region) const;

  // Every node of the region.
  Status StartRegion(const std::string& region);
  // Sends `sig` to the region's processes and reaps them.
  void StopRegion(const std::string& region, int sig);
  // CPU time (user + system, all threads) the region's processes have used so far.
  double CpuSeconds(const std::string& region) const;
  // The same per thread name (the node names its threads: http-N, audit-write, ...), summed
  // over threads of one name; a thread that has ended is no longer counted.
  std::map<std::string, double> CpuSecondsByThread(const std::string& region) const;

 private:
  explicit PrivateCluster(PrivateClusterOptions o) : opts_(std::move(o)) {}
  Status WaitHealthy(const std::string& region, size_t node, pid_t pid);

  PrivateClusterOptions opts_;
  std::string dir_;
  std::string config_path_;
  config::ClusterConfig config_;
  std::string admin_token_;
  std::map<std::pair<std::string, size_t>, pid_t> pids_;  // (region, node)
  std::unique_ptr<net::HttpClient> client_;
  std::vector<std::unique_ptr<storage::PrivatePostgres>> databases_;  // in config order
};

}  // namespace meridian::bench
