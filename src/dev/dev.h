// `meridian dev`: the whole four-region cluster on loopback, one supervised child process
// per region node, with generated secrets, a dev CA and an admin token.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/private_postgres.h"

namespace meridian::dev {

struct DevOptions {
  std::string dir = ".meridian-dev";
  int base_port = 7400;
  bool plaintext = false;
  std::string policy = "current";  // builtin name or file
  bool emulate_latency = true;
  int io_threads = 1;
  std::string self_exe;  // the meridian binary to start nodes with
  std::string scenario;  // a story to play once the cluster is up ("great-shift"), or empty
  int scenario_users = 300;
  // "rocksdb" (embedded, under each region's folder) or "postgres": each region's own
  // PostgreSQL database, from `database_url` ("{region}" is replaced by the region's name)
  // or, without it, a private server per region started and stopped by `meridian dev`.
  std::string storage = "rocksdb";
  std::string database_url;
  // Nodes per region. Node k of the i-th region listens on base_port + i + 4k; more than
  // one needs postgres (the nodes share the region's database).
  int nodes_per_region = 1;
};
// Starts a private PostgreSQL server per region in DIR/<region>/postgres, each with the
// database "meridian" (what DatabaseUrl names without --database-url).
Status StartPrivateDatabases(const std::string& dir,
                             std::vector<std::unique_ptr<storage::PrivatePostgres>>* out);
// The database URL of `region` for these options (empty with RocksDB).
std::string DatabaseUrl(const DevOptions& opts, const std::string& dir, const std::string& region);

// The log file of a region's node k, in the region's folder (node.log, node-1.log, ...).
std::string NodeLogName(size_t k);
// Starts `exe node --config CONFIG --region REGION --node NODE` with its output appended to
// `log_path` and the default signal mask; returns its pid (-1 if fork failed).
pid_t SpawnNode(const std::string& exe, const std::string& config, const std::string& region,
                int node, const std::string& log_path);

// Writes DIR/cluster.toml (and the secrets, CA and certificates that are missing).
int WriteCluster(const DevOptions& opts);
// Starts and supervises the nodes until Ctrl-C/SIGTERM (exit 0) or a node dies (exit 1).
int RunDev(const DevOptions& opts);

}  // namespace meridian::dev
