// Prometheus metrics of a node. Labels are route templates, status codes and region
// names only: never a path, a query or anything a user sent.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace meridian::node {

class Metrics {
 public:
  explicit Metrics(std::string region) : region_(std::move(region)) {}
  // A request answered. `answer`: it is also an answer to a client, counted once at the node
  // the client reached (a request forwarded to its home region is counted there as a
  // request, not again as an answer): summed over the regions, answers are the cluster's,
  // e.g. purchases and sold-out per second.
  void ObserveRequest(std::string_view route, int status, double seconds, bool answer);
  uint64_t Answers(std::string_view route, int status) const;
  void CountForward(std::string_view destination, bool ok);
  void CountRedirect(std::string_view destination);
  void SetGauge(std::string_view name, double value);
  std::string Render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
  };
  struct Route {
    std::map<int, uint64_t> requests;  // by status
    std::map<int, uint64_t> answers;   // by status
    Histogram latency;
  };
  using Routes = std::map<std::string, Route, std::less<>>;
  // Requests are counted in the calling thread's shard, so event loops do not wait for each
  // other here; reading sums the shards. Shards are handed out in turn, one per thread that
  // counts: threads share one only past kShards (a node has its event loops, its workers and
  // a few more).
  struct alignas(64) Shard {
    mutable std::mutex mu;
    Routes routes;  // one lookup per request
  };
  static constexpr size_t kShards = 64;
  Shard& ThisThreadsShard();
  Routes Merged() const;

  std::array<Shard, kShards> shards_;
  mutable std::mutex mu_;  // the rest
  std::string region_;
  std::map<std::pair<std::string, std::string>, uint64_t> forwards_;
  std::map<std::string, uint64_t> redirects_;
  std::map<std::string, double> gauges_;
};

}  // namespace meridian::node
