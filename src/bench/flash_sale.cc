// `meridian bench flash-sale`: set-up (cluster, buyers, product, sale) is done first and not
// measured; then purchases leave on a fixed schedule (loadgen.h), each buyer pressing once
// with its own Idempotency-Key; then the home node is killed with SIGKILL and restarted, and
// the acknowledged orders are looked for in the buyers' order lists and in the sale's stats.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "bench/bench.h"
#include "bench/cluster.h"
#include "bench/loadgen.h"
#include "bench/report.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/random.h"
#include "config/cluster.h"
#include "net/http.h"

namespace meridian::bench {
namespace {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int64_t kSoldOutBuyers = 2000;  // buyers cycled through in sold-out mode
constexpr int64_t kSoldOutChecked = 500;  // buyers told sold out whose orders are checked

void Progress(const std::string& what) { std::fprintf(stderr, "flash-sale: %s\n", what.c_str()); }

std::string Iso(std::chrono::system_clock::duration from_now) {
  auto t = std::chrono::system_clock::now() + from_now;
  return FormatRfc3339(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

// Valid mobile numbers of the buyer's country, numbered from a random base so runs against a
// long-lived cluster do not collide with earlier buyers.
struct PhonePlan {
  std::string prefix;
  int64_t digits = 8;
  int64_t first = 0;  // smallest suffix allowed
  int64_t base = 0;

  std::string For(int64_t i) const {
    int64_t span = 1;
    for (int64_t d = 0; d < digits; ++d) span *= 10;
    int64_t n = first + (base + i) % (span - first);
    return fmt::format("{}{:0{}}", prefix, n, digits);
  }
};

Result<PhonePlan> PlanFor(const std::string& country, int64_t buyers) {
  PhonePlan p;
  if (country == "IN") {
    p = {"+9198", 8, 0, 0};  // 98XXXXXXXX
  } else if (country == "US") {
    p = {"+1650", 7, 2'000'000, 0};  // (650) NXX-XXXX
  } else if (country == "CN") {
    p = {"+86138", 8, 0, 0};  // 138XXXXXXXX
  } else {
    return Error(Code::kInvalidField, "--country must be IN, US or CN");
  }
  int64_t span = 1;
  for (int64_t d = 0; d < p.digits; ++d) span *= 10;
  if (buyers > (span - p.first) / 2) return Error(Code::kInvalidField, "too many buyers");
  std::mt19937_64 rng(std::random_device{}());
  p.base = static_cast<int64_t>(rng() % static_cast<uint64_t>(span - p.first));
  return p;
}

struct Buyer {
  std::string user_id;
  std::string token;
};

enum class Outcome : uint8_t { kNone, kWon, kSoldOut, kLimit, kOverloaded, kError };

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kWon:
      return "won";
    case Outcome::kSoldOut:
      return "sold_out";
    case Outcome::kLimit:
      return "limit";
    case Outcome::kOverloaded:
      return "overloaded";
    default:
      return "error";
  }
}

Outcome Classify(const Reply& r) {
  if (r.status == 201 || r.status == 200) return Outcome::kWon;
  if (r.status == 409 && r.body.find("\"sold_out\"") != std::string_view::npos) {
    return Outcome::kSoldOut;
  }
  if (r.status == 403) return Outcome::kLimit;
  if (r.status == 429) return Outcome::kOverloaded;
  return Outcome::kError;
}

class FlashSale {
 public:
  explicit FlashSale(const FlashSaleOptions& o) : o_(o) {}

  int Run() {
    auto st = RunAll();
    if (!st.ok()) {
      std::fprintf(stderr, "meridian bench flash-sale: %s\n", st.message().c_str());
      return 1;
    }
    const bool clean = report_.value("oversold", 0) == 0 && report_.value("duplicates", 0) == 0 &&
                       report_.value("lost", 0) == 0 && report_.value("phantom_orders", 0) == 0;
    return clean ? 0 : 3;
  }

 private:
  Status RunAll() {
    if (o_.endpoint != "purchase" && o_.endpoint != "sold-out") {
      return Error(Code::kInvalidField, "--endpoint must be purchase or sold-out");
    }
    if (o_.rate <= 0) return Error(Code::kInvalidField, "--rate must be positive");
    if (o_.buyers < 2 || o_.stock < 1) {
      return Error(Code::kInvalidField, "need at least 2 buyers and 1 unit");
    }
    sold_out_mode_ = o_.endpoint == "sold-out";
    run_id_ = SystemRandom::Instance().Hex(4);
    ASSIGN_OR_RETURN(http_, net::MakeClient({}));
    RETURN_IF_ERROR(SetUpCluster());
    int64_t buyers = sold_out_mode_ ? std::min(o_.buyers, kSoldOutBuyers) : o_.buyers;
    RETURN_IF_ERROR(RegisterBuyers(buyers));
    RETURN_IF_ERROR(CreateSale(sold_out_mode_ ? 1 : o_.stock));
    if (sold_out_mode_) RETURN_IF_ERROR(SellTheOnlyUnit());
    RETURN_IF_ERROR(Fire());
    RETURN_IF_ERROR(KillRestartAndVerify());
    RETURN_IF_ERROR(RunPgbench());
    Print();
    if (!o_.json_file.empty()) RETURN_IF_ERROR(WriteJsonFile(o_.json_file, report_));
    return Status::Ok();
  }

  Status SetUpCluster() {
    if (o_.url.empty()) {
      Progress("starting a private cluster");
      PrivateClusterOptions co;
      co.self_exe = o_.self_exe;
      co.io_threads = o_.io_threads;
      co.storage = o_.storage;
      co.nodes_per_region = o_.nodes_per_region;
      ASSIGN_OR_RETURN(cluster_, PrivateCluster::Start(co));
      admin_token_ = cluster_->admin_token();
      home_ = cluster_->config().policy.HomeFor(o_.country);
      ASSIGN_OR_RETURN(ep_, cluster_->Endpoint(home_));
    } else {
      if (o_.admin_token_file.empty()) {
        return Error(Code::kInvalidField, "--url needs --admin-token-file");
      }
      admin_token_ = config::ReadFileOr(o_.admin_token_file);
      while (!admin_token_.empty() &&
             (admin_token_.back() == '\n' || admin_token_.back() == '\r')) {
        admin_token_.pop_back();
      }
      if (admin_token_.empty()) return Error(Code::kInvalidField, "empty admin token file");
      ASSIGN_OR_RETURN(ep_, ParseHttpUrl(o_.url));
    }
    report_["cluster"] = {{"private", cluster_ != nullptr},
                          {"io_threads", cluster_ ? o_.io_threads : 0},
                          {"storage", o_.storage},
                          {"nodes_per_region", o_.nodes_per_region},
                          {"home_url", ep_.base_url}};
    return Status::Ok();
  }

  Result<net::HttpResponse> Call(const std::string& method, const std::string& target,
                                 const std::string& body, const std::string& token) {
    net::ClientCall call;
    call.base_url = ep_.base_url;
    call.request.method = method;
    call.request.target = target;
    call.request.body = body;
    call.request.headers = {{"authorization", "Bearer " + token}};
    if (!body.empty()) call.request.headers.emplace_back("content-type", "application/json");
    call.timeout = 30s;
    return http_->SendSync(std::move(call));
  }

  Result<Json> AdminJson(const std::string& method, const std::string& target,
                         const std::string& body, int want) {
    ASSIGN_OR_RETURN(auto r, Call(method, target, body, admin_token_));
    if (r.status != want) {
      return Error(Code::kInternal,
                   fmt::format("{} {} answered {}: {}", method, target, r.status, r.body));
    }
    return ParseJsonObject(r.body);
  }

  // Closed-loop set-up requests over the generator's connections.
  Result<LoadSummary> Bulk(size_t n, const RequestFn& make, const ReplyFn& on) {
    return RunClosed(ep_, o_.setup_connections, n, make, on);
  }

  Status RegisterBuyers(int64_t count) {
    ASSIGN_OR_RETURN(auto plan, PlanFor(o_.country, count));
    Progress(fmt::format("registering {} buyers ({} connections, closed loop)", count,
                         o_.setup_connections));
    auto started = Clock::now();
    buyers_.assign(static_cast<size_t>(count), {});
    RETURN_IF_ERROR(RegisterAccounts(
        ep_, o_.setup_connections, buyers_.size(),
        [&](size_t b) {
          return DumpJson({{"country", o_.country},
                           {"phone", plan.For(static_cast<int64_t>(b))},
                           {"password", "correct horse battery"}});
        },
        [&](size_t b, std::string_view body) {
          buyers_[b].user_id = ExtractString(body, "user_id");
          buyers_[b].token = ExtractString(body, "token");
          if (home_.empty()) home_ = ExtractString(body, "home_region");
          return !buyers_[b].token.empty();
        }));
    double secs = SecondsSince(started);
    Progress(fmt::format("registered {} buyers in {:.1f} s ({}/s), home region {}", count, secs,
                         Rate(static_cast<double>(count) / secs), home_));
    report_["setup"] = {{"registered", count}, {"register_s", secs}};
    return Status::Ok();
  }

  Status CreateSale(int64_t stock) {
    stock_ = stock;
    sku_ = "bench-" + run_id_;
    sale_id_ = "flash-" + run_id_;
    Json product = {
        {"sku", sku_}, {"name", "Flash sale phone"}, {"price", 199900}, {"currency", "INR"}};
    RETURN_IF_ERROR(AdminJson("POST", "/v1/admin/products", DumpJson(product), 201).status());
    // The whole stock in the buyers' home region; the payment window outlasts the run so no
    // unit comes back while it is being counted.
    Json sale = {{"id", sale_id_},
                 {"sku", sku_},
                 {"stock", stock},
                 {"per_user_limit", 1},
                 {"starts_at", Iso(-1min)},
                 {"ends_at", Iso(6h)},
                 {"payment_window_s", 24 * 3600},
                 {"allocation", {{home_, stock}}}};
    RETURN_IF_ERROR(AdminJson("POST", "/v1/admin/sales", DumpJson(sale), 201).status());
    Progress(fmt::format("sale {} of {} units, all in {}", sale_id_, stock, home_));
    return Status::Ok();
  }

  std::string PurchaseTarget() const { return "/v1/sales/" + sale_id_ + "/purchase"; }

  Result<net::HttpResponse> BuyOnce(size_t buyer, const std::string& key) {
    net::ClientCall call;
    call.base_url = ep_.base_url;
    call.request.method = "POST";
    call.request.target = PurchaseTarget();
    call.request.headers = {{"authorization", "Bearer " + buyers_[buyer].token},
                            {"idempotency-key", key}};
    call.timeout = 30s;
    return http_->SendSync(std::move(call));
  }

  // Sold-out mode: buyer 0 takes the one unit before the clock starts.
  Status SellTheOnlyUnit() {
    ASSIGN_OR_RETURN(auto r, BuyOnce(0, run_id_ + "-setup"));
    if (r.status != 201) return Error(Code::kInternal, "the set-up purchase failed: " + r.body);
    setup_order_ = ExtractString(r.body, "order_id");
    ASSIGN_OR_RETURN(auto again, BuyOnce(1, run_id_ + "-probe"));
    if (again.status != 409)
      return Error(Code::kInternal, "the sale is not sold out: " + again.body);
    return Status::Ok();
  }

  Status Fire() {
    size_t requests = 0;
    if (sold_out_mode_) {
      double d = o_.duration_s > 0 ? o_.duration_s : 10;
      requests = static_cast<size_t>(o_.rate * d);
    } else {
      requests = buyers_.size();
      if (o_.duration_s > 0) {
        requests = std::min(requests, static_cast<size_t>(o_.rate * o_.duration_s));
      }
    }
    if (requests < 2) return Error(Code::kInvalidField, "rate x duration gives under 2 requests");
    outcome_of_.assign(buyers_.size(), Outcome::kNone);
    order_of_.assign(buyers_.size(), {});
    const std::string target = PurchaseTarget();
    const size_t cycle = buyers_.size() - 1;
    auto buyer_of = [&](size_t i) { return sold_out_mode_ ? 1 + i % cycle : i; };
    auto make = [&](size_t i, std::string& out) {
      std::string key = "Idempotency-Key: " + run_id_ + "-" + std::to_string(i) + "\r\n";
      AppendRequest(out, ep_, "POST", target, buyers_[buyer_of(i)].token, {}, {}, key);
    };
    int64_t won = 0;
    int64_t stock_gone_ns = -1, first_sold_out_after_ns = -1, last_won_ns = -1;
    std::vector<std::pair<int64_t, Outcome>> answers;  // done time and outcome, for the stats
    answers.reserve(requests);
    Json error_samples = Json::array();
    table_ = std::make_unique<OutcomeTable>(
        std::vector<std::string>{"won", "sold_out", "limit", "overloaded", "error"});
    auto on = [&](size_t i, const Reply& r) {
      Outcome oc = r.status == 0 ? Outcome::kError : Classify(r);
      table_->Add(OutcomeName(oc), r.done_ns - r.scheduled_ns);
      size_t b = buyer_of(i);
      // A buyer presses many times in sold-out mode: a win (a bug there) is never overwritten.
      if (!sold_out_mode_ || outcome_of_[b] != Outcome::kWon) outcome_of_[b] = oc;
      if (oc == Outcome::kWon) {
        order_of_[b] = ExtractString(r.body, "order_id");
        ++won;
        last_won_ns = std::max(last_won_ns, r.done_ns);
        if (won == stock_) stock_gone_ns = r.done_ns;
      } else if (oc == Outcome::kSoldOut && won >= stock_ && first_sold_out_after_ns < 0) {
        first_sold_out_after_ns = r.done_ns;
      } else if (oc == Outcome::kError && error_samples.size() < 5) {
        error_samples.push_back(fmt::format("{} {}", r.status, r.body.substr(0, 200)));
      }
      answers.emplace_back(r.done_ns, oc);
    };
    LoadOptions lo;
    lo.host = ep_.host;
    lo.port = ep_.port;
    lo.more_ports = ep_.more_ports;
    lo.connections = o_.connections;
    lo.rate = o_.rate;
    lo.requests = requests;
    // Offered above capacity, the backlog drains long after the schedule ends; the run is
    // still bounded.
    lo.drain = 120s;
    Progress(fmt::format("firing {} purchases at {}/s over {} connections (open loop)", requests,
                         Rate(o_.rate), o_.connections));
    const double node_cpu_start = cluster_ ? cluster_->CpuSeconds(home_) : 0;
    const auto threads_start =
        cluster_ ? cluster_->CpuSecondsByThread(home_) : std::map<std::string, double>();
    ASSIGN_OR_RETURN(auto sum, RunLoad(lo, make, on));
    // Who used the two cores: the home node and the generator (the other nodes are idle),
    // and within the node each kind of thread.
    if (cluster_) {
      report_["home_node_cpu_s"] = cluster_->CpuSeconds(home_) - node_cpu_start;
      Json by_thread = Json::object();
      for (const auto& [name, s] : cluster_->CpuSecondsByThread(home_)) {
        auto was = threads_start.find(name);
        const double used = s - (was == threads_start.end() ? 0 : was->second);
        if (used > 0) by_thread[name] = used;
      }
      report_["home_node_cpu_by_thread_s"] = std::move(by_thread);
    }
    report_["generator_cpu_s"] = sum.generator_cpu_s;

    // A sell-out the generator could not see whole (an answer lost to an error) is dated by
    // the first sold-out answer after the last acknowledged unit.
    std::optional<double> sell_out_s;
    std::string sell_out_basis;
    if (!sold_out_mode_) {
      if (stock_gone_ns >= 0) {
        sell_out_s = static_cast<double>(stock_gone_ns) / 1e9;
        sell_out_basis = "last unit acknowledged (201)";
      } else {
        int64_t first_after = -1;
        for (const auto& [t, oc] : answers) {
          if (oc == Outcome::kSoldOut && t >= last_won_ns && (first_after < 0 || t < first_after)) {
            first_after = t;
          }
        }
        if (first_after >= 0) {
          sell_out_s = static_cast<double>(first_after) / 1e9;
          sell_out_basis = "first sold_out after the last 201 (some answers were lost)";
        }
      }
    }
    const double schedule_s = static_cast<double>(sum.last_scheduled_ns) / 1e9;
    report_["benchmark"] = "flash-sale";
    report_["endpoint"] = o_.endpoint;
    report_["command"] = o_.command_line;
    report_["machine"] = MachineFacts();
    report_["home_region"] = home_;
    report_["sale_id"] = sale_id_;
    report_["buyers"] = buyers_.size();
    report_["stock"] = stock_;
    report_["connections"] = o_.connections;
    report_["requests"] = requests;
    report_["rate_offered"] = sum.offered_rate;
    report_["schedule_s"] = schedule_s;
    report_["rate_achieved"] = sum.achieved_rate;
    report_["answered"] = sum.answered;
    report_["failed"] = sum.failed;
    report_["reconnects"] = sum.reconnects;
    report_["last_answer_s"] = static_cast<double>(sum.last_done_ns) / 1e9;
    report_["won"] = won;
    report_["durable_purchases_per_s"] =
        last_won_ns > 0 ? static_cast<double>(won) * 1e9 / static_cast<double>(last_won_ns) : 0.0;
    report_["sell_out_s"] = sell_out_s ? Json(*sell_out_s) : Json(nullptr);
    report_["sell_out_basis"] = sell_out_basis;
    report_["first_sold_out_after_stock_gone_s"] =
        first_sold_out_after_ns >= 0 ? Json(static_cast<double>(first_sold_out_after_ns) / 1e9)
                                     : Json(nullptr);
    report_["outcomes"] = table_->ToJson();
    report_["error_samples"] = error_samples;
    return Status::Ok();
  }

  // PostgreSQL's own benchmark on the home region's server, after the sale (the peer of
  // durable purchases on that engine).
  Status RunPgbench() {
    if (o_.pgbench_seconds <= 0) return Status::Ok();
    storage::PrivatePostgres* db = cluster_ ? cluster_->Database(home_) : nullptr;
    if (db == nullptr)
      return Error(Code::kInvalidField, "--pgbench-seconds needs --storage postgres");
    constexpr int kClients = 16;
    Progress(fmt::format("pgbench -N on {}'s server: {} clients, {} s", home_, kClients,
                         o_.pgbench_seconds));
    ASSIGN_OR_RETURN(double tps, db->Pgbench("pgbench", 4, kClients, o_.pgbench_seconds));
    report_["pgbench"] = {{"tps", tps},
                          {"clients", kClients},
                          {"seconds", o_.pgbench_seconds},
                          {"script", "pgbench -N (simple update: 3 writes, 1 read, 1 commit)"}};
    return Status::Ok();
  }

  Result<Json> Stats() {
    return AdminJson("GET", "/v1/admin/sales/" + sale_id_ + "/stats", {}, 200);
  }

  Status KillRestartAndVerify() {
    ASSIGN_OR_RETURN(Json before, Stats());
    report_["stats_before_kill"] = before;
    bool restarted = false;
    if (cluster_ != nullptr && o_.kill_restart) {
      Progress("kill -9 of " + home_ + ", then restart");
      cluster_->StopRegion(home_, SIGKILL);
      auto t = Clock::now();
      RETURN_IF_ERROR(cluster_->StartRegion(home_));
      report_["restart_s"] = SecondsSince(t);
      restarted = true;
    }
    report_["killed_and_restarted"] = restarted;
    ASSIGN_OR_RETURN(Json after, Stats());
    report_["stats_after_restart"] = after;

    // Every acknowledged order id, once, for one buyer.
    std::map<std::string, int> acked;
    std::vector<size_t> winners, told_sold_out;
    for (size_t b = 0; b < buyers_.size(); ++b) {
      if (outcome_of_[b] == Outcome::kWon) {
        ++acked[order_of_[b]];
        winners.push_back(b);
      } else if (outcome_of_[b] == Outcome::kSoldOut) {
        told_sold_out.push_back(b);
      }
    }
    if (!setup_order_.empty()) ++acked[setup_order_];
    int64_t duplicates = 0;
    for (const auto& [id, n] : acked) duplicates += n - 1;
    const int64_t acked_units = static_cast<int64_t>(acked.size());

    std::mt19937 rng(20141023);
    std::shuffle(winners.begin(), winners.end(), rng);
    std::shuffle(told_sold_out.begin(), told_sold_out.end(), rng);
    winners.resize(std::min<size_t>(winners.size(), static_cast<size_t>(o_.verify_buyers)));
    told_sold_out.resize(std::min<size_t>(told_sold_out.size(), kSoldOutChecked));
    std::vector<size_t> check = winners;
    check.insert(check.end(), told_sold_out.begin(), told_sold_out.end());
    Progress(fmt::format("checking the orders of {} buyers", check.size()));

    int64_t lost = 0, phantom = 0, verify_errors = 0;
    auto make = [&](size_t k, std::string& out) {
      AppendRequest(out, ep_, "GET", "/v1/me/orders", buyers_[check[k]].token, {});
    };
    auto on = [&](size_t k, const Reply& r) {
      size_t b = check[k];
      auto j = r.status == 200 ? ParseJsonObject(r.body) : Result<Json>(Error(Code::kInternal, ""));
      if (!j.ok() || !j->contains("orders") || !(*j)["orders"].is_array()) {
        ++verify_errors;
        return;
      }
      std::set<std::string> mine;
      int64_t for_sale = 0;
      for (const auto& o : (*j)["orders"]) {
        if (o.value("sale_id", "") != sale_id_) continue;
        ++for_sale;
        mine.insert(o.value("order_id", ""));
      }
      if (for_sale > 1) duplicates += for_sale - 1;
      if (outcome_of_[b] == Outcome::kWon) {
        if (mine.count(order_of_[b]) == 0) ++lost;
      } else if (for_sale > 0) {
        ++phantom;
      }
    };
    RETURN_IF_ERROR(Bulk(check.size(), make, on).status());

    auto num = [](const Json& j, const char* f) { return j.value(f, int64_t{0}); };
    const int64_t sold_before = num(before, "sold"), sold_after = num(after, "sold");
    // Units acknowledged but no longer counted as sold are lost too.
    lost += std::max<int64_t>(0, acked_units - sold_after);
    const int64_t oversold =
        std::max({int64_t{0}, sold_before - stock_, sold_after - stock_, acked_units - stock_});
    const bool accounting = num(after, "sold") + num(after, "remaining") == stock_ &&
                            num(before, "sold") + num(before, "remaining") == stock_;
    report_["acknowledged_orders"] = acked_units;
    report_["oversold"] = oversold;
    report_["duplicates"] = duplicates;
    report_["lost"] = lost;
    report_["phantom_orders"] = phantom;
    report_["verified_buyers"] = check.size() - static_cast<size_t>(verify_errors);
    report_["verified_winners"] = winners.size();
    report_["verify_errors"] = verify_errors;
    report_["accounting_holds"] = accounting;
    if (verify_errors > 0) {
      return Error(
          Code::kInternal,
          fmt::format("{} order lists could not be read after the restart", verify_errors));
    }
    return Status::Ok();
  }

  void Print() {
    const Json& r = report_;
    std::printf("meridian bench flash-sale (%s): %zu buyers, stock %lld in %s, %zu requests\n",
                o_.endpoint.c_str(), buyers_.size(), static_cast<long long>(stock_), home_.c_str(),
                r.value("requests", size_t{0}));
    std::printf(
        "offered %s/s over %.2f s on %d connections; achieved %s/s (%zu answered, %zu "
        "without answer)\n",
        Rate(r.value("rate_offered", 0.0)).c_str(), r.value("schedule_s", 0.0), o_.connections,
        Rate(r.value("rate_achieved", 0.0)).c_str(), r.value("answered", size_t{0}),
        r.value("failed", size_t{0}));
    std::printf("\n%s\n", table_->Format().c_str());
    if (!sold_out_mode_) {
      std::printf("won %lld of %lld units; durable purchases %s/s\n",
                  static_cast<long long>(r.value("won", int64_t{0})),
                  static_cast<long long>(stock_),
                  Rate(r.value("durable_purchases_per_s", 0.0)).c_str());
      if (r["sell_out_s"].is_number()) {
        std::printf("sell-out time: %.3f s from the first scheduled request (%s)\n",
                    r["sell_out_s"].get<double>(), r.value("sell_out_basis", "").c_str());
      } else {
        std::printf("sell-out time: not sold out\n");
      }
    }
    std::printf(
        "oversold %lld, duplicates %lld, lost %lld, phantom orders %lld (%s; %zu buyers' "
        "orders checked, stats sold %lld)\n",
        static_cast<long long>(r.value("oversold", int64_t{0})),
        static_cast<long long>(r.value("duplicates", int64_t{0})),
        static_cast<long long>(r.value("lost", int64_t{0})),
        static_cast<long long>(r.value("phantom_orders", int64_t{0})),
        r.value("killed_and_restarted", false) ? "after kill -9 and restart of the home node"
                                               : "no restart",
        r.value("verified_buyers", size_t{0}),
        static_cast<long long>(r["stats_after_restart"].value("sold", int64_t{0})));
  }

  const FlashSaleOptions& o_;
  bool sold_out_mode_ = false;
  std::string run_id_;
  std::unique_ptr<net::HttpClient> http_;
  std::unique_ptr<PrivateCluster> cluster_;
  std::string admin_token_;
  std::string home_;
  HttpEndpoint ep_;
  std::vector<Buyer> buyers_;
  std::string sku_, sale_id_, setup_order_;
  int64_t stock_ = 0;
  std::vector<Outcome> outcome_of_;
  std::vector<std::string> order_of_;
  std::unique_ptr<OutcomeTable> table_;
  Json report_ = Json::object();
};

}  // namespace

int RunFlashSale(const FlashSaleOptions& options) { return FlashSale(options).Run(); }

}  // namespace meridian::bench
