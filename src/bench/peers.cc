// The peers' side of the flash-sale benchmark, driven by the same open-loop generator as
// Meridian: any HTTP URL (nginx's fixed answer) and Redis running the Lua stock decrement.
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/bench.h"
#include "bench/loadgen.h"
#include "bench/report.h"
#include "common/json.h"

namespace meridian::bench {
namespace {

// The classic flash-sale decrement: one atomic script per purchase, -1 when sold out.
constexpr const char* kDecrScript =
    "local s = tonumber(redis.call('GET', KEYS[1])) "
    "if s and s > 0 then return redis.call('DECR', KEYS[1]) end "
    "return -1";

// Offered above capacity, the backlog drains after the schedule ends; bounded all the same.
constexpr std::chrono::milliseconds kDrain{120'000};

std::string Resp(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

size_t RequestsFor(double rate, double duration_s) {
  return static_cast<size_t>(rate * duration_s);
}

Json RunJson(const std::string& benchmark, const std::string& command, int connections,
             const LoadSummary& sum, OutcomeTable& table) {
  Json j = {{"benchmark", benchmark},
            {"command", command},
            {"machine", MachineFacts()},
            {"connections", connections},
            {"requests", sum.requests},
            {"rate_offered", sum.offered_rate},
            {"schedule_s", static_cast<double>(sum.last_scheduled_ns) / 1e9},
            {"rate_achieved", sum.achieved_rate},
            {"answered", sum.answered},
            {"failed", sum.failed},
            {"reconnects", sum.reconnects},
            {"generator_cpu_s", sum.generator_cpu_s},
            {"last_answer_s", static_cast<double>(sum.last_done_ns) / 1e9}};
  j["outcomes"] = table.ToJson();
  return j;
}

void PrintRun(const std::string& title, int connections, const LoadSummary& sum,
              OutcomeTable& table) {
  std::printf("%s\n", title.c_str());
  std::printf(
      "offered %s/s over %.2f s on %d connections; achieved %s/s (%zu answered, %zu "
      "without answer)\n\n%s",
      Rate(sum.offered_rate).c_str(), static_cast<double>(sum.last_scheduled_ns) / 1e9, connections,
      Rate(sum.achieved_rate).c_str(), sum.answered, sum.failed, table.Format().c_str());
}

int Fail(const char* what, const Status& st) {
  std::fprintf(stderr, "meridian bench %s: %s\n", what, st.message().c_str());
  return 1;
}

}  // namespace

int RunHttpBench(const HttpBenchOptions& o) {
  auto ep = ParseHttpUrl(o.url);
  if (!ep.ok()) return Fail("http", ep.status());
  const std::string request = o.method + " " + ep->path + " HTTP/1.1\r\nHost: " + ep->host + ":" +
                              std::to_string(ep->port) + "\r\n\r\n";
  OutcomeTable table({"2xx", "other_status", "error"});
  LoadOptions lo;
  lo.host = ep->host;
  lo.port = ep->port;
  lo.connections = o.connections;
  lo.rate = o.rate;
  lo.requests = RequestsFor(o.rate, o.duration_s);
  lo.drain = kDrain;
  if (lo.rate <= 0 || lo.requests < 2) {
    return Fail("http", Error(Code::kInvalidField, "rate x duration gives under 2 requests"));
  }
  auto sum = RunLoad(
      lo, [&](size_t, std::string& out) { out = request; },
      [&](size_t, const Reply& r) {
        const char* outcome = r.status == 0                       ? "error"
                              : r.status >= 200 && r.status < 300 ? "2xx"
                                                                  : "other_status";
        table.Add(outcome, r.done_ns - r.scheduled_ns);
      });
  if (!sum.ok()) return Fail("http", sum.status());
  PrintRun(fmt::format("meridian bench http: {} {}", o.method, o.url), o.connections, *sum, table);
  if (!o.json_file.empty()) {
    Json j = RunJson("http", o.command_line, o.connections, *sum, table);
    j["url"] = o.url;
    if (auto st = WriteJsonFile(o.json_file, j); !st.ok()) return Fail("http", st);
  }
  return 0;
}

int RunRedisDecrBench(const RedisBenchOptions& o) {
  LoadOptions lo;
  lo.host = o.host;
  lo.port = static_cast<uint16_t>(o.port);
  lo.protocol = Protocol::kResp;
  lo.connections = o.connections;
  const size_t requests = RequestsFor(o.rate, o.duration_s);
  if (o.rate <= 0 || requests < 2) {
    return Fail("redis-decr", Error(Code::kInvalidField, "rate x duration gives under 2 requests"));
  }
  const int64_t stock = o.stock > 0 ? o.stock : static_cast<int64_t>(requests) + 1;

  // Set-up, closed loop on one connection: the stock, the script, and what durability the
  // server runs with (for the report).
  const std::vector<std::string> setup = {
      Resp({"SET", "stock", std::to_string(stock)}), Resp({"SCRIPT", "LOAD", kDecrScript}),
      Resp({"CONFIG", "GET", "appendonly"}), Resp({"CONFIG", "GET", "appendfsync"})};
  std::vector<std::string> answers(setup.size());
  bool setup_ok = true;
  LoadOptions so = lo;
  so.connections = 1;
  so.rate = 0;
  so.requests = setup.size();
  auto set = RunLoad(
      so, [&](size_t i, std::string& out) { out = setup[i]; },
      [&](size_t i, const Reply& r) {
        setup_ok &= r.status == 200;
        answers[i] = std::string(r.body);
      });
  if (!set.ok()) return Fail("redis-decr", set.status());
  if (!setup_ok) return Fail("redis-decr", Error(Code::kInternal, "set-up failed: " + answers[1]));
  const std::string sha = answers[1];
  // CONFIG GET answers [name, value]: the value is the last line of the payload.
  auto config_value = [](const std::string& payload) {
    std::string s = payload;
    while (s.size() >= 2 && s.substr(s.size() - 2) == "\r\n") s.resize(s.size() - 2);
    size_t nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
  };
  const std::string appendonly = config_value(answers[2]);
  const std::string appendfsync = config_value(answers[3]);

  const std::string request = Resp({"EVALSHA", sha, "1", "stock"});
  OutcomeTable table({"decremented", "sold_out", "error_reply", "error"});
  lo.rate = o.rate;
  lo.requests = requests;
  lo.drain = kDrain;
  auto sum = RunLoad(
      lo, [&](size_t, std::string& out) { out = request; },
      [&](size_t, const Reply& r) {
        const char* outcome = r.status == 0     ? "error"
                              : r.status != 200 ? "error_reply"
                              : r.body == "-1"  ? "sold_out"
                                                : "decremented";
        table.Add(outcome, r.done_ns - r.scheduled_ns);
      });
  if (!sum.ok()) return Fail("redis-decr", sum.status());
  PrintRun(fmt::format("meridian bench redis-decr: EVALSHA stock decrement at {}:{} (appendonly "
                       "{}, appendfsync {})",
                       o.host, o.port, appendonly, appendfsync),
           o.connections, *sum, table);
  if (!o.json_file.empty()) {
    Json j = RunJson("redis-decr", o.command_line, o.connections, *sum, table);
    j["appendonly"] = appendonly;
    j["appendfsync"] = appendfsync;
    j["script"] = kDecrScript;
    j["stock_before"] = stock;
    if (auto st = WriteJsonFile(o.json_file, j); !st.ok()) return Fail("redis-decr", st);
  }
  return 0;
}

}  // namespace meridian::bench
