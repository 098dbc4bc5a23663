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

#include "common/status.h"
#include "config/cluster.h"
#include "net/http.h"

namespace meridian::bench {

struct PrivateClusterOptions {
  std::string self_exe;  // the meridian binary
  int io_threads = 1;    // event loops per node
  bool keep_dir = false;
  std::string policy;      // passed as `dev --policy` (current, legacy, a file); empty: default
  std::string node_knobs;  // `key = value` lines added to the [node] table of cluster.toml
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
  std::string Url(const std::string& region) const;

  Status StartRegion(const std::string& region);
  // Sends `sig` to the region's process and reaps it.
  void StopRegion(const std::string& region, int sig);
  // CPU time (user + system, all threads) the region's process has used so far.
  double CpuSeconds(const std::string& region) const;

 private:
  explicit PrivateCluster(PrivateClusterOptions o) : opts_(std::move(o)) {}
  Status WaitHealthy(const std::string& region, pid_t pid);

  PrivateClusterOptions opts_;
  std::string dir_;
  std::string config_path_;
  config::ClusterConfig config_;
  std::string admin_token_;
  std::map<std::string, pid_t> pids_;
  std::unique_ptr<net::HttpClient> client_;
};

}  // namespace meridian::bench
