#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proc_stat.h"
#include "common/status.h"
#include "net/http.h"

namespace meridian {
namespace {

// A thread may name itself anything, spaces and parentheses included: the fields after the
// name are still found.
TEST(ProcStatTest, ReadsNameStateParentAndCpuWhateverTheName) {
  const long tick = sysconf(_SC_CLK_TCK);
  auto s = ParseProcStat("4242 (a) (b c) S 17 4242 4242 0 -1 4194304 10 0 0 0 " +
                         std::to_string(3 * tick) + " " + std::to_string(tick) + " 0 0 20 0 1");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->name, "a) (b c");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 17);
  EXPECT_DOUBLE_EQ(s->cpu_s, 4.0);

  EXPECT_FALSE(ParseProcStat("").has_value());
  EXPECT_FALSE(ParseProcStat("4242 (cut short) S 17").has_value());
  EXPECT_FALSE(ReadProcStat("/proc/self/task/0/stat").has_value());

  auto self = ReadProcStat("/proc/self/stat");
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->ppid, getppid());
  EXPECT_EQ(self->state, 'R');  // reading its own stat, it runs
}

TEST(StatusTest, CodesMapToTheApiVocabulary) {
  EXPECT_EQ(CodeName(Code::kPhoneTaken), "phone_taken");
  EXPECT_EQ(HttpStatusOf(Code::kPhoneTaken), 409);
  EXPECT_EQ(HttpStatusOf(Code::kResidencyViolation), 403);
  EXPECT_EQ(HttpStatusOf(Code::kTooLarge), 413);
  EXPECT_EQ(HttpStatusOf(Code::kUnauthenticated), 401);
  auto r = net::HttpResponse::FromStatus(Error(Code::kOverloaded, "busy"));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("retry-after"), "1");
  EXPECT_EQ(r.body, R"({"error":"overloaded","message":"busy"})");
}

TEST(EncodingTest, RoundTrips) {
  std::string bytes("\x00\xff\x10 meridian", 12);
  EXPECT_EQ(*HexDecode(HexEncode(bytes)), bytes);
  EXPECT_EQ(*Base64UrlDecode(Base64UrlEncode(bytes)), bytes);
  EXPECT_EQ(*Base64Decode(Base64Encode(bytes)), bytes);
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(HexDecode("zz").has_value());
  EXPECT_FALSE(Base64UrlDecode("*").has_value());
}

TEST(ClockTest, Rfc3339) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(1795690423170), "2026-11-26T10:53:43.170Z");
  EXPECT_EQ(FormatRfc3339(1709251199999), "2024-02-29T23:59:59.999Z");  // leap day
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999Z");
  // Outside four-digit years: the nearest instant that has them.
  EXPECT_EQ(FormatRfc3339(INT64_MIN), "0001-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(INT64_MAX), "9999-12-31T23:59:59.999Z");
  // Against the C library's calendar, over a century of instants.
  for (int64_t ms = 0; ms < 4'102'444'800'000; ms += 987'654'321'017 / 1000) {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    ASSERT_EQ(FormatRfc3339(ms),
              fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000));
  }
  ManualClock c(5);
  c.Advance(10);
  EXPECT_EQ(c.NowMs(), 15);
}

TEST(JsonObjectWriterTest, WritesWhatDumpJsonWritesForTheSameObject) {
  // Values the fast path copies and values it hands to nlohmann (escapes, UTF-8, bytes that
  // are not UTF-8, DEL): either way the bytes are DumpJson's.
  const std::vector<std::string> values = {"",
                                           "o_0123456789ab",
                                           "2026-11-26T09:00:00.000Z",
                                           "a \"quoted\" word",
                                           "back\\slash",
                                           "tab\tnew\nline\x01\x1f",
                                           "caf\xc3\xa9 \xe5\x8c\x97\xe4\xba\xac",
                                           "bad \xff\xfe utf-8",
                                           "del\x7f",
                                           std::string("nul\0inside", 11)};
  for (const auto& v : values) {
    const std::string text =
        JsonObjectWriter().String("a", v).Int("b", -42).String("c", v).Finish();
    EXPECT_EQ(text, DumpJson(Json{{"a", v}, {"b", -42}, {"c", v}})) << v;
  }
  for (int64_t n : {int64_t{0}, int64_t{7}, INT64_MIN, INT64_MAX}) {
    EXPECT_EQ(JsonObjectWriter().Int("n", n).Finish(), DumpJson(Json{{"n", n}}));
  }
  EXPECT_EQ(JsonObjectWriter().Finish(), "{}");
  const Json nested = {{"x", "y"}, {"z", 1}};
  EXPECT_EQ(JsonObjectWriter().String("a", "b").Raw("n", DumpJson(nested)).Finish(),
            DumpJson(Json{{"a", "b"}, {"n", nested}}));
}

TEST(RedactedTest, FormatsAsRedacted) {
  Redacted<std::string> phone{"+919876543210"};
  EXPECT_EQ(fmt::format("phone={}", phone), "phone=[redacted]");
}

TEST(PercentTest, DecodeAndEncode) {
  EXPECT_EQ(*net::PercentDecode("a%2Fb"), "a/b");
  EXPECT_EQ(*net::PercentDecode("%2e%2E"), "..");
  EXPECT_FALSE(net::PercentDecode("%").has_value());
  EXPECT_FALSE(net::PercentDecode("%4").has_value());
  EXPECT_FALSE(net::PercentDecode("%zz").has_value());
  EXPECT_EQ(net::PercentEncode("a b/c"), "a%20b%2Fc");
}

}  // namespace
}  // namespace meridian
