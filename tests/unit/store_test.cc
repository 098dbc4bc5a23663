#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "common/random.h"
#include "storage/store.h"
#include "test_support.h"

namespace meridian::storage {
namespace {

using testing::TempDir;

TEST(RocksStoreTest, PutGetScanDelete) {
  TempDir dir;
  auto store = OpenRocksDb(dir.str());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  WriteBatch b;
  b.Put(Space::kContent, "u1/a", "1");
  b.Put(Space::kContent, "u1/b", "2");
  b.Put(Space::kContent, "u2/a", "3");
  b.Put(Space::kIdentity, "u1/a", "other space");
  ASSERT_TRUE((*store)->Write(b).ok());
  EXPECT_EQ(*(*store)->Get(Space::kContent, "u1/b").value(), "2");
  EXPECT_EQ(*(*store)->Get(Space::kIdentity, "u1/a").value(), "other space");
  EXPECT_FALSE((*store)->Get(Space::kDevice, "u1/a").value().has_value());
  std::vector<std::string> keys;
  ASSERT_TRUE((*store)
                  ->Scan(Space::kContent, "u1/",
                         [&](auto k, auto) {
                           keys.emplace_back(k);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"u1/a", "u1/b"}));
  WriteBatch d;
  d.Delete(Space::kContent, "u1/a");
  ASSERT_TRUE((*store)->Write(d).ok());
  EXPECT_FALSE((*store)->Get(Space::kContent, "u1/a").value().has_value());
}

TEST(RocksStoreTest, ScansOfTheSpaceHashedByUserSeeExactlyTheirKeysInOrder) {
  // Commerce keys live in a memtable hashed by user: a user's scan reads the user's keys,
  // a scan of anything shorter reads the whole space in key order, from the memtable, after
  // a flush to files, and with both at once.
  TempDir dir;
  auto opened = OpenRocksDb(dir.str());
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  std::vector<std::string> all;
  auto put = [&](const std::string& k) {
    WriteBatch b;
    b.Put(Space::kCommerce, k, "v" + k);
    ASSERT_TRUE(store.Write(b).ok());
    all.push_back(k);
  };
  auto scan = [&](std::string_view prefix) {
    std::vector<std::string> keys;
    EXPECT_TRUE(store
                    .Scan(Space::kCommerce, prefix,
                          [&](std::string_view k, std::string_view v) {
                            EXPECT_EQ(v, "v" + std::string(k));
                            keys.emplace_back(k);
                            return true;
                          })
                    .ok());
    return keys;
  };
  auto expect = [&](std::string_view prefix) {
    std::vector<std::string> want;
    for (const auto& k : all) {
      if (k.starts_with(prefix)) want.push_back(k);
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(scan(prefix), want) << "prefix '" << prefix << "'";
  };
  for (const char* k : {"u_b/order/o2", "u_a/count/s1", "u_b/idem/k", "u_a/order/o1",
                        "u_ab/order/o9", "u_b/order/o1", "nouser"}) {
    put(k);
  }
  auto check_all = [&] {
    for (std::string_view prefix :
         {"u_a/", "u_a/order/", "u_b/order/", "u_ab/", "u_c/", "u_a", "u_", "", "nouser"}) {
      expect(prefix);
    }
  };
  check_all();
  ASSERT_TRUE(store.Purge(Space::kCommerce).ok());  // flushed and compacted into files
  for (const char* k : {"u_a/order/o0", "u_c/count/s1", "u_b/order/o3"}) put(k);
  check_all();
  EXPECT_EQ(*store.Get(Space::kCommerce, "u_b/order/o3").value(), "vu_b/order/o3");
  EXPECT_EQ(*store.Get(Space::kCommerce, "u_a/order/o1").value(), "vu_a/order/o1");
  EXPECT_FALSE(store.Get(Space::kCommerce, "u_a/order/o7").value().has_value());
}

TEST(RocksStoreTest, DataSurvivesReopen) {
  TempDir dir;
  {
    auto store = OpenRocksDb(dir.str());
    WriteBatch b;
    b.Put(Space::kPlacement, "u1", EncodePlacement({"oregon", "active", 2, 5}));
    ASSERT_TRUE((*store)->Write(b).ok());
  }
  auto store = OpenRocksDb(dir.str());
  ASSERT_TRUE(store.ok());
  auto v = (*store)->Get(Space::kPlacement, "u1");
  ASSERT_TRUE(v.ok() && v->has_value());
  auto p = DecodePlacement(**v);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->region, "oregon");
  EXPECT_EQ(p->epoch, 2);
  EXPECT_EQ(p->token_epoch, 5);
}

// GetNow answers from memory only: what the memtable holds, what a read brought into the
// block cache, and kWouldBlock (nothing read from a file) for the rest. Through the
// residency guard, a remembered placement answers too.
TEST(RocksStoreTest, GetNowAnswersFromMemoryOnly) {
  TempDir dir;
  {
    auto store = OpenRocksDb(dir.str());
    ASSERT_TRUE(store.ok());
    WriteBatch b;
    b.Put(Space::kCommerce, "u1/count/s1", "1");
    b.Put(Space::kPlacement, "u1", EncodePlacement({"oregon"}));
    ASSERT_TRUE((*store)->Write(b).ok());
    // Still in the memtable: answered, present and absent alike.
    EXPECT_EQ(*(*store)->GetNow(Space::kCommerce, "u1/count/s1").value(), "1");
    EXPECT_FALSE((*store)->GetNow(Space::kCommerce, "u1/count/s2").value().has_value());
  }
  // Reopened, the values are in table files and nothing is cached.
  auto opened = OpenRocksDb(dir.str());
  ASSERT_TRUE(opened.ok());
  auto store = WithResidencyGuard(std::move(opened).value(), "oregon",
                                  [](policy::DataClass) { return true; });
  auto now = store->GetNow(Space::kCommerce, "u1/count/s1");
  ASSERT_FALSE(now.ok());
  EXPECT_EQ(now.status().code(), Code::kWouldBlock);
  EXPECT_EQ(store->Read(Space::kCommerce, "u1/count/s1", Wait::kNever).status().code(),
            Code::kWouldBlock);
  EXPECT_EQ(store->GetNow(Space::kPlacement, "u1").status().code(), Code::kWouldBlock);
  // A read that may wait brings it into memory; then it is answered without waiting.
  EXPECT_EQ(*store->Read(Space::kCommerce, "u1/count/s1", Wait::kMay).value(), "1");
  EXPECT_EQ(*store->GetNow(Space::kCommerce, "u1/count/s1").value(), "1");
  ASSERT_TRUE(store->Get(Space::kPlacement, "u1").ok());
  auto placed = store->GetNow(Space::kPlacement, "u1");
  ASSERT_TRUE(placed.ok() && placed->has_value());
  EXPECT_EQ(DecodePlacement(**placed)->region, "oregon");
}

// An unsynced write is in the engine at once, but nobody reads a user's personal data that
// a crash could still take back: until a sync covers the user's last such write, a read
// that may not wait answers kWouldBlock and one that may (a get, a scan of the user's keys
// or of the whole space) returns only once Sync() has. Other users' data and data of no
// user are read at once.
TEST(RocksStoreTest, AUsersPersonalDataIsReadOnlyOnceTheirUnsyncedWriteIsSynced) {
  TempDir dir;
  auto opened = OpenRocksDb(dir.str());
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  WriteBatch earlier;
  earlier.Put(Space::kCommerce, "u2/count/s1", "7");
  ASSERT_TRUE(store.Write(earlier).ok());
  WriteBatch b;
  b.Put(Space::kCommerce, "u1/count/s1", "1");
  b.Put(Space::kPublic, "sale/s1", "open");
  ASSERT_TRUE(store.WriteUnsynced(b).ok());
  EXPECT_EQ(store.GetNow(Space::kCommerce, "u1/count/s1").status().code(), Code::kWouldBlock);
  EXPECT_EQ(*store.GetNow(Space::kPublic, "sale/s1").value(), "open");
  EXPECT_EQ(*store.GetNow(Space::kCommerce, "u2/count/s1").value(), "7");

  std::atomic<bool> synced{false};
  std::atomic<int> saw_it_after_the_sync{0};
  std::vector<std::thread> readers;
  readers.emplace_back([&] {
    auto v = store.Get(Space::kCommerce, "u1/count/s1");
    if (v.ok() && v->value_or("") == "1" && synced) ++saw_it_after_the_sync;
  });
  for (const char* prefix : {"u1/", ""}) {
    readers.emplace_back([&, prefix] {
      int keys = 0;
      Status st = store.Scan(Space::kCommerce, prefix, [&](auto, auto) { return ++keys > 0; });
      if (st.ok() && keys == (*prefix ? 1 : 2) && synced) ++saw_it_after_the_sync;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(saw_it_after_the_sync.load(), 0);  // all three still wait
  synced = true;
  ASSERT_TRUE(store.Sync().ok());
  for (auto& t : readers) t.join();
  EXPECT_EQ(saw_it_after_the_sync.load(), 3);
  EXPECT_EQ(*store.GetNow(Space::kCommerce, "u1/count/s1").value(), "1");
}

// Readers racing an unsynced writer never get a value no sync has covered: the writer
// writes 1, 2, 3... unsynced, noting each value before it syncs; whatever a read returns
// must have been noted before a sync began.
TEST(RocksStoreTest, ReadsRacingUnsyncedWritesReturnOnlySyncedValues) {
  TempDir dir;
  auto opened = OpenRocksDb(dir.str());
  ASSERT_TRUE(opened.ok());
  Store& store = **opened;
  constexpr int kWrites = 20000;
  std::atomic<int> noted{0};  // the last value written before a sync began
  std::atomic<bool> done{false};
  std::atomic<int> ahead{0}, returned{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        auto v = store.GetNow(Space::kCommerce, "u1/count/s1");
        if (!v.ok() || !v->has_value()) continue;
        ++returned;
        if (std::stoi(**v) > noted.load()) ++ahead;
      }
    });
  }
  for (int i = 1; i <= kWrites; ++i) {
    WriteBatch b;
    b.Put(Space::kCommerce, "u1/count/s1", std::to_string(i));
    ASSERT_TRUE(store.WriteUnsynced(b).ok());
    if (i % 64 == 0) {
      noted = i;
      ASSERT_TRUE(store.Sync().ok());
    }
  }
  noted = kWrites;
  ASSERT_TRUE(store.Sync().ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (returned.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(returned.load(), 0);
  EXPECT_EQ(ahead.load(), 0);
}

TEST(PlacementTest, DecodesWhatItEncodesAndAnyEquivalentJson) {
  const Placement cases[] = {{"oregon", "active", 1, 1},
                             {"singapore", "fenced", 12, 3},
                             {"beijing", "moved", 9'000'000'000, 0}};
  for (const Placement& in : cases) {
    auto out = DecodePlacement(EncodePlacement(in));
    ASSERT_TRUE(out.has_value()) << EncodePlacement(in);
    EXPECT_EQ(out->region, in.region);
    EXPECT_EQ(out->state, in.state);
    EXPECT_EQ(out->epoch, in.epoch);
    EXPECT_EQ(out->token_epoch, in.token_epoch);
  }
  // Not the canonical bytes, the same meaning: the JSON parser reads them.
  auto spaced = DecodePlacement(R"({ "state": "active", "region": "o\u0072egon", "epoch": 4 })");
  ASSERT_TRUE(spaced.has_value());
  EXPECT_EQ(spaced->region, "oregon");
  EXPECT_EQ(spaced->epoch, 4);
  EXPECT_EQ(spaced->token_epoch, 1);
  // Broken or truncated canonical bytes are refused, never half read.
  for (std::string_view bad :
       {R"({"epoch":1,"region":"oregon","state":"active","token_epoch":1)",
        R"({"epoch":1,"region":"oregon","state":"active","token_epoch":1}x)",
        R"({"epoch":,"region":"oregon","state":"active","token_epoch":1})",
        R"({"epoch":1,"region":"oregon,"state":"active","token_epoch":1})",
        R"({"epoch":"1","region":"oregon","state":"active","token_epoch":1})",
        R"({"epoch":01,"region":"oregon","state":"active","token_epoch":1})",
        "{\"epoch\":1,\"region\":\"ore\ngon\",\"state\":\"active\",\"token_epoch\":1}", "", "{}"}) {
    EXPECT_FALSE(DecodePlacement(bad).has_value()) << bad;
  }
}

class GuardTest : public ::testing::Test {
 protected:
  StorePtr Guarded(const std::string& region, bool edge) {
    auto raw = OpenRocksDb(dir_.str());
    EXPECT_TRUE(raw.ok());
    return WithResidencyGuard(std::move(raw).value(), region, [edge](policy::DataClass c) {
      return edge ? c == policy::DataClass::kPublic : true;
    });
  }
  TempDir dir_;
};

TEST_F(GuardTest, EdgeRegionRefusesPersonalData) {
  auto store = Guarded("california", /*edge=*/true);
  WriteBatch b;
  b.Put(Space::kPlacement, "u1", EncodePlacement({"california"}));
  b.Put(Space::kIdentity, "u1/profile", "personal");
  auto st = store->Write(b);
  EXPECT_EQ(st.code(), Code::kResidencyViolation);
  EXPECT_FALSE(store->Get(Space::kIdentity, "u1/profile").value().has_value());
  WriteBatch pub;
  pub.Put(Space::kPublic, "catalog/x", "ok");
  EXPECT_TRUE(store->Write(pub).ok());
}

TEST_F(GuardTest, HomeRegionRefusesUsersHomedElsewhere) {
  auto store = Guarded("oregon", /*edge=*/false);
  // A user placed in oregon may be written; a user placed in singapore may not.
  WriteBatch b;
  b.Put(Space::kPlacement, "u_home", EncodePlacement({"oregon"}));
  b.Put(Space::kIdentity, "u_home/profile", "x");
  ASSERT_TRUE(store->Write(b).ok());
  WriteBatch later;
  later.Put(Space::kContent, "u_home/r", "y");
  EXPECT_TRUE(store->Write(later).ok());

  WriteBatch foreign;
  foreign.Put(Space::kPlacement, "u_sg", EncodePlacement({"singapore"}));
  EXPECT_EQ(store->Write(foreign).code(), Code::kResidencyViolation);
  WriteBatch unknown;
  unknown.Put(Space::kContent, "u_nobody/r", "z");
  EXPECT_EQ(store->Write(unknown).code(), Code::kResidencyViolation);
  // A refused batch writes nothing at all.
  WriteBatch mixed;
  mixed.Put(Space::kContent, "u_home/r2", "fine");
  mixed.Put(Space::kDevice, "u_nobody/d", "refused");
  EXPECT_EQ(store->Write(mixed).code(), Code::kResidencyViolation);
  EXPECT_FALSE(store->Get(Space::kContent, "u_home/r2").value().has_value());
}

// Which of the engine's writes the guard asks for: synced or not.
class CountingWrites final : public testing::ForwardingStore {
 public:
  explicit CountingWrites(StorePtr inner) : ForwardingStore(*inner), inner_(std::move(inner)) {}
  Status Write(const WriteBatch& b) override {
    ++synced;
    return ForwardingStore::Write(b);
  }
  Status WriteUnsynced(const WriteBatch& b) override {
    ++unsynced;
    return ForwardingStore::WriteUnsynced(b);
  }
  int synced = 0;
  int unsynced = 0;

 private:
  StorePtr inner_;
};

// The guard's copy of placements (read by authentication and every residency check) shows
// a change as soon as it is written, so a placement change is written synced even when the
// caller asked for an unsynced write; other unsynced writes stay unsynced and are checked
// like any other.
TEST_F(GuardTest, APlacementChangeIsNeverLeftUnsynced) {
  auto raw = OpenRocksDb(dir_.str());
  ASSERT_TRUE(raw.ok());
  auto counting = std::make_unique<CountingWrites>(std::move(raw).value());
  CountingWrites* engine = counting.get();
  auto store = WithResidencyGuard(std::move(counting), "oregon", [](auto) { return true; });
  WriteBatch create;
  create.Put(Space::kPlacement, "u1", EncodePlacement({"oregon"}));
  create.Put(Space::kIdentity, "u1/profile", "a");
  ASSERT_TRUE(store->WriteUnsynced(create).ok());
  EXPECT_EQ(engine->synced, 1);
  EXPECT_EQ(engine->unsynced, 0);
  WriteBatch update;
  update.Put(Space::kIdentity, "u1/profile", "b");
  ASSERT_TRUE(store->WriteUnsynced(update).ok());
  EXPECT_EQ(engine->synced, 1);
  EXPECT_EQ(engine->unsynced, 1);
  WriteBatch stranger;  // u2 lives nowhere: refused, nothing written
  stranger.Put(Space::kIdentity, "u2/profile", "c");
  EXPECT_EQ(store->WriteUnsynced(stranger).code(), Code::kResidencyViolation);
  EXPECT_EQ(engine->unsynced, 1);
  ASSERT_TRUE(store->Sync().ok());
  EXPECT_EQ(*store->GetNow(Space::kIdentity, "u1/profile").value(), "b");
  EXPECT_FALSE(store->Get(Space::kIdentity, "u2/profile").value().has_value());
}

// The guard keeps placements in memory; every change through it must be seen at once, a
// refused batch must leave the remembered placement as stored, and readers racing writers
// must never leave an old placement remembered.
TEST_F(GuardTest, RememberedPlacementsFollowEveryChange) {
  auto store = Guarded("oregon", /*edge=*/false);
  auto state_of = [&](std::string_view user) -> std::string {
    auto v = store->Get(Space::kPlacement, user);
    EXPECT_TRUE(v.ok());
    if (!v.ok() || !v->has_value()) return "none";
    return DecodePlacement(**v).value_or(Placement{"?", "corrupt"}).state;
  };
  auto write_record = [&](std::string_view user) {
    WriteBatch b;
    b.Put(Space::kContent, std::string(user) + "/r", "v");
    return store->Write(b).code();
  };
  EXPECT_EQ(state_of("u1"), "none");  // a miss is remembered too...
  EXPECT_EQ(write_record("u1"), Code::kResidencyViolation);
  WriteBatch create;  // ...and replaced by the placement written next
  create.Put(Space::kPlacement, "u1", EncodePlacement({"oregon"}));
  ASSERT_TRUE(store->Write(create).ok());
  EXPECT_EQ(state_of("u1"), "active");
  EXPECT_EQ(write_record("u1"), Code::kOk);

  WriteBatch fence;  // a migration's fence stops the very next write
  fence.Put(Space::kPlacement, "u1", EncodePlacement({"oregon", "fenced"}));
  ASSERT_TRUE(store->Write(fence).ok());
  EXPECT_EQ(state_of("u1"), "fenced");
  EXPECT_EQ(write_record("u1"), Code::kFenced);

  WriteBatch refused;  // refused as a whole: the fence stays, in memory and on disk
  refused.Put(Space::kPlacement, "u1", EncodePlacement({"oregon"}));
  refused.Put(Space::kContent, "u_nobody/r", "z");
  EXPECT_EQ(store->Write(refused).code(), Code::kResidencyViolation);
  EXPECT_EQ(state_of("u1"), "fenced");

  WriteBatch gone;
  gone.Delete(Space::kPlacement, "u1");
  ASSERT_TRUE(store->Write(gone).ok());
  EXPECT_EQ(state_of("u1"), "none");
  EXPECT_EQ(write_record("u1"), Code::kResidencyViolation);

  // Readers and a writer flipping placements at once; afterwards every user reads what
  // was written last, through the guard and straight from the files after a reopen.
  constexpr int kUsers = 32;
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        for (int u = 0; u < kUsers; ++u)
          (void)store->Get(Space::kPlacement, "r" + std::to_string(u));
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    WriteBatch b;
    b.Put(Space::kPlacement, "r" + std::to_string(round % kUsers),
          EncodePlacement({"oregon", round % 2 == 0 ? "active" : "fenced", round}));
    ASSERT_TRUE(store->Write(b).ok());
  }
  stop = true;
  for (auto& t : readers) t.join();
  std::vector<std::string> remembered;
  for (int u = 0; u < kUsers; ++u)
    remembered.push_back(*store->Get(Space::kPlacement, "r" + std::to_string(u)).value());
  store.reset();
  auto raw = OpenRocksDb(dir_.str());
  ASSERT_TRUE(raw.ok());
  for (int u = 0; u < kUsers; ++u) {
    auto stored = (*raw)->Get(Space::kPlacement, "r" + std::to_string(u));
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ(remembered[u], **stored) << "user r" << u;
    // The last round for user u is the largest round < 200 with round % 32 == u.
    EXPECT_EQ(DecodePlacement(**stored)->epoch, 192 + u < 200 ? 192 + u : 160 + u);
  }
}

}  // namespace
}  // namespace meridian::storage
