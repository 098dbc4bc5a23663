// `meridian migrate ...` run as the real binary against a live cluster: users registered
// under the legacy policy (everyone in beijing) are planned, moved, watched, paused, resumed
// and verified from the command line, and bad inputs exit 1 (refused by the cluster) or 2
// (usage, token, connection).
#include <stdlib.h>

#include <sstream>

#include <fmt/format.h>

#include "config/cluster.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The users column of the plan table's row named `name` ("total" for the totals); -1 when
// the table has no such row.
int64_t PlanUsers(const std::string& table, const std::string& name) {
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string first;
    int64_t users = -1;
    if (words >> first && first == name && words >> users) return users;
  }
  return -1;
}

class MigrateCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("MERIDIAN_ADMIN_TOKEN");
    ClusterOptions o;
    o.policy = "legacy";
    o.node_knobs = "migration_users_per_s = 20\n";
    c_ = std::make_unique<TestCluster>(o);
    c_->Start();
    token_file_ = c_->dir() + "/admin.token";
    if (config::ReadFileOr(token_file_).empty()) {
      ASSERT_TRUE(config::WriteFileAtomic(token_file_, c_->admin_token() + "\n").ok());
    }
  }
  // Registers in beijing, every user's home under the legacy policy.
  void Register(const std::string& country, const std::string& phone) {
    TestUser u{country, phone, phone, "beijing", "", ""};
    SCOPED_TRACE(phone);
    RegisterVia(*c_, "beijing", u);
  }
  // `meridian migrate <args> --url <a node>` with the admin token file.
  CommandOutput Migrate(std::vector<std::string> args, const std::string& region = "california") {
    args.insert(args.begin(), {MERIDIAN_BIN, "migrate"});
    args.insert(args.end(), {"--url", c_->Url(region), "--admin-token-file", token_file_});
    return RunCommand(args);
  }
  Json JsonOut(const CommandOutput& out) {
    auto j = ParseJsonObject(out.text);
    EXPECT_TRUE(j.ok()) << out.text;
    return j.ok() ? *j : Json::object();
  }
  void ApplyCurrentPolicy(int64_t misplaced) {
    auto r = c_->Call("oregon", "PUT", "/v1/admin/policy", R"({"builtin":"current"})",
                      Bearer(c_->admin_token()));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(JsonOf(r).value("misplaced_users", -1), misplaced);
  }
  std::unique_ptr<TestCluster> c_;
  std::string token_file_;
};

TEST_F(MigrateCliTest, PlanStartWatchVerifyAndBadInputs) {
  for (int i = 0; i < 3; ++i) Register("US", fmt::format("+1650550{:04d}", i * 10));
  for (int i = 0; i < 2; ++i) Register("IN", fmt::format("+91981000{:04d}", i * 10));
  Register("CN", "+8613801000000");

  // Under the legacy policy nobody is misplaced.
  auto plan0 = Migrate({"plan", "--from", "beijing"});
  ASSERT_EQ(plan0.exit_code, 0) << plan0.text;
  EXPECT_EQ(PlanUsers(plan0.text, "total"), 0) << plan0.text;
  EXPECT_EQ(PlanUsers(plan0.text, "oregon"), -1) << plan0.text;
  auto plan0_json = Migrate({"plan", "--from", "beijing", "--json"});
  ASSERT_EQ(plan0_json.exit_code, 0) << plan0_json.text;
  EXPECT_EQ(JsonOut(plan0_json).value("users_total", -1), 0) << plan0_json.text;

  ApplyCurrentPolicy(5);
  auto plan = Migrate({"plan", "--from", "beijing"}, "singapore");
  ASSERT_EQ(plan.exit_code, 0) << plan.text;
  EXPECT_EQ(PlanUsers(plan.text, "oregon"), 3) << plan.text;
  EXPECT_EQ(PlanUsers(plan.text, "singapore"), 2) << plan.text;
  EXPECT_EQ(PlanUsers(plan.text, "beijing"), -1) << plan.text;  // the CN user stays
  EXPECT_EQ(PlanUsers(plan.text, "total"), 5) << plan.text;
  EXPECT_NE(plan.text.find("KiB"), std::string::npos) << plan.text;  // bytes in human units
  auto plan_json = Migrate({"plan", "--from", "beijing", "--json"});
  ASSERT_EQ(plan_json.exit_code, 0) << plan_json.text;
  const Json pj = JsonOut(plan_json);
  EXPECT_EQ(pj.value("users_total", -1), 5) << plan_json.text;
  EXPECT_GT(pj.value("bytes_total", -1), 0) << plan_json.text;
  EXPECT_EQ(pj.value("policy_version", -1), 2) << plan_json.text;
  const Json dests = pj.value("destinations", Json::object());
  ASSERT_TRUE(dests.contains("oregon") && dests.contains("singapore")) << plan_json.text;
  EXPECT_EQ(dests["oregon"].value("users", -1), 3);
  EXPECT_EQ(dests["singapore"].value("users", -1), 2);

  auto started = Migrate({"start", "--from", "beijing"});
  ASSERT_EQ(started.exit_code, 0) << started.text;
  const std::string id = Trim(started.text);
  ASSERT_EQ(id.rfind("m-beijing-", 0), 0u) << started.text;
  EXPECT_EQ(id.find('\n'), std::string::npos) << started.text;

  auto status_json = Migrate({"status", "--id", id, "--json"}, "oregon");
  ASSERT_EQ(status_json.exit_code, 0) << status_json.text;
  const Json sj = JsonOut(status_json);
  EXPECT_EQ(sj.value("id", ""), id);
  EXPECT_EQ(sj.value("users_total", -1), 5);
  EXPECT_TRUE(sj.contains("state") && sj["state"].is_string()) << status_json.text;

  auto watched = Migrate({"status", "--id", id, "--watch", "--interval-ms", "100"});
  EXPECT_EQ(watched.exit_code, 0) << watched.text;
  EXPECT_NE(watched.text.find("users"), std::string::npos) << watched.text;
  EXPECT_NE(watched.text.find("5/5 users, "), std::string::npos) << watched.text;
  EXPECT_NE(watched.text.find("state done"), std::string::npos) << watched.text;
  EXPECT_EQ(watched.text.find('['), std::string::npos) << "no progress bar off a terminal";

  auto once = Migrate({"status", "--id", id});
  EXPECT_EQ(once.exit_code, 0) << once.text;
  EXPECT_NE(once.text.find("state: done\n"), std::string::npos) << once.text;
  EXPECT_NE(once.text.find("users: 5/5 moved, 0 failed\n"), std::string::npos) << once.text;

  auto verified = Migrate({"verify", "--id", id}, "singapore");
  EXPECT_EQ(verified.exit_code, 0) << verified.text;
  EXPECT_NE(verified.text.find(id + ": 5 users checked, ok"), std::string::npos) << verified.text;
  auto after = Migrate({"plan", "--from", "beijing"});
  EXPECT_EQ(PlanUsers(after.text, "total"), 0) << after.text;

  // Refused by the cluster: exit 1 with its message.
  auto mars = Migrate({"plan", "--from", "mars"});
  EXPECT_EQ(mars.exit_code, 1) << mars.text;
  EXPECT_NE(mars.text.find("meridian migrate: 'from' must name a home region"), std::string::npos)
      << mars.text;
  auto edge = Migrate({"start", "--from", "california"});
  EXPECT_EQ(edge.exit_code, 1) << edge.text;
  EXPECT_NE(edge.text.find("meridian migrate: "), std::string::npos) << edge.text;
  auto unknown = Migrate({"status", "--id", "m-beijing-000000"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.text;
  EXPECT_NE(unknown.text.find("meridian migrate: no such migration"), std::string::npos)
      << unknown.text;
  auto unknown_verify = Migrate({"verify", "--id", "m-beijing-000000"});
  EXPECT_EQ(unknown_verify.exit_code, 1) << unknown_verify.text;
  auto garbage = Migrate({"pause", "--id", "nope/../x"});
  EXPECT_EQ(garbage.exit_code, 1) << garbage.text;

  // Usage, token and connection problems: exit 2.
  auto no_token = RunCommand(
      {MERIDIAN_BIN, "migrate", "plan", "--from", "beijing", "--url", c_->Url("oregon")});
  EXPECT_EQ(no_token.exit_code, 2) << no_token.text;
  EXPECT_NE(no_token.text.find("admin token"), std::string::npos) << no_token.text;
  auto bad_token_file =
      RunCommand({MERIDIAN_BIN, "migrate", "plan", "--from", "beijing", "--url", c_->Url("oregon"),
                  "--admin-token-file", c_->dir() + "/no-such-file"});
  EXPECT_EQ(bad_token_file.exit_code, 2) << bad_token_file.text;
  auto down = RunCommand({MERIDIAN_BIN, "migrate", "status", "--id", id, "--url",
                          "http://127.0.0.1:1", "--admin-token-file", token_file_});
  EXPECT_EQ(down.exit_code, 2) << down.text;
  auto no_id = Migrate({"status"});
  EXPECT_EQ(no_id.exit_code, 2) << no_id.text;
  auto help = RunCommand({MERIDIAN_BIN, "migrate", "status", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.text;
  EXPECT_NE(help.text.find("--watch"), std::string::npos) << help.text;
}

TEST_F(MigrateCliTest, PauseAndResume) {
  constexpr int kUsers = 30;  // a second and a half at 20 users/s
  for (int i = 0; i < kUsers; ++i) Register("US", fmt::format("+1650550{:04d}", i));
  ApplyCurrentPolicy(kUsers);

  auto started = Migrate({"start", "--from", "beijing", "--json"});
  ASSERT_EQ(started.exit_code, 0) << started.text;
  const std::string id = JsonOut(started).value("id", "");
  ASSERT_EQ(id.rfind("m-beijing-", 0), 0u) << started.text;

  auto paused = Migrate({"pause", "--id", id}, "singapore");
  ASSERT_EQ(paused.exit_code, 0) << paused.text;
  EXPECT_NE(paused.text.find("id: " + id + "\n"), std::string::npos) << paused.text;
  EXPECT_NE(paused.text.find("paused: true\n"), std::string::npos) << paused.text;
  auto status = Migrate({"status", "--id", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.text;
  const Json sj = JsonOut(status);
  EXPECT_EQ(sj.value("paused", false), true) << status.text;
  EXPECT_EQ(sj.value("state", ""), "running") << status.text;  // a paused migration never ends
  auto plain = Migrate({"status", "--id", id}, "beijing");
  EXPECT_NE(plain.text.find("paused: true\n"), std::string::npos) << plain.text;

  auto resumed = Migrate({"resume", "--id", id, "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.text;
  const Json rj = JsonOut(resumed);
  EXPECT_EQ(rj.value("paused", true), false) << resumed.text;
  EXPECT_EQ(rj.value("id", ""), id) << resumed.text;
  auto watched = Migrate({"status", "--id", id, "--watch", "--interval-ms", "200"});
  EXPECT_EQ(watched.exit_code, 0) << watched.text;
  EXPECT_NE(watched.text.find(fmt::format("{}/{} users", kUsers, kUsers)), std::string::npos)
      << watched.text;
  auto verified = Migrate({"verify", "--id", id, "--json"}, "beijing");
  EXPECT_EQ(verified.exit_code, 0) << verified.text;
  const Json vj = JsonOut(verified);
  EXPECT_EQ(vj.value("ok", false), true) << verified.text;
  EXPECT_EQ(vj.value("checked", -1), kUsers) << verified.text;
}

}  // namespace
}  // namespace meridian::testing
