#include "bench/report.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "common/clock.h"
#include "config/cluster.h"

namespace meridian::bench {

LatencySummary Summarize(std::vector<int64_t>& ns) {
  LatencySummary s;
  s.count = ns.size();
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(ns.size())));
    size_t idx = rank == 0 ? 0 : std::min(rank - 1, ns.size() - 1);
    return static_cast<double>(ns[idx]) / 1e6;
  };
  s.p50_ms = at(0.50);
  s.p90_ms = at(0.90);
  s.p99_ms = at(0.99);
  s.p999_ms = at(0.999);
  s.max_ms = static_cast<double>(ns.back()) / 1e6;
  return s;
}

OutcomeTable::OutcomeTable(std::vector<std::string> order) : order_(std::move(order)) {
  for (const auto& o : order_) by_outcome_[o];
}

void OutcomeTable::Add(std::string_view outcome, int64_t latency_ns) {
  auto it = by_outcome_.find(outcome);
  if (it == by_outcome_.end()) {
    order_.emplace_back(outcome);
    it = by_outcome_.emplace(std::string(outcome), std::vector<int64_t>{}).first;
  }
  it->second.push_back(latency_ns);
}

size_t OutcomeTable::Count(std::string_view outcome) const {
  auto it = by_outcome_.find(outcome);
  return it == by_outcome_.end() ? 0 : it->second.size();
}

void OutcomeTable::SummarizeAll() {
  if (summarized_) return;
  summarized_ = true;
  std::vector<int64_t> all;
  for (auto& [name, ns] : by_outcome_) {
    all.insert(all.end(), ns.begin(), ns.end());
    summaries_[name] = Summarize(ns);
  }
  summaries_["all"] = Summarize(all);
}

Json OutcomeTable::ToJson() {
  SummarizeAll();
  Json out = Json::object();
  for (const auto& [name, s] : summaries_) {
    out[name] = {{"count", s.count},   {"p50_ms", s.p50_ms},   {"p90_ms", s.p90_ms},
                 {"p99_ms", s.p99_ms}, {"p999_ms", s.p999_ms}, {"max_ms", s.max_ms}};
  }
  return out;
}

std::string OutcomeTable::Format() {
  SummarizeAll();
  std::string out = fmt::format("{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "outcome", "count",
                                "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms");
  auto row = [&](const std::string& name) {
    const auto& s = summaries_[name];
    if (s.count == 0) {
      out += fmt::format("{:<14} {:>9}\n", name, 0);
      return;
    }
    out += fmt::format("{:<14} {:>9} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}\n", name, s.count,
                       s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms);
  };
  for (const auto& name : order_) row(name);
  row("all");
  return out;
}

Json MachineFacts() {
  std::string load = config::ReadFileOr("/proc/loadavg");
  double l1 = 0, l5 = 0, l15 = 0;
  if (std::sscanf(load.c_str(), "%lf %lf %lf", &l1, &l5, &l15) != 3) l1 = l5 = l15 = -1;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return {{"date", FormatRfc3339(now)},
          {"cores", sysconf(_SC_NPROCESSORS_ONLN)},
          {"load_average", {l1, l5, l15}}};
}

Status WriteJsonFile(const std::string& path, const Json& doc) {
  return config::WriteFileAtomic(path, doc.dump(2) + "\n");
}

std::string Rate(double per_s) {
  if (per_s >= 1e6) return fmt::format("{:.2f} M", per_s / 1e6);
  if (per_s >= 1e3) return fmt::format("{:.1f} k", per_s / 1e3);
  return fmt::format("{:.0f}", per_s);
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string ExtractString(std::string_view body, std::string_view field) {
  std::string needle = "\"" + std::string(field) + "\":\"";
  size_t at = body.find(needle);
  if (at == std::string_view::npos) return {};
  at += needle.size();
  size_t end = body.find('"', at);
  return end == std::string_view::npos ? std::string() : std::string(body.substr(at, end - at));
}

}  // namespace meridian::bench
