#include <gtest/gtest.h>

#include "shop/shop.h"

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

}  // namespace
}  // namespace meridian::shop
