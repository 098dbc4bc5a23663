// Token-carrying requests reach the user's home region from any node.
#include <chrono>

#include "integration/helpers.h"

namespace meridian::testing {
namespace {

TEST(RoutingTest, EveryUserCallWorksThroughEveryNode) {
  TestCluster c;
  c.Start();
  TestUser u{"IN", "+91 98765 11111", "+919876511111", "singapore", "Asha", "a@example.in"};
  RegisterVia(c, "singapore", u);
  for (const auto& at : TestCluster::Regions()) {
    auto me = c.Call(at, "GET", "/v1/me", "", Bearer(u.token));
    ASSERT_EQ(me.status, 200) << at << ": " << me.body;
    EXPECT_EQ(JsonOf(me)["user_id"], u.user_id);
    auto h = Bearer(u.token);
    h.emplace_back("content-type", "text/plain");
    auto put = c.Call(at, "PUT", "/v1/me/records/notes/from-" + at, "hello " + at, h);
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(JsonOf(put)["version"], 1);
  }
  auto list = c.Call("california", "GET", "/v1/me/records/notes", "", Bearer(u.token));
  EXPECT_EQ(JsonOf(list)["keys"].size(), 4u);
  auto get = c.Call("beijing", "GET", "/v1/me/records/notes/from-oregon", "", Bearer(u.token));
  EXPECT_EQ(get.body, "hello oregon");
  EXPECT_EQ(get.Header("content-type"), "text/plain");
  auto del = c.Call("oregon", "DELETE", "/v1/me/records/notes/from-oregon", "", Bearer(u.token));
  EXPECT_EQ(del.status, 204);
  auto gone = c.Call("singapore", "GET", "/v1/me/records/notes/from-oregon", "", Bearer(u.token));
  EXPECT_EQ(gone.status, 404);

  auto dev = c.Call("california", "POST", "/v1/me/devices",
                    R"({"imei":"490154203237518","model":"Mi 4"})", Bearer(u.token));
  ASSERT_EQ(dev.status, 201) << dev.body;
  auto devs = c.Call("oregon", "GET", "/v1/me/devices", "", Bearer(u.token));
  ASSERT_EQ(devs.status, 200);
  EXPECT_EQ(JsonOf(devs)["devices"][0]["device_id"], JsonOf(dev)["device_id"]);
  EXPECT_EQ(devs.body.find("490154203237518"), std::string::npos);

  // The edge counted its forwards to singapore.
  auto metrics = c.Call("california", "GET", "/metrics");
  EXPECT_NE(
      metrics.body.find(
          "meridian_forwards_total{region=\"california\",destination=\"singapore\",result=\"ok\"}"),
      std::string::npos)
      << metrics.body;
  EXPECT_EQ(metrics.body.find(u.user_id), std::string::npos);
}

TEST(RoutingTest, PhoneTakenHoldsAcrossRegions) {
  TestCluster c;
  c.Start();
  TestUser first{"IN", "+91 98765 22222", "+919876522222", "singapore", "A", "a@example.in"};
  RegisterVia(c, "singapore", first);
  // The same phone, claimed by someone living in the US (homed in oregon).
  TestUser second{"US", "+91 98765 22222", "+919876522222", "oregon", "B", "b@example.com"};
  auto r = c.Call("oregon", "POST", "/v1/accounts", RegisterBody(second));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "phone_taken");
  // And the refusal left nothing behind in oregon.
  c.StopRegion("oregon", SIGTERM);
  EXPECT_TRUE(c.FindBytes("oregon", "b@example.com").empty());
}

TEST(RoutingTest, PhoneCheckRefusesWhenAHomeRegionIsDown) {
  TestCluster c;
  c.Start();
  c.StopRegion("beijing", SIGKILL);
  TestUser u{"US", "+1 650 253 0001", "+16502530001", "oregon", "C", "c@example.com"};
  auto r = c.Call("oregon", "POST", "/v1/accounts", RegisterBody(u));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "unavailable");
  EXPECT_FALSE(r.Header("retry-after").empty());
  c.StartRegion("beijing");
  RegisterVia(c, "oregon", u);
}

TEST(RoutingTest, AdminPlacementFromAnyNode) {
  TestCluster c;
  c.Start();
  TestUser u{"CN", "138 0013 8001", "+8613800138001", "beijing", "D", "d@example.cn"};
  RegisterVia(c, "beijing", u);
  for (const auto& at : TestCluster::Regions()) {
    auto p = c.Call(at, "GET", "/v1/admin/users/" + u.user_id + "/placement", "",
                    Bearer(c.admin_token()));
    ASSERT_EQ(p.status, 200) << at << p.body;
    EXPECT_EQ(JsonOf(p)["home_region"], "beijing");
    EXPECT_EQ(JsonOf(p)["state"], "active");
    EXPECT_EQ(p.body.find("8613800138001"), std::string::npos);
  }
  auto none = c.Call("california", "GET", "/v1/admin/users/u_nobody/placement", "",
                     Bearer(c.admin_token()));
  EXPECT_EQ(none.status, 404);
}

TEST(RoutingTest, TlsAndEmulatedWanLatency) {
  TestCluster c({.tls = true, .latency = true});
  c.Start();
  TestUser u{"IN", "+91 98765 33333", "+919876533333", "singapore", "E", "e@example.in"};
  RegisterVia(c, "singapore", u);
  // Warm the edge's connection to singapore, then time one forwarded call.
  ASSERT_EQ(c.Call("california", "GET", "/v1/me", "", Bearer(u.token)).status, 200);
  auto t0 = std::chrono::steady_clock::now();
  auto me = c.Call("california", "GET", "/v1/me", "", Bearer(u.token));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(me.status, 200);
  // california <-> singapore is 174 ms round trip in the default matrix.
  EXPECT_GE(took, std::chrono::milliseconds(174));
  auto direct_t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(c.Call("singapore", "GET", "/v1/me", "", Bearer(u.token)).status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - direct_t0, std::chrono::milliseconds(174));
}

}  // namespace
}  // namespace meridian::testing
