// `meridian bench ...`: open-loop load benchmarks of a flash sale and of its peers (any HTTP
// URL, e.g. nginx's fixed answer; Redis running the Lua stock decrement). Each command prints
// a table, optionally writes the same figures as JSON, and returns the process exit code.
#pragma once

#include <cstdint>
#include <string>

namespace meridian::bench {

struct FlashSaleOptions {
  std::string self_exe;  // the meridian binary, to start a private cluster with
  // A running cluster's node that is home to --country's buyers, with its admin token.
  // Empty: the benchmark starts (and at the end stops) a private cluster of its own.
  std::string url;
  std::string admin_token_file;
  // "purchase": buyers each buy once from a fresh sale. "sold-out": the stock is gone
  // before the clock starts, so every request measures the sold-out answer.
  std::string endpoint = "purchase";
  int64_t buyers = 100'000;
  int64_t stock = 40'000;
  double rate = 50'000;  // offered requests/s
  // purchase: 0 sends one request per buyer (buyers / rate seconds); else at most
  // rate * duration buyers press. sold-out: 0 means 10 s.
  double duration_s = 0;
  int connections = 64;
  std::string country = "IN";
  int io_threads = 2;          // event loops per node of the private cluster (a node's default)
  int setup_connections = 32;  // for registering buyers and checking orders
  int64_t verify_buyers = 2000;
  bool kill_restart = true;  // kill -9 and restart the home node before counting lost orders
  // The private cluster's engine ("rocksdb" or "postgres") and nodes per region (more than
  // one needs postgres; the generator spreads its connections over the home region's nodes).
  std::string storage = "rocksdb";
  int nodes_per_region = 1;
  // With postgres: afterwards, pgbench -N on the home region's server for this long (0: not).
  int pgbench_seconds = 0;
  std::string json_file;
  std::string command_line;  // recorded in the JSON
};
int RunFlashSale(const FlashSaleOptions& options);

struct HttpBenchOptions {
  std::string url;  // http://127.0.0.1:PORT/path
  std::string method = "GET";
  double rate = 50'000;
  double duration_s = 10;
  int connections = 64;
  std::string json_file;
  std::string command_line;
};
int RunHttpBench(const HttpBenchOptions& options);

struct RedisBenchOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  double rate = 50'000;
  double duration_s = 10;
  int connections = 64;
  // Units in stock before the run: by default more than the requests, so that every call
  // decrements (and, with appendfsync always, is written and synced).
  int64_t stock = 0;
  std::string json_file;
  std::string command_line;
};
// Loads the classic flash-sale decrement (`if stock > 0 then decr`) as a Lua script and
// runs it with EVALSHA on the schedule.
int RunRedisDecrBench(const RedisBenchOptions& options);

struct MigrationBenchOptions {
  std::string self_exe;  // the meridian binary, to start the private cluster with
  int64_t users = 2000;  // US users moved from beijing to oregon
  int64_t records = 10;  // records per user
  int64_t record_bytes = 1024;
  int parallel = 8;                 // users moving at once; the baseline's connections
  std::string storage = "rocksdb";  // as FlashSaleOptions
  int nodes_per_region = 1;
  std::string json_file;
  std::string command_line;  // recorded in the JSON
};
// An online migration of misplaced users (legacy -> current policy) in a private cluster:
// users moved per second and fence durations, against durable PUTs of the same bytes into
// the destination.
int RunMigrationBench(const MigrationBenchOptions& options);

}  // namespace meridian::bench
