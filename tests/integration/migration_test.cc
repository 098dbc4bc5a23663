// The great shift over a real cluster: users registered under the legacy policy (everyone in
// beijing) are moved by a policy change and a migration while they keep writing; coordinator,
// source and destination are killed with SIGKILL during the move.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/encoding.h"
#include "config/cluster.h"
#include "dev/dev.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {
using namespace std::chrono_literals;

struct Country {
  std::string code;
  std::string home;  // under the current policy
};
const std::vector<Country> kCountries = {{"CN", "beijing"},
                                         {"US", "oregon"},
                                         {"IN", "singapore"},
                                         {"SG", "singapore"},
                                         {"BR", "oregon"}};

std::string PhoneOf(const std::string& country, int i) {
  const std::string d = std::to_string(1000000 + i);  // 7 digits
  if (country == "CN") return "+861380" + d;
  if (country == "US") return "+165055" + d.substr(3) + "0";
  if (country == "IN") return "+9198" + d + "0";
  if (country == "SG") return "+658" + d;
  return "+55119" + d + "0";  // BR mobile
}

class MigrationTest : public ::testing::Test {
 protected:
  // Each test starts its cluster with a throttle: slow enough that writers, kills or a cut
  // overlap the move.
  void StartCluster(int users_per_s, const std::string& more_knobs = "", int nodes = 1) {
    ClusterOptions o;
    o.nodes_per_region = nodes;
    o.policy = "legacy";
    o.node_knobs = "migration_users_per_s = " + std::to_string(users_per_s) +
                   "\nmigration_parallel = 4\n" + more_knobs;
    c_ = std::make_unique<TestCluster>(o);
    c_->Start();
  }
  net::HttpResponse Admin(const std::string& region, const std::string& method,
                          const std::string& target, const std::string& body = {}) {
    return c_->Call(region, method, target, body, Bearer(c_->admin_token()));
  }
  // Logs in at any node, following the redirect to the home region.
  std::pair<std::string, std::string> Login(const TestUser& u, const std::string& entry) {
    const std::string body = DumpJson({{"phone", u.phone}, {"password", "correct horse battery"}});
    auto r = c_->TryCall(entry, "POST", "/v1/sessions", body);
    if (r.ok() && r->status == 307) {
      std::string at = JsonOf(*r).value("home_region", "");
      r = c_->TryCall(at, "POST", "/v1/sessions", body);
    }
    if (!r.ok() || r->status != 200) return {};
    auto j = JsonOf(*r);
    return {j.value("home_region", ""), j.value("token", "")};
  }
  std::vector<TestUser> RegisterUsers(int per_country) {
    std::vector<TestUser> users;
    for (const auto& c : kCountries) {
      for (int i = 0; i < per_country; ++i) {
        TestUser u{c.code, PhoneOf(c.code, i), PhoneOf(c.code, i), "beijing", "", ""};
        SCOPED_TRACE(u.phone);
        RegisterVia(*c_, "beijing", u);
        EXPECT_EQ(c_->Call("beijing", "PUT", "/v1/me/records/notes/first",
                           "hello from " + u.country, Bearer(u.token))
                      .status,
                  200);
        users.push_back(u);
      }
    }
    return users;
  }
  std::string HomeOf(const std::string& country) {
    for (const auto& c : kCountries) {
      if (c.code == country) return c.home;
    }
    return "";
  }
  Json WaitDone(const std::string& id, const std::string& ask_at, std::chrono::seconds limit) {
    Json m;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r =
          c_->TryCall(ask_at, "GET", "/v1/admin/migrations/" + id, "", Bearer(c_->admin_token()));
      if (r.ok() && r->status == 200) {
        m = JsonOf(*r);
        if (m.value("state", "") != "running") return m;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "migration not done: " << m.dump();
    return m;
  }

  // Writers: each user writes new keys (through california) until stopped, re-logging in
  // when told the account moved; every acknowledged key is recorded.
  struct Writers {
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::map<std::string, std::set<std::string>> acked;  // user id -> keys
    std::atomic<int> fenced{0};
    std::atomic<int> relogins{0};
    std::vector<std::thread> threads;
  };
  void StartWriters(Writers& w, std::vector<TestUser>& users, int n) {
    for (int t = 0; t < n; ++t) {
      w.threads.emplace_back([this, &w, &users, t, n] {
        int seq = 0;
        while (!w.stop) {
          for (size_t i = t; i < users.size() && !w.stop; i += n) {
            TestUser& u = users[i];
            const std::string key = "live" + std::to_string(seq);
            auto r = c_->TryCall("california", "PUT", "/v1/me/records/live/" + key, "v" + key,
                                 Bearer(u.token));
            if (!r.ok()) continue;
            if (r->status == 200) {
              std::lock_guard lock(w.mu);
              w.acked[u.user_id].insert(key);
            } else if (r->status == 503) {
              ++w.fenced;
            } else if (r->status == 401) {
              auto [home, token] = Login(u, "california");
              if (!token.empty()) {
                u.token = token;
                ++w.relogins;
              }
            }
          }
          ++seq;
        }
      });
    }
  }
  // The current policy, writers on every user, and a migration of beijing's misplaced users
  // started through oregon: its id.
  std::string MoveWhileWriting(Writers& w, std::vector<TestUser>& users) {
    EXPECT_EQ(Admin("beijing", "PUT", "/v1/admin/policy", R"({"builtin":"current"})").status, 200);
    StartWriters(w, users, 2);
    auto started = Admin("oregon", "POST", "/v1/admin/migrations",
                         R"({"from":"beijing","cohort":"misplaced"})");
    EXPECT_EQ(started.status, 202) << started.body;
    return JsonOf(started).value("id", "");
  }
  void StopWriters(Writers& w) {
    w.stop = true;
    for (auto& t : w.threads) t.join();
  }

  // Every user lives exactly where the policy says, with every acknowledged write, and
  // nothing of a moved user is left readable in beijing.
  void CheckFinalState(std::vector<TestUser>& users, Writers& w, const std::string& id) {
    for (auto& u : users) {
      auto [home, token] = Login(u, "california");
      ASSERT_FALSE(token.empty()) << u.country;
      EXPECT_EQ(home, HomeOf(u.country)) << u.country;
      u.token = token;
      auto list = c_->Call("california", "GET", "/v1/me/records/live", "", Bearer(token));
      ASSERT_EQ(list.status, 200) << list.body;
      std::set<std::string> present;
      const Json keys = JsonOf(list)["keys"];
      for (const auto& k : keys) present.insert(k.get<std::string>());
      std::string missing;
      for (const auto& k : w.acked[u.user_id]) {
        if (!present.count(k)) missing += " " + k;
      }
      EXPECT_TRUE(missing.empty())
          << "lost acknowledged writes of a user from " << u.country << ":" << missing << " ("
          << present.size() << " present, " << w.acked[u.user_id].size() << " acknowledged)";
      auto r0 = c_->Call("california", "GET", "/v1/me/records/notes/first", "", Bearer(token));
      EXPECT_EQ(r0.status, 200);
      EXPECT_EQ(r0.body, "hello from " + u.country);
      // In beijing the user is either at home (CN, never moved) or a tombstone.
      auto p = JsonOf(Admin("beijing", "GET", "/v1/admin/users/" + u.user_id + "/placement"));
      if (u.country == "CN") {
        EXPECT_EQ(p.value("state", ""), "active");
        EXPECT_EQ(p.value("epoch", 0), 1);  // users already home never moved
      } else {
        EXPECT_EQ(p.value("state", ""), "moved");
        EXPECT_EQ(p.value("home_region", ""), HomeOf(u.country));
      }
    }
    auto verified = JsonOf(Admin("singapore", "POST", "/v1/admin/migrations/" + id + "/verify"));
    EXPECT_EQ(verified.value("ok", false), true) << verified.dump();
  }
  std::unique_ptr<TestCluster> c_;
};

TEST_F(MigrationTest, PolicyChangeAndMigrationMoveMisplacedUsersWhileTheyWrite) {
  StartCluster(300);
  // 1000 users in five countries; 300 under AddressSanitizer, where each request costs
  // several times more (the same checks, at a scale the sanitizer suite can afford).
#if defined(__SANITIZE_ADDRESS__)
  constexpr int kPerCountry = 60;
#else
  constexpr int kPerCountry = 200;
#endif
  auto users = RegisterUsers(kPerCountry);
  constexpr int kMisplaced = 4 * kPerCountry;  // all but the CN users
  constexpr int kToEachRegion = 2 * kPerCountry;
  // Bad input changes nothing.
  EXPECT_EQ(Admin("oregon", "PUT", "/v1/admin/policy", R"({"builtin":"nope"})").status, 400);
  EXPECT_EQ(Admin("oregon", "PUT", "/v1/admin/policy", "version = 9\n[countries]\nXX = \"mars\"\n")
                .status,
            400);
  EXPECT_EQ(c_->Call("oregon", "PUT", "/v1/admin/policy", R"({"builtin":"current"})").status, 401);
  EXPECT_EQ(Admin("oregon", "POST", "/v1/admin/migrations", R"({"from":"mars"})").status, 400);
  EXPECT_EQ(Admin("oregon", "GET", "/v1/admin/migrations/m-beijing-000000").status, 404);
  EXPECT_EQ(JsonOf(c_->Call("california", "GET", "/v1/regions")).value("policy_version", 0), 1);

  auto applied = Admin("oregon", "PUT", "/v1/admin/policy", R"({"builtin":"current"})");
  ASSERT_EQ(applied.status, 200) << applied.body;
  EXPECT_EQ(JsonOf(applied).value("policy_version", 0), 2);
  EXPECT_EQ(JsonOf(applied).value("misplaced_users", 0), kMisplaced);
  for (const auto& r : TestCluster::Regions()) {
    EXPECT_EQ(JsonOf(c_->Call(r, "GET", "/v1/regions")).value("policy_version", 0), 2) << r;
  }
  // The same version again is a retry; an older one is refused.
  EXPECT_EQ(Admin("singapore", "PUT", "/v1/admin/policy", R"({"builtin":"current"})").status, 200);
  EXPECT_EQ(Admin("singapore", "PUT", "/v1/admin/policy", R"({"builtin":"legacy"})").status, 409);

  Writers w;
  StartWriters(w, users, 3);
  std::this_thread::sleep_for(300ms);
  auto started = Admin("california", "POST", "/v1/admin/migrations",
                       R"({"from":"beijing","cohort":"misplaced"})");
  ASSERT_EQ(started.status, 202) << started.body;
  const std::string id = JsonOf(started)["id"];
  Json m = WaitDone(id, "oregon", 120s);
  std::this_thread::sleep_for(300ms);
  StopWriters(w);
  EXPECT_EQ(m.value("state", ""), "done");
  EXPECT_EQ(m.value("users_total", 0), kMisplaced);
  EXPECT_EQ(m.value("users_moved", 0), kMisplaced);
  EXPECT_EQ(m.value("users_failed", -1), 0);
  EXPECT_GT(m.value("bytes", 0), 0);
  CheckFinalState(users, w, id);

  // A moved user's residency report shows the transfer with a proof that checks offline.
  for (const auto& u : users) {
    if (u.country != "US") continue;
    auto report = c_->Call("california", "GET", "/v1/me/residency", "", Bearer(u.token));
    ASSERT_EQ(report.status, 200) << report.body;
    const Json r = JsonOf(report);
    ASSERT_EQ(r["transfers"].size(), 1u) << report.body;
    EXPECT_EQ(r["transfers"][0].value("from", ""), "beijing");
    EXPECT_EQ(r["transfers"][0].value("to", ""), "oregon");
    ASSERT_EQ(r["proofs"].size(), 1u);
    const std::string file = c_->dir() + "/residency.json";
    {
      std::ofstream out(file);
      out << report.body;
    }
    auto proved = RunCommand({MERIDIAN_BIN, "audit", "prove", "--report", file});
    EXPECT_EQ(proved.exit_code, 0) << proved.text;
    // A report whose transfer index was changed does not prove.
    Json forged = r;
    forged["proofs"][0]["log_index"] = r["proofs"][0].value("log_index", 0) + 1;
    {
      std::ofstream out(file);
      out << forged.dump();
    }
    EXPECT_NE(RunCommand({MERIDIAN_BIN, "audit", "prove", "--report", file}).exit_code, 0);
    break;
  }

  // Both sides logged each transfer (checkpoints are published every second).
  auto transfers = [&](const std::string& region, const std::string& op, int expected) {
    int n = 0;
    for (int attempt = 0; attempt < 30; ++attempt) {
      auto head = Admin(region, "GET", "/v1/admin/audit/tree-head");
      const std::string& note = head.body;
      size_t a = note.find('\n') + 1;
      const int size = std::stoi(note.substr(a, note.find('\n', a) - a));
      n = 0;
      for (int start = 0; start < size; start += 1000) {
        auto r = Admin(region, "GET",
                       "/v1/admin/audit/entries?start=" + std::to_string(start) +
                           "&end=" + std::to_string(std::min(size, start + 1000)));
        const Json list = JsonOf(r)["entries"];
        EXPECT_EQ(r.status, 200) << r.body;
        for (const auto& e : list) {
          auto leaf = ParseJsonObject(*Base64Decode(e["leaf"].get<std::string>()));
          n += leaf.ok() && leaf->value("op", "") == op;
        }
      }
      if (n >= expected) break;
      std::this_thread::sleep_for(200ms);
    }
    return n;
  };
  EXPECT_EQ(transfers("beijing", "transfer.out", kMisplaced), kMisplaced);
  EXPECT_EQ(transfers("oregon", "transfer.in", kToEachRegion), kToEachRegion);
  EXPECT_EQ(transfers("singapore", "transfer.in", kToEachRegion), kToEachRegion);
}

TEST_F(MigrationTest, KillsOfCoordinatorSourceAndDestinationLoseNothing) {
  StartCluster(15);
  auto users = RegisterUsers(8);
  Writers w;
  const std::string id = MoveWhileWriting(w, users);
  // Seeded kill times: coordinator (beijing), destinations, at random moments.
  std::mt19937 rng(20261125);
  const std::vector<std::string> victims = {"beijing",   "oregon",  "singapore", "beijing",
                                            "singapore", "beijing", "oregon",    "beijing",
                                            "singapore", "beijing"};
  for (const auto& v : victims) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 250));
    c_->StopRegion(v, SIGKILL);
    c_->StartRegion(v);
  }
  // With the coordinator down, any node still answers with the status it last published.
  std::this_thread::sleep_for(1500ms);
  c_->StopRegion("beijing", SIGKILL);
  auto while_down =
      c_->Call("california", "GET", "/v1/admin/migrations/" + id, "", Bearer(c_->admin_token()));
  EXPECT_EQ(while_down.status, 200) << while_down.body;
  EXPECT_EQ(JsonOf(while_down).value("coordinator_reachable", true), false);
  EXPECT_EQ(JsonOf(while_down).value("users_total", 0), 32);
  c_->StartRegion("beijing");
  Json m = WaitDone(id, "california", 120s);
  std::this_thread::sleep_for(200ms);
  StopWriters(w);
  EXPECT_EQ(m.value("state", ""), "done");
  EXPECT_EQ(m.value("users_moved", 0), 32);
  CheckFinalState(users, w, id);
}

// A cut between the source and one destination for a few seconds: moves there pause (a
// fenced user stays fenced, never served twice) and resume; moves elsewhere go on.
TEST_F(MigrationTest, ACutToOneDestinationPausesItsMovesThenTheyResume) {
  // Calls to the cut-off region give up after a second, so workers are not all held by it.
  StartCluster(20, "forward_timeout_ms = 1000\n");
  auto users = RegisterUsers(8);
  ASSERT_EQ(Admin("beijing", "PUT", "/v1/admin/policy", R"({"builtin":"current"})").status, 200);
  Writers w;
  StartWriters(w, users, 2);
  auto started = Admin("beijing", "POST", "/v1/admin/migrations",
                       R"({"from":"beijing","cohort":"misplaced"})");
  ASSERT_EQ(started.status, 202) << started.body;
  const std::string id = JsonOf(started)["id"];
  std::this_thread::sleep_for(300ms);
  c_->Freeze("oregon", true);
  auto moved_now = [&] {
    return JsonOf(Admin("beijing", "GET", "/v1/admin/migrations/" + id)).value("users_moved", 0);
  };
  const int before = moved_now();
  std::this_thread::sleep_for(3s);
  const int during = moved_now();
  c_->Freeze("oregon", false);
  EXPECT_GT(during, before);  // the singapore moves went on during the cut
  Json m = WaitDone(id, "singapore", 120s);
  StopWriters(w);
  EXPECT_EQ(m.value("state", ""), "done");
  EXPECT_EQ(m.value("users_moved", 0), 32);
  EXPECT_EQ(m.value("users_failed", -1), 0);
  CheckFinalState(users, w, id);
}

// Two nodes per region (PostgreSQL): the beijing node running the migration is killed
// with SIGKILL mid-move and stays down, as is one node of a destination. The other
// beijing node takes the migration over once the runner's heartbeat is stale, writers
// keep going through the surviving nodes, and nothing is lost.
TEST_F(MigrationTest, WithTwoNodesPerRegionKillingTheRunnerLosesNothing) {
  StartCluster(20, "", 2);
  auto users = RegisterUsers(8);
  Writers w;
  const std::string id = MoveWhileWriting(w, users);
  auto log_of = [&](const std::string& region, int node) {
    return config::ReadFileOr(c_->dir() + "/" + region + "/" + dev::NodeLogName(node));
  };
  // Which beijing node runs it, once a few users moved.
  int runner = -1;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = JsonOf(Admin("beijing", "GET", "/v1/admin/migrations/" + id));
    for (int k = 0; k < 2 && runner < 0; ++k) {
      if (log_of("beijing", k).find("migration_running") != std::string::npos) runner = k;
    }
    if (runner >= 0 && m.value("users_moved", 0) >= 4) break;
    std::this_thread::sleep_for(20ms);
  }
  if (runner < 0) {
    StopWriters(w);
    FAIL() << "no beijing node runs the migration:\n"
           << log_of("beijing", 0) << "\n---\n"
           << log_of("beijing", 1);
  }
  c_->StopNode("beijing", runner, SIGKILL);
  c_->StopNode("singapore", 0, SIGKILL);
  Json m = WaitDone(id, "oregon", 120s);
  std::this_thread::sleep_for(200ms);
  StopWriters(w);
  EXPECT_EQ(m.value("state", ""), "done");
  EXPECT_EQ(m.value("users_moved", 0), 32);
  EXPECT_EQ(m.value("users_failed", -1), 0);
  EXPECT_NE(log_of("beijing", 1 - runner).find("migration_taken_over"), std::string::npos);
  CheckFinalState(users, w, id);
}

}  // namespace
}  // namespace meridian::testing
