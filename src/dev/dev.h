// `meridian dev`: the whole four-region cluster on loopback, one supervised child process
// per region, with generated secrets, a dev CA and an admin token.
#pragma once

#include <string>

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
};

// Writes DIR/cluster.toml (and the secrets, CA and certificates that are missing).
int WriteCluster(const DevOptions& opts);
// Starts and supervises the nodes until Ctrl-C/SIGTERM (exit 0) or a node dies (exit 1).
int RunDev(const DevOptions& opts);

}  // namespace meridian::dev
