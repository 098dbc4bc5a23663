// GET /v1/admin/overview, the console's one view of the whole cluster: every node answers it
// (the edge included) with every region's counts, the sales, the migrations and the audit
// checkpoints; it needs the admin token; and nothing personal is in it.
#include <signal.h>

#include <chrono>
#include <thread>

#include "common/clock.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {
using namespace std::chrono_literals;

class OverviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.policy = "legacy";  // everyone in beijing, so a migration has users to move
    o.node_knobs = "migration_users_per_s = 50\n";
    c_ = std::make_unique<TestCluster>(o);
    c_->Start();
  }
  net::HttpResponse Admin(const std::string& region, const std::string& method,
                          const std::string& target, const std::string& body = {}) {
    return c_->Call(region, method, target, body, Bearer(c_->admin_token()));
  }
  Json Overview(const std::string& region) {
    auto r = Admin(region, "GET", "/v1/admin/overview");
    EXPECT_EQ(r.status, 200) << region << ": " << r.body;
    EXPECT_EQ(r.Header("content-type"), "application/json");
    last_body_ = r.body;
    return JsonOf(r);
  }
  // The overview at `region` once `ready` holds (parts refresh within a second or two).
  Json OverviewWhen(const std::string& region, const std::function<bool(const Json&)>& ready) {
    Json j;
    for (auto deadline = std::chrono::steady_clock::now() + 20s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(200ms)) {
      j = Overview(region);
      if (ready(j)) return j;
    }
    ADD_FAILURE() << region << ": overview never got there: " << j.dump();
    return j;
  }
  static const Json* RegionIn(const Json& o, const std::string& name) {
    for (const auto& r : o["regions"]) {
      if (r.value("name", "") == name) return &r;
    }
    return nullptr;
  }

  std::unique_ptr<TestCluster> c_;
  std::string last_body_;
};

TEST_F(OverviewTest, EveryNodeAnswersForTheWholeClusterWithCountsOnly) {
  // Five users, all homed in beijing under the legacy policy; three of them are misplaced
  // under the current one (US, US and IN).
  std::vector<TestUser> users = {
      {"CN", "138 0013 8001", "+8613800138001", "beijing", "Li Wei", "li.wei@example.cn"},
      {"CN", "138 0013 8002", "+8613800138002", "beijing", "Wang Fang", "wang.fang@example.cn"},
      {"US", "(650) 253-0101", "+16502530101", "beijing", "Ada Lovelace", "ada@example.com"},
      {"US", "(650) 253-0102", "+16502530102", "beijing", "Grace Hopper", "grace@example.com"},
      {"IN", "+91 98765 40101", "+919876540101", "beijing", "Asha Rao", "asha@example.in"},
  };
  for (auto& u : users) {
    SCOPED_TRACE(u.phone);
    RegisterVia(*c_, "california", u);
  }

  // A sale, and two units bought by a user who stays in beijing.
  ASSERT_EQ(Admin("oregon", "POST", "/v1/admin/products",
                  R"({"sku":"mi4","name":"Mi 4","price":199900,"currency":"CNY"})")
                .status,
            201);
  const int64_t now = SystemClock::Instance().NowMs();
  ASSERT_EQ(Admin("oregon", "POST", "/v1/admin/sales",
                  DumpJson({{"id", "launch"},
                            {"sku", "mi4"},
                            {"stock", 9},
                            {"per_user_limit", 5},
                            {"starts_at", FormatRfc3339(now - 1000)},
                            {"ends_at", FormatRfc3339(now + 3600'000)}}))
                .status,
            201);
  for (int i = 0; i < 2; ++i) {
    auto r = c_->Call("california", "POST", "/v1/sales/launch/purchase", "",
                      {{"authorization", "Bearer " + users[0].token},
                       {"idempotency-key", "k" + std::to_string(i)}});
    ASSERT_EQ(r.status, 201) << r.body;
  }

  // The current policy, and the move of the three misplaced users out of beijing.
  auto pol = Admin("singapore", "PUT", "/v1/admin/policy", R"({"builtin":"current"})");
  ASSERT_EQ(pol.status, 200) << pol.body;
  auto started = Admin("california", "POST", "/v1/admin/migrations",
                       R"({"from":"beijing","cohort":"misplaced"})");
  ASSERT_EQ(started.status, 202) << started.body;
  const std::string id = JsonOf(started)["id"];

  for (const auto& at : TestCluster::Regions()) {
    SCOPED_TRACE("asked at " + at);
    Json o = OverviewWhen(at, [&](const Json& j) {
      bool moved = false, witnessed = true;
      for (const auto& m : j["migrations"]) {
        moved |= m.value("id", "") == id && m.value("state", "") == "done";
      }
      for (const auto& r : j["regions"]) {
        if (r.value("role", "") == "home" && r["checkpoint"]["witnesses"].empty())
          witnessed = false;
      }
      const Json* beijing = RegionIn(j, "beijing");
      return moved && witnessed && beijing != nullptr && (*beijing)["users_homed"] == 2;
    });
    EXPECT_EQ(o["answered_by"], at);
    EXPECT_EQ(o["policy"]["version"], 2);
    EXPECT_EQ(o["policy"]["countries"]["IN"], "singapore");
    EXPECT_EQ(o["policy"]["default_region"], "oregon");
    EXPECT_EQ(o["users_homed_total"], 5);

    ASSERT_EQ(o["regions"].size(), 4u);
    const std::map<std::string, std::pair<std::string, Json>> expected = {
        {"beijing", {"home", 2}},
        {"oregon", {"home", 2}},
        {"singapore", {"home", 1}},
        {"california", {"edge", nullptr}}};
    for (const auto& [name, want] : expected) {
      const Json* r = RegionIn(o, name);
      ASSERT_NE(r, nullptr) << name;
      EXPECT_EQ((*r)["role"], want.first) << name;
      EXPECT_EQ((*r)["health"], "ok") << name;
      EXPECT_EQ((*r)["users_homed"], want.second) << name;
      EXPECT_EQ((*r)["policy_version"], 2) << name;
      EXPECT_EQ((*r)["url"], c_->Url(name)) << name;
      EXPECT_TRUE((*r)["alarms"].is_array() && (*r)["alarms"].empty()) << name;
      const Json& cp = (*r)["checkpoint"];
      EXPECT_GT(cp.value("size", int64_t{0}), 0) << name;
      EXPECT_TRUE(cp["age_s"].is_number_integer()) << name << ": " << cp.dump();
      if (want.first == "home") {
        // Cosigned by the other home regions (witnesses), never by itself.
        for (const auto& w : cp["witnesses"]) {
          EXPECT_NE(w, name);
          EXPECT_EQ(RegionIn(o, w.get<std::string>())->value("role", ""), "home");
        }
      }
    }

    ASSERT_EQ(o["sales"].size(), 1u) << o["sales"].dump();
    const Json& sale = o["sales"][0];
    EXPECT_EQ(sale["id"], "launch");
    EXPECT_EQ(sale["state"], "open");
    EXPECT_EQ(sale["stock"], 9);
    EXPECT_EQ(sale["sold"], 2);
    EXPECT_EQ(sale["remaining"], 7);
    EXPECT_EQ(sale["oversold"], 0);
    EXPECT_TRUE(sale["sold_out_at"].is_null());
    EXPECT_EQ(sale["per_region"].size(), 3u);  // the home regions' quotas; the edge has none
    EXPECT_EQ(sale["per_region"]["beijing"]["sold"], 2);
    int64_t quotas = 0;
    for (const auto& [_, q] : sale["per_region"].items()) quotas += q.value("quota", int64_t{0});
    EXPECT_EQ(quotas, 9);
    EXPECT_EQ(o["answers"]["purchases"], 2);  // counted once, where the buyer came in

    const Json* m = nullptr;
    for (const auto& x : o["migrations"]) {
      if (x.value("id", "") == id) m = &x;
    }
    ASSERT_NE(m, nullptr);
    EXPECT_EQ((*m)["from"], "beijing");
    EXPECT_EQ((*m)["users_total"], 3);
    EXPECT_EQ((*m)["users_moved"], 3);
    EXPECT_EQ((*m)["users_failed"], 0);
    EXPECT_EQ((*m)["destinations"]["oregon"], Json({{"users", 2}, {"moved", 2}}));
    EXPECT_EQ((*m)["destinations"]["singapore"], Json({{"users", 1}, {"moved", 1}}));
    EXPECT_TRUE((*m)["finished_at"].is_string());
    EXPECT_EQ((*m)["coordinator_reachable"], true);

    // Nothing personal, in any form a user gave it or the cluster made of it.
    for (const auto& u : users) {
      std::string digits;
      for (char ch : u.e164) {
        if (ch >= '0' && ch <= '9') digits += ch;
      }
      for (const std::string& secret :
           {u.phone, u.e164, digits, u.name, u.email, u.user_id, u.token}) {
        EXPECT_EQ(last_body_.find(secret), std::string::npos) << "found '" << secret << "'";
      }
    }
  }

  // A region that is down is shown as unreachable; the rest still answer.
  c_->StopRegion("oregon", SIGKILL);
  Json o = OverviewWhen("california", [](const Json& j) {
    const Json* r = RegionIn(j, "oregon");
    return r != nullptr && (*r)["health"] == "unreachable";
  });
  EXPECT_EQ((*RegionIn(o, "singapore"))["health"], "ok");
  EXPECT_EQ(o["sales"][0]["complete"], false);
}

TEST_F(OverviewTest, NeedsTheAdminTokenAtEveryNode) {
  TestUser u{"CN", "138 0013 8009", "+8613800138009", "beijing", "Zhang San", "zs@example.cn"};
  RegisterVia(*c_, "beijing", u);
  for (const auto& at : TestCluster::Regions()) {
    SCOPED_TRACE(at);
    for (const net::Headers& h : {net::Headers{}, Bearer("not-the-admin-token"), Bearer(u.token),
                                  net::Headers{{"authorization", "Basic " + c_->admin_token()}}}) {
      auto r = c_->Call(at, "GET", "/v1/admin/overview", "", h);
      EXPECT_EQ(r.status, 401) << r.body;
      EXPECT_EQ(ErrorCodeOf(r), "unauthenticated");
    }
    // Its parts are for regions only.
    auto part = c_->Call(at, "GET", "/internal/v1/overview", "", Bearer(c_->admin_token()));
    EXPECT_EQ(part.status, 401) << part.body;
    EXPECT_EQ(c_->Call(at, "POST", "/v1/admin/overview", "{}", Bearer(c_->admin_token())).status,
              405);

    // The console itself is public: the page (or, in a binary built without it, the page
    // that says how to build it) and its files; the data comes from the overview.
    auto page = c_->Call(at, "GET", "/");
    EXPECT_EQ(page.status, 200);
    EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
    EXPECT_NE(page.Header("content-security-policy").find("default-src 'self'"), std::string::npos);
    EXPECT_EQ(c_->Call(at, "GET", "/console/no-such-file.js").status, 404);
  }
}

}  // namespace
}  // namespace meridian::testing
