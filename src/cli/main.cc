// The `meridian` command: parses arguments and calls into the library, nothing else.
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "dev/dev.h"
#include "node/node.h"
#include "tools/tools.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "dev"
#endif

namespace {
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

  app.add_subcommand("version", "Print the version");

  CLI11_PARSE(app, argc, argv);

  if (node->parsed()) return meridian::node::RunNode(config_path, region);
  if (dev->parsed()) {
    dev_opts.emulate_latency = !no_latency;
    dev_opts.self_exe = SelfExe(argv[0]);
    return write_only ? meridian::dev::WriteCluster(dev_opts) : meridian::dev::RunDev(dev_opts);
  }
  if (check->parsed()) return meridian::tools::PolicyCheck(policy_file, policy_cluster);
  if (kinit->parsed()) return meridian::tools::KeysInit(keys_config);
  if (krotate->parsed()) return meridian::tools::KeysRotate(keys_config, keys_region);
  if (kstatus->parsed()) return meridian::tools::KeysStatus(keys_config, keys_region);
  if (creg->parsed()) return meridian::tools::ClientRegister(ca);
  if (clogin->parsed()) return meridian::tools::ClientLogin(ca);
  if (cme->parsed()) return meridian::tools::ClientMe(ca);
  if (cput->parsed()) return meridian::tools::ClientPut(ca);
  if (cget->parsed()) return meridian::tools::ClientGet(ca);
  std::printf("meridian %s\n", MERIDIAN_VERSION);
  return 0;
}
