// Micro-benchmarks of the privacy work: envelope encryption of records (AES-256-GCM under
// per-user data keys), data key unwrap with and without the cache, phone pseudonyms, HPKE
// sealed requests, and the record put/get path over RocksDB with the envelope codec versus
// the plaintext framing codec. The plaintext codec is here only as the peer to measure
// against: the node has no way to select it.
//
// And of the transparency work: the same record put committed through the audit log (entry
// and subtree hashes in the write's own batch, as the node does) versus without it, and proof
// generation and verification in a log of a million entries.
//
// Run by `make bench-crypto` (scripts/bench-crypto-report), never by the test suite.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "accounts/accounts.h"
#include "audit/log.h"
#include "audit/merkle.h"
#include "common/clock.h"
#include "common/random.h"
#include "crypto/crypto.h"
#include "crypto/hpke.h"
#include "keys/envelope.h"
#include "keys/keys.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::bench {
namespace {
namespace fs = std::filesystem;

constexpr std::string_view kRegion = "singapore";
constexpr size_t kRecordSize = 1024;
// As many users as the most threads of any benchmark, one each: threads never contend on a
// user's lock, so the multi-threaded put measures the storage path, not a mutex.
constexpr int kUsers = 8;
// Records per user the put/get loops cycle through; all exist before timing starts, so every
// put is an update (a read of the current version, then a synced write), as in steady state.
constexpr int kKeysPerUser = 16;
constexpr std::string_view kCollection = "notes";
constexpr std::string_view kPhone = "+919876543210";
// A registration body as a client seals it (API.md, "Sealed messages"): about 150 bytes.
constexpr std::string_view kRegisterBody =
    R"({"country":"IN","phone":"+919876543210","password":"correct horse battery staple",)"
    R"("name":"Asha Rao","email":"asha.rao@example.in","locale":"en-IN"})";

[[noreturn]] void Die(std::string_view what, const Status& st) {
  std::fprintf(stderr, "meridian_bench_crypto: %.*s: %s\n", static_cast<int>(what.size()),
               what.data(), st.ToString().c_str());
  std::exit(1);
}

// Set-up failures end the run: a benchmark over a half-built region would report nonsense.
template <typename T>
T Must(Result<T> r, std::string_view what) {
  if (!r.ok()) Die(what, r.status());
  return std::move(r).value();
}

void Must(const Status& st, std::string_view what) {
  if (!st.ok()) Die(what, st);
}

// Marks the benchmark failed (the report shows the error, not a number); false if it did.
bool Check(benchmark::State& state, const Status& st) {
  if (st.ok()) return true;
  state.SkipWithError(st.ToString().c_str());
  return false;
}

std::string RecordBody() {
  // Printable like a JSON or text record; the codecs treat every byte alike.
  std::string body(kRecordSize, ' ');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7) % 26);
  return body;
}

// The other home regions hold no phone: registration (set-up only) asks them.
class NoOtherRegions final : public accounts::PhoneDirectory {
 public:
  Result<std::optional<std::string>> FindElsewhere(const std::string&) override {
    return std::optional<std::string>();
  }
};

// kAudited: the envelope codec with every write committed through the audit log, as in the
// node; the other two commit without it (the privacy benchmark compares codecs).
enum class Codec { kEnvelope, kPlaintext, kAudited };

// One region's record path wired as the node wires it (keystore, RocksDB behind the
// residency guard, the codec, Accounts), in a temporary folder, with kUsers registered users
// holding kKeysPerUser records each.
class Region {
 public:
  explicit Region(Codec codec);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  keys::FileKeystore& keystore() { return *keystore_; }
  storage::Store& store() { return *store_; }
  keys::EnvelopeCodec& envelope() { return *envelope_; }  // only for Codec::kEnvelope
  accounts::Accounts& accounts() { return *accounts_; }
  const accounts::Principal& user(int i) const { return users_[i % kUsers]; }
  const std::string& record_key(size_t i) const { return record_keys_[i % kKeysPerUser]; }

 private:
  fs::path dir_;
  std::unique_ptr<keys::FileKeystore> keystore_;
  storage::StorePtr store_;
  std::unique_ptr<storage::ValueCodec> codec_;
  keys::EnvelopeCodec* envelope_ = nullptr;
  NoOtherRegions directory_;
  std::unique_ptr<audit::AuditSink> sink_;
  std::unique_ptr<accounts::Accounts> accounts_;
  std::vector<accounts::Principal> users_;
  std::vector<std::string> record_keys_;
};

Region::Region(Codec codec) {
  // Production randomness and time: nonces and DEK expiry cost what they cost in the node.
  Random& random = SystemRandom::Instance();
  const Clock& clock = SystemClock::Instance();
  dir_ = fs::temp_directory_path() / ("meridian-bench-" + random.Hex(6));
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) Die("temporary folder", Error(Code::kUnavailable, ec.message()));
  // fast_kdf only shortens opening the keystore file, which no benchmark times.
  keystore_ =
      Must(keys::FileKeystore::Create((dir_ / "singapore.keystore").string(), std::string(kRegion),
                                      16, keys::NewClusterKeys(random), "bench secret",
                                      /*fast_kdf=*/true, random, clock),
           "keystore");
  store_ =
      storage::WithResidencyGuard(Must(storage::OpenRocksDb((dir_ / "db").string()), "rocksdb"),
                                  std::string(kRegion), [](policy::DataClass) { return true; });
  if (codec != Codec::kPlaintext) {
    auto envelope = std::make_unique<keys::EnvelopeCodec>(*keystore_, *store_, random, clock);
    envelope_ = envelope.get();
    codec_ = std::move(envelope);
  } else {
    codec_ = storage::MakeFramingCodec();
  }
  if (codec == Codec::kAudited) {
    auto log = std::make_unique<audit::AuditLog>(
        *store_, std::string(kRegion), clock,
        [this](std::string_view text) { return keystore_->Sign(text); },
        keystore_->SigningPublicKey());
    Must(log->Start(), "audit log");
    sink_ = std::move(log);
  } else {
    sink_ = std::make_unique<audit::UnauditedSink>(*store_);
  }
  accounts_ = std::make_unique<accounts::Accounts>(
      *store_, *codec_, *sink_, directory_, clock, random,
      accounts::AccountKeys{keystore_->TokenKey(), Must(keystore_->PseudonymKey("phone"), "keys"),
                            Must(keystore_->PseudonymKey("names"), "keys")},
      accounts::AccountSettings{std::string(kRegion), /*dev_fast_password_hashing=*/true,
                                3'600'000});
  for (int k = 0; k < kKeysPerUser; ++k) record_keys_.push_back("note-" + std::to_string(k));
  const std::string body = RecordBody();
  for (int u = 0; u < kUsers; ++u) {
    auto issued =
        Must(accounts_->Register({"IN", "+91987654" + std::to_string(3200 + u),
                                  "correct horse battery", "Bench User", "bench@example.in"}),
             "register");
    users_.push_back({issued.user_id, issued.home_region});
    for (const auto& key : record_keys_) {
      Must(accounts_->PutRecord(users_.back(), kCollection, key, "text/plain", body), "put");
    }
  }
}

Region::~Region() {
  // The engine closes before its folder goes.
  accounts_.reset();
  sink_.reset();
  codec_.reset();
  store_.reset();
  keystore_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::array<std::unique_ptr<Region>, 3>& Regions() {
  static auto* regions = new std::array<std::unique_ptr<Region>, 3>();
  return *regions;
}
std::mutex& RegionsMu() {
  static auto* mu = new std::mutex();
  return *mu;
}

Region& RegionFor(Codec codec) {
  std::lock_guard lock(RegionsMu());
  auto& region = Regions()[static_cast<size_t>(codec)];
  if (!region) region = std::make_unique<Region>(codec);
  return *region;
}

void CloseRegions() {
  std::lock_guard lock(RegionsMu());
  for (auto& region : Regions()) region.reset();
}

void SetCounts(benchmark::State& state, size_t bytes_per_op) {
  state.SetItemsProcessed(state.iterations());
  if (bytes_per_op > 0) {
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes_per_op));
  }
}

// --- Envelope codec ---------------------------------------------------------------------

storage::CodecContext RowContext(const accounts::Principal& user, const std::string& row) {
  return {kRegion, user.user_id, "record", row, 0};
}

// Seal of a 1 KiB value with the user's DEK in the cache.
void BM_EnvelopeSeal(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  const std::string row = region.user(0).user_id + "/row";
  const auto ctx = RowContext(region.user(0), row);
  const std::string plain = RecordBody();
  for (auto _ : state) {
    auto sealed = region.envelope().Seal(ctx, plain);
    if (!Check(state, sealed.status())) break;
    benchmark::DoNotOptimize(sealed);
  }
  SetCounts(state, plain.size());
}
BENCHMARK(BM_EnvelopeSeal);

// Open of a 1 KiB value with the user's DEK in the cache.
void BM_EnvelopeOpen(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  const std::string row = region.user(0).user_id + "/row";
  const auto ctx = RowContext(region.user(0), row);
  const std::string plain = RecordBody();
  const std::string sealed = Must(region.envelope().Seal(ctx, plain), "seal");
  for (auto _ : state) {
    auto opened = region.envelope().Open(ctx, sealed);
    if (!Check(state, opened.status())) break;
    benchmark::DoNotOptimize(opened);
  }
  SetCounts(state, plain.size());
}
BENCHMARK(BM_EnvelopeOpen);

// The same open with the DEK cache defeated (cache_ttl_ms = 0): every call reads the wrapped
// DEK row from RocksDB and unwraps it under the KEK, as after a cache miss.
void BM_EnvelopeOpenDekCold(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  keys::EnvelopeCodec cold(region.keystore(), region.store(), SystemRandom::Instance(),
                           SystemClock::Instance(), /*cache_ttl_ms=*/0);
  const std::string row = region.user(0).user_id + "/row";
  const auto ctx = RowContext(region.user(0), row);
  const std::string plain = RecordBody();
  const std::string sealed = Must(region.envelope().Seal(ctx, plain), "seal");
  for (auto _ : state) {
    auto opened = cold.Open(ctx, sealed);
    if (!Check(state, opened.status())) break;
    benchmark::DoNotOptimize(opened);
  }
  SetCounts(state, plain.size());
}
BENCHMARK(BM_EnvelopeOpenDekCold);

// The KEK operation alone: unwrapping one 32-byte DEK (AES-256-GCM, owner-bound AAD).
void BM_KekUnwrapDek(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  auto& keys = region.keystore();
  const uint32_t kek = keys.PrimaryKekVersion();
  const std::string aad = "meridian dek v1\nsingapore\n" + region.user(0).user_id + "\n" +
                          SystemRandom::Instance().Hex(16);
  const std::string wrapped = Must(keys.Wrap(kek, SystemRandom::Instance().Bytes(32), aad), "wrap");
  for (auto _ : state) {
    auto dek = keys.Unwrap(kek, wrapped, aad);
    if (!Check(state, dek.status())) break;
    benchmark::DoNotOptimize(dek);
  }
  SetCounts(state, 0);
}
BENCHMARK(BM_KekUnwrapDek);

// --- Pseudonyms and HPKE ----------------------------------------------------------------

// The cluster-wide phone pseudonym of an E.164 number (every registration and login).
void BM_PhonePseudonym(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  const std::string key = Must(region.keystore().PseudonymKey("phone"), "keys");
  for (auto _ : state) {
    auto pseudonym = crypto::Pseudonym(key, "phone", kPhone);
    benchmark::DoNotOptimize(pseudonym);
  }
  SetCounts(state, 0);
}
BENCHMARK(BM_PhonePseudonym);

// A client sealing a registration body to the region's current HPKE key.
void BM_HpkeSeal(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  const keys::HpkeKey key = region.keystore().CurrentHpke();
  for (auto _ : state) {
    auto sealed = crypto::hpke::SealMessage(key.key_id, key.public_key, kRegisterBody);
    if (!Check(state, sealed.status())) break;
    benchmark::DoNotOptimize(sealed);
  }
  SetCounts(state, kRegisterBody.size());
}
BENCHMARK(BM_HpkeSeal);

// The node opening it: framing and suite checks, then HPKE open (X25519, HKDF, ChaCha20).
void BM_HpkeOpen(benchmark::State& state) {
  Region& region = RegionFor(Codec::kEnvelope);
  const keys::HpkeKey key = region.keystore().CurrentHpke();
  const std::string sealed =
      Must(crypto::hpke::SealMessage(key.key_id, key.public_key, kRegisterBody), "hpke seal");
  for (auto _ : state) {
    auto parsed = crypto::hpke::ParseSealed(sealed);
    if (!Check(state, parsed.status())) break;
    auto body = crypto::hpke::OpenMessage(*parsed, key.private_key);
    if (!Check(state, body.status())) break;
    benchmark::DoNotOptimize(body);
  }
  SetCounts(state, kRegisterBody.size());
}
BENCHMARK(BM_HpkeOpen);

// --- Record path over RocksDB -----------------------------------------------------------

// Accounts::PutRecord of a 1 KiB body: validation, name pseudonyms, read and open of the
// current version, seal, and a synced RocksDB write. Each thread writes as its own user;
// with several threads RocksDB's group commit shares one fsync among concurrent writers.
void BM_RecordPut(benchmark::State& state, Codec codec) {
  Region& region = RegionFor(codec);
  const accounts::Principal& user = region.user(state.thread_index());
  const std::string body = RecordBody();
  size_t i = 0;
  for (auto _ : state) {
    auto version =
        region.accounts().PutRecord(user, kCollection, region.record_key(i++), "text/plain", body);
    if (!Check(state, version.status())) break;
  }
  SetCounts(state, body.size());
}
BENCHMARK_CAPTURE(BM_RecordPut, envelope, Codec::kEnvelope)->Threads(1)->Threads(8)->UseRealTime();
BENCHMARK_CAPTURE(BM_RecordPut, plaintext, Codec::kPlaintext)
    ->Threads(1)
    ->Threads(8)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_RecordPut, audited, Codec::kAudited)->Threads(1)->Threads(8)->UseRealTime();

// Accounts::GetRecord of a 1 KiB record: RocksDB read, open, unframe.
void BM_RecordGet(benchmark::State& state, Codec codec) {
  Region& region = RegionFor(codec);
  const accounts::Principal& user = region.user(state.thread_index());
  size_t i = 0;
  for (auto _ : state) {
    auto record = region.accounts().GetRecord(user, kCollection, region.record_key(i++));
    if (!Check(state, record.status())) break;
    benchmark::DoNotOptimize(record);
  }
  SetCounts(state, kRecordSize);
}
BENCHMARK_CAPTURE(BM_RecordGet, envelope, Codec::kEnvelope)->UseRealTime();
BENCHMARK_CAPTURE(BM_RecordGet, plaintext, Codec::kPlaintext)->UseRealTime();

// --- Audit log at a million entries --------------------------------------------------------

constexpr uint64_t kBigLogEntries = 1'000'000;

// A region's log holding kBigLogEntries entries shaped like the node's (op, region, subject
// pseudonym, time, details), in RocksDB as the node stores it; built once, on first use.
class BigLog {
 public:
  BigLog() {
    dir_ = fs::temp_directory_path() / ("meridian-bench-log-" + SystemRandom::Instance().Hex(6));
    store_ = Must(storage::OpenRocksDb(dir_.string()), "rocksdb");
    log_ = std::make_unique<audit::AuditLog>(
        *store_, std::string(kRegion), SystemClock::Instance(),
        [](std::string_view) { return std::string(64, '\0'); }, std::string(32, '\0'));
    Must(log_->Start(), "audit log");
    const std::string names_key(32, 'k');
    constexpr uint64_t kPerCommit = 10'000;
    for (uint64_t i = 0; i < kBigLogEntries; i += kPerCommit) {
      std::vector<audit::EntryText> entries;
      for (uint64_t j = i; j < i + kPerCommit; ++j) {
        entries.push_back(audit::MakeEntry(
            "record.write", kRegion, audit::SubjectPseudonym(names_key, std::to_string(j % 5000)),
            1'700'000'000'000 + static_cast<int64_t>(j),
            {{"collection", "c" + std::to_string(j % 7)}}));
      }
      Must(log_->Commit({}, std::move(entries)), "append");
    }
    root_ = Must(log_->Root(kBigLogEntries), "root");
  }
  ~BigLog() {
    log_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  audit::AuditLog& log() { return *log_; }
  const audit::Hash& root() const { return root_; }

 private:
  fs::path dir_;
  storage::StorePtr store_;
  std::unique_ptr<audit::AuditLog> log_;
  audit::Hash root_;
};

std::unique_ptr<BigLog>& BigLogSlot() {
  static auto* slot = new std::unique_ptr<BigLog>();
  return *slot;
}
BigLog& TheBigLog() {
  std::lock_guard lock(RegionsMu());
  if (!BigLogSlot()) BigLogSlot() = std::make_unique<BigLog>();
  return *BigLogSlot();
}

// Indexes spread over the whole log, the same sequence in every run.
uint64_t SpreadIndex(uint64_t i) { return (i * 2'654'435'761u) % kBigLogEntries; }

// The server side of GET /v1/admin/audit/proof/inclusion: O(log n) stored subtree reads.
void BM_AuditInclusionProof(benchmark::State& state) {
  BigLog& big = TheBigLog();
  uint64_t i = 0;
  for (auto _ : state) {
    auto proof = big.log().Inclusion(SpreadIndex(i++), kBigLogEntries);
    if (!Check(state, proof.status())) break;
    benchmark::DoNotOptimize(proof);
  }
  SetCounts(state, 0);
}
BENCHMARK(BM_AuditInclusionProof)->UseRealTime();

// GET /v1/admin/audit/proof/consistency from an earlier size to the whole log.
void BM_AuditConsistencyProof(benchmark::State& state) {
  BigLog& big = TheBigLog();
  uint64_t i = 0;
  for (auto _ : state) {
    auto proof = big.log().Consistency(1 + SpreadIndex(i++), kBigLogEntries);
    if (!Check(state, proof.status())) break;
    benchmark::DoNotOptimize(proof);
  }
  SetCounts(state, 0);
}
BENCHMARK(BM_AuditConsistencyProof)->UseRealTime();

// What an auditor or user does with an inclusion proof: 20 hashes up to the signed root.
void BM_AuditVerifyInclusion(benchmark::State& state) {
  BigLog& big = TheBigLog();
  const uint64_t index = SpreadIndex(12345);
  const auto leaves = Must(big.log().Entries(index, index + 1), "entry");
  const auto proof = Must(big.log().Inclusion(index, kBigLogEntries), "proof");
  const audit::Hash leaf = audit::LeafHash(leaves[0]);
  for (auto _ : state) {
    if (!audit::VerifyInclusion(index, kBigLogEntries, leaf, proof, big.root())) {
      state.SkipWithError("the proof does not verify");
      break;
    }
  }
  SetCounts(state, 0);
}
BENCHMARK(BM_AuditVerifyInclusion)->UseRealTime();

}  // namespace
}  // namespace meridian::bench

int main(int argc, char** argv) {
  namespace mb = meridian::bench;
  if (auto st = meridian::crypto::Init(); !st.ok()) mb::Die("crypto init", st);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Both regions exist before any timing, so no benchmark's first run pays for their set-up.
  mb::RegionFor(mb::Codec::kEnvelope);
  mb::RegionFor(mb::Codec::kPlaintext);
  mb::RegionFor(mb::Codec::kAudited);
  benchmark::AddCustomContext("record_bytes", std::to_string(mb::kRecordSize));
  benchmark::AddCustomContext("rocksdb_dir", std::filesystem::temp_directory_path().string());
  benchmark::AddCustomContext("rocksdb_sync", "every write (fsync of the WAL)");
  benchmark::AddCustomContext("audit_log_entries", std::to_string(mb::kBigLogEntries));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  mb::CloseRegions();
  mb::BigLogSlot().reset();
  return 0;
}
