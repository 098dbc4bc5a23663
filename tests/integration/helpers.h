// Shared steps of the integration tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/json.h"
#include "support/cluster.h"

namespace meridian::testing {

struct TestUser {
  std::string country;
  std::string phone;  // as typed
  std::string e164;
  std::string home;
  std::string name;
  std::string email;
  std::string user_id;
  std::string token;
};

inline std::string RegisterBody(const TestUser& u) {
  return DumpJson({{"country", u.country},
                   {"phone", u.phone},
                   {"password", "correct horse battery"},
                   {"name", u.name},
                   {"email", u.email}});
}

// Registers at `entry`, following one 307 to the home region as a client would.
inline void RegisterVia(TestCluster& c, const std::string& entry, TestUser& u) {
  auto r = c.Call(entry, "POST", "/v1/accounts", RegisterBody(u));
  std::string at = entry;
  if (r.status == 307) {
    auto body = ParseJsonObject(r.body);
    ASSERT_TRUE(body.ok());
    at = (*body)["home_region"];
    ASSERT_EQ(std::string(r.Header("location")), c.Url(at) + "/v1/accounts");
    r = c.Call(at, "POST", "/v1/accounts", RegisterBody(u));
  }
  ASSERT_EQ(r.status, 201) << r.body;
  auto j = ParseJsonObject(r.body);
  ASSERT_TRUE(j.ok());
  u.user_id = (*j)["user_id"];
  u.token = (*j)["token"];
  EXPECT_EQ((*j)["home_region"], u.home);
  EXPECT_EQ(at, u.home);
}

inline Json JsonOf(const net::HttpResponse& r) {
  auto j = ParseJsonObject(r.body);
  EXPECT_TRUE(j.ok()) << r.body;
  return j.ok() ? *j : Json::object();
}

inline std::string ErrorCodeOf(const net::HttpResponse& r) {
  auto j = ParseJsonObject(r.body);
  return j.ok() ? j->value("error", "") : "";
}

}  // namespace meridian::testing
