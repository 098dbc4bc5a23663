#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "audit/log.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "keys/envelope.h"
#include "keys/keys.h"
#include "shop/shop.h"
#include "test_support.h"

namespace meridian::shop {
namespace {

TEST(ShopParseTest, Rfc3339) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("2026-11-25T10:53:43.170Z"), 1795604023170);
  EXPECT_EQ(*ParseRfc3339("2026-11-25T18:53:43.17+08:00"), 1795604023170);
  EXPECT_EQ(*ParseRfc3339("2026-11-25T05:53:43.170-05:00"), 1795604023170);
  for (const char* bad : {"", "2026-11-25", "2026-11-25 10:53:43Z", "2026-13-25T10:53:43Z",
                          "2026-11-25T10:53:43", "2026-11-25T10:53:43+8", "yesterday"}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

TEST(ShopParseTest, OrderTextIsTheOrdersJsonAndReadsBack) {
  // The purchase path seals OrderText and answers with PurchaseAnswerText; every other path
  // reads and writes OrderJson: the bytes must be the same.
  for (const Order& o :
       {Order{"o_0123456789ab", "flash-1", "mi4", "reserved", 1795604023170, 1795604923170},
        Order{"o_x", "s.2", "sku_9-a", "paid", 0, 86'400'000},
        Order{"o_y", "s3", "odd \"sku\"\n\xff", "expired", -1, 253402300799999}}) {
    const std::string text = OrderText(o);
    EXPECT_EQ(text, DumpJson(OrderJson(o)));
    auto parsed = ParseJsonObject(text);
    ASSERT_TRUE(parsed.ok());
    auto back = OrderFromJson(*parsed);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->order_id, o.order_id);
    EXPECT_EQ(back->pay_by_ms, o.pay_by_ms);
    const Json full = OrderJson(o);
    EXPECT_EQ(PurchaseAnswerText(o), DumpJson(Json{{"order_id", full["order_id"]},
                                                   {"sale_id", full["sale_id"]},
                                                   {"state", full["state"]},
                                                   {"pay_by", full["pay_by"]}}));
  }
}

TEST(ShopParseTest, SaleValidationAndEvenSplit) {
  const std::vector<std::string> homes = {"beijing", "oregon", "singapore"};
  auto base = [] {
    return Json{{"id", "s1"},
                {"sku", "mi4"},
                {"stock", 10},
                {"starts_at", "2026-11-25T10:00:00Z"},
                {"ends_at", "2026-11-25T11:00:00Z"}};
  };
  auto s = ParseSale(base(), homes);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->allocation.at("beijing"), 4);
  EXPECT_EQ(s->allocation.at("oregon"), 3);
  EXPECT_EQ(s->allocation.at("singapore"), 3);
  EXPECT_EQ(s->per_user_limit, 1);
  EXPECT_EQ(s->payment_window_s, 900);
  auto bad = [&](Json j) {
    EXPECT_EQ(ParseSale(j, homes).status().code(), Code::kInvalidField) << j;
  };
  Json j = base();
  j["stock"] = 0;
  bad(j);
  j = base();
  j["allocation"] = {{"singapore", 9}};
  bad(j);
  j = base();
  j["allocation"] = {{"california", 10}};
  bad(j);
  j = base();
  j["id"] = "../etc";
  bad(j);
  j = base();
  j["ends_at"] = "2026-11-25T09:00:00Z";
  bad(j);
  j = base();
  j["per_user_limit"] = 0;
  bad(j);
  // A definition survives a round trip through its JSON form.
  auto again = ParseSale(SaleJson(*s), homes);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(DumpJson(SaleJson(*again)), DumpJson(SaleJson(*s)));
}

// A purchase on an event loop (StartPurchase with Wait::kNever) runs only when nothing in it waits;
// otherwise it does nothing at all and the caller hands it to a worker (PurchaseAsync). Over real
// RocksDB, the region's data keys and its audit log.
class PurchaseNowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::Init().ok());
    auto ks = keys::FileKeystore::Create(dir_.str() + "/ks", "singapore", 32,
                                         keys::NewClusterKeys(random_), "operator secret",
                                         /*fast_kdf=*/true, random_, clock_);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    keys_ = std::move(ks).value();
    auto raw = storage::OpenRocksDb(dir_.str() + "/db");
    ASSERT_TRUE(raw.ok());
    store_ = std::move(raw).value();
    codec_ = std::make_unique<keys::EnvelopeCodec>(*keys_, *store_, random_, clock_);
    signing_ = crypto::NewSigningKey();
    log_ = std::make_unique<audit::AuditLog>(
        *store_, "singapore", clock_,
        [this](std::string_view m) { return crypto::SignEd25519(signing_.secret_key, m); },
        signing_.public_key);
    ASSERT_TRUE(log_->Start().ok());
    // No sweeper round meanwhile: a test that needs the lease upkeep runs it itself.
    shop_ =
        std::make_unique<Shop>(*store_, *codec_, *log_, clock_, random_, "names", "idem",
                               ShopSettings{.region = "singapore", .sweep_interval_ms = 3'600'000});
    ASSERT_TRUE(shop_->Start().ok());
    ASSERT_TRUE(shop_->PutProduct({"mi4", "Mi 4", 199900, "INR"}).ok());
    // A lease takes a quarter of what is left: two units, then one.
    Sale s{"s1",
           "mi4",
           8,
           1,
           clock_.NowMs() - 60'000,
           clock_.NowMs() + 3'600'000,
           900,
           {{"singapore", 8}}};
    ASSERT_TRUE(shop_->PutSale(s).ok());
  }
  // The purchase's outcome without waiting: nullopt when it declined (and then `done` must not have
  // run).
  std::optional<Result<Shop::Purchased>> Now(const std::string& user, const std::string& key) {
    auto answer = std::make_shared<std::promise<Result<Shop::Purchased>>>();
    auto future = answer->get_future();
    auto calls = std::make_shared<std::atomic<int>>(0);
    const bool ran = shop_->StartPurchase(user, "s1", key, Wait::kNever, [answer, calls](auto r) {
      ++*calls;
      answer->set_value(std::move(r));
    });
    if (!ran) {
      EXPECT_EQ(calls->load(), 0) << "a declined purchase answered";
      return std::nullopt;
    }
    return future.get();
  }
  int64_t Remaining() { return shop_->Quota("s1").value().remaining; }
  bool HasDataKey(const std::string& user) {
    return store_->Get(storage::Space::kKeys, user).value().has_value();
  }

  // Destroyed in reverse: the shop first, the folder last.
  testing::TempDir dir_;
  SeededRandom random_{11};
  ManualClock clock_{1'790'000'000'000};
  std::unique_ptr<keys::FileKeystore> keys_;
  storage::StorePtr store_;
  std::unique_ptr<keys::EnvelopeCodec> codec_;
  crypto::SigningKeyPair signing_;
  std::unique_ptr<audit::AuditLog> log_;
  std::unique_ptr<Shop> shop_;
};

TEST_F(PurchaseNowTest, RunsOnlyWhatNeedNotWaitAndOtherwiseChangesNothing) {
  // No data key in memory (nor anywhere): declined, no key made, no unit taken.
  EXPECT_FALSE(Now("u1", "k1").has_value());
  EXPECT_FALSE(HasDataKey("u1"));
  EXPECT_EQ(Remaining(), 8);
  // A purchase that may wait leases the region's units and creates the key.
  auto first = shop_->Purchase("u1", "s1", "k1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->created);
  EXPECT_EQ(Remaining(), 7);

  // One unit is left in the lease. A buyer without a data key in memory is declined before
  // a unit is taken (the order is sealed first), so the unit is still there for the next.
  EXPECT_FALSE(Now("u9", "k9").has_value());
  EXPECT_FALSE(HasDataKey("u9"));
  // A buyer whose key is in memory (it sealed its profile at sign-up) buys without waiting.
  ASSERT_TRUE(codec_->Seal({"singapore", "u2", "profile", "u2/profile", 0}, "{}").ok());
  auto won = Now("u2", "k2");
  ASSERT_TRUE(won.has_value());
  ASSERT_TRUE(won->ok()) << won->status().ToString();
  EXPECT_TRUE((*won)->created);
  EXPECT_EQ(Remaining(), 6);
  auto orders = shop_->OrdersOf("u2");
  ASSERT_TRUE(orders.ok());
  ASSERT_EQ(orders->size(), 1u);
  EXPECT_EQ((*orders)[0].order_id, (*won)->order.order_id);

  // Answers that need no wait come at once: the limit, a missing Idempotency-Key.
  auto limit = Now("u2", "k2-again");
  ASSERT_TRUE(limit.has_value());
  EXPECT_EQ(limit->status().code(), Code::kLimitReached);
  auto no_key = Now("u2", "");
  ASSERT_TRUE(no_key.has_value());
  EXPECT_EQ(no_key->status().code(), Code::kInvalidField);
  // The same key again needs the earlier order read and opened: declined, then the worker's
  // purchase returns that order.
  EXPECT_FALSE(Now("u2", "k2").has_value());
  auto again = shop_->Purchase("u2", "s1", "k2");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->order.order_id, (*won)->order.order_id);

  // Nothing left in this node's lease: leasing more is a conditional write, so the purchase
  // is declined, and the one that may wait leases and buys.
  ASSERT_TRUE(codec_->Seal({"singapore", "u3", "profile", "u3/profile", 0}, "{}").ok());
  EXPECT_FALSE(Now("u3", "k3").has_value());
  EXPECT_EQ(Remaining(), 6);
  auto leased = shop_->Purchase("u3", "s1", "k3");
  ASSERT_TRUE(leased.ok()) << leased.status().ToString();
  EXPECT_TRUE(leased->created);
  auto q = shop_->Quota("s1");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->reserved, 3);
  EXPECT_EQ(q->remaining, 5);
}

// Pulls from other regions, with the inter-region part played by the test's PullFn: a sale
// whose units all start elsewhere.
class PullTest : public PurchaseNowTest {
 protected:
  void SetUp() override {
    PurchaseNowTest::SetUp();
    Sale s{"s2",
           "mi4",
           4,
           1,
           clock_.NowMs() - 60'000,
           clock_.NowMs() + 3'600'000,
           900,
           {{"singapore", 0}, {"oregon", 4}}};
    ASSERT_TRUE(shop_->PutSale(s).ok());
  }
  Result<Shop::Purchased> Buy(const std::string& user) {
    return shop_->Purchase(user, "s2", "k-" + user);
  }
  // Waits up to 5 s for `flag`; returns it.
  static bool Await(const std::atomic<bool>& flag) {
    for (int i = 0; i < 5000 && !flag; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return flag;
  }
};

TEST_F(PullTest, AUnitThatArrivesDuringTheBuyersPullIsSoldWhateverThePullSays) {
  // Another pull of this region (the rebalancer's, another node's) was granted everything;
  // the buyer's own pull came back empty-handed.
  shop_->SetPull([this](const std::string& sale, bool asker_out) {
    EXPECT_TRUE(asker_out);
    EXPECT_TRUE(shop_->ApplyGrant(sale, "oregon", 4, "t-other").ok());
    return kUnitsElsewhere;
  });
  auto won = Buy("u1");
  ASSERT_TRUE(won.ok()) << won.status().ToString();
  EXPECT_TRUE(won->created);
  EXPECT_EQ(shop_->Quota("s2").value().remaining, 3);
}

TEST_F(PullTest, UnitsThatArriveEndTheRetryShortlyAnswersAtOnce) {
  shop_->SetPull([](const std::string&, bool) { return kUnitsElsewhere; });
  auto first = Buy("u1");
  EXPECT_EQ(first.status().code(), Code::kUnavailable);
  auto second = Buy("u2");  // the same millisecond: answered from memory
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  // The donor's grant arrives (re-delivered, say): the next buyer is not told to retry.
  ASSERT_TRUE(shop_->ApplyGrant("s2", "oregon", 4, "t1").ok());
  auto third = Buy("u3");
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_TRUE(third->created);
}

TEST_F(PullTest, ATopUpPassesOverASaleWhoseBuyerIsPulling) {
  // Both pulls at once would ask the same donor; one would be given everything and the
  // other would tell its buyer "retry" while the units arrive.
  std::atomic<int> active{0}, top_ups{0};
  std::atomic<bool> started{false}, overlap{false}, release{false};
  shop_->SetPull([&](const std::string&, bool asker_out) {
    started = true;
    if (++active > 1) overlap = true;
    if (asker_out) {
      Await(release);
    } else {
      ++top_ups;
    }
    --active;
    return int64_t{0};
  });
  // Reading the quota makes this region's own remaining (none) known: the sale is low.
  ASSERT_TRUE(shop_->Quota("s2").ok());
  auto buyer = std::async(std::launch::async, [&] { return Buy("u1"); });
  ASSERT_TRUE(Await(started)) << "the buyer's pull did not start";
  shop_->TopUpLowStock();  // the buyer's demand makes the sale a candidate
  EXPECT_EQ(top_ups.load(), 0);
  release = true;
  EXPECT_EQ(buyer.get().status().code(), Code::kSoldOut);
  EXPECT_FALSE(overlap.load());
  // With no pull under way, the top-up asks.
  shop_->TopUpLowStock();
  EXPECT_EQ(top_ups.load(), 1);
}

TEST_F(PullTest, LeaseUpkeepDoesNotWaitForAPullUnderWay) {
  // A pull may wait seconds on a slow region; the upkeep (and with it the node's heartbeat)
  // goes on meanwhile.
  std::atomic<bool> pulling{false}, release{false};
  shop_->SetPull([&](const std::string&, bool) {
    pulling = true;
    Await(release);
    return int64_t{0};
  });
  auto buyer = std::async(std::launch::async, [&] { return Buy("u1"); });
  ASSERT_TRUE(Await(pulling)) << "the buyer's pull did not start";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(shop_->MaintainLeases().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  release = true;
  EXPECT_EQ(buyer.get().status().code(), Code::kSoldOut);
}

}  // namespace
}  // namespace meridian::shop
