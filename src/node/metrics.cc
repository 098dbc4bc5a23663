#include "node/metrics.h"

#include <atomic>
#include <iterator>

#include <fmt/format.h>

namespace meridian::node {

Metrics::Shard& Metrics::ThisThreadsShard() {
  static std::atomic<size_t> next{0};
  thread_local const size_t index = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shards_[index];
}

void Metrics::ObserveRequest(std::string_view route, int status, double seconds, bool answer) {
  Shard& shard = ThisThreadsShard();
  std::lock_guard lock(shard.mu);
  auto it = shard.routes.find(route);
  if (it == shard.routes.end()) it = shard.routes.emplace(std::string(route), Route{}).first;
  Route& r = it->second;
  ++r.requests[status];
  if (answer) ++r.answers[status];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++r.latency.counts[i];
  }
  ++r.latency.count;
  r.latency.sum += seconds;
}

Metrics::Routes Metrics::Merged() const {
  Routes all;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (const auto& [name, r] : shard.routes) {
      Route& sum = all[name];
      for (const auto& [status, n] : r.requests) sum.requests[status] += n;
      for (const auto& [status, n] : r.answers) sum.answers[status] += n;
      for (size_t i = 0; i < kBuckets.size(); ++i) sum.latency.counts[i] += r.latency.counts[i];
      sum.latency.count += r.latency.count;
      sum.latency.sum += r.latency.sum;
    }
  }
  return all;
}

uint64_t Metrics::Answers(std::string_view route, int status) const {
  const Routes routes = Merged();  // read by the console's overview, not per request
  auto it = routes.find(route);
  if (it == routes.end()) return 0;
  auto a = it->second.answers.find(status);
  return a == it->second.answers.end() ? 0 : a->second;
}

void Metrics::CountForward(std::string_view destination, bool ok) {
  std::lock_guard lock(mu_);
  ++forwards_[{std::string(destination), ok ? "ok" : "error"}];
}

void Metrics::CountRedirect(std::string_view destination) {
  std::lock_guard lock(mu_);
  ++redirects_[std::string(destination)];
}

void Metrics::SetGauge(std::string_view name, double value) {
  std::lock_guard lock(mu_);
  gauges_[std::string(name)] = value;
}

std::string Metrics::Render() const {
  const Routes routes = Merged();
  std::lock_guard lock(mu_);
  std::string out;
  auto app = [&]<typename... A>(fmt::format_string<A...> f, A&&... a) {
    fmt::format_to(std::back_inserter(out), f, std::forward<A>(a)...);
  };
  app("# HELP meridian_requests_total HTTP requests answered, by route template and status.\n");
  app("# TYPE meridian_requests_total counter\n");
  for (const auto& [route, r] : routes) {
    for (const auto& [status, n] : r.requests) {
      app("meridian_requests_total{{region=\"{}\",route=\"{}\",status=\"{}\"}} {}\n", region_,
          route, status, n);
    }
  }
  app("# HELP meridian_request_duration_seconds Time to answer, by route template.\n");
  app("# TYPE meridian_request_duration_seconds histogram\n");
  for (const auto& [route, r] : routes) {
    const Histogram& h = r.latency;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      app("meridian_request_duration_seconds_bucket{{region=\"{}\",route=\"{}\",le=\"{}\"}} {}\n",
          region_, route, kBuckets[i], h.counts[i]);
    }
    app("meridian_request_duration_seconds_bucket{{region=\"{}\",route=\"{}\",le=\"+Inf\"}} {}\n",
        region_, route, h.count);
    app("meridian_request_duration_seconds_sum{{region=\"{}\",route=\"{}\"}} {}\n", region_, route,
        h.sum);
    app("meridian_request_duration_seconds_count{{region=\"{}\",route=\"{}\"}} {}\n", region_,
        route, h.count);
  }
  app("# HELP meridian_answers_total Answers to clients, counted at the node they reached.\n");
  app("# TYPE meridian_answers_total counter\n");
  for (const auto& [route, r] : routes) {
    for (const auto& [status, n] : r.answers) {
      app("meridian_answers_total{{region=\"{}\",route=\"{}\",status=\"{}\"}} {}\n", region_, route,
          status, n);
    }
  }
  app("# HELP meridian_forwards_total Requests forwarded to another region, by destination.\n");
  app("# TYPE meridian_forwards_total counter\n");
  for (const auto& [k, v] : forwards_) {
    app("meridian_forwards_total{{region=\"{}\",destination=\"{}\",result=\"{}\"}} {}\n", region_,
        k.first, k.second, v);
  }
  app("# HELP meridian_redirects_total Requests redirected to their home region.\n");
  app("# TYPE meridian_redirects_total counter\n");
  for (const auto& [k, v] : redirects_) {
    app("meridian_redirects_total{{region=\"{}\",destination=\"{}\"}} {}\n", region_, k, v);
  }
  for (const auto& [k, v] : gauges_) {
    app("# TYPE {} gauge\n{}{{region=\"{}\"}} {}\n", k, k, region_, v);
  }
  return out;
}

}  // namespace meridian::node
