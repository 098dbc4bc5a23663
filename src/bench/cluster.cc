#include "bench/cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/proc_stat.h"
#include "common/random.h"
#include "dev/dev.h"
#include "net/http.h"

namespace meridian::bench {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Runs a command to completion with its output in `log`; returns its exit code.
int RunCommand(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

Result<std::unique_ptr<PrivateCluster>> PrivateCluster::Start(const PrivateClusterOptions& o) {
  // The benchmark reaps its own nodes: a parent that ignores SIGCHLD would make waitpid fail.
  signal(SIGCHLD, SIG_DFL);
  std::unique_ptr<PrivateCluster> c(new PrivateCluster(o));
  c->dir_ =
      (fs::temp_directory_path() / ("meridian-bench-" + SystemRandom::Instance().Hex(6))).string();
  std::error_code ec;
  fs::create_directories(c->dir_, ec);
  if (ec) return Error(Code::kInternal, "cannot create " + c->dir_);
  // Every node, restarts included, runs this copy: a rebuild of the binary during the run
  // cannot change or break what is measured.
  const std::string exe = c->dir_ + "/meridian";
  fs::copy_file(o.self_exe, exe, fs::copy_options::overwrite_existing, ec);
  if (ec) return Error(Code::kInternal, "cannot copy " + o.self_exe + ": " + ec.message());
  c->opts_.self_exe = exe;
  const int nodes = std::max(1, o.nodes_per_region);
  ASSIGN_OR_RETURN(int base, net::FreeLoopbackPorts(4 * nodes));
  std::vector<std::string> args = {exe,
                                   "dev",
                                   "--write-config",
                                   "--dir",
                                   c->dir_,
                                   "--base-port",
                                   std::to_string(base),
                                   "--plaintext",
                                   "--no-latency",
                                   "--io-threads",
                                   std::to_string(o.io_threads)};
  if (!o.policy.empty()) {
    args.emplace_back("--policy");
    args.push_back(o.policy);
  }
  if (o.storage == "postgres") {
    args.insert(args.end(), {"--storage", "postgres", "--nodes-per-region", std::to_string(nodes)});
    RETURN_IF_ERROR(dev::StartPrivateDatabases(c->dir_, &c->databases_));
  }
  if (RunCommand(args, c->dir_ + "/dev.log") != 0) {
    return Error(Code::kInternal,
                 "meridian dev --write-config failed: " + config::ReadFileOr(c->dir_ + "/dev.log"));
  }
  c->config_path_ = c->dir_ + "/cluster.toml";
  if (!o.node_knobs.empty()) {
    std::string cfg = config::ReadFileOr(c->config_path_);
    auto pos = cfg.find("[node]\n");
    if (pos == std::string::npos) {
      cfg += "\n[node]\n" + o.node_knobs + "\n";
    } else {
      cfg.insert(pos + 7, o.node_knobs + "\n");
    }
    RETURN_IF_ERROR(config::WriteFileAtomic(c->config_path_, cfg));
  }
  std::vector<policy::Diagnostic> diags;
  ASSIGN_OR_RETURN(c->config_, config::Load(c->config_path_, &diags));
  ASSIGN_OR_RETURN(c->admin_token_, config::LoadAdminToken(c->config_));
  ASSIGN_OR_RETURN(c->client_, net::MakeClient({}));
  for (const auto& r : c->config_.regions) RETURN_IF_ERROR(c->StartRegion(r.name));
  return c;
}

PrivateCluster::~PrivateCluster() {
  for (auto& [node, pid] : pids_) kill(pid, SIGTERM);
  for (auto& [node, pid] : pids_) {
    // A node drains for its shutdown grace; the benchmark does not wait that long.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (waitpid(pid, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  client_.reset();
  databases_.clear();  // after the nodes, before their folder goes
  if (!opts_.keep_dir) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string PrivateCluster::Url(const std::string& region) const {
  const auto* r = config_.Find(region);
  return r == nullptr ? std::string() : r->url;
}

std::vector<std::string> PrivateCluster::Urls(const std::string& region) const {
  const auto* r = config_.Find(region);
  return r == nullptr ? std::vector<std::string>() : r->Urls();
}

Result<HttpEndpoint> PrivateCluster::Endpoint(const std::string& region) const {
  const auto urls = Urls(region);
  if (urls.empty()) return Error(Code::kNotFound, "no region " + region);
  ASSIGN_OR_RETURN(auto ep, ParseHttpUrl(urls[0]));
  for (size_t k = 1; k < urls.size(); ++k) {
    ASSIGN_OR_RETURN(auto other, ParseHttpUrl(urls[k]));
    ep.more_ports.push_back(other.port);
  }
  return ep;
}

storage::PrivatePostgres* PrivateCluster::Database(const std::string& region) const {
  for (size_t i = 0; i < config_.regions.size() && i < databases_.size(); ++i) {
    if (config_.regions[i].name == region) return databases_[i].get();
  }
  return nullptr;
}

Status PrivateCluster::StartRegion(const std::string& region) {
  const auto* r = config_.Find(region);
  if (r == nullptr) return Error(Code::kNotFound, "no region " + region);
  std::error_code ec;
  fs::create_directories(dir_ + "/" + region, ec);
  for (size_t k = 0; k < r->nodes.size(); ++k) {
    if (pids_.count({region, k}) != 0)
      return Error(Code::kConflict, region + " is already running");
    pid_t pid = dev::SpawnNode(opts_.self_exe, config_path_, region, static_cast<int>(k),
                               dir_ + "/" + region + "/" + dev::NodeLogName(k));
    if (pid < 0) return Error(Code::kInternal, "fork failed");
    pids_[{region, k}] = pid;
    RETURN_IF_ERROR(WaitHealthy(region, k, pid));
  }
  return Status::Ok();
}

Status PrivateCluster::WaitHealthy(const std::string& region, size_t node, pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    net::ClientCall call;
    call.base_url = Urls(region).at(node);
    call.request.method = "GET";
    call.request.target = "/v1/health";
    call.timeout = 2s;
    auto r = client_->SendSync(std::move(call));
    if (r.ok() && r->status == 200) return Status::Ok();
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pids_.erase({region, node});
      std::string how = WIFSIGNALED(status)
                            ? "was killed by signal " + std::to_string(WTERMSIG(status))
                            : "exited with " + std::to_string(WEXITSTATUS(status));
      std::string log = config::ReadFileOr(dir_ + "/" + region + "/" + dev::NodeLogName(node));
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      return Error(Code::kUnavailable,
                   region + " node " + how + " at start; its log ends:\n" + log);
    }
    std::this_thread::sleep_for(20ms);
  }
  return Error(Code::kUnavailable, region + " node did not become healthy");
}

double PrivateCluster::CpuSeconds(const std::string& region) const {
  double total = 0;
  for (const auto& [node, pid] : pids_) {
    if (node.first != region) continue;
    if (auto s = ReadProcStat("/proc/" + std::to_string(pid) + "/stat")) total += s->cpu_s;
  }
  return total;
}

std::map<std::string, double> PrivateCluster::CpuSecondsByThread(const std::string& region) const {
  std::map<std::string, double> by_name;
  for (const auto& [node, pid] : pids_) {
    if (node.first != region) continue;
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      if (auto s = ReadProcStat(task.path().string() + "/stat")) by_name[s->name] += s->cpu_s;
    }
  }
  return by_name;
}

void PrivateCluster::StopRegion(const std::string& region, int sig) {
  for (auto it = pids_.begin(); it != pids_.end();) {
    if (it->first.first != region) {
      ++it;
      continue;
    }
    kill(it->second, sig);
    waitpid(it->second, nullptr, 0);
    it = pids_.erase(it);
  }
}

}  // namespace meridian::bench
