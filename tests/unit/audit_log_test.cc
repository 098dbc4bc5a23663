// The audit log over real RocksDB: group commit, proofs, restart, checkpoints, tampering.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "audit/log.h"
#include "common/random.h"
#include "crypto/crypto.h"
#include "test_support.h"

namespace meridian::audit {
namespace {
namespace fs = std::filesystem;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::Init().ok());
    dir_ = fs::temp_directory_path() / ("meridian-audit-" + SystemRandom::Instance().Hex(6));
    key_ = crypto::NewSigningKey();
    Open();
  }
  void TearDown() override {
    log_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  void Open() {
    log_.reset();
    store_.reset();
    auto s = storage::OpenRocksDb(dir_.string());
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    log_ = std::make_unique<AuditLog>(
        *store_, "singapore", clock_,
        [this](std::string_view m) { return crypto::SignEd25519(key_.secret_key, m); },
        key_.public_key);
    ASSERT_TRUE(log_->Start().ok());
  }
  Json Entry(int i) { return {{"op", "record.write"}, {"subject", "p" + std::to_string(i)}}; }
  std::string Verifier() const {
    return crypto::NoteVerifierKey("meridian/singapore", key_.public_key);
  }

  fs::path dir_;
  ManualClock clock_{1'790'000'000'000};
  crypto::SigningKeyPair key_;
  storage::StorePtr store_;
  std::unique_ptr<AuditLog> log_;
};

TEST_F(AuditLogTest, ConcurrentCommitsFormOneContiguousVerifiableTree) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        storage::WriteBatch b;
        b.Put(storage::Space::kPublic, "op/" + std::to_string(t * 100 + i), "x");
        ASSERT_TRUE(log_->Commit(std::move(b), {Entry(t * 100 + i)}).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(log_->size(), 200u);
  // Every operation's write landed with its entry.
  for (int t = 0; t < 8; ++t) {
    EXPECT_TRUE(store_->Get(storage::Space::kPublic, "op/" + std::to_string(t * 100 + 24))
                    .value()
                    .has_value());
  }
  auto entries = log_->Entries(0, 200);
  ASSERT_TRUE(entries.ok());
  MemoryTree mirror;
  for (const auto& e : *entries) mirror.Append(LeafHash(e));
  EXPECT_EQ(*log_->Root(200), mirror.Root());
  for (uint64_t i : {0, 1, 99, 199}) {
    auto proof = log_->Inclusion(i, 200);
    ASSERT_TRUE(proof.ok());
    EXPECT_TRUE(VerifyInclusion(i, 200, LeafHash((*entries)[i]), *proof, mirror.Root()));
  }
}

TEST_F(AuditLogTest, AsyncCommitsAreCalledBackOnceDurableInOrderAndDrainedAtClose) {
  // Many commits queued without waiting: each is called back once, after its write is
  // readable and the tree includes its entry, with its own contiguous index.
  constexpr int kCommits = 300;
  std::mutex mu;
  std::vector<uint64_t> indexes;
  std::atomic<int> visible{0};
  for (int i = 0; i < kCommits; ++i) {
    storage::WriteBatch b;
    b.Put(storage::Space::kPublic, "async/" + std::to_string(i), "x");
    log_->CommitAsync(std::move(b), {Entry(i)}, [&, i](Status st, uint64_t first) {
      ASSERT_TRUE(st.ok()) << st.ToString();
      if (store_->Get(storage::Space::kPublic, "async/" + std::to_string(i))->has_value() &&
          log_->size() > first) {
        ++visible;
      }
      std::lock_guard lock(mu);
      indexes.push_back(first);
    });
  }
  log_->Flush();
  EXPECT_EQ(visible.load(), kCommits);
  ASSERT_EQ(indexes.size(), static_cast<size_t>(kCommits));
  std::sort(indexes.begin(), indexes.end());
  for (int i = 0; i < kCommits; ++i) EXPECT_EQ(indexes[i], static_cast<uint64_t>(i));

  // Closing the log writes what is still queued before it stops.
  std::atomic<int> late{0};
  for (int i = 0; i < 50; ++i) {
    log_->CommitAsync({}, {Entry(1000 + i)}, [&](Status st, uint64_t) { late += st.ok(); });
  }
  Open();  // destroys the log (draining it), reopens the store
  EXPECT_EQ(late.load(), 50);
  EXPECT_EQ(log_->size(), static_cast<uint64_t>(kCommits + 50));
}

TEST(AuditEntryTest, MakeEntryWritesTheCanonicalJsonOfTheEntry) {
  // The leaf bytes are what verifiers hash: the same as the document's DumpJson, with the
  // subject and details left out when empty.
  const int64_t at = 1'795'604'023'170;
  const Json details = {{"order_id", "o_1"}, {"sale_id", "s \"1\""}};
  EXPECT_EQ(MakeEntry("order.create", "singapore", "ab12", at, details).bytes,
            DumpJson(Json{{"op", "order.create"},
                          {"region", "singapore"},
                          {"at", FormatRfc3339(at)},
                          {"subject", "ab12"},
                          {"details", details}}));
  EXPECT_EQ(MakeEntry("key.rotate", "oregon", "", at).bytes,
            DumpJson(Json{{"op", "key.rotate"}, {"region", "oregon"}, {"at", FormatRfc3339(at)}}));
  EXPECT_EQ(MakeEntry("x", "oregon", "", at, Json::object()).bytes,
            MakeEntry("x", "oregon", "", at).bytes);
}

TEST(AuditLogNotStartedTest, ACommitBeforeStartIsRefusedAndWritesNothing) {
  ASSERT_TRUE(crypto::Init().ok());
  const fs::path dir =
      fs::temp_directory_path() / ("meridian-audit-" + SystemRandom::Instance().Hex(6));
  {
    auto store = storage::OpenRocksDb(dir.string());
    ASSERT_TRUE(store.ok());
    ManualClock clock{1'790'000'000'000};
    AuditLog log(
        **store, "singapore", clock, [](std::string_view) { return std::string(64, 'x'); },
        std::string(32, 'k'));
    storage::WriteBatch b;
    b.Put(storage::Space::kPublic, "k", "v");
    Status st = log.Commit(std::move(b), {Json{{"op", "x"}}});
    EXPECT_EQ(st.code(), Code::kUnavailable);
    EXPECT_FALSE((*store)->Get(storage::Space::kPublic, "k")->has_value());
  }
  fs::remove_all(dir);
}

TEST_F(AuditLogTest, RestartContinuesTheSameTree) {
  for (int i = 0; i < 37; ++i) ASSERT_TRUE(log_->Commit({}, {Entry(i)}).ok());
  Hash root37 = *log_->Root(37);
  Open();
  EXPECT_EQ(log_->size(), 37u);
  for (int i = 37; i < 64; ++i) ASSERT_TRUE(log_->Commit({}, {Entry(i)}).ok());
  auto proof = log_->Consistency(37, 64);
  ASSERT_TRUE(proof.ok());
  EXPECT_TRUE(VerifyConsistency(37, 64, root37, *log_->Root(64), *proof));
  MemoryTree mirror;
  const auto entries = log_->Entries(0, 64);
  ASSERT_TRUE(entries.ok());
  for (const auto& e : *entries) mirror.Append(LeafHash(e));
  EXPECT_EQ(mirror.Root(), *log_->Root(64));
}

TEST_F(AuditLogTest, CheckpointIsASignedNoteThatVerifies) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Commit({}, {Entry(i)}).ok());
  auto note = log_->Checkpoint();
  ASSERT_TRUE(note.ok());
  EXPECT_EQ(note->rfind("meridian/singapore\n5\n", 0), 0u) << *note;
  auto body = VerifyCheckpoint(*note, Verifier());
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->size, 5u);
  EXPECT_EQ(body->root, *log_->Root(5));
  // A changed size or root, or another key, does not verify.
  std::string forged = *note;
  forged.replace(forged.find("\n5\n"), 3, "\n6\n");
  EXPECT_FALSE(VerifyCheckpoint(forged, Verifier()).ok());
  auto other = crypto::NewSigningKey();
  EXPECT_FALSE(
      VerifyCheckpoint(*note, crypto::NoteVerifierKey("meridian/singapore", other.public_key))
          .ok());
}

TEST_F(AuditLogTest, TamperingWithEntriesOrSubtreesIsDetected) {
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(log_->Commit({}, {Entry(i)}).ok());
  auto body = *VerifyCheckpoint(*log_->Checkpoint(), Verifier());
  // An operator rewrites entry 3: the entries no longer hash to the signed root.
  storage::WriteBatch b;
  b.Put(storage::Space::kMeta, "audit/e/0000000000000003", R"({"op":"nothing to see"})");
  ASSERT_TRUE(store_->Write(b).ok());
  MemoryTree mirror;
  const auto entries = log_->Entries(0, 8);
  ASSERT_TRUE(entries.ok());
  for (const auto& e : *entries) mirror.Append(LeafHash(e));
  EXPECT_NE(mirror.Root(), body.root);
  // ... and rewriting a stored subtree hash changes the root the log serves.
  storage::WriteBatch c;
  c.Put(storage::Space::kMeta, "audit/n/03/0000000000000000", std::string(32, 'x'));
  ASSERT_TRUE(store_->Write(c).ok());
  EXPECT_NE(*log_->Root(8), body.root);
}

}  // namespace
}  // namespace meridian::audit

namespace meridian::audit {
namespace {

// A refused write (here the residency guard refusing a data class) appends nothing: the
// next entries take the indexes that were not used, with no hole in the log.
TEST(AuditLogFailureTest, ARefusedCommitLeavesNoHole) {
  auto dir = std::filesystem::temp_directory_path() /
             ("meridian-audit-" + SystemRandom::Instance().Hex(6));
  {
    auto raw = storage::OpenRocksDb(dir.string());
    ASSERT_TRUE(raw.ok());
    auto store = storage::WithResidencyGuard(
        std::move(raw).value(), "singapore",
        [](policy::DataClass c) { return c != policy::DataClass::kContent; });
    ManualClock clock{1'790'000'000'000};
    AuditLog log(
        *store, "singapore", clock, [](std::string_view) { return std::string(64, '\0'); },
        std::string(32, '\0'));
    ASSERT_TRUE(log.Start().ok());
    storage::WriteBatch refused;
    refused.Put(storage::Space::kContent, "u/1", "x");
    EXPECT_FALSE(log.Commit(std::move(refused), {Json{{"op", "record.write"}}}).ok());
    EXPECT_EQ(log.size(), 0u);
    ASSERT_TRUE(log.Commit({}, {Json{{"op", "a"}}, Json{{"op", "b"}}}).ok());
    EXPECT_EQ(log.size(), 2u);
    auto entries = log.Entries(0, 2);
    ASSERT_TRUE(entries.ok()) << entries.status().ToString();
    EXPECT_EQ((*entries)[0], R"({"op":"a"})");
    auto root = log.Root(2);
    ASSERT_TRUE(root.ok());
    MemoryTree mirror;
    for (const auto& e : *entries) mirror.Append(LeafHash(e));
    EXPECT_EQ(*root, mirror.Root());
  }
  std::filesystem::remove_all(dir);
}

// An operator's `top -H` or perf tells the log's two threads from the event loops.
TEST_F(AuditLogTest, ItsWriterAndCompleterThreadsAreNamed) {
  std::vector<std::string> names;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.push_back(name);
  }
  EXPECT_EQ(std::count(names.begin(), names.end(), "audit-write"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "audit-sync"), 1);
}

// A store whose syncs wait to be let through (or fail): what the audit log does between
// writing a group and its sync.
class GatedSync final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Status Sync() override {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    if (fail_) return Error(Code::kUnavailable, "storage sync failed: disk gone");
    return ForwardingStore::Sync();
  }
  void WaitForSync() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_ > 0; });
  }
  void Open(bool fail) {
    std::lock_guard lock(mu_);
    open_ = true;
    fail_ = fail;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
  bool fail_ = false;
};

class AuditLogSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = storage::OpenRocksDb(dir_.str());
    ASSERT_TRUE(s.ok());
    engine_ = std::move(s).value();
    gated_ = std::make_unique<GatedSync>(*engine_);
    log_ = std::make_unique<AuditLog>(
        *gated_, "singapore", clock_, [](std::string_view) { return std::string(64, '\0'); },
        std::string(32, '\0'));
    ASSERT_TRUE(log_->Start().ok());
  }
  void TearDown() override {
    gated_->Open(false);
    log_.reset();
  }
  void Commit(const std::string& key) {
    storage::WriteBatch b;
    b.Put(storage::Space::kPublic, key, "v");
    log_->CommitAsync(std::move(b), {Json{{"op", "sale.update"}}}, [this](Status st, uint64_t) {
      std::lock_guard lock(mu_);
      answers_.push_back(st);
    });
  }
  bool Written(const std::string& key) {
    auto v = engine_->Get(storage::Space::kPublic, key);
    return v.ok() && v->has_value();
  }
  std::vector<Status> Answers() {
    std::lock_guard lock(mu_);
    return answers_;
  }

  testing::TempDir dir_;
  ManualClock clock_{1'790'000'000'000};
  storage::StorePtr engine_;
  std::unique_ptr<GatedSync> gated_;
  std::unique_ptr<AuditLog> log_;
  std::mutex mu_;
  std::vector<Status> answers_;
};

// A group is written, then synced while the writer goes on with the next one; its callers
// are answered, and its entries join the tree readers see, only once the sync returns.
TEST_F(AuditLogSyncTest, CallersAndReadersSeeACommitOnlyOnceItsWriteIsSynced) {
  Commit("first");
  gated_->WaitForSync();
  EXPECT_TRUE(Written("first"));
  EXPECT_TRUE(Answers().empty());
  EXPECT_EQ(log_->size(), 0u);
  Commit("second");  // written while the first group's sync is still running
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Written("second") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(Written("second"));
  EXPECT_TRUE(Answers().empty());
  EXPECT_EQ(log_->size(), 0u);
  gated_->Open(false);
  log_->Flush();
  auto answers = Answers();
  ASSERT_EQ(answers.size(), 2u);
  for (const Status& st : answers) EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(log_->size(), 2u);
}

// When the sync fails, the callers it was to cover are told so (their outcome is unknown:
// a retry with the same idempotency key is safe) and the tree readers see does not grow.
TEST_F(AuditLogSyncTest, AFailedSyncFailsItsCallersAndShowsNoneOfTheirEntries) {
  Commit("lost");
  gated_->WaitForSync();
  gated_->Open(/*fail=*/true);
  log_->Flush();
  auto answers = Answers();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].code(), Code::kUnavailable);
  EXPECT_EQ(log_->size(), 0u);
}

// A member whose own condition fails is refused alone, at once, also when it writes a
// user's personal data: the writer checks conditions against the latest values, and a write
// that is not made marks nobody as waiting for a sync. (It once waited, in the writer, for a
// sync that only the writer could cause.)
TEST_F(AuditLogSyncTest, ARefusedConditionOnPersonalDataIsAnsweredAtOnce) {
  gated_->Open(false);
  storage::WriteBatch seed;
  seed.Put(storage::Space::kCommerce, "u1/count/s1", "1");
  ASSERT_TRUE(engine_->Write(seed).ok());
  auto commit = std::async(std::launch::async, [&] {
    storage::WriteBatch b;
    b.Put(storage::Space::kCommerce, "u1/count/s1", "2");
    b.Expect(storage::Space::kCommerce, "u1/count/s1", "0");  // it is "1": refused
    return log_->Commit(std::move(b), {Json{{"op", "order.create"}}});
  });
  if (commit.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "the refused commit was not answered";
    std::abort();  // the writer is stuck: the log cannot be closed
  }
  EXPECT_EQ(commit.get().code(), Code::kConflict);
  EXPECT_EQ(*engine_->Get(storage::Space::kCommerce, "u1/count/s1").value(), "1");
  EXPECT_EQ(log_->size(), 0u);
  storage::WriteBatch next;
  next.Put(storage::Space::kCommerce, "u1/count/s1", "2");
  next.Expect(storage::Space::kCommerce, "u1/count/s1", "1");
  ASSERT_TRUE(log_->Commit(std::move(next), {Json{{"op", "order.create"}}}).ok());
  EXPECT_EQ(*engine_->GetNow(storage::Space::kCommerce, "u1/count/s1").value(), "2");
  EXPECT_EQ(log_->size(), 1u);
}

}  // namespace
}  // namespace meridian::audit
