#include "node/node.h"

#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "accounts/accounts.h"
#include "audit/log.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"
#include "common/worker_pool.h"
#include "crypto/crypto.h"
#include "keys/envelope.h"
#include "keys/keys.h"
#include "node/inter_region.h"
#include "node/migration.h"
#include "node/policy_service.h"
#include "node/rebalancer.h"
#include "node/router.h"
#include "node/witness.h"
#include "shop/shop.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::node {
namespace {

// After a KEK rotation, rewraps every data key under the new KEK in the background and
// then destroys the KEK versions nothing uses any more. Also runs once at start, so a
// rotation done offline (`meridian keys rotate`) completes when the node comes up.
class KeyMaintenance {
 public:
  KeyMaintenance(keys::KeyProvider& keys, keys::EnvelopeCodec& codec, audit::AuditSink& audit,
                 std::string region)
      : keys_(keys),
        codec_(codec),
        audit_(audit),
        region_(std::move(region)),
        thread_(NamedThread("key-upkeep", [this] { Loop(); })) {
    Trigger();
  }
  ~KeyMaintenance() { Stop(); }
  void Trigger() {
    std::lock_guard lock(mu_);
    pending_ = true;
    cv_.notify_one();
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || pending_; });
        if (stop_) return;
        pending_ = false;
      }
      auto n = codec_.RewrapAll();
      if (!n.ok()) {
        log::Error("rewrap_failed", {{"error", n.status().message()}});
        continue;
      }
      const uint32_t primary = keys_.PrimaryKekVersion();
      for (uint32_t v : keys_.KekVersions()) {
        if (v == primary) continue;
        auto left = codec_.CountUnder(v);
        if (left.ok() && *left == 0 && keys_.DestroyKek(v).ok()) {
          log::Info("kek_destroyed", {{"kek_version", std::to_string(v)}});
          LogKeyOperation("key.kek_destroy", {{"kek_version", v}});
        }
      }
      if (*n > 0) LogKeyOperation("key.rewrap", {{"rewrapped", *n}, {"kek_version", primary}});
      log::Info("rewrap_done",
                {{"rewrapped", std::to_string(*n)}, {"kek_version", std::to_string(primary)}});
    }
  }

  void LogKeyOperation(std::string_view op, Json details) {
    Status st = audit_.Commit(
        {},
        {audit::MakeEntry(op, region_, {}, SystemClock::Instance().NowMs(), std::move(details))});
    if (!st.ok()) log::Error("audit_failed", {{"op", std::string(op)}, {"error", st.message()}});
  }

  keys::KeyProvider& keys_;
  keys::EnvelopeCodec& codec_;
  audit::AuditSink& audit_;
  std::string region_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;
  bool stop_ = false;
  std::thread thread_;
};

// Logs a KEK rotated while the node was down (`meridian keys rotate`, offline). The version
// last logged is kept next to the log, so a restart without a change adds nothing. (The
// policy in force is logged by PolicyService.)
Status LogKekChangeSinceLastStart(audit::AuditLog& log, storage::Store& store,
                                  const std::string& region, uint32_t kek_version) {
  using storage::Space;
  const std::string kek_now = std::to_string(kek_version);
  ASSIGN_OR_RETURN(auto kek_seen, store.Get(Space::kMeta, std::string(kLoggedKekVersionKey)));
  if (kek_seen.value_or("") == kek_now) return Status::Ok();
  storage::WriteBatch b;
  b.Put(Space::kMeta, std::string(kLoggedKekVersionKey), kek_now);
  return log.Commit(std::move(b), {audit::MakeEntry(kek_seen ? "key.kek_rotate" : "key.kek_create",
                                                    region, {}, SystemClock::Instance().NowMs(),
                                                    {{"kek_version", kek_version}})});
}

}  // namespace

Result<storage::StorePtr> OpenRegionStore(const config::ClusterConfig& cfg,
                                          const config::RegionConfig& region) {
  if (!region.database_url.empty()) {
    return storage::OpenPostgres(region.database_url, cfg.knobs.database_connections);
  }
  return storage::OpenRocksDb(region.data_dir + "/db");
}

int RunNode(const std::string& config_path, const std::string& region, int node_index) {
  log::Init(region);
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(config_path, &diags);
  if (!cfg.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    std::fprintf(stderr, "meridian node: invalid configuration, not starting\n");
    return 2;
  }
  const config::RegionConfig* listed = cfg->Find(region);
  if (listed == nullptr) {
    std::fprintf(stderr, "meridian node: region '%s' is not in %s\n", region.c_str(),
                 config_path.c_str());
    return 2;
  }
  if (node_index < 0 || static_cast<size_t>(node_index) >= listed->nodes.size()) {
    std::fprintf(stderr, "meridian node: region '%s' has %zu node(s); --node %d is not one\n",
                 region.c_str(), listed->nodes.size(), node_index);
    return 2;
  }
  // This node's own address; the rest of the region's settings are shared by its nodes.
  config::RegionConfig me = *listed;
  me.listen_host = listed->nodes[node_index].listen_host;
  me.listen_port = listed->nodes[node_index].listen_port;
  me.url = listed->nodes[node_index].url;
  const config::RegionConfig* self = &me;
  if (auto st = crypto::Init(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  auto admin_token = config::LoadAdminToken(*cfg);
  if (!admin_token.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", admin_token.status().message().c_str());
    return 2;
  }
  auto keystore = keys::OpenRegionKeystore(*cfg, region, SystemRandom::Instance());
  if (!keystore.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", keystore.status().message().c_str());
    return 2;
  }
  keys::KeyProvider& key_provider = **keystore;
  auto phone_key = key_provider.PseudonymKey("phone");
  auto names_key = key_provider.PseudonymKey("names");
  if (!phone_key.ok() || !names_key.ok()) {
    std::fprintf(stderr, "meridian node: the keystore lacks pseudonym keys\n");
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
  auto raw_store = OpenRegionStore(*cfg, *self);
  if (!raw_store.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", raw_store.status().ToString().c_str());
    return 1;
  }
  const policy::Role role = self->role;
  const policy::Policy& pol = cfg->policy;
  auto store = storage::WithResidencyGuard(
      std::move(raw_store).value(), region,
      [role, &pol](policy::DataClass c) { return pol.MayHold(role, c); });
  keys::EnvelopeCodec codec(key_provider, *store, SystemRandom::Instance(), SystemClock::Instance(),
                            cfg->knobs.data_key_cache_ms,
                            static_cast<size_t>(cfg->knobs.data_key_cache_keys));
  // Keys shredded just before a crash may still sit in the engine's files: purge them.
  if (auto st = codec.PurgeShredded(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }

  audit::AuditLog audit_log(
      *store, region, SystemClock::Instance(),
      [&key_provider](std::string_view text) { return key_provider.Sign(text); },
      key_provider.SigningPublicKey());
  if (auto st = audit_log.Start(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  PolicyService policies(*cfg, region, *store, audit_log);
  if (auto st = policies.Start(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  if (auto st =
          LogKekChangeSinceLastStart(audit_log, *store, region, key_provider.PrimaryKekVersion());
      !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  Metrics metrics(region);
  net::ClientOptions copts;
  if (cfg->tls) {
    copts.ca_file = cfg->ca_file;
    // Mutual TLS between regions: this node proves which region it is.
    copts.cert_file = self->cert_file;
    copts.key_file = self->key_file;
  }
  auto client = net::MakeClient(copts);
  if (!client.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", client.status().ToString().c_str());
    return 1;
  }
  InterRegion inter(*cfg, region, key_provider.InternalToken(), std::move(client).value(), metrics);
  PeerDirectory directory(inter);

  std::unique_ptr<accounts::Accounts> accounts;
  if (role == policy::Role::kHome) {
    accounts = std::make_unique<accounts::Accounts>(
        *store, codec, audit_log, directory, SystemClock::Instance(), SystemRandom::Instance(),
        accounts::AccountKeys{key_provider.TokenKey(), *phone_key, *names_key},
        accounts::AccountSettings{region, cfg->knobs.dev_fast_password_hashing,
                                  cfg->knobs.token_ttl_s * 1000});
  }
  shop::Shop shop(*store, codec, audit_log, SystemClock::Instance(), SystemRandom::Instance(),
                  *names_key, *phone_key,
                  shop::ShopSettings{.region = region,
                                     .home = role == policy::Role::kHome,
                                     .node = "n" + std::to_string(node_index),
                                     .lease_units = cfg->knobs.lease_units,
                                     .lease_idle_ms = cfg->knobs.lease_idle_ms,
                                     .lease_timeout_ms = cfg->knobs.lease_timeout_ms});
  if (auto st = shop.Start(); !st.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", st.ToString().c_str());
    return 1;
  }
  Rebalancer rebalancer(shop, inter, *cfg);
  if (role == policy::Role::kHome) {
    shop.SetPull([&rebalancer](const std::string& sale_id, bool asker_out) {
      return rebalancer.Pull(sale_id, asker_out);
    });
    rebalancer.Start();
  }
  policies.CatchUp(inter);  // a policy changed while this node was down
  std::unique_ptr<Migrations> migrations;
  if (role == policy::Role::kHome) {
    migrations = std::make_unique<Migrations>(
        MigrationContext{*cfg, region, *store, *accounts, shop, codec, key_provider, inter,
                         policies},
        MigrationSettings{.parallel = cfg->knobs.migration_parallel,
                          .users_per_s = static_cast<double>(cfg->knobs.migration_users_per_s),
                          .node = "n" + std::to_string(node_index),
                          .runner_timeout_ms = cfg->knobs.lease_timeout_ms});
  }
  WorkerPool workers(cfg->knobs.workers, static_cast<size_t>(cfg->knobs.workers) * 64);
  WorkerPool internal_workers(cfg->knobs.internal_workers,
                              static_cast<size_t>(cfg->knobs.internal_workers) * 64, "internal");
  KeyMaintenance maintenance(key_provider, codec, audit_log, region);
  AuditDaemon audit_daemon(audit_log, *store, inter, *cfg, key_provider, metrics,
                           role == policy::Role::kHome);
  audit_daemon.Start();
  auto router = MakeRouter(
      NodeContext{*cfg, *self, *admin_token, key_provider, *phone_key, accounts.get(), shop,
                  audit_log, policies, migrations.get(), [&] { return audit_daemon.Alarms(); },
                  [&] { maintenance.Trigger(); }, inter, metrics, workers, internal_workers});

  net::ServerOptions sopts;
  sopts.host = self->listen_host;
  sopts.port = self->listen_port;
  sopts.io_threads = cfg->knobs.io_threads;
  sopts.tls = cfg->tls;
  sopts.cert_file = self->cert_file;
  sopts.key_file = self->key_file;
  if (cfg->tls) sopts.client_ca_file = cfg->ca_file;
  sopts.max_header_bytes = cfg->knobs.max_header_bytes;
  sopts.read_timeout = std::chrono::milliseconds(cfg->knobs.read_timeout_ms);
  sopts.shutdown_grace = std::chrono::milliseconds(cfg->knobs.shutdown_grace_ms);
  auto server = net::StartServer(sopts, *router);
  // Migrations resume once the node answers (destinations call back into it).
  if (migrations) (void)migrations->Start();
  if (!server.ok()) {
    std::fprintf(stderr, "meridian node: %s\n", server.status().ToString().c_str());
    return 1;
  }
  log::Info("node_started", {{"region", region},
                             {"role", std::string(policy::RoleName(role))},
                             {"node", std::to_string(node_index)},
                             {"url", self->url},
                             {"policy_version", std::to_string(pol.version())}});

  int sig = 0;
  sigwait(&sigs, &sig);
  log::Info("node_stopping", {{"signal", std::to_string(sig)}});
  (*server)->Shutdown();
  (*server)->Wait();
  if (migrations) migrations->Stop();
  workers.Stop();
  internal_workers.Stop();
  audit_log.Flush();  // purchases answered from its writer finish before the shop stops
  audit_daemon.Stop();
  rebalancer.Stop();
  shop.Stop();
  maintenance.Stop();
  log::Info("node_stopped", {});
  return 0;
}

}  // namespace meridian::node
