// The cluster configuration (TOML): regions with role and addresses, the emulated WAN
// latency between them, the residency policy in force, and node settings ("knobs").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "policy/policy.h"

namespace meridian::config {

struct RegionConfig {
  std::string name;
  policy::Role role = policy::Role::kHome;
  std::string listen_host;
  uint16_t listen_port = 0;
  std::string url;        // public base URL, e.g. https://127.0.0.1:7400
  std::string data_dir;   // absolute
  std::string cert_file;  // TLS certificate and key of the node (when the cluster uses TLS)
  std::string key_file;
};

// Tunables of a node, in one place.
struct NodeKnobs {
  int io_threads = 2;
  int workers = 16;
  size_t max_body_bytes = 16 * 1024;
  size_t max_record_bytes = 1024 * 1024;
  size_t max_header_bytes = 8 * 1024;
  int read_timeout_ms = 10'000;
  int idle_timeout_ms = 60'000;
  int forward_timeout_ms = 5'000;
  int shutdown_grace_ms = 10'000;
  bool dev_fast_password_hashing = false;
  int64_t token_ttl_s = 24 * 3600;
  bool emulate_latency = true;
};

struct ClusterConfig {
  std::string path;  // the file it was read from
  std::string dir;   // its folder: relative paths resolve against it
  std::vector<RegionConfig> regions;
  std::map<std::string, std::map<std::string, int>> latency_ms;
  std::string policy_spec;  // builtin name or file path
  policy::Policy policy;
  bool tls = true;
  std::string ca_file;
  std::string admin_token_file;
  std::string secrets_dir;
  NodeKnobs knobs;

  const RegionConfig* Find(std::string_view name) const;
  policy::RegionRoles Roles() const;
  // Round-trip time between two regions (0 for the same region or when unset).
  int RttMs(std::string_view a, std::string_view b) const;
  std::vector<const RegionConfig*> HomeRegions() const;
};

// Reads and validates; every problem goes to `diags` as file:line: message.
Result<ClusterConfig> Load(const std::string& path, std::vector<policy::Diagnostic>* diags);

// Secrets of one node (until the keystore of the privacy work replaces the files): each a
// hex file under the cluster's secrets folder, the admin token a text file.
struct Secrets {
  std::string admin_token;
  std::string internal_token;  // authenticates calls between regions
  std::string directory_key;   // cluster-wide phone pseudonym key
  std::string token_key;       // this region's token MAC key
  std::string names_key;       // this region's name pseudonym key
};
Result<Secrets> LoadSecrets(const ClusterConfig& config, std::string_view region);
// Creates whatever secret files are missing (never overwrites one).
Status EnsureSecrets(const ClusterConfig& config);

std::string ReadFileOr(const std::string& path, std::string fallback = {});
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

}  // namespace meridian::config
