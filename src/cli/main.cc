// The `meridian` command: parses arguments and calls into the library, nothing else.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "config/cluster.h"
#include "dev/dev.h"
#include "node/node.h"
#include "policy/policy.h"

#ifndef MERIDIAN_VERSION
#define MERIDIAN_VERSION "dev"
#endif

namespace {

std::string SelfExe(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}

int PolicyCheck(const std::string& file, const std::string& cluster) {
  using namespace meridian;
  std::vector<policy::Diagnostic> diags;
  policy::RegionRoles roles = policy::BuiltinRegionRoles();
  if (!cluster.empty()) {
    auto cfg = config::Load(cluster, &diags);
    if (!cfg.ok()) {
      for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      return 1;
    }
    roles = cfg->Roles();
  }
  auto p = policy::Load(file, roles, &diags);
  if (!p.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    return 1;
  }
  std::printf("%s: ok (policy \"%s\" version %lld, %zu countries listed, default %s)\n",
              file.c_str(), p->name().c_str(), static_cast<long long>(p->version()),
              p->countries().size(), p->default_region().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Meridian: multi-region data residency and flash sales"};
  app.require_subcommand(1);

  std::string config_path, region;
  auto* node = app.add_subcommand("node", "Run one region node of a cluster");
  node->add_option("--config", config_path, "cluster config (TOML)")->required();
  node->add_option("--region", region, "region to serve")->required();

  meridian::dev::DevOptions dev_opts;
  bool no_latency = false;
  auto* dev = app.add_subcommand("dev", "Start the local four-region cluster on loopback");
  dev->add_option("--dir", dev_opts.dir, "data folder")->capture_default_str();
  dev->add_option("--base-port", dev_opts.base_port,
                  "first port (beijing, oregon, singapore, "
                  "california follow)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65532));
  dev->add_flag("--plaintext", dev_opts.plaintext, "plain HTTP instead of TLS");
  dev->add_option("--policy", dev_opts.policy, "current, legacy or a policy file")
      ->capture_default_str();
  dev->add_flag("--no-latency", no_latency, "turn off the emulated WAN latency");
  dev->add_option("--io-threads", dev_opts.io_threads, "event loops per node")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  bool write_only = false;
  dev->add_flag("--write-config", write_only, "write the cluster files and exit");

  auto* pol = app.add_subcommand("policy", "Residency policy tools");
  pol->require_subcommand(1);
  std::string policy_file, policy_cluster;
  auto* check = pol->add_subcommand("check", "Validate a policy file (or builtin name)");
  check->add_option("file", policy_file, "policy TOML file, or current/legacy")->required();
  check->add_option("--config", policy_cluster, "check region names against this cluster");

  app.add_subcommand("version", "Print the version");

  CLI11_PARSE(app, argc, argv);

  if (node->parsed()) return meridian::node::RunNode(config_path, region);
  if (dev->parsed()) {
    dev_opts.emulate_latency = !no_latency;
    dev_opts.self_exe = SelfExe(argv[0]);
    return write_only ? meridian::dev::WriteCluster(dev_opts) : meridian::dev::RunDev(dev_opts);
  }
  if (check->parsed()) return PolicyCheck(policy_file, policy_cluster);
  std::printf("meridian %s\n", MERIDIAN_VERSION);
  return 0;
}
