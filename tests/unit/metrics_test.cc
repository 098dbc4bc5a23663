// The node's Prometheus counters: one lookup per request keeps requests, answers and the
// latency histogram of a route together.
#include "node/metrics.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace meridian::node
