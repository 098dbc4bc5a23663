// Personal data lives only in the user's home region: checked through the API and by
// searching every byte each region wrote.
#include <signal.h>

#include "integration/helpers.h"

namespace meridian::testing {
namespace {

std::vector<TestUser> Users() {
  return {
      {"CN", "138 0013 8000", "+8613800138000", "beijing", "Li Wei", "li.wei@example.cn"},
      {"IN", "+91 98765 43210", "+919876543210", "singapore", "Asha Rao", "asha@example.in"},
      {"SG", "8123 4567", "+6581234567", "singapore", "Tan Mei", "tan.mei@example.sg"},
      {"ID", "0812-3456-7890", "+6281234567890", "singapore", "Budi Santoso", "budi@example.id"},
      {"US", "(650) 253-0000", "+16502530000", "oregon", "Ada Lovelace", "ada@example.com"},
      {"DE", "030 123456", "+4930123456", "oregon", "Jonas Weber", "jonas@example.de"},
      {"BR", "(11) 91234-5678", "+5511912345678", "oregon", "Lia Souza", "lia@example.br"},
  };
}

TEST(ResidencyTest, UsersFromManyCountriesLiveOnlyInTheirHomeRegion) {
  TestCluster c;
  c.Start();
  auto users = Users();
  for (auto& u : users) {
    RegisterVia(c, "california", u);
    // Content stored through the edge, as a phone would.
    auto put = c.Call("california", "PUT", "/v1/me/records/notes/secret", "diary-of-" + u.email,
                      Bearer(u.token));
    ASSERT_EQ(put.status, 200) << put.body;
  }
  for (const auto& u : users) {
    for (const auto& at : TestCluster::Regions()) {
      auto p = c.Call(at, "GET", "/v1/admin/users/" + u.user_id + "/placement", "",
                      Bearer(c.admin_token()));
      ASSERT_EQ(p.status, 200) << p.body;
      EXPECT_EQ(JsonOf(p)["home_region"], u.home) << u.country << " asked at " << at;
    }
    auto me = c.Call(u.home, "GET", "/v1/me", "", Bearer(u.token));
    EXPECT_EQ(JsonOf(me)["phone"], u.e164);
    EXPECT_EQ(JsonOf(me)["home_region"], u.home);
  }
  c.StopAll();
  for (const auto& u : users) {
    std::string digits = u.e164.substr(1);
    for (const auto& region : TestCluster::Regions()) {
      // Not even the home region holds a readable copy: values are encrypted at rest.
      for (const std::string& needle : {digits, u.email, u.name, "diary-of-" + u.email}) {
        auto where = c.FindBytes(region, needle);
        EXPECT_TRUE(where.empty())
            << u.country << " data found in " << region << ": " << where.front();
      }
    }
    // The search does read the home region's files and RocksDB contents: the user's
    // (non-personal) id is there, and only there.
    for (const auto& region : TestCluster::Regions()) {
      EXPECT_EQ(c.FindBytes(region, u.user_id).empty(), region != u.home) << region;
    }
  }
}

TEST(ResidencyTest, WrongRegionRedirectStoresAndLogsNothing) {
  TestCluster c;
  c.Start();
  TestUser u{"IN",        "+91 99887 76655", "+919988776655",
             "singapore", "Ravi Kumar",      "ravi@example.in"};
  auto r = c.Call("beijing", "POST", "/v1/accounts", RegisterBody(u));
  ASSERT_EQ(r.status, 307) << r.body;
  EXPECT_EQ(std::string(r.Header("location")), c.Url("singapore") + "/v1/accounts");
  EXPECT_EQ(ErrorCodeOf(r), "wrong_region");
  EXPECT_EQ(JsonOf(r)["home_region"], "singapore");
  RegisterVia(c, "singapore", u);
  // Logging in at another region redirects too.
  auto login = c.Call("oregon", "POST", "/v1/sessions",
                      DumpJson({{"phone", u.e164}, {"password", "correct horse battery"}}));
  ASSERT_EQ(login.status, 307) << login.body;
  EXPECT_EQ(std::string(login.Header("location")), c.Url("singapore") + "/v1/sessions");
  auto home_login = c.Call("singapore", "POST", "/v1/sessions",
                           DumpJson({{"phone", u.phone}, {"password", "correct horse battery"}}));
  EXPECT_EQ(home_login.status, 200) << home_login.body;
  c.StopAll();
  for (const std::string region : {"beijing", "oregon", "california"}) {
    for (const std::string needle : {"919988776655", "ravi@example.in", "Ravi Kumar"}) {
      auto where = c.FindBytes(region, needle);
      EXPECT_TRUE(where.empty()) << needle << " in " << region << ": " << where.front();
    }
  }
}

}  // namespace
}  // namespace meridian::testing
