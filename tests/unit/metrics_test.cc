// The node's Prometheus counters: one lookup per request keeps requests, answers and the
// latency histogram of a route together.
#include "node/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace meridian::node {
namespace {

TEST(MetricsTest, RequestsAnswersAndLatencyAreCountedPerRouteAndStatus) {
  Metrics m("singapore");
  m.ObserveRequest("/v1/sales/{id}/purchase", 201, 0.002, true);
  m.ObserveRequest("/v1/sales/{id}/purchase", 409, 0.0001, true);
  m.ObserveRequest("/v1/sales/{id}/purchase", 409, 0.0001, true);
  m.ObserveRequest("/v1/sales/{id}/purchase", 409, 0.0001, false);  // forwarded here: no answer
  m.ObserveRequest("/v1/health", 200, 3.0, true);
  EXPECT_EQ(m.Answers("/v1/sales/{id}/purchase", 201), 1u);
  EXPECT_EQ(m.Answers("/v1/sales/{id}/purchase", 409), 2u);
  EXPECT_EQ(m.Answers("/v1/sales/{id}/purchase", 500), 0u);
  EXPECT_EQ(m.Answers("/v1/unknown", 200), 0u);

  const std::string text = m.Render();
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n" << text;
  };
  const std::string purchase = R"(region="singapore",route="/v1/sales/{id}/purchase")";
  has("meridian_requests_total{" + purchase + R"(,status="201"} 1)");
  has("meridian_requests_total{" + purchase + R"(,status="409"} 3)");
  has("meridian_answers_total{" + purchase + R"(,status="409"} 2)");
  // Cumulative buckets: 3 answers within 0.5 ms, all 4 within 2.5 ms.
  has("meridian_request_duration_seconds_bucket{" + purchase + R"(,le="0.0005"} 3)");
  has("meridian_request_duration_seconds_bucket{" + purchase + R"(,le="0.0025"} 4)");
  has("meridian_request_duration_seconds_count{" + purchase + "} 4");
  // Slower than the last bucket: only +Inf holds it.
  const std::string health = R"(region="singapore",route="/v1/health")";
  has("meridian_request_duration_seconds_bucket{" + health + R"(,le="2.5"} 0)");
  has("meridian_request_duration_seconds_bucket{" + health + R"(,le="+Inf"} 1)");
}

// Each thread counts in its own shard; what is read is the sum over every thread.
TEST(MetricsTest, CountsFromManyThreadsAddUp) {
  Metrics m("singapore");
  constexpr int kThreads = 80;  // more than the shards: some threads share one
  constexpr int kEach = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kEach; ++i) {
        m.ObserveRequest("/v1/sales/{id}/purchase", t % 2 == 0 ? 201 : 409, 0.0001, true);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(m.Answers("/v1/sales/{id}/purchase", 201), uint64_t{kThreads / 2 * kEach});
  EXPECT_EQ(m.Answers("/v1/sales/{id}/purchase", 409), uint64_t{kThreads / 2 * kEach});
  const std::string text = m.Render();
  const std::string purchase = R"(region="singapore",route="/v1/sales/{id}/purchase")";
  EXPECT_NE(text.find("meridian_request_duration_seconds_count{" + purchase + "} " +
                      std::to_string(kThreads * kEach) + "\n"),
            std::string::npos)
      << text;
  // One series per route and status, however many shards counted it.
  const std::string series = "meridian_requests_total{" + purchase + R"(,status="201"})";
  EXPECT_EQ(text.find(series), text.rfind(series));
}

}  // namespace
}  // namespace meridian::node
