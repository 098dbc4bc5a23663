#include "support/cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/proc_stat.h"
#include "common/random.h"
#include "config/cluster.h"
#include "dev/dev.h"
#include "net/http.h"
#include "node/node.h"
#include "storage/store.h"

namespace meridian::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {
int FreeBasePort(int ports) {
  auto base = net::FreeLoopbackPorts(ports);
  if (!base.ok()) ADD_FAILURE() << base.status().ToString();
  return base.ok() ? *base : 0;
}

}  // namespace

const std::vector<std::string>& TestCluster::Regions() {
  static const std::vector<std::string> kRegions = {"beijing", "oregon", "singapore", "california"};
  return kRegions;
}

net::Headers Bearer(const std::string& token) { return {{"authorization", "Bearer " + token}}; }

TestCluster::TestCluster(ClusterOptions opts) : opts_(std::move(opts)) {
  // A runner that ignores SIGCHLD (ctest does) would make waitpid() lose our children.
  signal(SIGCHLD, SIG_DFL);
  dir_ = (fs::temp_directory_path() / ("meridian-it-" + SystemRandom::Instance().Hex(6))).string();
  base_port_ = FreeBasePort(static_cast<int>(Regions().size()) * opts_.nodes_per_region);
  std::vector<std::string> args = {
      MERIDIAN_BIN, "dev",         "--write-config",           "--dir",
      dir_,         "--base-port", std::to_string(base_port_), "--policy",
      opts_.policy};
  if (!opts_.tls) args.push_back("--plaintext");
  if (!opts_.latency) args.push_back("--no-latency");
  const char* storage = std::getenv("MERIDIAN_TEST_STORAGE");
  postgres_ =
      (storage != nullptr && std::string_view(storage) == "postgres") || opts_.nodes_per_region > 1;
  if (opts_.nodes_per_region > 1) {
    args.insert(args.end(), {"--nodes-per-region", std::to_string(opts_.nodes_per_region)});
  }
  if (postgres_) {
    args.insert(args.end(), {"--storage", "postgres"});
    Status st = dev::StartPrivateDatabases(dir_, &databases_);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  auto wrote = RunCommand(args);
  EXPECT_EQ(wrote.exit_code, 0) << "meridian dev --write-config failed: " << wrote.text;
  config_path_ = dir_ + "/cluster.toml";
  std::string cfg = config::ReadFileOr(config_path_);
  std::string knobs =
      "[node]\nread_timeout_ms = 1500\nshutdown_grace_ms = 5000\n" + opts_.node_knobs + "\n";
  auto pos = cfg.find("[node]\n");
  cfg.replace(pos, 7, knobs);
  EXPECT_TRUE(config::WriteFileAtomic(config_path_, cfg).ok());
  admin_token_ = config::ReadFileOr(dir_ + "/admin.token");
  while (!admin_token_.empty() && admin_token_.back() == '\n') admin_token_.pop_back();
  net::ClientOptions co;
  if (opts_.tls) co.ca_file = dir_ + "/ca.pem";
  auto c = net::MakeClient(co);
  EXPECT_TRUE(c.ok());
  client_ = std::move(c).value();
}

TestCluster::~TestCluster() {
  for (auto& [node, pid] : pids_) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  client_.reset();
  databases_.clear();  // after the nodes, before their folder goes
  if (::testing::Test::HasFailure()) {
    // What the nodes said last: the only trace of a node that crashed once the folder goes.
    for (const auto& region : Regions()) {
      for (int k = 0; k < opts_.nodes_per_region; ++k) {
        const std::string log = region + "/" + dev::NodeLogName(k);
        std::ifstream in(dir_ + "/" + log);
        std::deque<std::string> tail;
        for (std::string line; std::getline(in, line);) {
          tail.push_back(line);
          if (tail.size() > 12) tail.pop_front();
        }
        std::cerr << "==> " << log << " (last lines) <==\n";
        for (const auto& line : tail) std::cerr << line << "\n";
      }
    }
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void TestCluster::Start() {
  for (const auto& r : Regions()) StartRegion(r);
}

void TestCluster::StartRegion(const std::string& region) {
  for (int k = 0; k < opts_.nodes_per_region; ++k) StartNode(region, k);
}

void TestCluster::StartNode(const std::string& region, int node) {
  ASSERT_EQ(pids_.count({region, node}), 0u) << region << " #" << node << " is already running";
  fs::create_directories(dir_ + "/" + region);
  std::string log = dir_ + "/" + region + "/" + dev::NodeLogName(node);
  pid_t pid = dev::SpawnNode(MERIDIAN_BIN, config_path_, region, node, log);
  ASSERT_GT(pid, 0) << "fork failed";
  pids_[{region, node}] = pid;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = TryCallNode(region, node, "GET", "/v1/health");
    if (r.ok() && r->status == 200) return;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pids_.erase({region, node});
      FAIL() << region << " node exited at start:\n" << config::ReadFileOr(log);
    }
    std::this_thread::sleep_for(20ms);
  }
  FAIL() << region << " node did not become healthy:\n" << config::ReadFileOr(log);
}

int TestCluster::StopRegion(const std::string& region, int sig) {
  int first = -1;
  for (int k = opts_.nodes_per_region - 1; k >= 0; --k) {
    int status = StopNode(region, k, sig);
    if (k == 0) first = status;
  }
  return first;
}

int TestCluster::StopNode(const std::string& region, int node, int sig) {
  auto it = pids_.find({region, node});
  if (it == pids_.end()) return -1;
  kill(it->second, sig);
  int status = 0;
  waitpid(it->second, &status, 0);
  pids_.erase(it);
  return status;
}

void TestCluster::Freeze(const std::string& region, bool frozen, int node) {
  for (const auto& [which, pid] : pids_) {
    if (which.first == region && (node < 0 || which.second == node)) {
      kill(pid, frozen ? SIGSTOP : SIGCONT);
    }
  }
}

void TestCluster::StopAll() {
  for (const auto& r : Regions()) StopRegion(r, SIGTERM);
}

uint16_t TestCluster::Port(const std::string& region, int node) const {
  const auto& rs = Regions();
  auto idx = std::find(rs.begin(), rs.end(), region) - rs.begin();
  // As `meridian dev` lays them out: node k of the i-th region on base + i + 4k.
  return static_cast<uint16_t>(base_port_ + idx + node * static_cast<long>(rs.size()));
}

std::string TestCluster::Url(const std::string& region, int node) const {
  return std::string(opts_.tls ? "https" : "http") +
         "://127.0.0.1:" + std::to_string(Port(region, node));
}

Result<net::HttpResponse> TestCluster::TryCall(const std::string& region, const std::string& method,
                                               const std::string& target, const std::string& body,
                                               net::Headers headers) {
  // The region's first running node (node 0 unless a test stopped it).
  int node = 0;
  while (node + 1 < opts_.nodes_per_region && !pids_.count({region, node})) ++node;
  return TryCallNode(region, node, method, target, body, std::move(headers));
}

Result<net::HttpResponse> TestCluster::TryCallNode(const std::string& region, int node,
                                                   const std::string& method,
                                                   const std::string& target,
                                                   const std::string& body, net::Headers headers) {
  net::ClientCall call;
  call.base_url = Url(region, node);
  call.request.method = method;
  call.request.target = target;
  call.request.body = body;
  call.request.headers = std::move(headers);
  call.timeout = 10s;
  return client_->SendSync(std::move(call));
}

net::HttpResponse TestCluster::CallNode(const std::string& region, int node,
                                        const std::string& method, const std::string& target,
                                        const std::string& body, net::Headers headers) {
  auto r = TryCallNode(region, node, method, target, body, std::move(headers));
  EXPECT_TRUE(r.ok()) << method << " " << target << " at " << region << " #" << node << ": "
                      << r.status().ToString();
  return r.ok() ? std::move(r).value() : net::HttpResponse{};
}

net::HttpResponse TestCluster::Call(const std::string& region, const std::string& method,
                                    const std::string& target, const std::string& body,
                                    net::Headers headers) {
  auto r = TryCall(region, method, target, body, std::move(headers));
  EXPECT_TRUE(r.ok()) << method << " " << target << " at " << region << ": "
                      << r.status().ToString();
  return r.ok() ? std::move(r).value() : net::HttpResponse{};
}

storage::StorePtr TestCluster::OpenStore(const std::string& region) const {
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(config_path_, &diags);
  EXPECT_TRUE(cfg.ok()) << cfg.status().ToString();
  const config::RegionConfig* r = cfg.ok() ? cfg->Find(region) : nullptr;
  if (r == nullptr) return nullptr;
  auto db = node::OpenRegionStore(*cfg, *r);
  EXPECT_TRUE(db.ok()) << region << ": " << db.status().ToString();
  return db.ok() ? std::move(db).value() : nullptr;
}

const std::string& TestCluster::FileBytes(const fs::directory_entry& e) const {
  // Tests search the same files for many needles: a file is read again only once its size
  // or modification time changed.
  std::error_code ec;
  const auto size = e.file_size(ec);
  const auto mtime = e.last_write_time(ec);
  auto& cached = file_cache_[e.path().string()];
  if (cached.bytes.empty() || cached.size != size || cached.mtime != mtime) {
    cached = {size, mtime, config::ReadFileOr(e.path().string())};
  }
  return cached.bytes;
}

std::vector<std::string> TestCluster::FindBytes(const std::string& region,
                                                const std::string& needle) const {
  std::vector<std::string> found;
  const std::string root = dir_ + "/" + region;
  if (!fs::exists(root)) return found;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    if (FileBytes(e).find(needle) != std::string::npos) found.push_back(e.path().string());
  }
  // Values the engine compressed are read back through it.
  if (!fs::exists(root + "/db") && !postgres_) return found;
  auto db = OpenStore(region);
  if (db == nullptr) {
    found.push_back(root + " (the engine cannot be opened to check)");
    return found;
  }
  for (int i = 0; i < storage::kSpaceCount; ++i) {
    const auto space = static_cast<storage::Space>(i);
    bool hit = false;
    (void)db->Scan(space, "", [&](std::string_view k, std::string_view v) {
      hit = k.find(needle) != std::string_view::npos || v.find(needle) != std::string_view::npos;
      return !hit;
    });
    if (hit) found.push_back(root + " space " + std::string(storage::SpaceName(space)));
  }
  return found;
}

void TestCluster::PutMeta(const std::string& region, const std::string& key,
                          const std::string& value) const {
  auto db = OpenStore(region);
  ASSERT_NE(db, nullptr);
  storage::WriteBatch b;
  b.Put(storage::Space::kMeta, key, value);
  EXPECT_TRUE(db->Write(b).ok());
}

CommandOutput RunCommand(const std::vector<std::string>& args) {
  std::string out_path =
      (fs::temp_directory_path() / ("meridian-out-" + SystemRandom::Instance().Hex(4))).string();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CommandOutput o{WIFEXITED(status) ? WEXITSTATUS(status) : -1, config::ReadFileOr(out_path)};
  fs::remove(out_path);
  return o;
}

int WaitForExit(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = ReadProcStat(e.path().string() + "/stat");
    if (stat && stat->ppid == parent && stat->state != 'Z') out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace meridian::testing
