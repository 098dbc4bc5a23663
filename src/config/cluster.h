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

// One node (process) of a region: where it listens and its public base URL.
struct NodeAddress {
  std::string listen_host;
  uint16_t listen_port = 0;
  std::string url;  // e.g. https://127.0.0.1:7400
};

struct RegionConfig {
  std::string name;
  policy::Role role = policy::Role::kHome;
  // Every node of the region (`listen`/`url`, or a `nodes` list). Several nodes share the
  // region's database, so they need a database_url. The fields below are the first node's.
  std::vector<NodeAddress> nodes;
  std::string listen_host;
  uint16_t listen_port = 0;
  std::string url;        // public base URL, e.g. https://127.0.0.1:7400
  std::string data_dir;   // absolute
  std::string cert_file;  // TLS certificate and key of the node (when the cluster uses TLS)
  std::string key_file;
  std::string keystore_file;  // the region's encrypted keystore
  // Empty: embedded RocksDB under data_dir. Else the region's PostgreSQL database, shared
  // by every node of the region and by no other region.
  std::string database_url;

  std::vector<std::string> Urls() const;
};

// Tunables of a node, in one place.
struct NodeKnobs {
  int io_threads = 2;
  int workers = 16;
  // Requests from other regions (stock grants and quotas, phone checks, migration steps,
  // cosignatures) have workers of their own: a region whose workers all wait on another
  // region (a buyer's pull, say) still answers that region, so two regions never wait on
  // each other until a timeout.
  int internal_workers = 8;
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
  int migration_parallel = 4;           // users moving at once
  int64_t migration_users_per_s = 200;  // throttle protecting live traffic (0: none)
  int database_connections = 16;        // pool per node, with a database_url
  int64_t lease_units = 2048;           // most units a node leases from its region's pool
  int64_t lease_idle_ms = 1000;         // an unused lease returns its units after this
  int64_t lease_timeout_ms = 3000;      // a silent node's leases (and migrations) move on
  // Users' data keys kept unwrapped once unwrapped (keys::EnvelopeCodec): a sale's buyers, who
  // signed in before it opens, seal their orders without a read and an unwrap, on the event
  // loop. About 0.7 KB a key: 200,000 keys ~140 MB at most.
  int64_t data_key_cache_ms = 600'000;
  int64_t data_key_cache_keys = 200'000;
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
  std::string keystore_secret_file;  // used when MERIDIAN_KEYSTORE_SECRET is not set
  bool keystore_fast_kdf = false;    // minimum Argon2id cost for the keystore (dev only)
  NodeKnobs knobs;

  const RegionConfig* Find(std::string_view name) const;
  policy::RegionRoles Roles() const;
  // Round-trip time between two regions (0 for the same region or when unset).
  int RttMs(std::string_view a, std::string_view b) const;
  std::vector<const RegionConfig*> HomeRegions() const;
};

// Reads and validates; every problem goes to `diags` as file:line: message.
Result<ClusterConfig> Load(const std::string& path, std::vector<policy::Diagnostic>* diags);

// The admin token (a text file, DIR/admin.token for `meridian dev`).
Result<std::string> LoadAdminToken(const ClusterConfig& config);
// Creates the admin token file if it is missing (never overwrites it).
Status EnsureAdminToken(const ClusterConfig& config);

std::string ReadFileOr(const std::string& path, std::string fallback = {});
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

}  // namespace meridian::config
