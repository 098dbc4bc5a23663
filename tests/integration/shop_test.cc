// Flash sales over a real cluster: bad input, exact stock under concurrency, expiry and
// resale, and acknowledged orders surviving kill -9.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "common/clock.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {
using namespace std::chrono_literals;

std::string Iso(std::chrono::system_clock::duration from_now) {
  auto t = std::chrono::system_clock::now() + from_now;
  return FormatRfc3339(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

class ShopTest : public ::testing::Test {
 protected:
  virtual ClusterOptions Options() { return {}; }
  void SetUp() override {
    c_ = std::make_unique<TestCluster>(Options());
    c_->Start();
    auto p = Admin("POST", "/v1/admin/products",
                   R"({"sku":"mi4","name":"Mi 4","price":199900,"currency":"INR"})");
    ASSERT_EQ(p.status, 201) << p.body;
  }
  net::HttpResponse Admin(const std::string& method, const std::string& target,
                          const std::string& body = {}) {
    return c_->Call("california", method, target, body, Bearer(c_->admin_token()));
  }
  net::HttpResponse CreateSale(const std::string& id, int64_t stock, const Json& allocation,
                               int64_t window_s = 900, std::string starts = {}) {
    Json sale = {{"id", id},
                 {"sku", "mi4"},
                 {"stock", stock},
                 {"per_user_limit", 1},
                 {"starts_at", starts.empty() ? Iso(-1min) : starts},
                 {"ends_at", Iso(1h)},
                 {"payment_window_s", window_s}};
    if (!allocation.is_null()) sale["allocation"] = allocation;
    return Admin("POST", "/v1/admin/sales", DumpJson(sale));
  }
  TestUser NewUser(const std::string& country, int i) {
    static const std::map<std::string, std::pair<std::string, std::string>> kPrefix = {
        {"IN", {"+9198", "singapore"}}, {"US", {"+1650", "oregon"}}, {"CN", {"+86138", "beijing"}}};
    const auto& [prefix, home] = kPrefix.at(country);
    std::string digits = std::to_string(1000000 + i);
    std::string phone = country == "US" ? prefix + "55" + digits.substr(2)
                                        : prefix + digits + (country == "IN" ? "0" : "");
    if (country == "CN") phone = prefix + "0" + digits;
    TestUser u{country, phone, phone, home, "", ""};
    RegisterVia(*c_, "california", u);
    return u;
  }
  // `n` users registered in parallel; `who(i)` gives user i's country and number.
  std::vector<TestUser> NewUsers(int n,
                                 const std::function<std::pair<std::string, int>(int)>& who) {
    std::vector<TestUser> users(static_cast<size_t>(n));
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        for (int i = next++; i < n; i = next++) {
          auto [country, number] = who(i);
          users[static_cast<size_t>(i)] = NewUser(country, number);
        }
      });
    }
    for (auto& t : threads) t.join();
    return users;
  }
  net::HttpResponse Buy(const TestUser& u, const std::string& sale, const std::string& key,
                        const std::string& via = "california") {
    auto h = Bearer(u.token);
    h.emplace_back("idempotency-key", key);
    return c_->Call(via, "POST", "/v1/sales/" + sale + "/purchase", "", h);
  }
  // Every acknowledged order is there, once, for its buyer; returns every order found.
  std::set<std::string> CheckAcknowledgedOrders(
      const std::vector<TestUser>& buyers, const std::map<std::string, std::string>& acknowledged) {
    std::set<std::string> found;
    for (const auto& b : buyers) {
      auto r = c_->Call("singapore", "GET", "/v1/me/orders", "", Bearer(b.token));
      EXPECT_EQ(r.status, 200) << r.body;
      auto orders = JsonOf(r).value("orders", Json::array());
      EXPECT_LE(orders.size(), 1u) << "more than one order for one buyer";
      for (const auto& o : orders) found.insert(o["order_id"].get<std::string>());
    }
    for (const auto& [order, user] : acknowledged) {
      EXPECT_TRUE(found.count(order)) << "acknowledged order " << order << " was lost";
    }
    return found;
  }
  Json Stats(const std::string& sale) {
    auto r = Admin("GET", "/v1/admin/sales/" + sale + "/stats");
    EXPECT_EQ(r.status, 200) << r.body;
    return JsonOf(r);
  }
  std::unique_ptr<TestCluster> c_;
};

TEST_F(ShopTest, BadInputIsRefusedAndChangesNothing) {
  auto bad = [&](const std::string& body) {
    auto r = Admin("POST", "/v1/admin/sales", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  };
  const std::string times = "\"starts_at\":\"" + Iso(-1min) + "\",\"ends_at\":\"" + Iso(1h) + "\"";
  bad(R"({"id":"x","sku":"mi4","stock":0,)" + times + "}");
  bad(R"({"id":"x","sku":"mi4","stock":-5,)" + times + "}");
  bad(R"({"id":"x","sku":"mi4","stock":10,"allocation":{"singapore":4,"oregon":4},)" + times + "}");
  bad(R"({"id":"x","sku":"mi4","stock":10,"allocation":{"mars":10},)" + times + "}");
  bad(R"({"id":"x","sku":"mi4","stock":10,"allocation":{"california":10},)" + times + "}");
  bad(R"({"id":"x","sku":"nope","stock":10,)" + times + "}");
  bad(R"({"id":"x","sku":"mi4","stock":10})");
  bad(R"({"id":"x","sku":"mi4","stock":10,"starts_at":"yesterday","ends_at":"today"})");
  EXPECT_EQ(Admin("GET", "/v1/admin/sales/x/stats").status, 404);
  EXPECT_EQ(c_->Call("oregon", "GET", "/v1/sales/x").status, 404);
  ASSERT_EQ(CreateSale("s1", 10, nullptr).status, 201);
  // Even split over the three home regions (4, 3, 3).
  Json stats = Stats("s1");
  EXPECT_EQ(stats["stock"], 10);
  EXPECT_EQ(stats["remaining"], 10);
  EXPECT_EQ(CreateSale("s1", 11, nullptr).status, 409);  // another sale with the same id
  EXPECT_EQ(c_->Call("oregon", "POST", "/v1/admin/sales", "{}").status, 401);  // no admin token

  TestUser u = NewUser("IN", 1);
  EXPECT_EQ(ErrorCodeOf(Buy(u, "nope", "k")), "not_found");
  auto no_key = c_->Call("california", "POST", "/v1/sales/s1/purchase", "", Bearer(u.token));
  EXPECT_EQ(no_key.status, 400);
  EXPECT_EQ(ErrorCodeOf(no_key), "invalid_field");
  ASSERT_EQ(CreateSale("later", 5, nullptr, 900, Iso(1h - 1min)).status, 201);
  EXPECT_EQ(ErrorCodeOf(Buy(u, "later", "k-later")), "not_open");
  auto admin_buy =
      c_->Call("singapore", "POST", "/v1/sales/s1/purchase", "",
               {{"authorization", "Bearer " + c_->admin_token()}, {"idempotency-key", "a"}});
  EXPECT_EQ(admin_buy.status, 403);  // admins do not shop (the issue's "403 with the admin token")
  EXPECT_EQ(ErrorCodeOf(admin_buy), "forbidden");
  auto first = Buy(u, "s1", "k1");
  ASSERT_EQ(first.status, 201) << first.body;
  auto again = Buy(u, "s1", "k1");
  EXPECT_TRUE(again.status == 200 || again.status == 201);
  EXPECT_EQ(JsonOf(again)["order_id"], JsonOf(first)["order_id"]);
  EXPECT_EQ(ErrorCodeOf(Buy(u, "later", "k1")), "conflict");  // key reused for another sale
  EXPECT_EQ(ErrorCodeOf(Buy(u, "s1", "k2")), "limit_reached");
  // Someone else cannot pay this order.
  TestUser other = NewUser("IN", 2);
  std::string order = JsonOf(first)["order_id"];
  auto steal =
      c_->Call("california", "POST", "/v1/orders/" + order + "/pay", "", Bearer(other.token));
  EXPECT_EQ(steal.status, 404);
  auto pay = c_->Call("california", "POST", "/v1/orders/" + order + "/pay", "", Bearer(u.token));
  EXPECT_EQ(pay.status, 200) << pay.body;
  EXPECT_EQ(JsonOf(pay)["state"], "paid");
  EXPECT_EQ(
      c_->Call("singapore", "POST", "/v1/orders/" + order + "/pay", "", Bearer(u.token)).status,
      200);
  stats = Stats("s1");
  EXPECT_EQ(stats["sold"], 1);
  EXPECT_EQ(stats["paid"], 1);
  EXPECT_EQ(stats["remaining"], 9);
  auto orders = c_->Call("oregon", "GET", "/v1/me/orders", "", Bearer(u.token));
  EXPECT_EQ(JsonOf(orders)["orders"].size(), 1u);
  // Orders are the user's data: exported, and destroyed with the account.
  auto exp = c_->Call("california", "GET", "/v1/me/export", "", Bearer(u.token));
  EXPECT_EQ(JsonOf(exp)["orders"][0]["order_id"], order);
  auto del = c_->Call("california", "DELETE", "/v1/me", "", Bearer(u.token));
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(JsonOf(del)["receipt"]["destroyed"]["orders"], 1);
  // The unit stays sold: deleting an account does not return stock.
  EXPECT_EQ(Stats("s1")["sold"], 1);
}

TEST_F(ShopTest, ExactlyTheStockIsSoldToConcurrentBuyers) {
  ASSERT_EQ(CreateSale("rush", 600, {{"singapore", 300}, {"oregon", 200}, {"beijing", 100}}).status,
            201);
  // A thousand buyers, most of them in India, registered in parallel.
  auto buyers = NewUsers(1000, [](int i) {
    return std::pair<std::string, int>(i < 700 ? "IN" : i < 900 ? "US" : "CN", 1000 + i);
  });
  std::mutex mu;
  std::map<std::string, std::set<std::string>> orders_by_region;
  std::atomic<int> sold_out{0}, other{0}, retried{0};
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  const std::vector<std::string> entries = {"california", "oregon", "singapore", "beijing"};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = next++; i < buyers.size(); i = next++) {
        const auto& b = buyers[i];
        // Each buyer presses twice with the same key: one order at most. "Retry shortly"
        // (units on their way from another region) is retried, as a client does.
        for (int attempt = 0; attempt < 2; ++attempt) {
          auto r = Buy(b, "rush", "key-" + b.user_id, entries[(i + t + attempt) % 4]);
          for (int retry = 0; retry < 100 && r.status == 503; ++retry) {
            EXPECT_EQ(ErrorCodeOf(r), "unavailable") << r.body;
            EXPECT_FALSE(r.Header("retry-after").empty());
            ++retried;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            r = Buy(b, "rush", "key-" + b.user_id, entries[(i + t + attempt) % 4]);
          }
          if (r.status == 201 || r.status == 200) {
            std::lock_guard lock(mu);
            orders_by_region[b.home].insert(JsonOf(r)["order_id"].get<std::string>());
          } else if (ErrorCodeOf(r) == "sold_out") {
            ++sold_out;
          } else {
            ++other;
            ADD_FAILURE() << r.status << " " << r.body;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // Units move to where the buyers are, so the split may differ from the allocation, but
  // exactly the stock is sold, each buyer's retry returned the same order, and every
  // other buyer heard "sold out".
  size_t total = 0;
  for (const auto& [region, orders] : orders_by_region) total += orders.size();
  EXPECT_EQ(total, 600u);
  // Everyone else heard "sold out" (a first press may hear it while units were still on
  // their way from another region, and the second one win).
  EXPECT_GE(sold_out.load(), static_cast<int>(buyers.size() - total));
  EXPECT_EQ(other.load(), 0);
  Json stats = Stats("rush");
  EXPECT_EQ(stats["sold"], 600);
  EXPECT_EQ(stats["remaining"], 0);
  EXPECT_EQ(stats["sold"].get<int64_t>() + stats["remaining"].get<int64_t>(), 600);
  EXPECT_EQ(JsonOf(c_->Call("california", "GET", "/v1/sales/rush"))["state"], "sold_out");
  RecordProperty("retried", retried.load());
}

TEST_F(ShopTest, OneBuyerPressingManyTimesAtOnceGetsOneOrder) {
  // A purchase holds the buyer's lock until its write is durable, though no thread waits
  // for it: concurrent presses of one buyer are still checked one after another.
  ASSERT_EQ(CreateSale("solo", 50, nullptr).status, 201);
  TestUser b = NewUser("IN", 77);
  std::mutex mu;
  std::map<std::string, std::set<std::string>> orders_by_key;
  std::atomic<int> limit{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "press-" + std::to_string(t % 6);  // each key pressed twice
      auto r = Buy(b, "solo", key, t % 2 ? "singapore" : "california");
      if (r.status == 201 || r.status == 200) {
        std::lock_guard lock(mu);
        orders_by_key[key].insert(JsonOf(r)["order_id"].get<std::string>());
      } else if (r.status == 403 && ErrorCodeOf(r) == "limit_reached") {
        ++limit;
      } else {
        ++other;
        ADD_FAILURE() << r.status << " " << r.body;
      }
    });
  }
  for (auto& t : threads) t.join();
  // One key won; its two presses got the same order; every other key hit the limit.
  ASSERT_EQ(orders_by_key.size(), 1u);
  EXPECT_EQ(orders_by_key.begin()->second.size(), 1u);
  EXPECT_EQ(limit.load(), 10);
  EXPECT_EQ(other.load(), 0);
  Json stats = Stats("solo");
  EXPECT_EQ(stats["sold"], 1);
  EXPECT_EQ(stats["remaining"], 49);
}

TEST_F(ShopTest, ExpiredReservationsReturnAndAreResoldExactly) {
  ASSERT_EQ(CreateSale("quick", 2, {{"singapore", 2}, {"oregon", 0}, {"beijing", 0}}, 1).status,
            201);
  TestUser a = NewUser("IN", 11), b = NewUser("IN", 12), d = NewUser("IN", 13),
           e = NewUser("IN", 14);
  auto ra = Buy(a, "quick", "a");
  ASSERT_EQ(ra.status, 201);
  ASSERT_EQ(Buy(b, "quick", "b").status, 201);
  EXPECT_EQ(ErrorCodeOf(Buy(d, "quick", "d")), "sold_out");
  std::this_thread::sleep_for(1500ms);
  Json stats = Stats("quick");
  EXPECT_EQ(stats["expired"], 2);
  EXPECT_EQ(stats["remaining"], 2);
  EXPECT_EQ(stats["sold"], 0);
  auto late = c_->Call("singapore", "POST",
                       "/v1/orders/" + JsonOf(ra)["order_id"].get<std::string>() + "/pay", "",
                       Bearer(a.token));
  EXPECT_EQ(late.status, 410);
  EXPECT_EQ(ErrorCodeOf(late), "expired");
  EXPECT_EQ(Buy(d, "quick", "d2").status, 201);
  EXPECT_EQ(Buy(e, "quick", "e").status, 201);
  TestUser f = NewUser("IN", 15);
  EXPECT_EQ(ErrorCodeOf(Buy(f, "quick", "f")), "sold_out");
  stats = Stats("quick");
  EXPECT_EQ(stats["sold"], 2);
  EXPECT_EQ(stats["remaining"], 0);
}

TEST_F(ShopTest, SoldOutFromMemoryStillChecksTokenAndIdempotencyKey) {
  ASSERT_EQ(CreateSale("gone", 1, {{"singapore", 1}, {"oregon", 0}, {"beijing", 0}}).status, 201);
  ASSERT_EQ(CreateSale("other", 1, {{"singapore", 1}, {"oregon", 0}, {"beijing", 0}}).status, 201);
  TestUser a = NewUser("IN", 21), b = NewUser("IN", 22), d = NewUser("IN", 23),
           e = NewUser("IN", 24);
  ASSERT_EQ(Buy(a, "gone", "a").status, 201);
  ASSERT_EQ(Buy(d, "other", "d-other").status, 201);
  EXPECT_EQ(ErrorCodeOf(Buy(b, "gone", "b")), "sold_out");
  // Once the other regions have reported none left, the node answers "sold out" from memory
  // on its event loop, directly and through the edge region.
  std::this_thread::sleep_for(2s);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ErrorCodeOf(Buy(e, "gone", "e" + std::to_string(i))), "sold_out");
    EXPECT_EQ(ErrorCodeOf(Buy(e, "gone", "s" + std::to_string(i), "singapore")), "sold_out");
  }
  // What the worker would refuse is refused the same way: a token with a broken MAC, a
  // missing Idempotency-Key, the admin's token.
  TestUser forged = e;
  forged.token.back() = forged.token.back() == 'A' ? 'B' : 'A';
  auto r = Buy(forged, "gone", "f", "singapore");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "unauthenticated");
  r = c_->Call("singapore", "POST", "/v1/sales/gone/purchase", "", Bearer(e.token));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "invalid_field");
  auto h = Bearer(c_->admin_token());
  h.emplace_back("idempotency-key", "adm");
  for (const std::string via : {"singapore", "california", "oregon"}) {
    r = c_->Call(via, "POST", "/v1/sales/gone/purchase", "", h);
    EXPECT_EQ(r.status, 403) << via << " " << r.body;
    EXPECT_EQ(ErrorCodeOf(r), "forbidden") << via;
  }
  // Those with entries here hear what the stored entries say: the winner's retry gets the
  // order back, a new key the limit, and a key of another sale a conflict.
  for (int i = 0; i < 3; ++i) {
    r = Buy(a, "gone", "a", "singapore");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(JsonOf(r)["state"], "reserved");
    r = Buy(a, "gone", "a-new" + std::to_string(i), "singapore");
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(ErrorCodeOf(r), "limit_reached");
    r = Buy(d, "gone", "d-other", "singapore");
    EXPECT_EQ(r.status, 409) << r.body;
    EXPECT_EQ(ErrorCodeOf(r), "conflict");
    EXPECT_EQ(ErrorCodeOf(Buy(e, "gone", "again" + std::to_string(i), "singapore")), "sold_out");
  }
  Json stats = Stats("gone");
  EXPECT_EQ(stats["sold"], 1);
  EXPECT_EQ(stats["remaining"], 0);
}

TEST_F(ShopTest, AcknowledgedOrdersSurviveKill9) {
  ASSERT_EQ(CreateSale("crash", 400, {{"singapore", 400}, {"oregon", 0}, {"beijing", 0}}).status,
            201);
  std::vector<TestUser> buyers;
  for (int i = 0; i < 60; ++i) buyers.push_back(NewUser("IN", 500 + i));
  std::mt19937 rng(20261125);
  std::map<std::string, std::string> acknowledged;  // order id -> user id
  std::mutex mu;
  // Ten rounds: buyers purchase (per-user limit 1, so each round new keys are refused with
  // limit_reached once a buyer holds an order) while singapore is killed at a random moment.
  for (int round = 0; round < 10; ++round) {
    std::atomic<bool> stop{false};
    std::atomic<int> answered{0}, acked{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < buyers.size() && !stop; i += 4) {
          auto h = Bearer(buyers[i].token);
          h.emplace_back("idempotency-key", "k" + std::to_string(round) + buyers[i].user_id);
          auto r = c_->TryCall("singapore", "POST", "/v1/sales/crash/purchase", "", h);
          if (r.ok() && r->status == 201) {
            std::lock_guard lock(mu);
            acknowledged[JsonOf(*r)["order_id"]] = buyers[i].user_id;
            ++acked;
          }
          ++answered;
        }
      });
    }
    // The kill comes at a random moment once purchases are being acknowledged (or every
    // buyer was answered), however slow the build (sanitizers) makes the first ones.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (acked == 0 && answered < static_cast<int>(buyers.size()) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));
    c_->StopRegion("singapore", SIGKILL);
    stop = true;
    for (auto& t : threads) t.join();
    c_->StartRegion("singapore");
  }
  ASSERT_FALSE(acknowledged.empty());
  // Every acknowledged order is there, once, for its buyer; the accounting holds.
  const std::set<std::string> found = CheckAcknowledgedOrders(buyers, acknowledged);
  Json stats = Stats("crash");
  EXPECT_EQ(stats["sold"].get<int64_t>(), static_cast<int64_t>(found.size()));
  EXPECT_EQ(stats["sold"].get<int64_t>() + stats["remaining"].get<int64_t>(), 400);
}

}  // namespace
}  // namespace meridian::testing

namespace meridian::testing {
namespace {

TEST_F(ShopTest, StockMovesToWhereTheBuyersAre) {
  // All stock starts in oregon; the buyers live in India (singapore).
  ASSERT_EQ(CreateSale("pull", 30, {{"singapore", 0}, {"oregon", 30}, {"beijing", 0}}).status, 201);
  std::vector<TestUser> buyers;
  for (int i = 0; i < 40; ++i) buyers.push_back(NewUser("IN", 700 + i));
  int won = 0, sold_out = 0;
  for (const auto& b : buyers) {
    auto r = Buy(b, "pull", "k" + b.user_id);
    if (r.status == 201) {
      ++won;
    } else if (ErrorCodeOf(r) == "sold_out") {
      ++sold_out;
    } else {
      ADD_FAILURE() << r.status << " " << r.body;
    }
  }
  // Oregon has no buyers of its own: every unit went to singapore's, and only the buyers
  // after the last unit heard "sold out".
  Json stats = Stats("pull");
  EXPECT_EQ(stats["sold"].get<int64_t>(), won);
  EXPECT_EQ(won, 30);
  EXPECT_EQ(stats["remaining"].get<int64_t>(), 0);
  EXPECT_EQ(stats["sold"].get<int64_t>() + stats["remaining"].get<int64_t>(), 30);
  EXPECT_EQ(stats["per_region"]["singapore"]["sold"].get<int64_t>(), won);
  EXPECT_EQ(won + sold_out, 40);
}

TEST_F(ShopTest, ALastUnitGoesToARegionWithNoneWhileTheDonorsBuyersShop) {
  // Oregon's buyers are shopping, so it keeps half of its pool at a grant; but the asker
  // has nothing left, so a last unit moves instead of its buyers hearing "sold out" while
  // the unit sits in oregon.
  ASSERT_EQ(CreateSale("last", 3, {{"singapore", 0}, {"oregon", 3}, {"beijing", 0}}).status, 201);
  const TestUser us = NewUser("US", 950);
  std::vector<TestUser> india;
  for (int i = 0; i < 3; ++i) india.push_back(NewUser("IN", 950 + i));
  ASSERT_EQ(Buy(us, "last", "k-us").status, 201);
  std::vector<int> statuses;
  for (const auto& b : india) {
    // Oregon's buyer presses again (a new key: over the limit, nothing changes) so oregon
    // has had demand within its two-second window at every grant.
    ASSERT_EQ(Buy(us, "last", "k-us-" + b.user_id).status, 403);
    statuses.push_back(Buy(b, "last", "k" + b.user_id).status);
  }
  EXPECT_EQ(statuses, (std::vector<int>{201, 201, 409}));
  Json stats = Stats("last");
  EXPECT_EQ(stats["sold"].get<int64_t>(), 3);
  EXPECT_EQ(stats["remaining"].get<int64_t>(), 0);
  EXPECT_EQ(stats["per_region"]["singapore"]["sold"].get<int64_t>(), 2);
}

TEST_F(ShopTest, TransfersSurviveKillingDonorAndReceiver) {
  ASSERT_EQ(CreateSale("moves", 200, {{"singapore", 0}, {"oregon", 100}, {"beijing", 100}}).status,
            201);
  std::vector<TestUser> buyers;
  for (int i = 0; i < 120; ++i) buyers.push_back(NewUser("IN", 800 + i));
  std::mt19937 rng(7);
  std::set<std::string> acknowledged;
  std::mutex mu;
  size_t next = 0;
  const std::vector<std::string> victims = {"oregon", "singapore", "beijing", "oregon",
                                            "singapore"};
  for (const auto& victim : victims) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = next + t; i < next + 24 && i < buyers.size() && !stop; i += 4) {
          auto h = Bearer(buyers[i].token);
          h.emplace_back("idempotency-key", "k" + buyers[i].user_id);
          auto r = c_->TryCall("california", "POST", "/v1/sales/moves/purchase", "", h);
          if (r.ok() && r->status == 201) {
            std::lock_guard lock(mu);
            acknowledged.insert(JsonOf(*r)["order_id"].get<std::string>());
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 50));
    c_->StopRegion(victim, SIGKILL);
    c_->StartRegion(victim);
    stop = true;
    for (auto& t : threads) t.join();
    next += 24;
  }
  // Let redelivery finish, then check the books: every unit is sold or remaining, once.
  Json stats;
  for (int i = 0; i < 50; ++i) {
    stats = Stats("moves");
    if (stats.value("in_flight", int64_t{1}) == 0) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(stats["in_flight"], 0);
  EXPECT_EQ(stats["sold"].get<int64_t>() + stats["remaining"].get<int64_t>(), 200);
  std::set<std::string> found;
  for (const auto& b : buyers) {
    auto r = c_->Call("singapore", "GET", "/v1/me/orders", "", Bearer(b.token));
    EXPECT_EQ(r.status, 200) << r.body;
    const Json orders = JsonOf(r)["orders"];
    for (const auto& o : orders) found.insert(o["order_id"].get<std::string>());
  }
  for (const auto& o : acknowledged) EXPECT_TRUE(found.count(o)) << "lost order " << o;
  EXPECT_EQ(stats["sold"].get<int64_t>(), static_cast<int64_t>(found.size()))
      << "acknowledged " << acknowledged.size() << " found " << found.size() << " " << stats;
}

}  // namespace
}  // namespace meridian::testing

namespace meridian::testing {
namespace {

// One worker per node, emulated WAN delays, and a long forward timeout: a region whose only
// worker waits on another region shows at once.
class ShopOneWorkerTest : public ShopTest {
 protected:
  ClusterOptions Options() override {
    ClusterOptions o;
    o.latency = true;
    o.node_knobs = "workers = 1\nforward_timeout_ms = 30000\n";
    return o;
  }
};

// The stock is all in beijing; buyers in singapore and oregon press at once. Each region
// pulls, and the first to get beijing's units is asked by the other, while its own worker
// waits in its own buyer's pull. Requests from other regions have workers of their own, so
// neither region waits for the other until the forward timeout.
TEST_F(ShopOneWorkerTest, TwoRegionsPullingFromEachOtherDoNotWaitForEachOther) {
  ASSERT_EQ(CreateSale("cross", 40, {{"singapore", 0}, {"oregon", 0}, {"beijing", 40}}).status,
            201);
  std::vector<TestUser> buyers;  // one at a time: the sale is what this test presses at once
  for (int i = 0; i < 16; ++i) buyers.push_back(NewUser(i % 2 == 0 ? "IN" : "US", 1200 + i));
  std::atomic<int> won{0};
  std::mutex mu;
  std::vector<std::string> other;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (const auto& b : buyers) {
    threads.emplace_back([&, b] {
      // "Retry shortly" is a fair answer while units move: the buyer presses again.
      for (int attempt = 0; attempt < 40; ++attempt) {
        auto r = Buy(b, "cross", "k" + b.user_id);
        if (r.status == 201 || r.status == 200) {
          ++won;
          return;
        }
        if (r.status != 503) {
          std::lock_guard lock(mu);
          other.push_back(std::to_string(r.status) + " " + r.body);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(other.empty()) << other.front();
  EXPECT_EQ(won.load(), 16);
  EXPECT_LT(elapsed, std::chrono::seconds(15))
      << "the regions waited on each other for the forward timeout";
  Json stats = Stats("cross");
  EXPECT_EQ(stats["sold"].get<int64_t>(), 16);
  EXPECT_EQ(stats["sold"].get<int64_t>() + stats["remaining"].get<int64_t>(), 40);
}

// Sign-ups in two regions at once: each home asks the other whether the phone is taken while
// its only worker waits for the answer.
TEST_F(ShopOneWorkerTest, SignUpsInTwoRegionsAtOnceDoNotWaitForEachOther) {
  const auto t0 = std::chrono::steady_clock::now();
  auto users = NewUsers(
      16, [](int i) { return std::pair<std::string, int>(i % 2 == 0 ? "IN" : "US", 1300 + i); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15))
      << "the regions waited on each other for the forward timeout";
  for (const auto& u : users) EXPECT_FALSE(u.token.empty()) << u.e164;
}

// Two nodes per region over the region's PostgreSQL database; leases time out quickly.
class ShopTwoNodesTest : public ShopTest {
 protected:
  ClusterOptions Options() override {
    ClusterOptions o;
    o.nodes_per_region = 2;
    // A lease stays with its node until used up or taken back (not returned when idle),
    // so a frozen node wakes up still holding one.
    o.node_knobs = "lease_idle_ms = 600000\n";
    return o;
  }
};

// Buyers press at both nodes of singapore and through the edge (which spreads over them);
// one node is killed with SIGKILL mid-sale and never comes back. Its acknowledged orders
// stay, its leased units return to the region's pool after the lease timeout and sell on
// the other node, and exactly the stock is sold, one order per buyer.
TEST_F(ShopTwoNodesTest, SellExactlyTheStockWhenOneOfTwoNodesIsKilled) {
  constexpr int kStock = 200;
  ASSERT_EQ(
      CreateSale("twin", kStock, {{"singapore", kStock}, {"oregon", 0}, {"beijing", 0}}).status,
      201);
  auto buyers = NewUsers(320, [](int i) { return std::pair<std::string, int>("IN", 3000 + i); });
  std::mutex mu;
  std::map<std::string, std::string> acknowledged;  // order id -> user id
  std::atomic<int> acked{0}, unreachable{0};
  std::atomic<bool> killed{false};
  // One press per buyer and round; the same key each time, so a retry returns the order.
  auto press = [&](size_t i, int attempt) {
    const TestUser& b = buyers[i];
    auto h = Bearer(b.token);
    h.emplace_back("idempotency-key", "twin-" + b.user_id);
    const int way = static_cast<int>((i + attempt) % 3);
    auto r = way == 2 ? c_->TryCall("california", "POST", "/v1/sales/twin/purchase", "", h)
                      : c_->TryCallNode("singapore", killed ? 0 : way, "POST",
                                        "/v1/sales/twin/purchase", "", h);
    if (!r.ok()) {
      ++unreachable;  // the killed node: the buyer presses again
      return false;
    }
    if (r->status == 201 || r->status == 200) {
      std::lock_guard lock(mu);
      acknowledged[JsonOf(*r)["order_id"]] = b.user_id;
      ++acked;
      return true;
    }
    const std::string code = ErrorCodeOf(*r);
    EXPECT_TRUE(code == "sold_out" || code == "unavailable" || code == "limit_reached")
        << r->status << " " << r->body;
    return code == "limit_reached";
  };
  std::vector<bool> done(buyers.size(), false);
  std::vector<std::thread> threads;
  std::atomic<size_t> next{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < buyers.size(); i = next++) {
        for (int attempt = 0; attempt < 3 && !done[i]; ++attempt) done[i] = press(i, attempt);
      }
    });
  }
  // Kill node 1 once about a third of the stock is sold.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (acked < kStock / 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  c_->StopNode("singapore", 1, SIGKILL);
  killed = true;
  for (auto& t : threads) t.join();
  // The dead node's lease times out and its units go back to the pool: buyers who heard
  // "sold out" press again until the stock is gone.
  for (int round = 0; round < 40 && acked < kStock; ++round) {
    std::this_thread::sleep_for(250ms);
    for (size_t i = 0; i < buyers.size() && acked < kStock; ++i) {
      if (!done[i]) done[i] = press(i, 0);
    }
  }
  EXPECT_EQ(acked.load(), kStock);
  // Every acknowledged order is there, once, for its buyer; nothing more was sold.
  EXPECT_EQ(CheckAcknowledgedOrders(buyers, acknowledged).size(), static_cast<size_t>(kStock));
  Json stats = Stats("twin");
  EXPECT_EQ(stats["sold"], kStock);
  EXPECT_EQ(stats["remaining"], 0);
  EXPECT_EQ(JsonOf(c_->Call("california", "GET", "/v1/sales/twin"))["state"], "sold_out");
}

// A node frozen (SIGSTOP) past the lease timeout loses its lease: the other node returns
// the lease's unsold units to the pool and sells them. Thawed, the frozen node still
// believes it holds them, but its orders expect their slots free, and they are not: it
// sells nothing more.
TEST_F(ShopTwoNodesTest, AFrozenNodesLeaseIsTakenBackAndItsLateOrdersFail) {
  constexpr int kStock = 100;
  ASSERT_EQ(
      CreateSale("frost", kStock, {{"singapore", kStock}, {"oregon", 0}, {"beijing", 0}}).status,
      201);
  std::vector<TestUser> buyers;
  for (int i = 0; i < 130; ++i) buyers.push_back(NewUser("IN", 4000 + i));
  auto buy = [&](size_t i, int node) {
    auto h = Bearer(buyers[i].token);
    h.emplace_back("idempotency-key", "frost-" + buyers[i].user_id);
    return c_->CallNode("singapore", node, "POST", "/v1/sales/frost/purchase", "", h);
  };
  std::set<std::string> orders;
  for (size_t i = 0; i < 10; ++i) {  // node 1 leases a chunk and sells ten of it
    auto r = buy(i, 1);
    ASSERT_EQ(r.status, 201) << r.body;
    orders.insert(JsonOf(r)["order_id"].get<std::string>());
  }
  c_->Freeze("singapore", true, 1);
  std::this_thread::sleep_for(5s);  // lease timeout (3 s) and the next upkeep
  size_t i = 10;
  for (; i < buyers.size(); ++i) {
    auto r = buy(i, 0);
    if (r.status == 201) {
      orders.insert(JsonOf(r)["order_id"].get<std::string>());
    } else {
      EXPECT_EQ(ErrorCodeOf(r), "sold_out") << r.body;
      break;
    }
  }
  EXPECT_EQ(orders.size(), static_cast<size_t>(kStock));  // node 1's unsold units sold here
  c_->Freeze("singapore", false, 1);
  int late_sales = 0;
  for (size_t j = i + 1; j < buyers.size(); ++j) {
    auto r = buy(j, 1);
    late_sales += r.status == 201;
    EXPECT_TRUE(r.status == 503 || ErrorCodeOf(r) == "sold_out") << r.status << " " << r.body;
  }
  EXPECT_EQ(late_sales, 0);
  Json stats = Stats("frost");
  EXPECT_EQ(stats["sold"], kStock);
  EXPECT_EQ(stats["remaining"], 0);
}

}  // namespace
}  // namespace meridian::testing
