// `meridian dev --scenario great-shift` as a user runs it: the whole story (legacy policy,
// users from many countries, live traffic, the current policy, the move) ends in a summary
// with nothing lost, and the cluster keeps running until SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <thread>

#include "config/cluster.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class GreatShiftTest : public ::testing::Test {
 protected:
  void StartDev(const std::vector<std::string>& extra) {
    TestCluster ports;  // only to borrow four free ports and a folder name
    base_port_ = ports.Port("beijing");
    dir_ = ports.dir() + "-shift";
    std::vector<std::string> args = {
        MERIDIAN_BIN, "dev", "--plaintext", "--no-latency",
        "--dir",      dir_,  "--base-port", std::to_string(base_port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      int fd = ::open((dir_ + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(MERIDIAN_BIN, argv.data());
      _exit(127);
    }
  }
  std::string Output() const { return config::ReadFileOr(dir_ + ".out"); }
  // Waits for `needle` in dev's output; false at the limit or when dev exited.
  bool WaitFor(const std::string& needle, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Output().find(needle) != std::string::npos) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        exit_status_ = status;
        return Output().find(needle) != std::string::npos;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  int WaitDev() {
    if (pid_ == 0) return exit_status_;
    const int status = WaitForExit(pid_, 30s);
    if (status != -1) pid_ = 0;
    return status;
  }
  void TearDown() override {
    for (pid_t child : children_) kill(child, SIGKILL);
    if (pid_ > 0) {
      for (pid_t child : ChildrenOf(pid_)) kill(child, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::remove(dir_ + ".out", ec);
  }
  pid_t pid_ = 0;
  int exit_status_ = -1;
  int base_port_ = 0;
  std::string dir_;
  std::vector<pid_t> children_;
};

TEST_F(GreatShiftTest, TheWholeStoryEndsWithNothingLostAndTheClusterRunning) {
  StartDev({"--scenario", "great-shift", "--scenario-users", "40"});
  ASSERT_TRUE(WaitFor("Ctrl-C stops every node", 30s)) << Output();
  children_ = ChildrenOf(pid_);
  EXPECT_EQ(children_.size(), 4u);
  ASSERT_TRUE(WaitFor("great-shift: summary:", 90s)) << Output();
  ASSERT_TRUE(WaitFor("the cluster keeps running", 10s)) << Output();
  const std::string out = Output();
  SCOPED_TRACE(out);
  // Started under the legacy policy, whatever the default says.
  EXPECT_NE(out.find("policy:       legacy"), std::string::npos);

  std::smatch reg;
  ASSERT_TRUE(std::regex_search(out, reg, std::regex(R"(registered 40 users \(([^)]*)\))")));
  const std::string by_country = reg[1];
  std::smatch cn;
  ASSERT_TRUE(std::regex_search(by_country, cn, std::regex(R"(CN (\d+))")));
  const int non_cn = 40 - std::stoi(cn[1]);
  const std::regex one_country(R"([A-Z]{2} \d+)");
  const auto countries =
      std::distance(std::sregex_iterator(by_country.begin(), by_country.end(), one_country),
                    std::sregex_iterator());
  EXPECT_GE(countries, 6);

  std::smatch sum;
  ASSERT_TRUE(std::regex_search(
      out, sum,
      std::regex(R"(summary: (\d+) users, (\d+) moved, (\d+) failed, (\d+) writes acknowledged, )"
                 R"((\d+) lost, (\d+) fenced answers)")));
  EXPECT_EQ(std::stoi(sum[1]), 40);
  EXPECT_EQ(std::stoi(sum[2]), non_cn);
  EXPECT_EQ(sum[3], "0");
  EXPECT_GT(std::stoi(sum[4]), 0);
  EXPECT_EQ(sum[5], "0");
  EXPECT_NE(out.find(" 0 lost"), std::string::npos);
  EXPECT_NE(out.find(" 0 failed"), std::string::npos);
  EXPECT_EQ(out.find("PROBLEM"), std::string::npos);

  // The cluster keeps running after the story, until SIGTERM.
  for (pid_t child : children_) EXPECT_EQ(kill(child, 0), 0) << "node " << child << " stopped";
  kill(pid_, SIGTERM);
  int status = WaitDev();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (pid_t child : children_) EXPECT_NE(kill(child, 0), 0) << "node " << child << " still runs";
}

TEST_F(GreatShiftTest, AConflictingPolicyIsRefused) {
  StartDev({"--scenario", "great-shift", "--policy", "some-policy.toml"});
  int status = WaitDev();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(Output().find("drop --policy"), std::string::npos) << Output();
}

}  // namespace
}  // namespace meridian::testing
