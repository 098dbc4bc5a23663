// Every bad input gets a clear error from API.md and changes nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "integration/helpers.h"

namespace meridian::testing {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new TestCluster({.node_knobs = "token_ttl_s = 2"});
    cluster_->Start();
    user_ =
        new TestUser{"IN", "+91 98765 44444", "+919876544444", "singapore", "F", "f@example.in"};
    RegisterVia(*cluster_, "singapore", *user_);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete user_;
  }
  // A phone number that only ever appears in refused requests.
  static constexpr const char* kNeverPhone = "+91 90000 12345";
  static constexpr const char* kNeverDigits = "919000012345";

  void ExpectError(const net::HttpResponse& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(ErrorCodeOf(r), code) << r.body;
    EXPECT_FALSE(JsonOf(r).value("message", "").empty());
  }
  // Tokens of this cluster live 2 s, so each test logs in afresh.
  std::string FreshToken() {
    auto r =
        cluster_->Call("singapore", "POST", "/v1/sessions",
                       DumpJson({{"phone", user_->e164}, {"password", "correct horse battery"}}));
    EXPECT_EQ(r.status, 200) << r.body;
    return JsonOf(r).value("token", "");
  }
  net::HttpResponse Register(const std::string& body) {
    return cluster_->Call("singapore", "POST", "/v1/accounts", body);
  }

  static TestCluster* cluster_;
  static TestUser* user_;
};
TestCluster* BadInputTest::cluster_ = nullptr;
TestUser* BadInputTest::user_ = nullptr;

TEST_F(BadInputTest, MalformedJsonAndWrongTypes) {
  ExpectError(Register("{\"country\":"), 400, "invalid_json");
  ExpectError(Register("[]"), 400, "invalid_json");
  ExpectError(Register(R"({"country":"IN","phone":919000012345,"password":"0123456789"})"), 400,
              "invalid_field");
  ExpectError(Register(R"({"country":["IN"],"phone":"+91 90000 12345","password":"0123456789"})"),
              400, "invalid_field");
  ExpectError(Register(R"({"country":"IN","phone":"+91 90000 12345","password":1234567890})"), 400,
              "invalid_field");
}

TEST_F(BadInputTest, MissingFields) {
  ExpectError(Register(R"({"phone":"+91 90000 12345","password":"0123456789"})"), 400,
              "invalid_field");
  ExpectError(Register(R"({"country":"IN","password":"0123456789"})"), 400, "invalid_field");
  ExpectError(Register(R"({"country":"IN","phone":"+91 90000 12345"})"), 400, "invalid_field");
  ExpectError(cluster_->Call("singapore", "POST", "/v1/sessions", R"({"phone":"+91 90000 12345"})"),
              400, "invalid_field");
}

TEST_F(BadInputTest, UnknownCountryInvalidPhoneWeakPassword) {
  ExpectError(Register(R"({"country":"XX","phone":"+91 90000 12345","password":"0123456789"})"),
              400, "invalid_country");
  ExpectError(Register(R"({"country":"in","phone":"+91 90000 12345","password":"0123456789"})"),
              400, "invalid_country");
  ExpectError(Register(R"({"country":"IN","phone":"+91 123","password":"0123456789"})"), 400,
              "invalid_phone");
  ExpectError(Register(R"({"country":"IN","phone":"+91 90000 12345","password":"short"})"), 400,
              "weak_password");
  // An error message never repeats the number it refused.
  auto r = Register(R"({"country":"IN","phone":"+91 90000 1","password":"0123456789"})");
  EXPECT_EQ(r.body.find("90000"), std::string::npos);
}

TEST_F(BadInputTest, PhoneRegisteredInAnotherRegion) {
  TestUser again{"US", user_->phone, user_->e164, "oregon", "G", "g@example.com"};
  auto r = cluster_->Call("oregon", "POST", "/v1/accounts", RegisterBody(again));
  ExpectError(r, 409, "phone_taken");
}

TEST_F(BadInputTest, MissingExpiredAndTamperedTokens) {
  ExpectError(cluster_->Call("singapore", "GET", "/v1/me"), 401, "unauthenticated");
  ExpectError(cluster_->Call("california", "GET", "/v1/me", "", {{"authorization", "Basic xyz"}}),
              401, "unauthenticated");
  std::string t = FreshToken();
  std::string tampered = t;
  tampered[t.size() - 3] = tampered[t.size() - 3] == 'a' ? 'b' : 'a';
  ExpectError(cluster_->Call("singapore", "GET", "/v1/me", "", Bearer(tampered)), 401,
              "unauthenticated");
  ExpectError(cluster_->Call("california", "GET", "/v1/me", "", Bearer(tampered)), 401,
              "unauthenticated");
  // The admin token is not a user token, and a user token is not the admin token.
  ExpectError(cluster_->Call("singapore", "GET", "/v1/me", "", Bearer(cluster_->admin_token())),
              401, "unauthenticated");
  ExpectError(cluster_->Call("singapore", "GET", "/v1/admin/users/" + user_->user_id + "/placement",
                             "", Bearer(FreshToken())),
              401, "unauthenticated");
  ExpectError(
      cluster_->Call("singapore", "GET", "/v1/admin/users/" + user_->user_id + "/placement"), 401,
      "unauthenticated");
  ExpectError(cluster_->Call("singapore", "GET", "/internal/v1/directory/phone/abc"), 401,
              "unauthenticated");
  // Tokens of this cluster live 2 s here.
  auto fresh =
      cluster_->Call("singapore", "POST", "/v1/sessions",
                     DumpJson({{"phone", user_->e164}, {"password", "correct horse battery"}}));
  ASSERT_EQ(fresh.status, 200);
  std::string token = JsonOf(fresh)["token"];
  EXPECT_EQ(cluster_->Call("singapore", "GET", "/v1/me", "", Bearer(token)).status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  ExpectError(cluster_->Call("california", "GET", "/v1/me", "", Bearer(token)), 401,
              "unauthenticated");
}

TEST_F(BadInputTest, WrongPasswordAndUnknownPhone) {
  ExpectError(cluster_->Call("singapore", "POST", "/v1/sessions",
                             DumpJson({{"phone", user_->e164}, {"password", "not the password"}})),
              401, "unauthenticated");
  ExpectError(cluster_->Call("california", "POST", "/v1/sessions",
                             DumpJson({{"phone", kNeverPhone}, {"password", "0123456789"}})),
              401, "unauthenticated");
}

TEST_F(BadInputTest, BodiesAndHeadersOverTheLimit) {
  std::string big =
      R"({"country":"IN","phone":"+91 90000 12345","password":"0123456789","name":")" +
      std::string(17 * 1024, 'n') + "\"}";
  ExpectError(Register(big), 413, "too_large");
  auto h = Bearer(FreshToken());
  auto rec = cluster_->Call("singapore", "PUT", "/v1/me/records/big/one",
                            std::string(1024 * 1024 + 1, 'r'), h);
  ExpectError(rec, 413, "too_large");
  EXPECT_EQ(
      cluster_->Call("singapore", "PUT", "/v1/me/records/big/one", std::string(1024 * 1024, 'r'), h)
          .status,
      200);
  h.emplace_back("x-padding", std::string(9000, 'p'));
  auto hdr = cluster_->Call("singapore", "GET", "/v1/me", "", h);
  EXPECT_EQ(hdr.status, 431);
  EXPECT_EQ(ErrorCodeOf(hdr), "too_large");
}

TEST_F(BadInputTest, InvalidImei) {
  ExpectError(cluster_->Call("california", "POST", "/v1/me/devices",
                             R"({"imei":"490154203237519","model":"x"})", Bearer(FreshToken())),
              400, "invalid_imei");
  ExpectError(cluster_->Call("singapore", "POST", "/v1/me/devices",
                             R"({"imei":"12345","model":"x"})", Bearer(FreshToken())),
              400, "invalid_imei");
  auto devs = cluster_->Call("singapore", "GET", "/v1/me/devices", "", Bearer(FreshToken()));
  EXPECT_EQ(JsonOf(devs)["devices"].size(), 0u);
}

TEST_F(BadInputTest, BadCollectionAndKeyNames) {
  auto h = Bearer(FreshToken());
  for (std::string target : std::vector<std::string>{
           "/v1/me/records/..%2Fother/k", "/v1/me/records/a/..", "/v1/me/records/a/b%2Fc",
           "/v1/me/records/a/b%00c", "/v1/me/records/a/" + std::string(257, 'k'),
           "/v1/me/records/a/%zz"}) {
    ExpectError(cluster_->Call("singapore", "PUT", target, "x", h), 400, "invalid_field");
  }
  auto list = cluster_->Call("singapore", "GET", "/v1/me/records/a", "", h);
  EXPECT_EQ(JsonOf(list)["keys"].size(), 0u);
}

TEST_F(BadInputTest, UnknownRoutesAndWrongMethods) {
  ExpectError(cluster_->Call("oregon", "GET", "/v1/nope"), 404, "not_found");
  ExpectError(cluster_->Call("oregon", "GET", "/v1/me/records"), 404, "not_found");
  auto r = cluster_->Call("oregon", "DELETE", "/v1/accounts");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "POST");
  EXPECT_EQ(cluster_->Call("oregon", "POST", "/v1/health").status, 405);
}

TEST_F(BadInputTest, HalfARequestThenSilenceIsCutOff) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(cluster_->Port("singapore"));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string half =
      "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"country\"";
  ASSERT_GT(::send(fd, half.data(), half.size(), 0), 0);
  auto t0 = std::chrono::steady_clock::now();
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the server never closed the stalled connection";
  char buf[64];
  EXPECT_EQ(::recv(fd, buf, sizeof buf, 0), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  ::close(fd);
}

TEST_F(BadInputTest, RefusedRegistrationsStoreNothing) {
  const std::string p = kNeverPhone;
  for (const std::string& body : std::vector<std::string>{
           std::string("{\"country\":\"IN\",\"phone\":\"") + p,
           R"({"country":"IN","phone":")" + p + R"(","password":1})",
           R"({"country":"XX","phone":")" + p + R"(","password":"0123456789"})",
           R"({"country":"IN","phone":")" + p + R"(","password":"short"})",
           R"({"country":"IN","phone":")" + p + R"(","password":"0123456789","email":"bad"})",
           R"({"country":"IN","phone":")" + p + R"(","password":"0123456789","name":")" +
               std::string(17 * 1024, 'n') + "\"}"}) {
    for (const std::string at : {"singapore", "california", "oregon"}) {
      auto r = cluster_->Call(at, "POST", "/v1/accounts", body);
      // Other nodes refuse it or send it home unread (307); the home refuses it.
      if (at != "singapore" && r.status == 307) continue;
      EXPECT_GE(r.status, 400) << at << " " << r.body;
    }
  }
  cluster_->StopAll();
  for (const auto& region : TestCluster::Regions()) {
    auto where = cluster_->FindBytes(region, kNeverDigits);
    EXPECT_TRUE(where.empty()) << region << ": " << where.front();
  }
  // No reservation or partial account blocks the number afterwards.
  cluster_->Start();
  TestUser fresh{"IN", kNeverPhone, "+919000012345", "singapore", "H", "h@example.in"};
  RegisterVia(*cluster_, "california", fresh);
}

}  // namespace
}  // namespace meridian::testing
