// The `meridian` command: parses arguments and calls into the library, nothing else.
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/bench.h"
#include "dev/dev.h"
#include "node/node.h"
#include "tools/tools.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "dev"
#endif

namespace {
std::string CommandLine(int argc, char** argv) {
  std::string out = "meridian";
  for (int i = 1; i < argc; ++i) out += std::string(" ") + argv[i];
  return out;
}

std::string SelfExe(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}
}  // namespace

int main(int argc, char** argv) {
  using meridian::tools::ClientArgs;
  CLI::App app{"Meridian: multi-region data residency and flash sales"};
  app.require_subcommand(1);

  std::string config_path, region;
  auto* node = app.add_subcommand("node", "Run one region node of a cluster");
  node->add_option("--config", config_path, "cluster config (TOML)")->required();
  node->add_option("--region", region, "region to serve")->required();
  int node_index = 0;
  node->add_option("--node", node_index,
                   "which of the region's nodes (its index in the region's 'nodes', from 0)");

  meridian::dev::DevOptions dev_opts;
  bool no_latency = false;
  bool write_only = false;
  auto* dev = app.add_subcommand("dev", "Start the local four-region cluster on loopback");
  dev->add_option("--dir", dev_opts.dir, "data folder")->capture_default_str();
  dev->add_option("--base-port", dev_opts.base_port,
                  "first port (beijing, oregon, singapore, california follow)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65532));
  dev->add_flag("--plaintext", dev_opts.plaintext, "plain HTTP instead of TLS");
  dev->add_option("--policy", dev_opts.policy, "current, legacy or a policy file")
      ->capture_default_str();
  dev->add_flag("--no-latency", no_latency, "turn off the emulated WAN latency");
  dev->add_option("--io-threads", dev_opts.io_threads, "event loops per node")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  dev->add_flag("--write-config", write_only, "write the cluster files and keystores, then exit");
  dev->add_option("--scenario", dev_opts.scenario,
                  "play a story once the cluster is up: great-shift (legacy policy, users from "
                  "many countries, live traffic, the current policy, the move)")
      ->check(CLI::IsMember({"great-shift"}));
  dev->add_option("--scenario-users", dev_opts.scenario_users, "users the scenario registers")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  dev->add_option("--storage", dev_opts.storage,
                  "rocksdb (embedded) or postgres (a private PostgreSQL server per region, "
                  "or --database-url)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rocksdb", "postgres"}));
  dev->add_option("--database-url", dev_opts.database_url,
                  "with --storage postgres: each region's database, {region} replaced by its "
                  "name, e.g. postgresql://db.example/meridian_{region}");
  dev->add_option("--nodes-per-region", dev_opts.nodes_per_region,
                  "nodes (processes) per region, sharing the region's database (more than one "
                  "needs --storage postgres)")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));

  auto* pol = app.add_subcommand("policy", "Residency policy tools");
  pol->require_subcommand(1);
  std::string policy_file, policy_cluster;
  auto* check = pol->add_subcommand("check", "Validate a policy file (or builtin name)");
  check->add_option("file", policy_file, "policy TOML file, or current/legacy")->required();
  check->add_option("--config", policy_cluster, "check region names against this cluster");

  auto* keys = app.add_subcommand("keys", "Keystores: init, rotate, status");
  keys->require_subcommand(1);
  std::string keys_config, keys_region;
  auto* kinit = keys->add_subcommand("init", "Create the cluster's missing keystores");
  kinit->add_option("--config", keys_config, "cluster config")->required();
  auto* krotate = keys->add_subcommand("rotate", "Make a new KEK version primary");
  auto* kstatus = keys->add_subcommand("status", "Show key versions and public keys");
  for (auto* sub : {krotate, kstatus}) {
    sub->add_option("--config", keys_config, "cluster config")->required();
    sub->add_option("--region", keys_region, "region")->required();
  }

  ClientArgs ca;
  auto* client = app.add_subcommand("client", "Talk to a cluster as a user (seals by default)");
  client->require_subcommand(1);
  client->add_option("--url", ca.url, "any node's URL")->required();
  client->add_option("--ca", ca.ca_file, "CA certificate for https");
  client->add_option("--token", ca.token, "bearer token from register or login");
  client->add_flag("--plain", ca.plain, "send identifiers unsealed");
  auto* creg = client->add_subcommand("register", "Create an account");
  creg->add_option("--country", ca.country)->required();
  creg->add_option("--phone", ca.phone)->required();
  creg->add_option("--password", ca.password)->required();
  creg->add_option("--name", ca.name);
  creg->add_option("--email", ca.email);
  auto* clogin = client->add_subcommand("login", "Log in");
  clogin->add_option("--phone", ca.phone)->required();
  clogin->add_option("--password", ca.password)->required();
  auto* cme = client->add_subcommand("me", "Show the profile");
  auto* cput = client->add_subcommand("put", "Store a record");
  auto* cget = client->add_subcommand("get", "Read a record");
  for (auto* sub : {cput, cget}) {
    sub->add_option("collection", ca.collection)->required();
    sub->add_option("key", ca.key)->required();
  }
  cput->add_option("body", ca.body)->required();

  auto* bench = app.add_subcommand("bench", "Open-loop load benchmarks (see BENCHMARKS.md)");
  bench->require_subcommand(1);
  meridian::bench::FlashSaleOptions fs;
  auto* bfs = bench->add_subcommand(
      "flash-sale", "Buyers rush one sale: sell-out time, latency by outcome, oversold, lost");
  bfs->add_option("--url", fs.url,
                  "a running cluster's home node for --country (default: start a private one)");
  bfs->add_option("--admin-token-file", fs.admin_token_file, "the admin token, with --url");
  bfs->add_option("--endpoint", fs.endpoint,
                  "purchase, or sold-out (the stock is gone before the clock starts)")
      ->capture_default_str()
      ->check(CLI::IsMember({"purchase", "sold-out"}));
  bfs->add_option("--buyers", fs.buyers,
                  "buyers registered before the sale (sold-out: 2000 at most)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{10'000'000}));
  bfs->add_option("--stock", fs.stock, "units for sale, all in the buyers' home region")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  bfs->add_option("--rate", fs.rate, "offered purchases per second")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bfs->add_option("--duration-s", fs.duration_s,
                  "purchase: at most rate x duration buyers press (0: every buyer once); "
                  "sold-out: the run's length (0: 10 s)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  bfs->add_option("--connections", fs.connections, "keep-alive connections of the generator")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  bfs->add_option("--country", fs.country, "the buyers' country (IN, US or CN)")
      ->capture_default_str();
  bfs->add_option("--io-threads", fs.io_threads, "event loops per node of the private cluster")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  bfs->add_option("--setup-connections", fs.setup_connections,
                  "connections for registering buyers and checking orders")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000));
  bfs->add_option("--verify-buyers", fs.verify_buyers,
                  "winners whose order lists are checked after the restart")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  bool no_kill = false;
  bfs->add_flag("--no-kill", no_kill, "count lost orders without the kill -9 and restart");
  bfs->add_option("--storage", fs.storage, "the private cluster's engine: rocksdb or postgres")
      ->capture_default_str()
      ->check(CLI::IsMember({"rocksdb", "postgres"}));
  bfs->add_option("--nodes-per-region", fs.nodes_per_region,
                  "nodes per region of the private cluster (more than one needs postgres; "
                  "the generator spreads its connections over the home region's nodes)")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));
  bfs->add_option("--pgbench-seconds", fs.pgbench_seconds,
                  "with postgres: then pgbench -N on the home region's server for this long")
      ->capture_default_str()
      ->check(CLI::Range(0, 600));
  bfs->add_option("--json", fs.json_file, "also write the results to this JSON file");

  meridian::bench::MigrationBenchOptions mb;
  auto* bmig = bench->add_subcommand(
      "migration", "Users moved per second and fence durations, against copying the same bytes");
  bmig->add_option("--users", mb.users, "US users moved from beijing to oregon")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}));
  bmig->add_option("--records", mb.records, "records per user")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{10'000}));
  bmig->add_option("--record-bytes", mb.record_bytes, "bytes per record")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1 << 20}));
  bmig->add_option("--parallel", mb.parallel,
                   "users moving at once (migration_parallel); the baseline's connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  bmig->add_option("--storage", mb.storage, "the private cluster's engine: rocksdb or postgres")
      ->capture_default_str()
      ->check(CLI::IsMember({"rocksdb", "postgres"}));
  bmig->add_option("--nodes-per-region", mb.nodes_per_region,
                   "nodes per region (more than one needs postgres; writes spread over them)")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));
  bmig->add_option("--json", mb.json_file, "also write the results to this JSON file");

  meridian::bench::HttpBenchOptions hb;
  auto* bhttp = bench->add_subcommand(
      "http", "The same open-loop generator on any plain-HTTP URL (e.g. nginx's fixed answer)");
  bhttp->add_option("--url", hb.url, "http://HOST:PORT/PATH")->required();
  bhttp->add_option("--method", hb.method, "request method")->capture_default_str();
  meridian::bench::RedisBenchOptions rb;
  auto* bredis = bench->add_subcommand(
      "redis-decr", "The same generator running Redis's Lua stock decrement (EVALSHA)");
  bredis->add_option("--host", rb.host, "Redis host (numeric)")->capture_default_str();
  bredis->add_option("--port", rb.port, "Redis port")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  bredis->add_option("--stock", rb.stock, "units before the run (default: more than requests)");
  auto load_options = [](CLI::App* sub, double& rate, double& duration, int& conns,
                         std::string& json) {
    sub->add_option("--rate", rate, "offered requests per second")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_option("--duration-s", duration, "length of the schedule")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_option("--connections", conns, "keep-alive connections")
        ->capture_default_str()
        ->check(CLI::Range(1, 10'000));
    sub->add_option("--json", json, "also write the results to this JSON file");
  };
  load_options(bhttp, hb.rate, hb.duration_s, hb.connections, hb.json_file);
  load_options(bredis, rb.rate, rb.duration_s, rb.connections, rb.json_file);

  meridian::tools::AuditVerifyArgs av;
  meridian::tools::AuditProveArgs ap;
  auto* audit = app.add_subcommand("audit", "Check a region's tamper-evident log from outside");
  audit->require_subcommand(1);
  auto* averify = audit->add_subcommand(
      "verify",
      "Verify a region's signed tree head, its cosignatures and every log entry (admin token); "
      "exit 1 naming the first bad index");
  averify->add_option("--url", av.url, "the node whose region's log to check")->required();
  averify->add_option("--trusted", av.trusted_file,
                      "a checkpoint saved earlier (--save): the log must be consistent with it");
  averify->add_option("--save", av.save_file, "write the verified checkpoint here");
  averify->add_option("--admin-token-file", av.admin_token_file,
                      "the admin token (default: $MERIDIAN_ADMIN_TOKEN)");
  averify->add_option("--ca-file", av.ca_file, "CA certificate for https");
  auto* aprove = audit->add_subcommand(
      "prove", "Check a saved GET /v1/me/residency report offline: tree head and proofs");
  aprove->add_option("--report", ap.report_file, "the residency report (JSON)")->required();
  aprove->add_option("--regions", ap.regions_file,
                     "a saved GET /v1/regions with the home region's audit_verifier_key "
                     "(default: the key in the report)");

  meridian::tools::MigrateArgs ma;
  auto* migrate = app.add_subcommand("migrate", "Move users between regions (admin token)");
  migrate->require_subcommand(1);
  auto* mplan =
      migrate->add_subcommand("plan", "Users and bytes a migration would move, by destination");
  auto* mstart =
      migrate->add_subcommand("start", "Start moving a region's misplaced users; prints the id");
  auto* mstatus = migrate->add_subcommand(
      "status", "A migration's progress; --watch until it ends (exit 0 done, 1 failed)");
  auto* mpause =
      migrate->add_subcommand("pause", "Pause a migration; resume goes on where it stopped");
  auto* mresume = migrate->add_subcommand("resume", "Resume a paused migration");
  auto* mverify = migrate->add_subcommand(
      "verify", "Check every moved user again: gone from the source, active at the destination");
  for (auto* sub : {mplan, mstart, mstatus, mpause, mresume, mverify}) {
    sub->add_option("--url", ma.url, "any node's URL")->required();
    sub->add_option("--admin-token-file", ma.admin_token_file,
                    "the admin token (default: $MERIDIAN_ADMIN_TOKEN)");
    sub->add_option("--ca-file", ma.ca_file, "CA certificate for https");
    sub->add_flag("--json", ma.json, "print the API's JSON answer");
  }
  for (auto* sub : {mplan, mstart}) {
    sub->add_option("--from", ma.from, "the region users leave")->required();
  }
  mstart->add_option("--cohort", ma.cohort, "which users move")
      ->capture_default_str()
      ->check(CLI::IsMember({"misplaced"}));
  for (auto* sub : {mstatus, mpause, mresume, mverify}) {
    sub->add_option("--id", ma.id, "the migration id (from start)")->required();
  }
  mstatus->add_flag("--watch", ma.watch, "refresh until the migration is no longer running");
  mstatus->add_option("--interval-ms", ma.interval_ms, "refresh interval with --watch")
      ->capture_default_str()
      ->check(CLI::Range(10, 3'600'000));

  app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // `meridian migrate` exits 2 on usage errors (its --help still exits 0).
    return code != 0 && migrate->parsed() ? 2 : code;
  }

  if (node->parsed()) return meridian::node::RunNode(config_path, region, node_index);
  if (dev->parsed()) {
    dev_opts.emulate_latency = !no_latency;
    dev_opts.self_exe = SelfExe(argv[0]);
    return write_only ? meridian::dev::WriteCluster(dev_opts) : meridian::dev::RunDev(dev_opts);
  }
  if (check->parsed()) return meridian::tools::PolicyCheck(policy_file, policy_cluster);
  if (kinit->parsed()) return meridian::tools::KeysInit(keys_config);
  if (krotate->parsed()) return meridian::tools::KeysRotate(keys_config, keys_region);
  if (kstatus->parsed()) return meridian::tools::KeysStatus(keys_config, keys_region);
  if (bfs->parsed()) {
    fs.self_exe = SelfExe(argv[0]);
    fs.kill_restart = !no_kill;
    fs.command_line = CommandLine(argc, argv);
    return meridian::bench::RunFlashSale(fs);
  }
  if (bmig->parsed()) {
    mb.self_exe = SelfExe(argv[0]);
    mb.command_line = CommandLine(argc, argv);
    return meridian::bench::RunMigrationBench(mb);
  }
  if (bhttp->parsed()) {
    hb.command_line = CommandLine(argc, argv);
    return meridian::bench::RunHttpBench(hb);
  }
  if (bredis->parsed()) {
    rb.command_line = CommandLine(argc, argv);
    return meridian::bench::RunRedisDecrBench(rb);
  }
  if (averify->parsed()) return meridian::tools::AuditVerify(av);
  if (aprove->parsed()) return meridian::tools::AuditProve(ap);
  if (mplan->parsed()) return meridian::tools::MigratePlan(ma);
  if (mstart->parsed()) return meridian::tools::MigrateStart(ma);
  if (mstatus->parsed()) return meridian::tools::MigrateStatus(ma);
  if (mpause->parsed()) return meridian::tools::MigratePause(ma);
  if (mresume->parsed()) return meridian::tools::MigrateResume(ma);
  if (mverify->parsed()) return meridian::tools::MigrateVerify(ma);
  if (creg->parsed()) return meridian::tools::ClientRegister(ca);
  if (clogin->parsed()) return meridian::tools::ClientLogin(ca);
  if (cme->parsed()) return meridian::tools::ClientMe(ca);
  if (cput->parsed()) return meridian::tools::ClientPut(ca);
  if (cget->parsed()) return meridian::tools::ClientGet(ca);
  std::printf("meridian %s\n", MERIDIAN_VERSION);
  return 0;
}
