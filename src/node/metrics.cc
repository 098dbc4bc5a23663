#include "node/metrics.h"

#include <iterator>

#include <fmt/format.h>

namespace meridian::node {

void Metrics::ObserveRequest(std::string_view route, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{std::string(route), status}];
  auto& h = latency_[std::string(route)];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++h.counts[i];
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::CountAnswer(std::string_view route, int status) {
  std::lock_guard lock(mu_);
  ++answers_[{std::string(route), status}];
}

uint64_t Metrics::Answers(std::string_view route, int status) const {
  std::lock_guard lock(mu_);
  auto it = answers_.find(std::pair<std::string, int>(route, status));
  return it == answers_.end() ? 0 : it->second;
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
  std::lock_guard lock(mu_);
  std::string out;
  auto app = [&]<typename... A>(fmt::format_string<A...> f, A&&... a) {
    fmt::format_to(std::back_inserter(out), f, std::forward<A>(a)...);
  };
  app("# HELP meridian_requests_total HTTP requests answered, by route template and status.\n");
  app("# TYPE meridian_requests_total counter\n");
  for (const auto& [k, v] : requests_) {
    app("meridian_requests_total{{region=\"{}\",route=\"{}\",status=\"{}\"}} {}\n", region_,
        k.first, k.second, v);
  }
  app("# HELP meridian_request_duration_seconds Time to answer, by route template.\n");
  app("# TYPE meridian_request_duration_seconds histogram\n");
  for (const auto& [route, h] : latency_) {
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
  for (const auto& [k, v] : answers_) {
    app("meridian_answers_total{{region=\"{}\",route=\"{}\",status=\"{}\"}} {}\n", region_, k.first,
        k.second, v);
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
