// The accounts service over real RocksDB, with a scripted directory of other regions.
#include <gtest/gtest.h>

#include <filesystem>

#include "accounts/accounts.h"
#include "crypto/crypto.h"

namespace meridian::accounts {
namespace {

class ScriptedDirectory final : public PhoneDirectory {
 public:
  Result<std::optional<std::string>> FindElsewhere(const std::string& p) override {
    ++asked;
    if (unavailable) return Error(Code::kUnavailable, "region down");
    if (p == taken_pseudonym) return std::optional<std::string>("oregon");
    return std::optional<std::string>();
  }
  std::string taken_pseudonym;
  bool unavailable = false;
  int asked = 0;
};

class AccountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::Init().ok());
    dir_ = std::filesystem::temp_directory_path() /
           ("meridian-acc-" + SystemRandom::Instance().Hex(6));
    auto raw = storage::OpenRocksDb(dir_.string());
    ASSERT_TRUE(raw.ok());
    store_ = storage::WithResidencyGuard(std::move(raw).value(), "singapore",
                                         [](policy::DataClass) { return true; });
    codec_ = storage::MakeFramingCodec();
    sink_ = std::make_unique<audit::UnauditedSink>(*store_);
    acc_ = std::make_unique<Accounts>(
        *store_, *codec_, *sink_, dir_svc_, clock_, random_,
        AccountKeys{std::string(32, 't'), std::string(32, 'd'), std::string(32, 'n')},
        AccountSettings{"singapore", true, 3'600'000});
  }
  void TearDown() override {
    acc_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  RegisterRequest Req(std::string phone = "+919876543210") {
    return {"IN", std::move(phone), "correct horse battery", "Asha Rao", "asha@example.in"};
  }
  std::vector<std::string> AllStoredKeysAndValues() {
    std::vector<std::string> out;
    for (int s = 0; s < storage::kSpaceCount; ++s) {
      (void)store_->Scan(static_cast<storage::Space>(s), "", [&](auto k, auto v) {
        out.emplace_back(k);
        out.emplace_back(v);
        return true;
      });
    }
    return out;
  }

  std::filesystem::path dir_;
  storage::StorePtr store_;
  std::unique_ptr<storage::ValueCodec> codec_;
  ScriptedDirectory dir_svc_;
  ManualClock clock_{1'790'000'000'000};
  SeededRandom random_{42};
  std::unique_ptr<audit::AuditSink> sink_;
  std::unique_ptr<Accounts> acc_;
};

TEST_F(AccountsTest, RegisterLoginAndMe) {
  auto reg = acc_->Register(Req());
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_EQ(reg->home_region, "singapore");
  auto who = acc_->Authenticate(reg->token);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  auto me = acc_->Me(*who);
  ASSERT_TRUE(me.ok());
  EXPECT_EQ((*me)["phone"], "+919876543210");
  EXPECT_EQ((*me)["country"], "IN");
  EXPECT_EQ((*me)["email"], "asha@example.in");
  auto login = acc_->Login({"+919876543210", "correct horse battery"});
  ASSERT_TRUE(login.ok());
  EXPECT_EQ(login->user_id, reg->user_id);
  EXPECT_EQ(acc_->Login({"+919876543210", "wrong password!"}).status().code(),
            Code::kUnauthenticated);
  EXPECT_EQ(acc_->Login({"+919876543211", "correct horse battery"}).status().code(),
            Code::kUnauthenticated);
}

TEST_F(AccountsTest, PhoneTakenHereOrElsewhere) {
  ASSERT_TRUE(acc_->Register(Req()).ok());
  EXPECT_EQ(acc_->Register(Req()).status().code(), Code::kPhoneTaken);
  dir_svc_.taken_pseudonym = PhonePseudonym(std::string(32, 'd'), "+919876543299");
  EXPECT_EQ(acc_->Register(Req("+919876543299")).status().code(), Code::kPhoneTaken);
  // The refused registration left no reservation behind.
  dir_svc_.taken_pseudonym.clear();
  EXPECT_TRUE(acc_->Register(Req("+919876543299")).ok());
}

TEST_F(AccountsTest, UnreachableRegionRefusesAndStoresNothing) {
  dir_svc_.unavailable = true;
  EXPECT_EQ(acc_->Register(Req()).status().code(), Code::kUnavailable);
  EXPECT_TRUE(AllStoredKeysAndValues().empty());
  EXPECT_EQ(*acc_->CountUsers(), 0);
}

TEST_F(AccountsTest, ExpiredAndRevokedTokensAreRefused) {
  auto reg = acc_->Register(Req());
  ASSERT_TRUE(reg.ok());
  clock_.Advance(3'600'000);
  EXPECT_EQ(acc_->Authenticate(reg->token).status().code(), Code::kUnauthenticated);
  auto fresh = acc_->Login({"+919876543210", "correct horse battery"});
  ASSERT_TRUE(acc_->Authenticate(fresh->token).ok());
  // Bumping the token epoch revokes every earlier token.
  auto p = acc_->PlacementOf(reg->user_id);
  storage::Placement bumped = **p;
  ++bumped.token_epoch;
  storage::WriteBatch b;
  b.Put(storage::Space::kPlacement, reg->user_id, storage::EncodePlacement(bumped));
  ASSERT_TRUE(store_->Write(b).ok());
  EXPECT_EQ(acc_->Authenticate(fresh->token).status().code(), Code::kUnauthenticated);
  // A token minted with another region's key.
  auto forged = crypto::IssueToken({reg->user_id, "singapore", 2, clock_.NowMs() + 1000},
                                   std::string(32, 'x'));
  EXPECT_EQ(acc_->Authenticate(forged).status().code(), Code::kUnauthenticated);
}

TEST_F(AccountsTest, RecordsAreVersionedListedAndDeleted) {
  auto reg = acc_->Register(Req());
  auto who = *acc_->Authenticate(reg->token);
  EXPECT_EQ(*acc_->PutRecord(who, "notes", "first", "text/plain", "one"), 1);
  EXPECT_EQ(*acc_->PutRecord(who, "notes", "first", "text/plain", "two"), 2);
  EXPECT_EQ(*acc_->PutRecord(who, "notes", "second", "", std::string("\0bin", 4)), 1);
  EXPECT_EQ(*acc_->PutRecord(who, "photos", "first", "image/png", "png"), 1);
  auto r = acc_->GetRecord(who, "notes", "first");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "two");
  EXPECT_EQ(r->content_type, "text/plain");
  EXPECT_EQ(acc_->GetRecord(who, "notes", "second")->body, std::string("\0bin", 4));
  EXPECT_EQ(*acc_->ListRecords(who, "notes"), (std::vector<std::string>{"first", "second"}));
  ASSERT_TRUE(acc_->DeleteRecord(who, "notes", "first").ok());
  EXPECT_EQ(acc_->GetRecord(who, "notes", "first").status().code(), Code::kNotFound);
  EXPECT_EQ(acc_->DeleteRecord(who, "notes", "first").code(), Code::kNotFound);
  EXPECT_EQ(acc_->PutRecord(who, "..", "k", "", "x").status().code(), Code::kInvalidField);
}

TEST_F(AccountsTest, StorageKeysHoldNoPersonalData) {
  auto reg = acc_->Register(Req());
  auto who = *acc_->Authenticate(reg->token);
  ASSERT_TRUE(acc_->PutRecord(who, "diary-of-asha", "asha@example.in", "", "x").ok());
  ASSERT_TRUE(acc_->AddDevice(who, {"490154203237518", "Mi 4"}).ok());
  for (int s = 0; s < storage::kSpaceCount; ++s) {
    (void)store_->Scan(static_cast<storage::Space>(s), "", [&](std::string_view k, auto) {
      for (std::string_view secret : {"9876543210", "asha", "Asha", "diary", "49015420323751"}) {
        EXPECT_EQ(k.find(secret), std::string_view::npos) << k;
      }
      return true;
    });
  }
  auto devices = acc_->ListDevices(who);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->dump().find("490154203237518"), std::string::npos);
}

}  // namespace
}  // namespace meridian::accounts
