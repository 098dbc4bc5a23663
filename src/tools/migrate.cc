// `meridian migrate plan|start|status|pause|resume|verify`: the operator's side of moving
// users between regions, over the admin API of any node (the node asks the coordinating
// region, the one users leave).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "net/http.h"
#include "tools/admin_client.h"
#include "tools/tools.h"

namespace meridian::tools {
namespace {

// Exit 2 for usage (kInvalidField) and connection (kUnavailable: no answer) problems; 1 for
// the cluster's error answers (kIntegrityError, or kOverloaded for a 5xx a watch waits out).
Status Refused(std::string message) { return Error(Code::kIntegrityError, std::move(message)); }

int Fail(const Status& st) {
  std::fprintf(stderr, "meridian migrate: %s\n", st.message().c_str());
  return st.code() == Code::kInvalidField || st.code() == Code::kUnavailable ? 2 : 1;
}

// `method target` with the admin token; the answer's JSON object when it is a 2xx.
Result<Json> Call(sdk::Client& c, const std::string& method, const std::string& target,
                  std::string body = {}) {
  auto r = c.Call(method, target, std::move(body));
  if (!r.ok()) return Error(Code::kUnavailable, "cannot reach the node: " + r.status().message());
  if (r->status < 200 || r->status > 299) {
    std::string message = ErrorMessageOf(*r);
    if (message.empty()) message = fmt::format("{} {} answered HTTP {}", method, target, r->status);
    // A region that is down or busy (the coordinator, when another node asks it) may answer
    // later.
    return r->status >= 500 ? Error(Code::kOverloaded, std::move(message))
                            : Refused(std::move(message));
  }
  auto j = ParseJsonObject(r->body);
  if (!j.ok()) return Refused(fmt::format("{} {} answered no JSON object", method, target));
  return j;
}

std::string MigrationPath(const std::string& id, std::string_view action = {}) {
  std::string path = "/v1/admin/migrations/" + net::PercentEncode(id);
  if (!action.empty()) path += "/" + std::string(action);
  return path;
}

std::string HumanBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

// Typed fields of an answer, never throwing on a missing field or one of another type.
Json FieldOf(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key] : Json();
}
int64_t IntOf(const Json& j, const char* key) {
  const Json v = FieldOf(j, key);
  return v.is_number() ? v.get<int64_t>() : 0;
}
double NumberOf(const Json& j, const char* key) {
  const Json v = FieldOf(j, key);
  return v.is_number() ? v.get<double>() : 0.0;
}
std::string StringOf(const Json& j, const char* key, std::string fallback = "?") {
  const Json v = FieldOf(j, key);
  return v.is_string() ? v.get<std::string>() : fallback;
}
bool BoolOf(const Json& j, const char* key) {
  const Json v = FieldOf(j, key);
  return v.is_boolean() && v.get<bool>();
}

std::string Pretty(const Json& j) { return j.dump(2, ' ', false, Json::error_handler_t::replace); }

// "12 ms", or "-" when the migration has no such figure yet.
std::string MsOf(const Json& m, const char* key) {
  const Json v = FieldOf(m, key);
  return v.is_number() ? fmt::format("{:.0f} ms", v.get<double>()) : "-";
}

std::string EtaOf(const Json& m) {
  const Json v = FieldOf(m, "eta_s");
  if (!v.is_number() || v.get<double>() < 0) return "?";
  return fmt::format("{:.0f} s", std::ceil(v.get<double>()));
}

// One line of a migration's progress; with `bar`, led by a progress bar (for a terminal).
std::string ProgressLine(const Json& m, bool bar) {
  const int64_t total = IntOf(m, "users_total");
  const int64_t moved = IntOf(m, "users_moved");
  const int64_t failed = IntOf(m, "users_failed");
  std::string out;
  if (bar) {
    constexpr int kWidth = 20;
    const int filled =
        total <= 0 ? kWidth : static_cast<int>(std::min<int64_t>(kWidth, moved * kWidth / total));
    out = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }
  out += fmt::format("{}/{} users", moved, total);
  if (failed > 0) out += fmt::format(" ({} failed)", failed);
  out += fmt::format(", {:.1f} users/s, ETA {}, fence p99 {}, state {}",
                     NumberOf(m, "rate_users_per_s"), EtaOf(m), MsOf(m, "fence_ms_p99"),
                     StringOf(m, "state"));
  if (BoolOf(m, "paused")) out += ", paused";
  return out;
}

// A migration's facts as plain lines (when stdout is no terminal).
std::string StatusLines(const Json& m) {
  return fmt::format(
      "id: {}\n"
      "state: {}\n"
      "paused: {}\n"
      "users: {}/{} moved, {} failed\n"
      "rate: {:.1f} users/s\n"
      "eta: {}\n"
      "fence: p50 {}, p99 {}\n"
      "bytes: {}\n",
      StringOf(m, "id"), StringOf(m, "state"), BoolOf(m, "paused") ? "true" : "false",
      IntOf(m, "users_moved"), IntOf(m, "users_total"), IntOf(m, "users_failed"),
      NumberOf(m, "rate_users_per_s"), EtaOf(m), MsOf(m, "fence_ms_p50"), MsOf(m, "fence_ms_p99"),
      HumanBytes(static_cast<double>(IntOf(m, "bytes"))));
}

void PrintMigration(const Json& m, bool json) {
  if (json) {
    std::printf("%s\n", Pretty(m).c_str());
  } else if (isatty(STDOUT_FILENO)) {
    std::printf("%s\n", ProgressLine(m, true).c_str());
  } else {
    std::fputs(StatusLines(m).c_str(), stdout);
  }
}

Status NeedId(const MigrateArgs& a) {
  return a.id.empty() ? Error(Code::kInvalidField, "--id is needed") : Status::Ok();
}

Result<std::unique_ptr<sdk::Client>> Connect(const MigrateArgs& a) {
  return ConnectAdmin(a.url, a.ca_file, a.admin_token_file);
}

Status Plan(const MigrateArgs& a) {
  ASSIGN_OR_RETURN(auto c, Connect(a));
  ASSIGN_OR_RETURN(auto plan,
                   Call(*c, "GET", "/v1/admin/migration-plan?from=" + net::PercentEncode(a.from)));
  if (a.json) {
    std::printf("%s\n", Pretty(plan).c_str());
    return Status::Ok();
  }
  const Json destinations = FieldOf(plan, "destinations");
  std::string out = fmt::format("migration plan from {} (policy version {})\n",
                                StringOf(plan, "from", a.from), IntOf(plan, "policy_version"));
  out += fmt::format("{:<16} {:>10} {:>12}\n", "destination", "users", "bytes");
  if (destinations.is_object()) {
    for (const auto& [name, d] : destinations.items()) {
      out += fmt::format("{:<16} {:>10} {:>12}\n", name, IntOf(d, "users"),
                         HumanBytes(static_cast<double>(IntOf(d, "bytes"))));
    }
  }
  out += fmt::format("{:<16} {:>10} {:>12}\n", "total", IntOf(plan, "users_total"),
                     HumanBytes(static_cast<double>(IntOf(plan, "bytes_total"))));
  std::fputs(out.c_str(), stdout);
  return Status::Ok();
}

Status Start(const MigrateArgs& a) {
  ASSIGN_OR_RETURN(auto c, Connect(a));
  ASSIGN_OR_RETURN(auto started, Call(*c, "POST", "/v1/admin/migrations",
                                      DumpJson({{"from", a.from}, {"cohort", a.cohort}})));
  const Json id = FieldOf(started, "id");
  if (!id.is_string()) return Refused("the answer names no migration id");
  if (a.json) {
    std::printf("%s\n", Pretty(started).c_str());
  } else {
    std::printf("%s\n", id.get<std::string>().c_str());
  }
  return Status::Ok();
}

// Prints the migration once, or with --watch until it is no longer running: then exit 0
// when it is done, 1 otherwise.
Result<int> Show(const MigrateArgs& a) {
  RETURN_IF_ERROR(NeedId(a));
  ASSIGN_OR_RETURN(auto c, Connect(a));
  const std::string path = MigrationPath(a.id);
  if (!a.watch) {
    ASSIGN_OR_RETURN(auto m, Call(*c, "GET", path));
    PrintMigration(m, a.json);
    return 0;
  }
  const bool tty = !a.json && isatty(STDOUT_FILENO);
  const auto interval = std::chrono::milliseconds(std::max(10, a.interval_ms));
  // A node restarting (or the coordinator it asks) is waited for, up to this long.
  constexpr auto kUnreachableLimit = std::chrono::seconds(30);
  auto reachable_at = std::chrono::steady_clock::now();
  for (;;) {
    auto m = Call(*c, "GET", path);
    if (!m.ok()) {
      const Code code = m.status().code();
      if ((code != Code::kUnavailable && code != Code::kOverloaded) ||
          std::chrono::steady_clock::now() - reachable_at > kUnreachableLimit) {
        if (tty) std::printf("\n");
        return m.status();
      }
      std::this_thread::sleep_for(interval);
      continue;
    }
    reachable_at = std::chrono::steady_clock::now();
    const std::string state = StringOf(*m, "state", "");
    if (a.json) {
      std::printf("%s\n", DumpJson(*m).c_str());
    } else if (tty) {
      std::printf("\r%s\x1b[K", ProgressLine(*m, true).c_str());
    } else {
      std::printf("%s\n", ProgressLine(*m, false).c_str());
    }
    std::fflush(stdout);
    if (state != "running") {
      if (tty) std::printf("\n");
      return state == "done" ? 0 : 1;
    }
    std::this_thread::sleep_for(interval);
  }
}

Status SetPaused(const MigrateArgs& a, bool paused) {
  RETURN_IF_ERROR(NeedId(a));
  ASSIGN_OR_RETURN(auto c, Connect(a));
  ASSIGN_OR_RETURN(auto m, Call(*c, "POST", MigrationPath(a.id, paused ? "pause" : "resume")));
  PrintMigration(m, a.json);
  return Status::Ok();
}

// Exit 0 when every moved user checks out, 1 naming the problems.
Result<int> Verify(const MigrateArgs& a) {
  RETURN_IF_ERROR(NeedId(a));
  ASSIGN_OR_RETURN(auto c, Connect(a));
  // The server checks whatever steps it holds under the id: an unknown id would pass.
  RETURN_IF_ERROR(Call(*c, "GET", MigrationPath(a.id)).status());
  ASSIGN_OR_RETURN(auto v, Call(*c, "POST", MigrationPath(a.id, "verify")));
  const bool ok = BoolOf(v, "ok");
  if (a.json) {
    std::printf("%s\n", Pretty(v).c_str());
    return ok ? 0 : 1;
  }
  const Json problems = FieldOf(v, "problems");
  std::string out = fmt::format("{}: {} users checked, {}\n", StringOf(v, "id", a.id),
                                IntOf(v, "checked"), ok ? "ok" : "PROBLEMS");
  if (problems.is_array()) {
    for (const auto& p : problems) {
      out += p.is_object() ? fmt::format("  {}: {}\n", StringOf(p, "user"), StringOf(p, "problem"))
                           : fmt::format("  {}\n", DumpJson(p));
    }
  }
  std::fputs(out.c_str(), stdout);
  return ok ? 0 : 1;
}

int Exit(const Status& st) { return st.ok() ? 0 : Fail(st); }
int Exit(const Result<int>& r) { return r.ok() ? *r : Fail(r.status()); }

}  // namespace

int MigratePlan(const MigrateArgs& a) { return Exit(Plan(a)); }
int MigrateStart(const MigrateArgs& a) { return Exit(Start(a)); }
int MigrateStatus(const MigrateArgs& a) { return Exit(Show(a)); }
int MigratePause(const MigrateArgs& a) { return Exit(SetPaused(a, true)); }
int MigrateResume(const MigrateArgs& a) { return Exit(SetPaused(a, false)); }
int MigrateVerify(const MigrateArgs& a) { return Exit(Verify(a)); }

}  // namespace meridian::tools
