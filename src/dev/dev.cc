#include "dev/dev.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "common/random.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "dev/scenario.h"
#include "keys/keys.h"
#include "net/http.h"
#include "storage/private_postgres.h"

namespace meridian::dev {
namespace fs = std::filesystem;
namespace {

struct RegionDef {
  const char* name;
  const char* role;
};
// The built-in layout, in port order (API.md, "Local cluster").
constexpr RegionDef kLayout[] = {
    {"beijing", "home"}, {"oregon", "home"}, {"singapore", "home"}, {"california", "edge"}};

// Approximate public round-trip times (SYSTEM.md, "Latency between regions").
constexpr const char* kLatency = R"([latency_ms]
oregon = { california = 19, singapore = 161, beijing = 150 }
california = { singapore = 174, beijing = 160 }
singapore = { beijing = 80 }
)";

std::string RenderConfig(const DevOptions& o, const std::string& dir,
                         const std::string& policy_spec) {
  std::string out = fmt::format(
      "# Written by `meridian dev`; rewritten at each start.\n"
      "[cluster]\npolicy = \"{}\"\ntls = {}\nca_file = \"ca.pem\"\n"
      "admin_token_file = \"admin.token\"\nsecrets_dir = \"secrets\"\n"
      "keystore_secret_file = \"secrets/keystore.secret\"\nkeystore_kdf = \"dev-fast\"\n\n"
      "[node]\nio_threads = {}\npassword_hashing = \"dev-fast\"\n"
      "emulate_latency = {}\n\n",
      policy_spec, o.plaintext ? "false" : "true", o.io_threads,
      o.emulate_latency ? "true" : "false");
  const int regions = static_cast<int>(std::size(kLayout));
  int port = o.base_port;
  for (const auto& r : kLayout) {
    const char* scheme = o.plaintext ? "http" : "https";
    out += fmt::format("[[regions]]\nname = \"{}\"\nrole = \"{}\"\ndata_dir = \"{}\"\n", r.name,
                       r.role, r.name);
    if (o.nodes_per_region <= 1) {
      out += fmt::format("listen = \"127.0.0.1:{}\"\nurl = \"{}://127.0.0.1:{}\"\n", port, scheme,
                         port);
    } else {
      out += "nodes = [\n";
      for (int k = 0; k < o.nodes_per_region; ++k) {
        const int p = port + k * regions;
        out += fmt::format("  {{ listen = \"127.0.0.1:{}\", url = \"{}://127.0.0.1:{}\" }},\n", p,
                           scheme, p);
      }
      out += "]\n";
    }
    if (std::string url = DatabaseUrl(o, dir, r.name); !url.empty()) {
      out += fmt::format("database_url = \"{}\"\n", url);
    }
    out += "\n";
    ++port;
  }
  return out + kLatency;
}

Status EnsureTls(const std::string& dir) {
  const std::string ca_cert = dir + "/ca.pem";
  const std::string ca_key = dir + "/secrets/ca.key";
  crypto::KeyAndCert ca;
  if (fs::exists(ca_cert) && fs::exists(ca_key)) {
    ca = {config::ReadFileOr(ca_key), config::ReadFileOr(ca_cert)};
  } else {
    ASSIGN_OR_RETURN(ca, crypto::GenerateCa("Meridian dev CA"));
    RETURN_IF_ERROR(config::WriteFileAtomic(ca_key, ca.key_pem, 0600));
    RETURN_IF_ERROR(config::WriteFileAtomic(ca_cert, ca.cert_pem));
    for (const auto& r : kLayout) fs::remove(dir + "/tls/" + r.name + ".pem");
  }
  std::error_code ec;
  fs::create_directories(dir + "/tls", ec);
  for (const auto& r : kLayout) {
    std::string cert = dir + "/tls/" + r.name + ".pem";
    if (fs::exists(cert)) continue;
    ASSIGN_OR_RETURN(auto kc, crypto::IssueNodeCert(ca, r.name, "127.0.0.1"));
    RETURN_IF_ERROR(config::WriteFileAtomic(dir + "/tls/" + r.name + ".key", kc.key_pem, 0600));
    RETURN_IF_ERROR(config::WriteFileAtomic(cert, kc.cert_pem));
  }
  return Status::Ok();
}

// The dev cluster keeps its keystore secret in a file beside the keystores; a production
// operator passes it in MERIDIAN_KEYSTORE_SECRET instead.
Status EnsureKeystores(const config::ClusterConfig& cfg) {
  std::error_code ec;
  fs::create_directories(cfg.secrets_dir, ec);
  if (!fs::exists(cfg.keystore_secret_file) && std::getenv("MERIDIAN_KEYSTORE_SECRET") == nullptr) {
    RETURN_IF_ERROR(config::WriteFileAtomic(cfg.keystore_secret_file,
                                            SystemRandom::Instance().Hex(24) + "\n", 0600));
  }
  ASSIGN_OR_RETURN(auto secret, keys::ReadSecret(cfg.keystore_secret_file));
  auto made = keys::InitKeystores(cfg, secret, SystemRandom::Instance(), SystemClock::Instance());
  return made.ok() ? Status::Ok() : made.status();
}

}  // namespace

pid_t SpawnNode(const std::string& exe, const std::string& config, const std::string& region,
                int node, const std::string& log_path) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: its own log file, default signal mask.
  int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const std::string index = std::to_string(node);
  execl(exe.c_str(), exe.c_str(), "node", "--config", config.c_str(), "--region", region.c_str(),
        "--node", index.c_str(), static_cast<char*>(nullptr));
  _exit(127);
}

namespace {

// Polls the node's health until it answers, the limit passes, or a child exits.
bool WaitHealthy(net::HttpClient& client, const std::string& url, std::chrono::seconds limit,
                 std::map<pid_t, std::string>& children) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0 && children.count(dead)) {
      std::fprintf(stderr, "meridian dev: the %s node exited during start-up\n",
                   children[dead].c_str());
      children.erase(dead);
      return false;
    }
    net::ClientCall call;
    call.base_url = url;
    call.request.method = "GET";
    call.request.target = "/v1/health";
    call.timeout = std::chrono::milliseconds(500);
    auto r = client.SendSync(std::move(call));
    if (r.ok() && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void StopAll(std::map<pid_t, std::string>& children) {
  for (auto& [pid, name] : children) kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!children.empty() && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      children.erase(pid);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  for (auto& [pid, name] : children) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  children.clear();
}

// Checks the scenario's options and makes the cluster start the way the story begins.
int PrepareScenario(DevOptions& o) {
  if (!IsKnownScenario(o.scenario)) {
    std::fprintf(stderr, "meridian dev: unknown scenario '%s' (known: great-shift)\n",
                 o.scenario.c_str());
    return 2;
  }
  const std::string start_policy = ScenarioStartPolicy(o.scenario);
  if (o.policy != "current" && o.policy != start_policy) {
    std::fprintf(stderr,
                 "meridian dev: --scenario %s starts with the %s policy and applies the current "
                 "one itself; drop --policy %s\n",
                 o.scenario.c_str(), start_policy.c_str(), o.policy.c_str());
    return 2;
  }
  o.policy = start_policy;
  // The story registers its own users: it needs a cluster that has none yet.
  for (const auto& r : kLayout) {
    const fs::path db = fs::path(o.dir) / r.name / "db";
    const fs::path pg = fs::path(o.dir) / r.name / "postgres";
    std::error_code ec;
    if (fs::exists(db, ec) || fs::exists(pg, ec)) {
      std::fprintf(stderr,
                   "meridian dev: --scenario %s needs a new cluster, but %s already holds "
                   "data; remove it or pass another --dir\n",
                   o.scenario.c_str(), o.dir.c_str());
      return 2;
    }
  }
  return 0;
}

std::string PrivateServerDir(const std::string& dir, const std::string& region) {
  return dir + "/" + region + "/postgres";
}

}  // namespace

Status StartPrivateDatabases(const std::string& dir,
                             std::vector<std::unique_ptr<storage::PrivatePostgres>>* out) {
  const size_t n = std::size(kLayout);
  std::vector<Status> status(n, Status::Ok());
  out->resize(n);
  std::vector<std::thread> starters;
  for (size_t i = 0; i < n; ++i) {
    starters.emplace_back([&, i] {
      auto pg = storage::PrivatePostgres::Start(PrivateServerDir(dir, kLayout[i].name));
      if (!pg.ok()) {
        status[i] = pg.status();
        return;
      }
      status[i] = (*pg)->CreateDatabase("meridian");
      (*out)[i] = std::move(pg).value();
    });
  }
  for (auto& t : starters) t.join();
  for (const Status& st : status) RETURN_IF_ERROR(st);
  return Status::Ok();
}

std::string NodeLogName(size_t k) {
  return k == 0 ? std::string("node.log") : fmt::format("node-{}.log", k);
}

std::string DatabaseUrl(const DevOptions& o, const std::string& dir, const std::string& region) {
  if (o.storage != "postgres") return {};
  if (o.database_url.empty())
    return storage::PrivatePostgres::UrlAt(PrivateServerDir(dir, region), "meridian");
  std::string url = o.database_url;
  for (size_t at; (at = url.find("{region}")) != std::string::npos;) url.replace(at, 8, region);
  return url;
}

int WriteCluster(const DevOptions& o) {
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  const std::string dir = fs::absolute(o.dir).lexically_normal().string();
  std::string policy_spec = o.policy;
  if (policy_spec != "current" && policy_spec != "legacy") {
    policy_spec = fs::absolute(policy_spec).lexically_normal().string();
  }
  const std::string cfg_path = dir + "/cluster.toml";
  if (o.storage != "rocksdb" && o.storage != "postgres") {
    std::fprintf(stderr, "meridian dev: --storage is rocksdb or postgres\n");
    return 2;
  }
  if (!o.database_url.empty() &&
      (o.storage != "postgres" || o.database_url.find("{region}") == std::string::npos)) {
    std::fprintf(stderr,
                 "meridian dev: --database-url needs --storage postgres and a {region} in it "
                 "(each region's data stays in its own database)\n");
    return 2;
  }
  if (o.nodes_per_region < 1 || o.nodes_per_region > 8 ||
      (o.nodes_per_region > 1 && o.storage != "postgres")) {
    std::fprintf(stderr,
                 "meridian dev: --nodes-per-region is 1 to 8, and more than one needs "
                 "--storage postgres (a region's nodes share its database)\n");
    return 2;
  }
  if (auto st = config::WriteFileAtomic(cfg_path, RenderConfig(o, dir, policy_spec)); !st.ok()) {
    std::fprintf(stderr, "meridian dev: %s\n", st.message().c_str());
    return 1;
  }
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(cfg_path, &diags);
  if (!cfg.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    return 2;
  }
  if (auto st = crypto::Init(); !st.ok()) return 1;
  Status st = config::EnsureAdminToken(*cfg);
  if (st.ok()) st = EnsureKeystores(*cfg);
  if (st.ok() && !o.plaintext) st = EnsureTls(dir);
  if (!st.ok()) {
    std::fprintf(stderr, "meridian dev: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}

int RunDev(const DevOptions& opts) {
  DevOptions o = opts;
  if (!o.scenario.empty()) {
    if (int rc = PrepareScenario(o); rc != 0) return rc;
  }
  if (int rc = WriteCluster(o); rc != 0) return rc;
  const std::string dir = fs::absolute(o.dir).lexically_normal().string();
  const std::string cfg_path = dir + "/cluster.toml";
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(cfg_path, &diags);
  if (!cfg.ok()) return 2;

  std::fprintf(stderr,
               "WARNING: development cluster: passwords are hashed with the minimum Argon2id "
               "cost (fast, NOT for production).\n");

  // An inherited SIG_IGN would discard these before sigwait sees them (and auto-reap the
  // children): restore the defaults first.
  for (int s : {SIGTERM, SIGINT, SIGCHLD}) signal(s, SIG_DFL);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  // A private PostgreSQL server per region (each region's data stays on its own server),
  // started together and stopped after the nodes.
  std::vector<std::unique_ptr<storage::PrivatePostgres>> databases;
  if (o.storage == "postgres" && o.database_url.empty()) {
    if (auto st = StartPrivateDatabases(dir, &databases); !st.ok()) {
      std::fprintf(stderr, "meridian dev: %s\n", st.message().c_str());
      return 1;
    }
  }
  std::map<pid_t, std::string> children;
  for (const auto& r : cfg->regions) {
    std::error_code ec;
    fs::create_directories(r.data_dir, ec);
    for (size_t k = 0; k < r.nodes.size(); ++k) {
      pid_t pid = SpawnNode(o.self_exe, cfg_path, r.name, static_cast<int>(k),
                            r.data_dir + "/" + NodeLogName(k));
      if (pid < 0) {
        std::fprintf(stderr, "meridian dev: cannot start the %s node\n", r.name.c_str());
        StopAll(children);
        return 1;
      }
      children[pid] = k == 0 ? r.name : r.name + " #" + std::to_string(k);
    }
  }

  net::ClientOptions copts;
  if (cfg->tls) copts.ca_file = cfg->ca_file;
  auto client = net::MakeClient(copts);
  bool healthy = client.ok();
  for (const auto& r : cfg->regions) {
    for (size_t k = 0; k < r.nodes.size(); ++k) {
      if (healthy && !WaitHealthy(**client, r.nodes[k].url, std::chrono::seconds(30), children)) {
        std::fprintf(stderr, "meridian dev: the %s node did not become healthy; see %s/%s\n",
                     r.name.c_str(), r.data_dir.c_str(), NodeLogName(k).c_str());
        healthy = false;
      }
    }
  }
  if (!healthy) {
    StopAll(children);
    return 1;
  }

  std::printf("\nMeridian dev cluster is up (data in %s)\n\n", dir.c_str());
  std::printf("  %-11s %-5s %-28s %s\n", "REGION", "ROLE", "URL", "LOG");
  for (const auto& r : cfg->regions) {
    for (size_t k = 0; k < r.nodes.size(); ++k) {
      std::printf("  %-11s %-5s %-28s %s/%s\n", r.name.c_str(),
                  std::string(policy::RoleName(r.role)).c_str(), r.nodes[k].url.c_str(),
                  r.data_dir.c_str(), NodeLogName(k).c_str());
    }
  }
  std::printf("\n  console:      %s/\n", cfg->regions.front().url.c_str());
  std::printf("  admin token:  %s\n", cfg->admin_token_file.c_str());
  if (cfg->tls) std::printf("  CA:           %s (curl --cacert)\n", cfg->ca_file.c_str());
  std::printf("  policy:       %s (version %lld)\n", cfg->policy.name().c_str(),
              static_cast<long long>(cfg->policy.version()));
  std::printf("  WAN latency:  %s\n\nCtrl-C stops every node.\n",
              cfg->knobs.emulate_latency ? "emulated" : "off");
  std::fflush(stdout);

  // The scenario plays from its own thread; the signals stay blocked there (the mask is
  // inherited), so this thread still sees every one of them.
  std::atomic<bool> stop_scenario{false};
  std::thread scenario;
  if (!o.scenario.empty()) {
    std::printf("\nScenario %s: %d users (the cluster keeps running afterwards)\n\n",
                o.scenario.c_str(), o.scenario_users);
    std::fflush(stdout);
    scenario = std::thread([&o, &cfg, &stop_scenario] {
      ScenarioOptions so;
      so.name = o.scenario;
      so.users = o.scenario_users;
      Status st = RunScenario(*cfg, so, stop_scenario);
      if (stop_scenario) return;
      if (st.ok()) {
        std::printf("%s: done; the cluster keeps running (Ctrl-C stops it)\n", so.name.c_str());
      } else {
        std::printf("%s: PROBLEM: %s\n%s: the cluster keeps running (Ctrl-C stops it)\n",
                    so.name.c_str(), st.message().c_str(), so.name.c_str());
      }
      std::fflush(stdout);
    });
  }
  // Stops the nodes first, so that a scenario call in flight fails at once, then joins it.
  auto stop_everything = [&] {
    stop_scenario = true;
    StopAll(children);
    if (scenario.joinable()) scenario.join();
  };

  for (;;) {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGCHLD) {
      int status = 0;
      pid_t pid;
      bool died = false;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = children.find(pid);
        if (it == children.end()) continue;
        std::fprintf(stderr, "meridian dev: the %s node exited unexpectedly (%s %d); stopping\n",
                     it->second.c_str(), WIFSIGNALED(status) ? "signal" : "status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        children.erase(it);
        died = true;
      }
      if (died) {
        stop_everything();
        return 1;
      }
      continue;
    }
    std::printf("meridian dev: stopping\n");
    std::fflush(stdout);
    stop_everything();
    return 0;
  }
}

}  // namespace meridian::dev
