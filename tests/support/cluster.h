// A real four-region cluster for integration tests: `meridian dev --write-config` writes the
// config and secrets, then each region runs as its own `meridian node` process on free
// loopback ports with RocksDB in a temporary folder (or, with MERIDIAN_TEST_STORAGE=postgres,
// a private PostgreSQL server per region in that folder). Regions can be stopped (SIGTERM
// or SIGKILL) and restarted one by one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/http.h"
#include "storage/private_postgres.h"
#include "storage/store.h"

namespace meridian::testing {

// Runs a program to completion (argv[0] is its path), its stdout and stderr together.
struct CommandOutput {
  int exit_code = -1;
  std::string text;
};
CommandOutput RunCommand(const std::vector<std::string>& args);
// Waits at most `limit` for `pid` to exit: its wait status, or -1 if it is still running.
int WaitForExit(pid_t pid, std::chrono::milliseconds limit);
// The live (not zombie) child processes of `parent`, read from /proc.
std::vector<pid_t> ChildrenOf(pid_t parent);

struct ClusterOptions {
  bool tls = false;
  bool latency = false;
  std::string policy = "current";
  std::string node_knobs;  // extra lines for the [node] table
  // Nodes per region; more than one puts every region on PostgreSQL (their shared store).
  int nodes_per_region = 1;
};

class TestCluster {
 public:
  explicit TestCluster(ClusterOptions opts = {});
  ~TestCluster();

  static const std::vector<std::string>& Regions();

  void Start();
  // Starts every node of the region (StartNode for one).
  void StartRegion(const std::string& region);
  void StartNode(const std::string& region, int node);
  // Sends `sig` to every node of the region (or one node) and waits; returns the wait
  // status (of the first node).
  int StopRegion(const std::string& region, int sig);
  int StopNode(const std::string& region, int node, int sig);
  void StopAll();
  // Freezes (SIGSTOP) or thaws (SIGCONT) a region's processes (or one node): to its peers
  // it is cut off, with its connections open and nothing answering.
  void Freeze(const std::string& region, bool frozen, int node = -1);
  int nodes_per_region() const { return opts_.nodes_per_region; }

  std::string Url(const std::string& region, int node = 0) const;
  uint16_t Port(const std::string& region, int node = 0) const;
  const std::string& dir() const { return dir_; }
  const std::string& admin_token() const { return admin_token_; }

  // To the region's first running node.
  Result<net::HttpResponse> TryCall(const std::string& region, const std::string& method,
                                    const std::string& target, const std::string& body = {},
                                    net::Headers headers = {});
  // The same, to one node of the region.
  Result<net::HttpResponse> TryCallNode(const std::string& region, int node,
                                        const std::string& method, const std::string& target,
                                        const std::string& body = {}, net::Headers headers = {});
  // Fails the test on a transport error (CallNode: to one node of the region).
  net::HttpResponse CallNode(const std::string& region, int node, const std::string& method,
                             const std::string& target, const std::string& body = {},
                             net::Headers headers = {});
  net::HttpResponse Call(const std::string& region, const std::string& method,
                         const std::string& target, const std::string& body = {},
                         net::Headers headers = {});

  // The region's storage engine, opened as its node opens it. The region must be stopped.
  storage::StorePtr OpenStore(const std::string& region) const;
  // Where `needle` appears among the bytes the region wrote: every file under its folder
  // (logs, WAL, tables, its database server's files) and every key and value read back
  // through the engine itself (values may be compressed). Empty when it appears nowhere.
  // The region must be stopped.
  std::vector<std::string> FindBytes(const std::string& region, const std::string& needle) const;
  // Overwrites one key of a stopped region's meta space, as an operator with disk access
  // could (for tampering tests).
  void PutMeta(const std::string& region, const std::string& key, const std::string& value) const;

 private:
  ClusterOptions opts_;
  std::string dir_;
  int base_port_ = 0;
  std::string config_path_;
  std::string admin_token_;
  std::map<std::pair<std::string, int>, pid_t> pids_;  // (region, node)
  // MERIDIAN_TEST_STORAGE=postgres: every region on its own private PostgreSQL server.
  bool postgres_ = false;
  std::vector<std::unique_ptr<storage::PrivatePostgres>> databases_;
  struct CachedFile {
    uintmax_t size = 0;
    std::filesystem::file_time_type mtime;
    std::string bytes;
  };
  const std::string& FileBytes(const std::filesystem::directory_entry& e) const;
  mutable std::map<std::string, CachedFile> file_cache_;
  std::unique_ptr<net::HttpClient> client_;
};

// Sends a bearer token.
net::Headers Bearer(const std::string& token);

}  // namespace meridian::testing
