// The policy in force on two nodes of one region that share a database (issue 8): a version
// one node adopts decides at once, on the other node, where users register, move and land.
#include <gtest/gtest.h>

#include "audit/log.h"
#include "crypto/crypto.h"
#include "node/policy_service.h"
#include "test_support.h"

namespace meridian::node {
namespace {

// A second node's view of one database: the same real RocksDB, reporting itself shared as a
// PostgreSQL store does (the policy service then reads what other nodes stored).
class SharedView final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  bool Shared() const override { return true; }
};

TEST(PolicyServiceTest, LatestIsWhatAnotherNodeOfTheRegionAdoptedJustNow) {
  ASSERT_TRUE(crypto::Init().ok());
  testing::TempDir dir;
  {
    auto db = storage::OpenRocksDb(dir.str());
    ASSERT_TRUE(db.ok());
    SharedView first(**db), second(**db);
    config::ClusterConfig cfg;
    for (auto [name, role] : {std::pair{"oregon", policy::Role::kHome},
                              {"beijing", policy::Role::kHome},
                              {"singapore", policy::Role::kHome},
                              {"california", policy::Role::kEdge}}) {
      config::RegionConfig r;
      r.name = name;
      r.role = role;
      cfg.regions.push_back(r);
    }
    cfg.policy_spec = "legacy";
    std::vector<policy::Diagnostic> diags;
    auto legacy = policy::Load("legacy", cfg.Roles(), &diags);
    ASSERT_TRUE(legacy.ok());
    cfg.policy = *legacy;
    const auto key = crypto::NewSigningKey();
    audit::AuditLog log(
        first, "beijing", SystemClock::Instance(),
        [&](std::string_view m) { return crypto::SignEd25519(key.secret_key, m); }, key.public_key);
    ASSERT_TRUE(log.Start().ok());
    PolicyService a(cfg, "beijing", first, log);
    PolicyService b(cfg, "beijing", second, log);
    ASSERT_TRUE(a.Start().ok());
    ASSERT_TRUE(b.Start().ok());
    EXPECT_EQ(b.Current()->HomeFor("IN"), "beijing");  // legacy: everyone in beijing

    auto adopted = a.Adopt(std::string(*policy::BuiltinText("current")));
    ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
    EXPECT_EQ((*adopted)->version(), 2);
    // The other node, asked right away, already decides with version 2 (its periodic refresh
    // of Current() may be up to half a second behind).
    EXPECT_EQ(b.Latest()->version(), 2);
    EXPECT_EQ(b.Latest()->HomeFor("IN"), "singapore");
    EXPECT_EQ(b.Current()->version(), 2);  // and what Latest read is kept
    // A version older than the one in force is refused on either node, and changes nothing.
    auto older = b.Adopt(std::string(*policy::BuiltinText("legacy")));
    EXPECT_EQ(older.status().code(), Code::kConflict);
    EXPECT_EQ(a.Latest()->version(), 2);
  }
}

}  // namespace
}  // namespace meridian::node
