#include "node/node.h"

#include <signal.h>

#include <cstdio>
#include <filesystem>

#include "accounts/accounts.h"
#include "common/log.h"
#include "common/random.h"
#include "common/worker_pool.h"
#include "crypto/crypto.h"
#include "node/inter_region.h"
#include "node/router.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::node {

int RunNode(const std::string& config_path, const std::string& region) {
  log::Init(region);
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(config_path, &diags);
  if (!cfg.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    std::fprintf(stderr, "meridian node: invalid configuration, not starting\n");
    return 2;
  }
  const config::RegionConfig* self = cfg->Find(region);
  if (self == nullptr) {
    std::fprintf(stderr, "meridian node: region '%s' is not in %s\n", region.c_str(),
                 config_path.c_str());
    return 2;
  }
  if (auto st = crypto::Init(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  auto secrets = config::LoadSecrets(*cfg, region);
  if (!secrets.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", secrets.status().message().c_str());
    return 2;
  }

  // Signals are taken by sigwait below: block them before any thread starts.
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(self->data_dir, ec);
  auto raw_store = storage::OpenRocksDb(self->data_dir + "/db");
  if (!raw_store.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", raw_store.status().ToString().c_str());
    return 1;
  }
  const policy::Role role = self->role;
  const policy::Policy& pol = cfg->policy;
  auto store = storage::WithResidencyGuard(
      std::move(raw_store).value(), region,
      [role, &pol](policy::DataClass c) { return pol.MayHold(role, c); });
  auto codec = storage::MakeFramingCodec();

  Metrics metrics(region);
  net::ClientOptions copts;
  if (cfg->tls) copts.ca_file = cfg->ca_file;
  auto client = net::MakeClient(copts);
  if (!client.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", client.status().ToString().c_str());
    return 1;
  }
  InterRegion inter(*cfg, region, secrets->internal_token, std::move(client).value(), metrics);
  PeerDirectory directory(inter);

  std::unique_ptr<accounts::Accounts> accounts;
  if (role == policy::Role::kHome) {
    accounts = std::make_unique<accounts::Accounts>(
        *store, *codec, directory, SystemClock::Instance(), SystemRandom::Instance(),
        accounts::AccountKeys{secrets->token_key, secrets->directory_key, secrets->names_key},
        accounts::AccountSettings{region, cfg->knobs.dev_fast_password_hashing,
                                  cfg->knobs.token_ttl_s * 1000});
  }
  WorkerPool workers(cfg->knobs.workers, static_cast<size_t>(cfg->knobs.workers) * 64);
  auto router =
      MakeRouter(NodeContext{*cfg, *self, *secrets, accounts.get(), inter, metrics, workers});

  net::ServerOptions sopts;
  sopts.host = self->listen_host;
  sopts.port = self->listen_port;
  sopts.io_threads = cfg->knobs.io_threads;
  sopts.tls = cfg->tls;
  sopts.cert_file = self->cert_file;
  sopts.key_file = self->key_file;
  sopts.max_header_bytes = cfg->knobs.max_header_bytes;
  sopts.read_timeout = std::chrono::milliseconds(cfg->knobs.read_timeout_ms);
  sopts.shutdown_grace = std::chrono::milliseconds(cfg->knobs.shutdown_grace_ms);
  auto server = net::StartServer(sopts, *router);
  if (!server.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", server.status().ToString().c_str());
    return 1;
  }
  log::Info("node_started", {{"region", region},
                             {"role", std::string(policy::RoleName(role))},
                             {"url", self->url},
                             {"policy_version", std::to_string(pol.version())}});

  int sig = 0;
  sigwait(&sigs, &sig);
  log::Info("node_stopping", {{"signal", std::to_string(sig)}});
  (*server)->Shutdown();
  (*server)->Wait();
  workers.Stop();
  log::Info("node_stopped", {});
  return 0;
}

}  // namespace meridian::node
