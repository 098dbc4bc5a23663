// `meridian bench migration`: how fast an online migration moves users, against a baseline
// that only writes the same bytes into another node. A private cluster starts under the
// legacy policy (every user homed in beijing), with the migration throttle off; US users,
// each with R records of B bytes, are registered in beijing (set-up, not timed). Then the
// current policy is adopted, a migration of beijing's misplaced users starts and its status
// is polled until it ends: users moved per second (wall clock, start to done) and the fence
// durations it reports. The baseline, in the same cluster afterwards: other US users (homed
// in oregon now) get the same records written into oregon by durable PUTs over as many
// connections as the migration moves users at once.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench/bench.h"
#include "bench/cluster.h"
#include "bench/loadgen.h"
#include "bench/report.h"
#include "common/json.h"
#include "common/random.h"
#include "net/http.h"

namespace meridian::bench {
namespace {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr double kTarget = 0.5;  // migration users/s over baseline users/s, at least
constexpr int kSetupConnections = 16;

void Progress(const std::string& what) { std::fprintf(stderr, "migration: %s\n", what.c_str()); }

// Valid US mobile numbers, (650) NXX-XXXX, from a random base; `block` keeps the migrated
// users and the baseline's apart.
std::string UsPhone(int64_t base, int64_t block, int64_t i) {
  constexpr int64_t kFirst = 2'000'000, kSpan = 8'000'000;
  return fmt::format("+1650{:07}", kFirst + (base + block * kSpan / 2 + i) % kSpan);
}

struct User {
  std::string token;
};

class MigrationBench {
 public:
  explicit MigrationBench(const MigrationBenchOptions& o) : o_(o) {}

  int Run() {
    auto st = RunAll();
    if (!st.ok()) {
      std::fprintf(stderr, "meridian bench migration: %s\n", st.message().c_str());
      return 1;
    }
    const bool clean = report_.value("migration_state", "") == "done" &&
                       report_.value("users_failed", int64_t{0}) == 0 &&
                       report_.value("users_moved", int64_t{0}) == o_.users &&
                       report_.value("baseline_failed", int64_t{0}) == 0;
    return clean ? 0 : 3;
  }

 private:
  Status RunAll() {
    if (o_.users < 1 || o_.users > 1'000'000) {
      return Error(Code::kInvalidField, "--users must be 1..1000000");
    }
    if (o_.records < 1 || o_.record_bytes < 1) {
      return Error(Code::kInvalidField, "--records and --record-bytes must be positive");
    }
    if (o_.parallel < 1) return Error(Code::kInvalidField, "--parallel must be positive");
    std::mt19937_64 rng(std::random_device{}());
    phone_base_ = static_cast<int64_t>(rng() % 8'000'000);
    payload_.resize(static_cast<size_t>(o_.record_bytes));
    for (size_t i = 0; i < payload_.size(); ++i) {
      payload_[i] = static_cast<char>('a' + static_cast<int>(rng() % 26));
    }
    ASSIGN_OR_RETURN(http_, net::MakeClient({}));

    Progress("starting a private cluster (legacy policy, no migration throttle)");
    PrivateClusterOptions co;
    co.self_exe = o_.self_exe;
    co.policy = "legacy";
    co.node_knobs = fmt::format("migration_users_per_s = 0\nmigration_parallel = {}", o_.parallel);
    co.storage = o_.storage;
    co.nodes_per_region = o_.nodes_per_region;
    ASSIGN_OR_RETURN(cluster_, PrivateCluster::Start(co));
    ASSIGN_OR_RETURN(source_, cluster_->Endpoint(kSource));
    ASSIGN_OR_RETURN(dest_, cluster_->Endpoint(kDestination));
    report_["storage"] = o_.storage;
    report_["nodes_per_region"] = o_.nodes_per_region;

    std::vector<User> moving;
    RETURN_IF_ERROR(Register(source_, 0, moving));
    RETURN_IF_ERROR(PutRecords(source_, moving, kSetupConnections, "set-up").status());
    RETURN_IF_ERROR(Migrate());
    std::vector<User> baseline;
    RETURN_IF_ERROR(Register(dest_, 1, baseline));
    RETURN_IF_ERROR(Baseline(baseline));

    const double mig = report_.value("migration_users_per_s", 0.0);
    const double base = report_.value("baseline_users_per_s", 0.0);
    const double ratio = base > 0 ? mig / base : 0.0;
    report_["ratio"] = ratio;
    report_["target_ratio"] = kTarget;
    report_["target_met"] = ratio >= kTarget;
    Print();
    if (!o_.json_file.empty()) RETURN_IF_ERROR(WriteJsonFile(o_.json_file, report_));
    return Status::Ok();
  }

  Result<net::HttpResponse> Call(const HttpEndpoint& ep, const std::string& method,
                                 const std::string& target, const std::string& body) {
    net::ClientCall call;
    call.base_url = ep.base_url;
    call.request.method = method;
    call.request.target = target;
    call.request.body = body;
    call.request.headers = {{"authorization", "Bearer " + cluster_->admin_token()}};
    if (!body.empty()) call.request.headers.emplace_back("content-type", "application/json");
    call.timeout = 30s;
    return http_->SendSync(std::move(call));
  }

  Result<Json> Admin(const HttpEndpoint& ep, const std::string& method, const std::string& target,
                     const std::string& body) {
    ASSIGN_OR_RETURN(auto r, Call(ep, method, target, body));
    if (r.status < 200 || r.status > 299) {
      return Error(Code::kInternal,
                   fmt::format("{} {} answered {}: {}", method, target, r.status, r.body));
    }
    return ParseJsonObject(r.body);
  }

  // US users registered at `ep` (their home there), a few passes for transient refusals.
  Status Register(const HttpEndpoint& ep, int64_t block, std::vector<User>& users) {
    Progress(fmt::format("registering {} US users at {}", o_.users, ep.base_url));
    auto started = Clock::now();
    users.assign(static_cast<size_t>(o_.users), {});
    RETURN_IF_ERROR(RegisterAccounts(
        ep, kSetupConnections, users.size(),
        [&](size_t u) {
          return DumpJson({{"country", "US"},
                           {"phone", UsPhone(phone_base_, block, static_cast<int64_t>(u))},
                           {"password", "correct horse battery"}});
        },
        [&](size_t u, std::string_view body) {
          users[u].token = ExtractString(body, "token");
          return !users[u].token.empty();
        }));
    Progress(fmt::format("registered {} users in {:.1f} s", o_.users, SecondsSince(started)));
    return Status::Ok();
  }

  // R records of B bytes for every user, durable PUTs over `connections`; answers the
  // summary with `failed` counting every PUT not answered 200.
  Result<LoadSummary> PutRecords(const HttpEndpoint& ep, const std::vector<User>& users,
                                 int connections, const std::string& what) {
    const size_t per_user = static_cast<size_t>(o_.records);
    const size_t n = users.size() * per_user;
    Progress(fmt::format("{}: {} records of {} B into {} over {} connections", what, n,
                         o_.record_bytes, ep.base_url, connections));
    // User-major order: each user's records leave together, as a user's copy would.
    auto make = [&](size_t i, std::string& out) {
      const User& u = users[i / per_user];
      std::string target = fmt::format("/v1/me/records/bench/r{}", i % per_user);
      AppendRequest(out, ep, "PUT", target, u.token, payload_, "application/octet-stream");
    };
    size_t bad = 0;
    std::string last_error;
    auto on = [&](size_t, const Reply& r) {
      if (r.status == 200 || r.status == 201) return;
      ++bad;
      last_error = fmt::format("{} {}", r.status, r.body.substr(0, 200));
    };
    ASSIGN_OR_RETURN(auto sum, RunClosed(ep, connections, n, make, on, 120s));
    sum.failed = bad;
    if (bad > 0) {
      Progress(fmt::format("{}: {} PUTs failed; last answer: {}", what, bad, last_error));
      if (what == "set-up") return Error(Code::kInternal, "set-up records could not be written");
    }
    return sum;
  }

  Status Migrate() {
    const HttpEndpoint& src = source_;
    ASSIGN_OR_RETURN(Json adopted,
                     Admin(src, "PUT", "/v1/admin/policy", DumpJson({{"builtin", "current"}})));
    Progress(fmt::format("current policy adopted; {} users misplaced",
                         adopted.value("misplaced_users", int64_t{0})));
    Progress(fmt::format("migrating {}'s misplaced users ({} at once, no throttle)", kSource,
                         o_.parallel));
    auto started = Clock::now();
    ASSIGN_OR_RETURN(Json begun, Admin(src, "POST", "/v1/admin/migrations",
                                       DumpJson({{"from", kSource}, {"cohort", "misplaced"}})));
    const std::string id = begun.value("id", "");
    if (id.empty()) return Error(Code::kInternal, "no migration id in " + DumpJson(begun));
    // Bounded: a minute plus a quarter of a second per user.
    const auto deadline = started + 60s + std::chrono::milliseconds(250 * o_.users);
    Json status;
    double wall_s = 0;
    auto last_print = Clock::now();
    for (;;) {
      ASSIGN_OR_RETURN(status, Admin(src, "GET", "/v1/admin/migrations/" + id, {}));
      wall_s = SecondsSince(started);
      if (status.value("state", "") != "running") break;
      if (Clock::now() > deadline) {
        return Error(Code::kUnavailable,
                     fmt::format("migration {} still running after {:.0f} s: {}", id, wall_s,
                                 DumpJson(status)));
      }
      if (Clock::now() - last_print > 5s) {
        last_print = Clock::now();
        Progress(fmt::format("{} of {} moved after {:.0f} s",
                             status.value("users_moved", int64_t{0}),
                             status.value("users_total", int64_t{0}), wall_s));
      }
      std::this_thread::sleep_for(100ms);
    }
    const int64_t moved = status.value("users_moved", int64_t{0});
    const int64_t bytes = status.value("bytes", int64_t{0});
    report_["migration_id"] = id;
    report_["migration_state"] = status.value("state", "");
    report_["users_total"] = status.value("users_total", int64_t{0});
    report_["users_moved"] = moved;
    report_["users_failed"] = status.value("users_failed", int64_t{0});
    report_["migration_bytes"] = bytes;
    report_["migration_wall_s"] = wall_s;
    report_["migration_users_per_s"] = wall_s > 0 ? static_cast<double>(moved) / wall_s : 0.0;
    report_["migration_bytes_per_s"] = wall_s > 0 ? static_cast<double>(bytes) / wall_s : 0.0;
    auto num_or_null = [&](const char* f) {
      return status.contains(f) && status[f].is_number() ? status[f] : Json(nullptr);
    };
    report_["fence_ms_p50"] = num_or_null("fence_ms_p50");
    report_["fence_ms_p99"] = num_or_null("fence_ms_p99");
    report_["migration_status"] = status;
    Progress(fmt::format("migration {}: {} moved, {} failed in {:.2f} s", status.value("state", ""),
                         moved, status.value("users_failed", int64_t{0}), wall_s));
    return Status::Ok();
  }

  Status Baseline(const std::vector<User>& users) {
    auto started = Clock::now();
    ASSIGN_OR_RETURN(auto sum, PutRecords(dest_, users, o_.parallel, "baseline"));
    const double wall_s = SecondsSince(started);
    const int64_t puts = static_cast<int64_t>(users.size()) * o_.records;
    const int64_t ok_puts = puts - static_cast<int64_t>(sum.failed);
    report_["baseline_users"] = users.size();
    report_["baseline_puts"] = puts;
    report_["baseline_failed"] = sum.failed;
    report_["baseline_bytes"] = ok_puts * o_.record_bytes;
    report_["baseline_wall_s"] = wall_s;
    report_["baseline_users_per_s"] = wall_s > 0 ? static_cast<double>(users.size()) / wall_s : 0.0;
    report_["baseline_bytes_per_s"] =
        wall_s > 0 ? static_cast<double>(ok_puts * o_.record_bytes) / wall_s : 0.0;
    report_["baseline_generator_cpu_s"] = sum.generator_cpu_s;
    return Status::Ok();
  }

  void Print() {
    report_["benchmark"] = "migration";
    report_["command"] = o_.command_line;
    report_["machine"] = MachineFacts();
    report_["users"] = o_.users;
    report_["records"] = o_.records;
    report_["record_bytes"] = o_.record_bytes;
    report_["parallel"] = o_.parallel;
    report_["from"] = kSource;
    report_["to"] = kDestination;
    const Json& r = report_;
    auto fence = [&](const char* f) {
      return r[f].is_number() ? fmt::format("{:.1f}", r[f].get<double>()) : std::string("-");
    };
    std::printf(
        "meridian bench migration: %lld US users x %lld records of %lld B, %s -> %s, "
        "%d at once\n\n",
        static_cast<long long>(o_.users), static_cast<long long>(o_.records),
        static_cast<long long>(o_.record_bytes), kSource, kDestination, o_.parallel);
    std::printf("%-34s %12s %12s %10s\n", "", "users/s", "MB/s", "wall s");
    std::printf("%-34s %12.1f %12.2f %10.2f\n", "migration (legacy -> current)",
                r.value("migration_users_per_s", 0.0), r.value("migration_bytes_per_s", 0.0) / 1e6,
                r.value("migration_wall_s", 0.0));
    std::printf("%-34s %12.1f %12.2f %10.2f\n", "baseline (durable PUTs into oregon)",
                r.value("baseline_users_per_s", 0.0), r.value("baseline_bytes_per_s", 0.0) / 1e6,
                r.value("baseline_wall_s", 0.0));
    std::printf("\nmoved %lld of %lld (failed %lld, state %s); baseline PUTs failed %lld\n",
                static_cast<long long>(r.value("users_moved", int64_t{0})),
                static_cast<long long>(r.value("users_total", int64_t{0})),
                static_cast<long long>(r.value("users_failed", int64_t{0})),
                r.value("migration_state", "").c_str(),
                static_cast<long long>(r.value("baseline_failed", int64_t{0})));
    std::printf("fence ms: p50 %s, p99 %s\n", fence("fence_ms_p50").c_str(),
                fence("fence_ms_p99").c_str());
    std::printf("ratio migration/baseline: %.2fx (target >= %.1fx: %s)\n", r.value("ratio", 0.0),
                kTarget, r.value("target_met", false) ? "met" : "missed");
  }

  static constexpr const char* kSource = "beijing";
  static constexpr const char* kDestination = "oregon";

  const MigrationBenchOptions& o_;
  std::unique_ptr<net::HttpClient> http_;
  std::unique_ptr<PrivateCluster> cluster_;
  HttpEndpoint source_, dest_;
  int64_t phone_base_ = 0;
  std::string payload_;
  Json report_ = Json::object();
};

}  // namespace

int RunMigrationBench(const MigrationBenchOptions& options) {
  return MigrationBench(options).Run();
}

}  // namespace meridian::bench
