// `meridian audit verify` and `meridian audit prove`, run as the real binary against a live
// cluster: a good log verifies, a saved checkpoint is followed, a forged one is refused, a
// tampered entry or subtree hash in RocksDB is named by its index, and a user's residency
// report is checked offline.
#include <signal.h>

#include <cstdlib>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "audit/log.h"
#include "audit/merkle.h"
#include "common/encoding.h"
#include "config/cluster.h"
#include "integration/helpers.h"

namespace meridian::testing {
namespace {

// The tree size of a checkpoint note (its second line).
uint64_t NoteSize(const std::string& note) {
  const size_t a = note.find('\n');
  return a == std::string::npos ? 0 : std::strtoull(note.c_str() + a + 1, nullptr, 10);
}

// Signature lines after the blank line: the region's own and its witnesses'.
int SignatureLines(const std::string& note) {
  const size_t blank = note.find("\n\n");
  if (blank == std::string::npos) return 0;
  return static_cast<int>(std::count(note.begin() + blank + 2, note.end(), '\n'));
}

// Writes `value` under `key` in the meta space of a stopped region's RocksDB.
class AuditVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_ = std::make_unique<TestCluster>();
    c_->Start();
    user_ = {"IN", "+91 98765 44444", "+919876544444", "singapore", "", ""};
    RegisterVia(*c_, "singapore", user_);
  }
  std::string File(const std::string& name) const { return c_->dir() + "/" + name; }
  void Write(const std::string& path, const std::string& text) {
    ASSERT_TRUE(config::WriteFileAtomic(path, text).ok());
  }
  void Records(int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(c_->Call("singapore", "PUT", "/v1/me/records/r/k" + std::to_string(next_++), "v",
                         Bearer(user_.token))
                    .status,
                200);
    }
  }
  std::string TreeHead(const std::string& region = "singapore") {
    auto r = c_->Call(region, "GET", "/v1/admin/audit/tree-head", "", Bearer(c_->admin_token()));
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }
  // A region's tree head once `ready` holds for it (checkpoints are published and
  // cosigned every second).
  std::string WaitForNote(const std::string& region,
                          const std::function<bool(const std::string&)>& ready,
                          const std::string& what) {
    std::string note;
    for (int i = 0; i < 100; ++i) {
      note = TreeHead(region);
      if (ready(note)) return note;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "no tree head of " << region << " " << what << ":\n" << note;
    return note;
  }
  // Singapore's tree head once it covers at least `min_size` leaves and carries at least
  // `signatures` signature lines.
  std::string WaitForTreeHead(uint64_t min_size, int signatures = 1) {
    return WaitForNote(
        "singapore",
        [&](const std::string& note) {
          return NoteSize(note) >= min_size && SignatureLines(note) >= signatures;
        },
        "of size " + std::to_string(min_size));
  }
  CommandOutput Verify(const std::vector<std::string>& extra, bool token_file = true) {
    std::vector<std::string> args = {MERIDIAN_BIN, "audit", "verify", "--url",
                                     c_->Url("singapore")};
    if (token_file) {
      args.push_back("--admin-token-file");
      args.push_back(File("admin.token"));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCommand(args);
  }
  CommandOutput Prove(const std::string& report, const std::string& regions = {}) {
    std::vector<std::string> args = {MERIDIAN_BIN, "audit", "prove", "--report", report};
    if (!regions.empty()) {
      args.push_back("--regions");
      args.push_back(regions);
    }
    return RunCommand(args);
  }
  std::string Leaf(uint64_t index) {
    auto r = c_->Call("singapore", "GET",
                      fmt::format("/v1/admin/audit/entries?start={}&end={}", index, index + 1), "",
                      Bearer(c_->admin_token()));
    EXPECT_EQ(r.status, 200) << r.body;
    const Json entries = JsonOf(r)["entries"];
    return entries.empty() ? "" : *Base64Decode(entries[0]["leaf"].get<std::string>());
  }

  std::unique_ptr<TestCluster> c_;
  TestUser user_;
  int next_ = 0;
};

TEST_F(AuditVerifyTest, VerifiesTheLogFollowsASavedCheckpointAndRefusesAForgedOne) {
  Records(3);
  // The start entries (policy, KEK), the account and three records, signed by singapore,
  // beijing and oregon: nothing else is logged until the next step.
  const std::string first = WaitForTreeHead(6, 3);
  const std::string saved = File("checkpoint-1");
  auto ok = Verify({"--save", saved});
  ASSERT_EQ(ok.exit_code, 0) << ok.text;
  EXPECT_NE(ok.text.find("meridian/singapore: log verified"), std::string::npos) << ok.text;
  EXPECT_NE(ok.text.find(fmt::format("size:       {}", NoteSize(first))), std::string::npos)
      << ok.text;
  EXPECT_NE(ok.text.find("meridian/beijing"), std::string::npos) << ok.text;
  EXPECT_NE(ok.text.find("meridian/oregon"), std::string::npos) << ok.text;
  const std::string saved_note = config::ReadFileOr(saved);
  ASSERT_EQ(NoteSize(saved_note), NoteSize(first));

  // The log grows; it stays consistent with the saved checkpoint.
  Records(3);
  WaitForTreeHead(NoteSize(saved_note) + 3);
  auto followed = Verify({"--trusted", saved});
  EXPECT_EQ(followed.exit_code, 0) << followed.text;
  EXPECT_NE(followed.text.find("trusted:    consistent with"), std::string::npos) << followed.text;

  // The admin token from the environment, or none at all.
  const std::string token = config::ReadFileOr(File("admin.token"));
  ASSERT_EQ(setenv("MERIDIAN_ADMIN_TOKEN", token.c_str(), 1), 0);
  auto from_env = Verify({}, false);
  EXPECT_EQ(from_env.exit_code, 0) << from_env.text;
  unsetenv("MERIDIAN_ADMIN_TOKEN");
  auto no_token = Verify({}, false);
  EXPECT_EQ(no_token.exit_code, 2) << no_token.text;
  EXPECT_NE(no_token.text.find("admin token"), std::string::npos) << no_token.text;

  // A trusted checkpoint whose root line was edited: its signature no longer verifies.
  std::string forged = saved_note;
  const size_t root_at = forged.find('\n', forged.find('\n') + 1) + 1;
  forged.replace(root_at, forged.find('\n', root_at) - root_at, Base64Encode(std::string(32, 'x')));
  Write(File("forged"), forged);
  auto refused = Verify({"--trusted", File("forged")});
  EXPECT_EQ(refused.exit_code, 1) << refused.text;
  EXPECT_NE(refused.text.find("meridian audit verify: trusted checkpoint"), std::string::npos)
      << refused.text;
  EXPECT_NE(refused.text.find("signature does not verify"), std::string::npos) << refused.text;

  // Another region's checkpoint is not singapore's, even though it carries singapore's valid
  // cosignature (waited for: without it the signature check would refuse it first).
  const auto cosigned = [](const std::string& note) {
    return note.find("\n— meridian/singapore ") != std::string::npos;
  };
  Write(File("beijing-checkpoint"), WaitForNote("beijing", cosigned, "cosigned by singapore"));
  auto other = Verify({"--trusted", File("beijing-checkpoint")});
  EXPECT_EQ(other.exit_code, 1) << other.text;
  EXPECT_NE(other.text.find("is the checkpoint of meridian/beijing, not of meridian/singapore"),
            std::string::npos)
      << other.text;

  // A node that is not there.
  auto down = RunCommand({MERIDIAN_BIN, "audit", "verify", "--url", "http://127.0.0.1:1",
                          "--admin-token-file", File("admin.token")});
  EXPECT_EQ(down.exit_code, 2) << down.text;
}

TEST_F(AuditVerifyTest, NamesTheFirstTamperedIndex) {
  Records(4);
  // The node's start entries (policy, KEK), the account and the four records.
  std::string note = WaitForTreeHead(7);
  if (NoteSize(note) % 2 == 0) {  // an odd size: the last leaf's own hash is part of the root
    Records(1);
    note = WaitForTreeHead(NoteSize(note) + 1);
  }
  const uint64_t n = NoteSize(note);
  ASSERT_EQ(n % 2, 1u);
  ASSERT_GT(n, 4u);
  const std::string saved = File("checkpoint");
  auto ok = Verify({"--save", saved});
  ASSERT_EQ(ok.exit_code, 0) << ok.text;

  // An operator rewrites entry 3 in RocksDB (the stored subtree hashes are left alone).
  const uint64_t bad = 3;
  const std::string original = Leaf(bad);
  std::string changed = original;
  ASSERT_NE(changed.find("\"op\":\""), std::string::npos) << changed;
  changed.replace(changed.find("\"op\":\"") + 6, 1, "X");
  c_->StopRegion("singapore", SIGTERM);
  c_->PutMeta("singapore", fmt::format("audit/e/{:016x}", bad), changed);
  c_->StartRegion("singapore");
  ASSERT_EQ(Leaf(bad), changed);
  ASSERT_EQ(NoteSize(WaitForTreeHead(n)), n);
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--trusted", saved}}) {
    auto tampered = Verify(extra);
    EXPECT_EQ(tampered.exit_code, 1) << tampered.text;
    EXPECT_NE(tampered.text.find("meridian audit verify: first bad index 3: entry 3 "),
              std::string::npos)
        << tampered.text;
  }

  // The entry is put back and instead the last leaf's stored hash is rewritten: the root of
  // the same size changes (a fork of the saved checkpoint), and the index is named.
  c_->StopRegion("singapore", SIGTERM);
  c_->PutMeta("singapore", fmt::format("audit/e/{:016x}", bad), original);
  c_->PutMeta("singapore", fmt::format("audit/n/00/{:016x}", n - 1), std::string(32, 'f'));
  c_->StartRegion("singapore");
  ASSERT_EQ(NoteSize(WaitForTreeHead(n)), n);
  auto fork = Verify({"--trusted", saved});
  EXPECT_EQ(fork.exit_code, 1) << fork.text;
  EXPECT_NE(fork.text.find(fmt::format("not consistent with the trusted checkpoint (size {})", n)),
            std::string::npos)
      << fork.text;
  auto rewritten = Verify({});
  EXPECT_EQ(rewritten.exit_code, 1) << rewritten.text;
  EXPECT_NE(rewritten.text.find(fmt::format("first bad index {}:", n - 1)), std::string::npos)
      << rewritten.text;
}

TEST_F(AuditVerifyTest, ProveChecksAResidencyReportOffline) {
  Records(2);
  WaitForTreeHead(5, 3);  // start entries, the account, two records; witnessed
  const std::string regions = File("regions.json");
  Write(regions, c_->Call("california", "GET", "/v1/regions").body);
  auto res = c_->Call("singapore", "GET", "/v1/me/residency", "", Bearer(user_.token));
  ASSERT_EQ(res.status, 200) << res.body;
  const std::string report = File("residency.json");
  Write(report, res.body);

  auto ok = Prove(report, regions);
  EXPECT_EQ(ok.exit_code, 0) << ok.text;
  EXPECT_NE(ok.text.find("meridian/singapore: tree head verified"), std::string::npos) << ok.text;
  EXPECT_NE(ok.text.find("0 transfers"), std::string::npos) << ok.text;
  auto embedded = Prove(report);  // the key the report carries
  EXPECT_EQ(embedded.exit_code, 0) << embedded.text;
  EXPECT_NE(embedded.text.find("key from:   the report itself"), std::string::npos)
      << embedded.text;

  // The tree head's root altered.
  Json doc = JsonOf(res);
  const std::string note = doc["tree_head"];
  std::string forged_note = note;
  const size_t root_at = forged_note.find('\n', forged_note.find('\n') + 1) + 1;
  forged_note.replace(root_at, forged_note.find('\n', root_at) - root_at,
                      Base64Encode(std::string(32, 'x')));
  Json forged = doc;
  forged["tree_head"] = forged_note;
  Write(File("forged.json"), DumpJson(forged));
  for (const std::string& with_regions : {regions, std::string()}) {
    auto refused = Prove(File("forged.json"), with_regions);
    EXPECT_EQ(refused.exit_code, 1) << refused.text;
    EXPECT_NE(refused.text.find("meridian audit prove: tree head: the signature of "
                                "meridian/singapore does not verify"),
              std::string::npos)
        << refused.text;
  }

  // A cosignature that does not verify, and one by a signer the regions file does not know.
  ASSERT_EQ(SignatureLines(note), 3) << note;
  const size_t beijing_at = note.find("\xE2\x80\x94 meridian/beijing ");
  ASSERT_NE(beijing_at, std::string::npos) << note;
  const size_t sig_at = note.find(' ', beijing_at + 4) + 1;
  std::string bad_cosig = note;
  bad_cosig.replace(sig_at, note.find('\n', sig_at) - sig_at, Base64Encode(std::string(68, 'z')));
  const std::string unknown =
      note + "\xE2\x80\x94 meridian/mars " + Base64Encode(std::string(68, 'z')) + "\n";
  for (const auto& [tree_head, expected] :
       {std::pair<std::string, std::string>{bad_cosig,
                                            "cosignature by meridian/beijing does not verify"},
        {unknown, "cosignature by meridian/mars: unknown signer"}}) {
    Json cosigned = doc;
    cosigned["tree_head"] = tree_head;
    Write(File("cosigned.json"), DumpJson(cosigned));
    auto refused = Prove(File("cosigned.json"), regions);
    EXPECT_EQ(refused.exit_code, 1) << refused.text;
    EXPECT_NE(refused.text.find(expected), std::string::npos) << refused.text;
  }

  // The regions file gives singapore another region's key.
  Json regions_doc = JsonOf(c_->Call("california", "GET", "/v1/regions"));
  std::string beijing_key;
  for (const auto& r : regions_doc["regions"]) {
    if (r["name"] == "beijing") beijing_key = r["audit_verifier_key"];
  }
  for (auto& r : regions_doc["regions"]) {
    if (r["name"] == "singapore") r["audit_verifier_key"] = beijing_key;
  }
  Write(File("wrong-regions.json"), DumpJson(regions_doc));
  EXPECT_EQ(Prove(report, File("wrong-regions.json")).exit_code, 1);

  // A transfer with its inclusion proof against the report's tree head verifies; a proof
  // with a changed hash, a different leaf, or none at all does not.
  const uint64_t size = NoteSize(note);
  ASSERT_GT(size, 2u);
  auto inc = JsonOf(c_->Call("singapore", "GET",
                             fmt::format("/v1/admin/audit/proof/inclusion?index=2&size={}", size),
                             "", Bearer(c_->admin_token())));
  Json proof = {{"log_index", 2},
                {"tree_size", size},
                {"leaf", Base64Encode(Leaf(2))},
                {"hashes", inc["hashes"]}};
  Json with_transfer = doc;
  with_transfer["transfers"] = Json::array({{{"from", "beijing"},
                                             {"to", "singapore"},
                                             {"at", "2025-01-01T00:00:00Z"},
                                             {"reason", "policy"},
                                             {"log_index", 2}}});
  with_transfer["proofs"] = Json::array({proof});
  Write(File("transfer.json"), DumpJson(with_transfer));
  auto proven = Prove(File("transfer.json"), regions);
  EXPECT_EQ(proven.exit_code, 0) << proven.text;
  EXPECT_NE(proven.text.find("1 transfer, each included in the signed log"), std::string::npos)
      << proven.text;

  ASSERT_FALSE(proof["hashes"].empty());
  Json bad_hash = with_transfer;
  bad_hash["proofs"][0]["hashes"][0] = Base64Encode(std::string(32, 'y'));
  Write(File("bad-hash.json"), DumpJson(bad_hash));
  auto refused_hash = Prove(File("bad-hash.json"), regions);
  EXPECT_EQ(refused_hash.exit_code, 1) << refused_hash.text;
  EXPECT_NE(refused_hash.text.find("proof for log index 2 does not verify"), std::string::npos)
      << refused_hash.text;

  Json bad_leaf = with_transfer;
  bad_leaf["proofs"][0]["leaf"] = Base64Encode(Leaf(1));
  Write(File("bad-leaf.json"), DumpJson(bad_leaf));
  EXPECT_EQ(Prove(File("bad-leaf.json"), regions).exit_code, 1);

  Json unproven = with_transfer;
  unproven["proofs"] = Json::array();
  Write(File("unproven.json"), DumpJson(unproven));
  auto refused_missing = Prove(File("unproven.json"), regions);
  EXPECT_EQ(refused_missing.exit_code, 1) << refused_missing.text;
  EXPECT_NE(refused_missing.text.find("transfer 0 (log index 2) has no inclusion proof"),
            std::string::npos)
      << refused_missing.text;
}

}  // namespace
}  // namespace meridian::testing
