// What the benchmarks print and write: latency percentiles per outcome, the facts about the
// run (date, cores, load), and JSON files for scripts/bench-flash-report.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace meridian::bench {

struct LatencySummary {
  size_t count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};
// Nearest-rank percentiles; sorts `ns` in place.
LatencySummary Summarize(std::vector<int64_t>& ns);

// Latencies grouped by outcome, printed as one row per outcome plus "all".
class OutcomeTable {
 public:
  // The outcomes in the order they are printed (each always gets a row).
  explicit OutcomeTable(std::vector<std::string> order);
  void Add(std::string_view outcome, int64_t latency_ns);
  size_t Count(std::string_view outcome) const;
  // Sorts the latencies: call once, after the run.
  Json ToJson();
  std::string Format();

 private:
  void SummarizeAll();
  std::vector<std::string> order_;
  std::map<std::string, std::vector<int64_t>, std::less<>> by_outcome_;
  std::map<std::string, LatencySummary, std::less<>> summaries_;
  bool summarized_ = false;
};

// Date (UTC, RFC 3339), core count and load average of this machine now.
Json MachineFacts();
Status WriteJsonFile(const std::string& path, const Json& doc);
// Seconds of the steady clock since `t`.
double SecondsSince(std::chrono::steady_clock::time_point t);
// A top-level string field of a small JSON answer, found without parsing it (the load
// generators read tokens and ids from thousands of answers); "" when absent.
std::string ExtractString(std::string_view body, std::string_view field);
// "1.23 k" style figures for the printed tables.
std::string Rate(double per_s);

}  // namespace meridian::bench
