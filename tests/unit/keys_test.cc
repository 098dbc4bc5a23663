// The keystore and envelope encryption over real files and RocksDB.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "config/cluster.h"
#include "crypto/crypto.h"
#include "keys/envelope.h"
#include "keys/keys.h"
#include "storage/store.h"
#include "test_support.h"

namespace meridian::keys {
namespace {
namespace fs = std::filesystem;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::Init().ok());
    dir_ = fs::temp_directory_path() / ("meridian-keys-" + SystemRandom::Instance().Hex(6));
    fs::create_directories(dir_);
    auto ks = FileKeystore::Create(Path(), "singapore", 32, NewClusterKeys(random_),
                                   "operator secret", /*fast_kdf=*/true, random_, clock_);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    keys_ = std::move(ks).value();
    auto raw = storage::OpenRocksDb((dir_ / "db").string());
    ASSERT_TRUE(raw.ok());
    store_ = std::move(raw).value();
    codec_ = std::make_unique<EnvelopeCodec>(*keys_, *store_, random_, clock_);
  }
  void TearDown() override {
    codec_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  std::string Path() const { return (dir_ / "singapore.keystore").string(); }
  storage::CodecContext Ctx(std::string_view user, std::string_view key = "u/row") {
    return {"singapore", user, "record", key, 0};
  }

  fs::path dir_;
  SeededRandom random_{7};
  ManualClock clock_{1'790'000'000'000};
  std::unique_ptr<FileKeystore> keys_;
  storage::StorePtr store_;
  std::unique_ptr<EnvelopeCodec> codec_;
};

TEST_F(KeysTest, KeystoreOpensOnlyWithItsSecret) {
  auto again = FileKeystore::Open(Path(), "operator secret", random_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->region(), "singapore");
  EXPECT_EQ((*again)->TokenKey(), keys_->TokenKey());
  EXPECT_EQ((*again)->CurrentHpke().key_id, 32);
  auto wrong = FileKeystore::Open(Path(), "not the secret", random_);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kUnauthenticated);
  EXPECT_NE(wrong.status().message().find("wrong secret"), std::string::npos);
  EXPECT_FALSE(FileKeystore::Open((dir_ / "missing").string(), "operator secret", random_).ok());
  EXPECT_EQ(FileKeystore::Create(Path(), "singapore", 32, NewClusterKeys(random_),
                                 "operator secret", true, random_, clock_)
                .status()
                .code(),
            Code::kConflict);
  // The file holds no key in the clear.
  std::string file = config::ReadFileOr(Path());
  EXPECT_EQ(file.find(keys_->TokenKey()), std::string::npos);
  EXPECT_EQ(file.find("token_key"), std::string::npos);
}

TEST_F(KeysTest, KekRotationAndDestruction) {
  auto wrapped = keys_->Wrap(1, "data key", "aad");
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(keys_->Unwrap(1, *wrapped, "other aad").status().code(), Code::kIntegrityError);
  auto v2 = keys_->RotateKek();
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(*v2, 2u);
  EXPECT_EQ(keys_->PrimaryKekVersion(), 2u);
  EXPECT_EQ(*keys_->Unwrap(1, *wrapped, "aad"), "data key");
  EXPECT_EQ(keys_->DestroyKek(2).code(), Code::kConflict);  // never the primary
  ASSERT_TRUE(keys_->DestroyKek(1).ok());
  EXPECT_FALSE(keys_->Unwrap(1, *wrapped, "aad").ok());
  // Durable: a reopened keystore has version 2 only.
  auto again = FileKeystore::Open(Path(), "operator secret", random_);
  EXPECT_EQ((*again)->KekVersions(), std::vector<uint32_t>{2});
}

TEST_F(KeysTest, HpkeRotationKeepsTheOldKeyForItsGracePeriod) {
  auto first = keys_->CurrentHpke();
  auto next = keys_->RotateHpke(clock_.NowMs(), 60'000);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->key_id, 33);
  EXPECT_TRUE(keys_->HpkeById(first.key_id, clock_.NowMs() + 59'000).has_value());
  EXPECT_FALSE(keys_->HpkeById(first.key_id, clock_.NowMs() + 60'000).has_value());
  EXPECT_TRUE(keys_->HpkeById(33, clock_.NowMs() + 10'000'000).has_value());
}

TEST_F(KeysTest, EnvelopeRoundTripHidesThePlaintext) {
  auto sealed = codec_->Seal(Ctx("u1"), "+919876543210 asha@example.in");
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->find("9876543210"), std::string::npos);
  EXPECT_EQ(*codec_->Open(Ctx("u1"), *sealed), "+919876543210 asha@example.in");
  // Two seals of one value differ (fresh nonce).
  EXPECT_NE(*codec_->Seal(Ctx("u1"), "x"), *codec_->Seal(Ctx("u1"), "x"));
}

// Counts the data-key rows read, to see which keys the cache kept.
class CountingKeyReads final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<std::optional<std::string>> Get(storage::Space s, std::string_view k) override {
    if (s == storage::Space::kKeys) ++key_reads;
    return ForwardingStore::Get(s, k);
  }
  int key_reads = 0;
};

TEST_F(KeysTest, AFullKeyCacheDropsExpiredKeysBeforeLiveOnes) {
  CountingKeyReads counted(*store_);
  EnvelopeCodec codec(*keys_, counted, random_, clock_, /*cache_ttl_ms=*/60'000, /*cache_max=*/8);
  auto seal_all = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      ASSERT_TRUE(codec.Seal(Ctx("u" + std::to_string(i)), "x").ok());
    }
  };
  seal_all(0, 8);  // the cache is full
  const int created = counted.key_reads;
  seal_all(0, 8);
  EXPECT_EQ(counted.key_reads, created);  // every key from the cache
  clock_.Advance(61'000);                 // all eight expire
  seal_all(8, 16);                        // eight new users take their places
  const int after = counted.key_reads;
  seal_all(8, 16);
  EXPECT_EQ(counted.key_reads, after);  // none of the new keys was evicted
  seal_all(0, 1);                       // an expired key is read again
  EXPECT_EQ(counted.key_reads, after + 1);
}

// A seal that may not wait (an event loop's) uses only a data key in memory: for any other
// user it answers kWouldBlock having read, created and stored nothing.
TEST_F(KeysTest, ASealThatMayNotWaitUsesOnlyAKeyInMemory) {
  CountingKeyReads counted(*store_);
  EnvelopeCodec codec(*keys_, counted, random_, clock_, /*cache_ttl_ms=*/60'000);
  auto none = codec.Seal(Ctx("u1"), "x", Wait::kNever);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kWouldBlock);
  EXPECT_EQ(counted.key_reads, 0);
  EXPECT_FALSE(store_->Get(storage::Space::kKeys, "u1").value().has_value());  // no key made
  ASSERT_TRUE(codec.Seal(Ctx("u1"), "x").ok());  // may wait: creates the key
  const int reads = counted.key_reads;
  auto sealed = codec.Seal(Ctx("u1"), "y", Wait::kNever);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(*codec.Open(Ctx("u1"), *sealed), "y");
  EXPECT_EQ(counted.key_reads, reads);
  clock_.Advance(61'000);  // the remembered key expires: it would be read and unwrapped
  EXPECT_EQ(codec.Seal(Ctx("u1"), "z", Wait::kNever).status().code(), Code::kWouldBlock);
  EXPECT_EQ(counted.key_reads, reads);
}

TEST_F(KeysTest, CiphertextMovedToAnotherRowUserOrRegionDoesNotOpen) {
  auto sealed = *codec_->Seal(Ctx("u1", "u1/a"), "secret");
  ASSERT_TRUE(codec_->Seal(Ctx("u2", "u2/a"), "other").ok());
  EXPECT_EQ(codec_->Open(Ctx("u1", "u1/b"), sealed).status().code(), Code::kIntegrityError);
  EXPECT_EQ(codec_->Open(Ctx("u2", "u1/a"), sealed).status().code(), Code::kIntegrityError);
  storage::CodecContext other_region{"oregon", "u1", "record", "u1/a", 0};
  EXPECT_EQ(codec_->Open(other_region, sealed).status().code(), Code::kIntegrityError);
  storage::CodecContext other_version{"singapore", "u1", "record", "u1/a", 1};
  EXPECT_EQ(codec_->Open(other_version, sealed).status().code(), Code::kIntegrityError);
  std::string tampered = sealed;
  tampered.back() ^= 1;
  EXPECT_EQ(codec_->Open(Ctx("u1", "u1/a"), tampered).status().code(), Code::kIntegrityError);
  EXPECT_EQ(codec_->Open(Ctx("u1", "u1/a"), "junk").status().code(), Code::kIntegrityError);
}

TEST_F(KeysTest, ShreddingMakesEveryCopyUnreadable) {
  auto sealed = *codec_->Seal(Ctx("u1"), "secret");
  auto info = codec_->DekOf("u1");
  ASSERT_TRUE(info.ok() && info->has_value());
  auto destroyed = codec_->Shred("u1");
  ASSERT_TRUE(destroyed.ok());
  EXPECT_EQ(*destroyed, (*info)->dek_id);
  EXPECT_EQ(codec_->Open(Ctx("u1"), sealed).status().code(), Code::kIntegrityError);
  EXPECT_FALSE(store_->Get(storage::Space::kKeys, "u1").value().has_value());
}

TEST_F(KeysTest, DeferredShredsLeaveTheEngineFilesAtOneSharedPurge) {
  // Many users shredded at once (a migration's source): the keys are unusable at once, and
  // one purge removes every old copy of the wrapped keys from the engine's files.
  std::vector<std::string> users, rows, sealed;
  for (int i = 0; i < 20; ++i) {
    users.push_back("u" + std::to_string(i));
    sealed.push_back(*codec_->Seal(Ctx(users.back()), "secret"));
    rows.push_back(*store_->Get(storage::Space::kKeys, users.back()).value());
  }
  auto files_holding = [&](const std::string& needle) {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_ / "db")) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      n += bytes.find(needle) != std::string::npos;
    }
    return n;
  };
  ASSERT_GT(files_holding(rows[0]), 0);  // the search does find a wrapped key
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 20; i += 4) ASSERT_TRUE(codec_->ShredDeferred(users[i]).ok());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(codec_->Open(Ctx(users[i]), sealed[i]).status().code(), Code::kIntegrityError);
  }
  ASSERT_TRUE(codec_->PurgeShredded().ok());
  for (const auto& row : rows) EXPECT_EQ(files_holding(row), 0);
}

TEST_F(KeysTest, RewrapMovesEveryDataKeyToTheNewKek) {
  auto a = *codec_->Seal(Ctx("u1"), "one");
  auto b = *codec_->Seal(Ctx("u2"), "two");
  ASSERT_TRUE(keys_->RotateKek().ok());
  EXPECT_EQ(*codec_->CountUnder(1), 2);
  EXPECT_EQ(*codec_->RewrapAll(), 2);
  EXPECT_EQ(*codec_->CountUnder(1), 0);
  ASSERT_TRUE(keys_->DestroyKek(1).ok());
  // A fresh codec (no cache) still opens both with the rewrapped keys.
  EnvelopeCodec fresh(*keys_, *store_, random_, clock_);
  EXPECT_EQ(*fresh.Open(Ctx("u1"), a), "one");
  EXPECT_EQ(*fresh.Open(Ctx("u2"), b), "two");
}

}  // namespace
}  // namespace meridian::keys
