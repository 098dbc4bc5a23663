#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "config/cluster.h"
#include "policy/policy.h"
#include "test_support.h"

namespace meridian::policy {
namespace {

Result<Policy> ParseText(const std::string& text, std::vector<Diagnostic>* d) {
  return Parse(text, "test.toml", BuiltinRegionRoles(), d);
}

const char* kHeader = R"(name = "t"
version = 3
default_region = "oregon"
edge_regions = ["california"]
[roles]
home = ["identity", "device", "content", "commerce", "pseudonym", "public"]
edge = ["public"]
)";

TEST(PolicyTest, BuiltinCurrentHomesCountriesPerTheBrief) {
  std::vector<Diagnostic> d;
  auto p = Load("current", BuiltinRegionRoles(), &d);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->HomeFor("CN"), "beijing");
  for (const char* c :
       {"IN", "PK", "BD", "LK", "NP", "ID", "MY", "SG", "TH", "VN", "PH", "MM", "KH", "LA"}) {
    EXPECT_EQ(p->HomeFor(c), "singapore") << c;
  }
  for (const char* c : {"US", "BR", "DE", "FR", "JP", "AU", "NG"}) {
    EXPECT_EQ(p->HomeFor(c), "oregon") << c;
  }
  EXPECT_TRUE(p->MayHold(Role::kHome, DataClass::kIdentity));
  EXPECT_FALSE(p->MayHold(Role::kEdge, DataClass::kIdentity));
  EXPECT_TRUE(p->MayHold(Role::kEdge, DataClass::kPublic));
}

TEST(PolicyTest, BuiltinLegacyHomesEveryoneInBeijing) {
  std::vector<Diagnostic> d;
  auto p = Load("legacy", BuiltinRegionRoles(), &d);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  for (const char* c : {"CN", "IN", "US", "DE", "SG"}) EXPECT_EQ(p->HomeFor(c), "beijing");
  EXPECT_LT(p->version(), Load("current", BuiltinRegionRoles(), &d)->version());
}

TEST(PolicyTest, UnknownCountryCodeIsReportedWithItsLine) {
  std::vector<Diagnostic> d;
  auto p =
      ParseText(std::string(kHeader) + "[countries]\nIN = \"singapore\"\nXQ = \"oregon\"\n", &d);
  ASSERT_FALSE(p.ok());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].line, 10);
  EXPECT_NE(d[0].ToString().find("test.toml:10: 'XQ' is not an ISO 3166-1"), std::string::npos)
      << d[0].ToString();
}

TEST(PolicyTest, EdgeRegionCannotBeAHome) {
  std::vector<Diagnostic> d;
  auto p = ParseText(std::string(kHeader) + "[countries]\nUS = \"california\"\n", &d);
  ASSERT_FALSE(p.ok());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].message.find("edge region cannot be a home"), std::string::npos);
}

TEST(PolicyTest, UnknownRegionAndEveryErrorAreAllReported) {
  std::vector<Diagnostic> d;
  auto p = Parse(
      "name = \"x\"\nversion = 0\ndefault_region = \"mars\"\n[roles]\nedge = [\"identity\"]\n"
      "[countries]\nDE = \"frankfurt\"\nde = \"oregon\"\n",
      "bad.toml", BuiltinRegionRoles(), &d);
  ASSERT_FALSE(p.ok());
  // version, default_region, edge holding identity, unknown region, lower-case code.
  EXPECT_EQ(d.size(), 5u);
  for (const auto& diag : d) EXPECT_GT(diag.line, 0) << diag.ToString();
}

TEST(PolicyTest, SyntaxErrorNamesTheLine) {
  std::vector<Diagnostic> d;
  auto p = ParseText("name = \"x\"\nversion = = 2\n", &d);
  ASSERT_FALSE(p.ok());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].line, 2);
}

TEST(PolicyTest, IsoCountriesComeFromIsoCodes) {
  EXPECT_TRUE(IsIsoCountry("IN"));
  EXPECT_TRUE(IsIsoCountry("US"));
  EXPECT_FALSE(IsIsoCountry("XX"));
  EXPECT_FALSE(IsIsoCountry("in"));
  EXPECT_FALSE(IsIsoCountry(""));
}

// Loads `text` as a cluster config file; its diagnostics go to `d`.
bool LoadsConfig(const std::string& text, std::vector<Diagnostic>* d) {
  meridian::testing::TempDir dir;
  const std::string path = dir.str() + "/cluster.toml";
  std::ofstream(path) << text;
  return config::Load(path, d).ok();
}

TEST(ClusterConfigTest, InvalidConfigListsProblemsWithLines) {
  std::vector<Diagnostic> d;
  ASSERT_FALSE(
      LoadsConfig("[cluster]\npolicy = \"current\"\n[[regions]]\nname = \"oregon\"\n"
                  "role = \"sideways\"\nlisten = \"nowhere\"\nurl = \"ftp://x\"\n",
                  &d));
  ASSERT_GE(d.size(), 3u);
  EXPECT_EQ(d[0].line, 5);  // role
  EXPECT_EQ(d[1].line, 6);  // listen
  EXPECT_EQ(d[2].line, 7);  // url
}

TEST(ClusterConfigTest, NodeKnobsOutOfRangeAreReportedWithTheirLines) {
  std::vector<Diagnostic> d;
  ASSERT_FALSE(
      LoadsConfig("[cluster]\npolicy = \"current\"\n[node]\ndata_key_cache_ms = -1\n"
                  "data_key_cache_keys = 10\ninternal_workers = 0\n",
                  &d));
  std::vector<int> lines;
  for (const auto& x : d) {
    if (x.message.find("data_key_cache") != std::string::npos ||
        x.message.find("node.internal_workers") != std::string::npos) {
      lines.push_back(x.line);
    }
  }
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<int>{4, 5, 6}));
}

}  // namespace
}  // namespace meridian::policy
