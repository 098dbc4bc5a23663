// The region's audit log over a real cluster: signed checkpoints verifiable with the
// published key, entries that recompute the root, proofs, no personal data, and a crash in
// a burst of writes leaving log and data in agreement.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "audit/log.h"
#include "audit/merkle.h"
#include "common/clock.h"
#include "common/encoding.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {

// A node logs the policy it applies and the KEK it finds when it first starts.
constexpr uint64_t kStartEntries = 2;

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = std::make_unique<TestCluster>();
    c_->Start();
  }
  // Singapore's checkpoint, verified; waits (checkpoints are published every second)
  // until it covers at least `min_size` leaves.
  audit::CheckpointBody Checkpoint(uint64_t min_size = 0) {
    for (int i = 0; i < 40; ++i) {
      auto body = CheckpointNow();
      if (body.size >= min_size) return body;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "no checkpoint of size " << min_size;
    return {};
  }
  audit::CheckpointBody CheckpointNow() {
    auto regions = JsonOf(c_->Call("california", "GET", "/v1/regions"));
    std::string verifier;
    for (const auto& r : regions["regions"]) {
      if (r["name"] == "singapore") verifier = r["audit_verifier_key"];
    }
    auto note =
        c_->Call("singapore", "GET", "/v1/admin/audit/tree-head", "", Bearer(c_->admin_token()));
    EXPECT_EQ(note.status, 200);
    EXPECT_EQ(note.Header("content-type").substr(0, 10), "text/plain");
    auto body = audit::VerifyCheckpoint(note.body, verifier);
    EXPECT_TRUE(body.ok()) << body.status().ToString() << "\n" << note.body;
    EXPECT_EQ(body->origin, "meridian/singapore");
    return body.ok() ? *body : audit::CheckpointBody{};
  }
  // Reads [start, end) a page at a time: the server hands out at most 1000 entries a call,
  // and a fast machine writes more than that in a burst.
  std::vector<std::string> Leaves(uint64_t start, uint64_t end) {
    std::vector<std::string> out;
    for (uint64_t from = start; from < end;) {
      const uint64_t to = std::min(end, from + 1000);
      auto r = c_->Call(
          "singapore", "GET",
          "/v1/admin/audit/entries?start=" + std::to_string(from) + "&end=" + std::to_string(to),
          "", Bearer(c_->admin_token()));
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200) break;
      const Json entries = JsonOf(r)["entries"];
      EXPECT_EQ(entries.size(), to - from);
      if (entries.empty()) break;
      for (const auto& e : entries) out.push_back(*Base64Decode(e["leaf"].get<std::string>()));
      from += entries.size();
    }
    return out;
  }
  std::unique_ptr<TestCluster> c_;
};

TEST_F(AuditTest, CheckpointsEntriesAndProofsVerifyAndHoldNoPersonalData) {
  TestUser u{"IN",        "+91 98765 66666", "+919876566666",
             "singapore", "Meera Iyer",      "meera@example.in"};
  RegisterVia(*c_, "california", u);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(c_->Call("california", "PUT", "/v1/me/records/diary/d" + std::to_string(i),
                       "secret-diary-" + std::to_string(i), Bearer(u.token))
                  .status,
              200);
  }
  ASSERT_EQ(c_->Call("california", "GET", "/v1/me", "", Bearer(u.token)).status, 200);
  ASSERT_EQ(c_->Call("california", "POST", "/v1/me/devices",
                     R"({"imei":"490154203237518","model":"Mi 4"})", Bearer(u.token))
                .status,
            201);
  // The node logged the policy and key versions it started with, then: create, 5 writes,
  // profile read, device.
  auto first = Checkpoint(kStartEntries + 8);
  ASSERT_EQ(first.size, kStartEntries + 8);
  auto leaves = Leaves(0, first.size);
  ASSERT_EQ(leaves.size(), first.size);
  audit::MemoryTree mirror;
  std::map<std::string, int> ops;
  for (const auto& leaf : leaves) {
    mirror.Append(audit::LeafHash(leaf));
    auto j = ParseJsonObject(leaf);
    ASSERT_TRUE(j.ok()) << leaf;
    ++ops[(*j)["op"].get<std::string>()];
    EXPECT_EQ((*j)["region"], "singapore");
    EXPECT_EQ(leaf, DumpJson(*j));  // canonical: re-serialising gives the same bytes
    for (std::string_view planted : {"919876566666", "meera", "Meera", "secret-diary",
                                     "490154203237518", "diary", u.user_id.c_str()}) {
      EXPECT_EQ(leaf.find(planted), std::string::npos) << leaf;
    }
  }
  EXPECT_EQ(mirror.Root(), first.root);
  EXPECT_EQ(ops["account.create"], 1);
  EXPECT_EQ(ops["record.write"], 5);
  EXPECT_EQ(ops["profile.read"], 1);
  EXPECT_EQ(ops["device.add"], 1);
  EXPECT_EQ(ops["policy.apply"], 1);
  EXPECT_EQ(ops["key.kek_create"], 1);

  // Each region keeps its own log: ask singapore for a proof in its tree.
  auto inc =
      JsonOf(c_->Call("singapore", "GET",
                      "/v1/admin/audit/proof/inclusion?index=3&size=" + std::to_string(first.size),
                      "", Bearer(c_->admin_token())));
  std::vector<audit::Hash> path;
  for (const auto& h : inc["hashes"]) path.push_back(*Base64Decode(h.get<std::string>()));
  EXPECT_TRUE(audit::VerifyInclusion(3, first.size, audit::LeafHash(leaves[3]), path, first.root));

  ASSERT_EQ(c_->Call("california", "GET", "/v1/me/export", "", Bearer(u.token)).status, 200);
  ASSERT_EQ(c_->Call("california", "DELETE", "/v1/me", "", Bearer(u.token)).status, 200);
  // Export reads the account and the orders; deletion deletes both: four entries.
  auto second = Checkpoint(first.size + 4);
  EXPECT_EQ(second.size, first.size + 4);
  auto cons =
      JsonOf(c_->Call("singapore", "GET",
                      "/v1/admin/audit/proof/consistency?first=" + std::to_string(first.size) +
                          "&second=" + std::to_string(second.size),
                      "", Bearer(c_->admin_token())));
  path.clear();
  for (const auto& h : cons["hashes"]) path.push_back(*Base64Decode(h.get<std::string>()));
  EXPECT_TRUE(audit::VerifyConsistency(first.size, second.size, first.root, second.root, path));

  // Bad queries and callers.
  for (const std::string q :
       {"/v1/admin/audit/entries?start=5&end=2", "/v1/admin/audit/entries?start=x&end=2",
        "/v1/admin/audit/entries?end=2", "/v1/admin/audit/proof/inclusion?index=12&size=12",
        "/v1/admin/audit/proof/inclusion?index=1&size=99",
        "/v1/admin/audit/proof/consistency?first=9&second=8"}) {
    auto r = c_->Call("singapore", "GET", q, "", Bearer(c_->admin_token()));
    EXPECT_EQ(r.status, 400) << q << " " << r.body;
  }
  EXPECT_EQ(c_->Call("singapore", "GET", "/v1/admin/audit/tree-head").status, 401);
}

TEST_F(AuditTest, AfterACrashInABurstLogAndDataAgree) {
  TestUser u{"SG", "8123 9999", "+6581239999", "singapore", "", ""};
  RegisterVia(*c_, "singapore", u);
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      while (!stop) {
        int i = next++;
        auto r = c_->TryCall("singapore", "PUT", "/v1/me/records/burst/k" + std::to_string(i), "v",
                             Bearer(u.token));
        if (!r.ok()) break;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  c_->StopRegion("singapore", SIGKILL);
  stop = true;
  for (auto& w : writers) w.join();
  c_->StartRegion("singapore");
  auto list = c_->Call("singapore", "GET", "/v1/me/records/burst", "", Bearer(u.token));
  ASSERT_EQ(list.status, 200);
  const size_t records = JsonOf(list)["keys"].size();
  ASSERT_GT(records, 0u);
  auto cp = Checkpoint(kStartEntries + records + 1);
  int writes = 0;
  for (const auto& leaf : Leaves(0, cp.size)) {
    writes += ParseJsonObject(leaf)->value("op", "") == "record.write";
  }
  // Each key was written once: every record present has its entry, and no entry lacks
  // its record.
  EXPECT_EQ(static_cast<size_t>(writes), records);
}

// Counts the entries of singapore's log by op, checking that none names the user.
std::map<std::string, int> OpsOf(const std::vector<std::string>& leaves, const TestUser& u,
                                 std::set<std::string>* subjects) {
  std::map<std::string, int> ops;
  for (const auto& leaf : leaves) {
    auto j = ParseJsonObject(leaf);
    EXPECT_TRUE(j.ok()) << leaf;
    if (!j.ok()) continue;
    ++ops[j->value("op", "")];
    if (j->contains("subject")) subjects->insert(j->value("subject", ""));
    EXPECT_EQ(leaf.find(u.user_id), std::string::npos) << leaf;
    EXPECT_EQ(leaf.find(u.e164.substr(1)), std::string::npos) << leaf;
  }
  return ops;
}

TEST_F(AuditTest, OrdersKeyOperationsAndPolicyAreLogged) {
  TestUser u{"IN", "+91 98765 55555", "+919876555555", "singapore", "", ""};
  RegisterVia(*c_, "singapore", u);
  const auto admin = Bearer(c_->admin_token());
  ASSERT_EQ(c_->Call("california", "POST", "/v1/admin/products",
                     R"({"sku":"mi4","name":"Mi 4","price":199900,"currency":"INR"})", admin)
                .status,
            201);
  const int64_t now = SystemClock::Instance().NowMs();
  Json sale = {{"id", "s1"},
               {"sku", "mi4"},
               {"stock", 10},
               {"per_user_limit", 1},
               {"starts_at", FormatRfc3339(now - 60'000)},
               {"ends_at", FormatRfc3339(now + 3'600'000)},
               {"payment_window_s", 900}};
  ASSERT_EQ(c_->Call("california", "POST", "/v1/admin/sales", DumpJson(sale), admin).status, 201);
  auto h = Bearer(u.token);
  h.emplace_back("idempotency-key", "k1");
  auto bought = c_->Call("singapore", "POST", "/v1/sales/s1/purchase", "", h);
  ASSERT_EQ(bought.status, 201) << bought.body;
  const std::string order = JsonOf(bought)["order_id"];
  ASSERT_EQ(
      c_->Call("singapore", "POST", "/v1/orders/" + order + "/pay", "", Bearer(u.token)).status,
      200);
  ASSERT_EQ(c_->Call("singapore", "GET", "/v1/me/orders", "", Bearer(u.token)).status, 200);
  auto rotated = c_->Call("singapore", "POST", "/v1/admin/keys/rotate", "", admin);
  ASSERT_EQ(rotated.status, 200) << rotated.body;

  // The rotation rewraps the user's data key in the background and then destroys KEK 1.
  std::map<std::string, int> ops;
  std::set<std::string> subjects;
  for (int i = 0; i < 50 && ops["key.kek_destroy"] == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    subjects.clear();
    ops = OpsOf(Leaves(0, Checkpoint().size), u, &subjects);
  }
  EXPECT_EQ(ops["policy.apply"], 1);
  EXPECT_EQ(ops["key.kek_create"], 1);
  EXPECT_EQ(ops["account.create"], 1);
  EXPECT_EQ(ops["order.create"], 1);
  EXPECT_EQ(ops["order.pay"], 1);
  EXPECT_EQ(ops["order.list"], 1);
  EXPECT_EQ(ops["key.kek_rotate"], 1);
  EXPECT_GE(ops["key.rewrap"], 1);
  EXPECT_EQ(ops["key.kek_destroy"], 1);
  EXPECT_EQ(subjects.size(), 1u);  // the account and its orders carry the same pseudonym

  // A restart with the same policy and keys adds nothing; one after an offline rotation
  // logs it.
  const uint64_t before = Checkpoint().size;
  c_->StopRegion("singapore", SIGTERM);
  c_->StartRegion("singapore");
  EXPECT_EQ(Checkpoint().size, before);
  c_->StopRegion("singapore", SIGTERM);
  auto rotated_offline = RunCommand({MERIDIAN_BIN, "keys", "rotate", "--config",
                                     c_->dir() + "/cluster.toml", "--region", "singapore"});
  ASSERT_EQ(rotated_offline.exit_code, 0) << rotated_offline.text;
  c_->StartRegion("singapore");
  subjects.clear();
  ops = OpsOf(Leaves(0, Checkpoint(before + 1).size), u, &subjects);
  EXPECT_EQ(ops["key.kek_rotate"], 2);
  EXPECT_EQ(ops["policy.apply"], 1);
}

std::string VerifierOf(TestCluster& c, const std::string& region) {
  auto regions = JsonOf(c.Call("california", "GET", "/v1/regions"));
  for (const auto& r : regions["regions"]) {
    if (r["name"] == region) return r["audit_verifier_key"];
  }
  return "";
}

// Waits until singapore's served checkpoint covers `size` leaves and carries the other
// two home regions' cosignatures.
std::string WaitForWitnessedCheckpoint(TestCluster& c, uint64_t size) {
  std::string note;
  for (int i = 0; i < 80; ++i) {
    note =
        c.Call("singapore", "GET", "/v1/admin/audit/tree-head", "", Bearer(c.admin_token())).body;
    bool witnessed = audit::VerifyCheckpoint(note, VerifierOf(c, "beijing")).ok() &&
                     audit::VerifyCheckpoint(note, VerifierOf(c, "oregon")).ok();
    if (witnessed && note.find("\n" + std::to_string(size) + "\n") != std::string::npos)
      return note;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "no witnessed checkpoint of size " << size << ":\n" << note;
  return note;
}

TEST_F(AuditTest, WitnessesCosignAndRaiseAnAlarmOnAFork) {
  TestUser u{"IN", "+91 98765 77777", "+919876577777", "singapore", "", ""};
  RegisterVia(*c_, "singapore", u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(
        c_->Call("singapore", "PUT", "/v1/me/records/r/k" + std::to_string(i), "v", Bearer(u.token))
            .status,
        200);
  }
  // Start, 1 + 4 entries; the checkpoint carries three verifiable signature lines.
  std::string note = WaitForWitnessedCheckpoint(*c_, kStartEntries + 5);
  EXPECT_TRUE(audit::VerifyCheckpoint(note, VerifierOf(*c_, "singapore")).ok());
  EXPECT_EQ(std::count(note.begin(), note.end(), '\n'), 7) << note;  // 3 body, blank, 3 signatures
  EXPECT_EQ(JsonOf(c_->Call("beijing", "GET", "/v1/admin/audit/alarms", "",
                            Bearer(c_->admin_token())))["alarms"]
                .size(),
            0u);

  // An operator rewrites singapore's history: same size, another root.
  c_->StopRegion("singapore", SIGTERM);
  // The last leaf's hash: every root of this size reads it.
  c_->PutMeta("singapore", fmt::format("audit/n/00/{:016x}", kStartEntries + 5 - 1),
              std::string(32, 'f'));
  c_->StartRegion("singapore");
  Json alarms;
  for (int i = 0; i < 60; ++i) {
    alarms = JsonOf(c_->Call("oregon", "GET", "/v1/admin/audit/alarms", "",
                             Bearer(c_->admin_token())))["alarms"];
    if (!alarms.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(alarms.empty());
  EXPECT_EQ(alarms[0]["region"], "singapore");
  EXPECT_NE(alarms[0]["reason"].get<std::string>().find("fork"), std::string::npos);
  auto metrics = c_->Call("oregon", "GET", "/metrics");
  EXPECT_NE(metrics.body.find("meridian_audit_alarms{region=\"oregon\"} 1"), std::string::npos);
}

}  // namespace
}  // namespace meridian::testing
