// Processes: restart after SIGKILL, graceful SIGTERM, config validation at start, the
// `policy check` command and the `dev` supervisor.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/random.h"
#include "config/cluster.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST(LifecycleTest, AcknowledgedDataSurvivesSigkillAndRestart) {
  TestCluster c;
  c.Start();
  TestUser u{"US", "+1 650 253 0002", "+16502530002", "oregon", "I", "i@example.com"};
  RegisterVia(c, "california", u);
  for (int i = 0; i < 20; ++i) {
    auto r = c.Call("california", "PUT", "/v1/me/records/log/" + std::to_string(i),
                    "entry " + std::to_string(i), Bearer(u.token));
    ASSERT_EQ(r.status, 200);
  }
  int status = c.StopRegion("oregon", SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status));
  c.StartRegion("oregon");
  auto list = c.Call("california", "GET", "/v1/me/records/log", "", Bearer(u.token));
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(JsonOf(list)["keys"].size(), 20u);
  EXPECT_EQ(c.Call("oregon", "GET", "/v1/me/records/log/7", "", Bearer(u.token)).body, "entry 7");
  auto login = c.Call("oregon", "POST", "/v1/sessions",
                      DumpJson({{"phone", u.e164}, {"password", "correct horse battery"}}));
  EXPECT_EQ(login.status, 200);
}

TEST(LifecycleTest, SigtermShutsDownGracefullyWithExitZero) {
  TestCluster c;
  c.Start();
  int status = c.StopRegion("singapore", SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(c.TryCall("singapore", "GET", "/v1/health").ok());
}

TEST(LifecycleTest, NodeRefusesAnInvalidConfigWithFileLineMessages) {
  auto dir = fs::temp_directory_path() / ("meridian-badcfg-" + SystemRandom::Instance().Hex(4));
  fs::create_directories(dir);
  auto policy = (dir / "policy.toml").string();
  std::ofstream(policy) << "name = \"bad\"\nversion = 3\ndefault_region = \"oregon\"\n"
                           "[roles]\nhome = [\"identity\"]\nedge = [\"public\"]\n"
                           "[countries]\nZZ = \"oregon\"\nUS = \"california\"\n";
  auto cfg = (dir / "cluster.toml").string();
  std::ofstream(cfg)
      << "[cluster]\npolicy = \"policy.toml\"\n"
         "[[regions]]\nname = \"oregon\"\nrole = \"home\"\nlisten = \"127.0.0.1:1\"\n"
         "url = \"http://127.0.0.1:1\"\n"
         "[[regions]]\nname = \"california\"\nrole = \"edge\"\n"
         "listen = \"127.0.0.1:2\"\nurl = \"http://127.0.0.1:2\"\n";
  auto o = RunCommand({MERIDIAN_BIN, "node", "--config", cfg, "--region", "oregon"});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.text.find(policy + ":8: 'ZZ' is not an ISO 3166-1"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find(policy + ":9: country 'US' maps to 'california', an edge region"),
            std::string::npos)
      << o.text;

  auto check = RunCommand({MERIDIAN_BIN, "policy", "check", policy, "--config", cfg});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.text.find(policy + ":8:"), std::string::npos) << check.text;
  auto good = RunCommand({MERIDIAN_BIN, "policy", "check",
                          std::string(MERIDIAN_SOURCE_DIR) + "/policies/current.toml"});
  EXPECT_EQ(good.exit_code, 0) << good.text;
  EXPECT_EQ(RunCommand({MERIDIAN_BIN, "policy", "check", "legacy"}).exit_code, 0);
  fs::remove_all(dir);
}

TEST(LifecycleTest, EverySubcommandHasHelp) {
  for (auto sub : {std::vector<std::string>{"--help"},
                   {"node", "--help"},
                   {"dev", "--help"},
                   {"policy", "check", "--help"},
                   {"keys", "init", "--help"},
                   {"keys", "rotate", "--help"},
                   {"keys", "status", "--help"},
                   {"client", "--help"},
                   {"client", "register", "--help"},
                   {"version"}}) {
    std::vector<std::string> args = {MERIDIAN_BIN};
    args.insert(args.end(), sub.begin(), sub.end());
    auto o = RunCommand(args);
    EXPECT_EQ(o.exit_code, 0) << o.text;
    EXPECT_FALSE(o.text.empty());
  }
}

TEST(LifecycleTest, KeysAndClientCommands) {
  TestCluster c;
  const std::string cfg = c.dir() + "/cluster.toml";
  auto status = RunCommand({MERIDIAN_BIN, "keys", "status", "--config", cfg, "--region", "oregon"});
  ASSERT_EQ(status.exit_code, 0) << status.text;
  auto j = ParseJsonObject(status.text);
  ASSERT_TRUE(j.ok()) << status.text;
  EXPECT_EQ((*j)["primary_kek_version"], 1);
  EXPECT_EQ((*j)["hpke"][0]["key_id"], 16);  // oregon is region 1: ids 16..31
  EXPECT_EQ(RunCommand({MERIDIAN_BIN, "keys", "init", "--config", cfg}).exit_code, 0);
  auto rotated =
      RunCommand({MERIDIAN_BIN, "keys", "rotate", "--config", cfg, "--region", "oregon"});
  EXPECT_EQ(rotated.exit_code, 0) << rotated.text;
  status = RunCommand({MERIDIAN_BIN, "keys", "status", "--config", cfg, "--region", "oregon"});
  EXPECT_EQ((*ParseJsonObject(status.text))["primary_kek_version"], 2);

  c.Start();
  const std::string edge = c.Url("california");
  auto reg = RunCommand({MERIDIAN_BIN, "client", "--url", edge, "register", "--country", "US",
                         "--phone", "+1 650 253 0009", "--password", "correct horse battery"});
  ASSERT_EQ(reg.exit_code, 0) << reg.text;
  EXPECT_EQ((*ParseJsonObject(reg.text))["home_region"], "oregon");
  auto login = RunCommand({MERIDIAN_BIN, "client", "--url", edge, "login", "--phone",
                           "+16502530009", "--password", "correct horse battery"});
  ASSERT_EQ(login.exit_code, 0) << login.text;
  std::string token = (*ParseJsonObject(login.text))["token"];
  EXPECT_EQ(RunCommand({MERIDIAN_BIN, "client", "--url", edge, "--token", token, "put", "notes",
                        "k", "from the command line"})
                .exit_code,
            0);
  auto get =
      RunCommand({MERIDIAN_BIN, "client", "--url", edge, "--token", token, "get", "notes", "k"});
  EXPECT_EQ(get.text, "from the command line\n");
  auto me = RunCommand({MERIDIAN_BIN, "client", "--url", edge, "--token", token, "me"});
  EXPECT_NE(me.text.find("+16502530009"), std::string::npos) << me.text;
  auto bad = RunCommand({MERIDIAN_BIN, "keys", "status", "--config", cfg, "--region", "mars"});
  EXPECT_NE(bad.exit_code, 0);
}

class DevSupervisorTest : public ::testing::Test {
 protected:
  void StartDev() {
    TestCluster ports;  // only to borrow four free ports and a folder name
    base_port_ = ports.Port("beijing");
    dir_ = ports.dir() + "-dev";
    pid_ = fork();
    if (pid_ == 0) {
      int fd = ::open((dir_ + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      execl(MERIDIAN_BIN, MERIDIAN_BIN, "dev", "--plaintext", "--no-latency", "--dir", dir_.c_str(),
            "--base-port", std::to_string(base_port_).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    auto client = net::MakeClient({});
    ASSERT_TRUE(client.ok());
    client_ = std::move(client).value();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      // Up once dev printed its table (it has seen every node healthy).
      if (config::ReadFileOr(dir_ + ".out").find("Ctrl-C stops every node") != std::string::npos) {
        ASSERT_TRUE(Healthy(base_port_) && Healthy(base_port_ + 3));
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "meridian dev did not come up";
  }
  bool Healthy(int port) {
    net::ClientCall call;
    call.base_url = "http://127.0.0.1:" + std::to_string(port);
    call.request.method = "GET";
    call.request.target = "/v1/health";
    auto r = client_->SendSync(call);
    return r.ok() && r->status == 200;
  }
  int WaitDev() {
    const int status = WaitForExit(pid_, 20s);
    if (status != -1) pid_ = 0;
    return status;
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (pid_t child : children_) kill(child, SIGKILL);
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::remove(dir_ + ".out", ec);
  }
  pid_t pid_ = 0;
  int base_port_ = 0;
  std::string dir_;
  std::vector<pid_t> children_;
  std::unique_ptr<net::HttpClient> client_;
};

TEST_F(DevSupervisorTest, CtrlCStopsEveryNodeAndExitsZero) {
  StartDev();
  children_ = ChildrenOf(pid_);
  EXPECT_EQ(children_.size(), 4u);
  EXPECT_TRUE(fs::exists(dir_ + "/cluster.toml"));
  EXPECT_TRUE(fs::exists(dir_ + "/admin.token"));
  kill(pid_, SIGINT);
  int status = WaitDev();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (pid_t child : children_) EXPECT_NE(kill(child, 0), 0) << "node " << child << " still runs";
  EXPECT_FALSE(Healthy(base_port_));
}

TEST_F(DevSupervisorTest, ANodeThatDiesIsReportedAndDevExitsNonZero) {
  StartDev();
  children_ = ChildrenOf(pid_);
  ASSERT_EQ(children_.size(), 4u);
  kill(children_[1], SIGKILL);
  int status = WaitDev();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_FALSE(Healthy(base_port_));
}

}  // namespace
}  // namespace meridian::testing
