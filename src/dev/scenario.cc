#include "dev/scenario.h"

#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "accounts/validate.h"
#include "common/json.h"
#include "net/http.h"

namespace meridian::dev {
namespace {
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view kGreatShift = "great-shift";
constexpr const char* kPassword = "correct horse battery staple";
constexpr const char* kEdge = "california";
constexpr const char* kSource = "beijing";
// The countries users come from, round-robin (the first is the one already at home).
constexpr const char* kCountries[] = {"CN", "US", "BR", "DE", "IN", "SG", "ID"};

// A valid mobile number of `country`, distinct for each i below 10000.
std::string PhoneOf(std::string_view country, int i) {
  const std::string d7 = std::to_string(1000000 + i);
  const std::string d8 = std::to_string(10000000 + i);
  if (country == "CN") return "+861380" + d7;
  if (country == "US") return "+165055" + d7.substr(3) + "0";
  if (country == "BR") return "+55119" + d7 + "0";
  if (country == "DE") return "+49151" + d8;
  if (country == "IN") return "+9198" + d7 + "0";
  if (country == "SG") return "+658" + d7;
  return "+62812" + d8;  // ID
}

void Say(const std::string& line) {
  std::printf("great-shift: %s\n", line.c_str());
  std::fflush(stdout);
}

int64_t IntOf(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}
double NumOf(const Json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}
std::string StrOf(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct User {
  std::string country;
  std::string phone;
  std::string user_id;
  std::string token;
  std::string home;  // as last answered by the cluster
  int next_key = 0;
  std::set<std::string> acked;  // live keys whose write was acknowledged
};

// Sleeps up to `d`, waking early when `stop` is set; false when stopped.
bool Nap(const std::atomic<bool>& stop, std::chrono::milliseconds d) {
  const auto until = Clock::now() + d;
  while (!stop && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        50ms, std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()) + 1ms));
  }
  return !stop;
}

// Runs f(i) for i in [0, n) on `threads` threads; stops handing out work once `stop` is set.
template <class F>
void ParallelFor(size_t n, int threads, const std::atomic<bool>& stop, F f) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < n && !stop; i = next++) f(i);
    });
  }
  for (auto& t : pool) t.join();
}

// The HTTP side: every call on 127.0.0.1 with a timeout.
class Api {
 public:
  Api(const config::ClusterConfig& cfg, std::unique_ptr<net::HttpClient> http, std::string admin)
      : cfg_(cfg), http_(std::move(http)), admin_(std::move(admin)) {}

  std::string Url(const std::string& region) const {
    const config::RegionConfig* r = cfg_.Find(region);
    return r == nullptr ? std::string() : r->url;
  }
  Result<net::HttpResponse> Call(const std::string& base_url, const std::string& method,
                                 const std::string& target, std::string body = {},
                                 const std::string& token = {}) {
    if (base_url.empty()) return Error(Code::kInternal, "no such region in the cluster");
    net::ClientCall call;
    call.base_url = base_url;
    call.request.method = method;
    call.request.target = target;
    call.request.body = std::move(body);
    if (!call.request.body.empty() && method != "PUT") {
      call.request.SetHeader("content-type", "application/json");
    }
    if (!token.empty()) call.request.SetHeader("authorization", "Bearer " + token);
    call.timeout = 10s;
    return http_->SendSync(std::move(call));
  }
  Result<net::HttpResponse> Admin(const std::string& method, const std::string& target,
                                  std::string body = {}) {
    return Call(Url(kEdge), method, target, std::move(body), admin_);
  }
  // POSTs identifying fields at the edge, following the 307 to the home node as a client
  // does; answers the 2xx body.
  Result<Json> PostIdentified(const std::string& target, const Json& body) {
    std::string base = Url(kEdge);
    const std::string text = DumpJson(body);
    for (int hop = 0; hop < 3; ++hop) {
      ASSIGN_OR_RETURN(auto r, Call(base, "POST", target, text));
      if (r.status == 307) {
        const std::string location(r.Header("location"));
        const size_t at = location.find("/v1/");
        if (at == std::string::npos) return Error(Code::kInternal, "307 without a Location");
        base = location.substr(0, at);
        continue;
      }
      if (r.status != 200 && r.status != 201) {
        auto j = ParseJsonObject(r.body);
        return Error(r.status == 503 ? Code::kFenced : Code::kInternal,
                     fmt::format("{} {} answered {} {}", "POST", target, r.status,
                                 j.ok() ? StrOf(*j, "error") : r.body.substr(0, 120)));
      }
      return ParseJsonObject(r.body);
    }
    return Error(Code::kWrongRegion, "too many redirects for " + target);
  }
  Result<Json> Login(const User& u) {
    return PostIdentified("/v1/sessions", Json{{"phone", u.phone}, {"password", kPassword}});
  }

 private:
  const config::ClusterConfig& cfg_;
  std::unique_ptr<net::HttpClient> http_;
  std::string admin_;
};

// The first problem seen by any of several threads.
class Problems {
 public:
  void Add(std::string what) {
    std::lock_guard lock(mu_);
    if (count_++ == 0) first_ = std::move(what);
  }
  int count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::string first() const {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  mutable std::mutex mu_;
  int count_ = 0;
  std::string first_;
};

std::string CountsLine(const std::map<std::string, int>& counts) {
  std::string out;
  for (const auto& [k, n] : counts) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", k, n);
  return out;
}

// Live traffic: each writer owns the users i with i % writers == w and writes new keys for
// them through the edge, logging in again when an old token is refused.
struct Traffic {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> fenced{0};
  std::atomic<int64_t> relogins{0};
  std::atomic<int64_t> other{0};
  std::vector<std::thread> threads;

  void Start(Api& api, std::vector<User>& users, int writers, const std::atomic<bool>& halt) {
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([this, &api, &users, w, writers, &halt] {
        while (!stop && !halt) {
          for (size_t i = w; i < users.size() && !stop && !halt; i += writers) {
            User& u = users[i];
            const std::string key = "w" + std::to_string(u.next_key++);
            auto r = api.Call(api.Url(kEdge), "PUT", "/v1/me/records/live/" + key,
                              "live write " + key, u.token);
            if (!r.ok()) {
              ++other;
            } else if (r->status == 200) {
              u.acked.insert(key);
              ++acked;
            } else if (r->status == 503) {
              ++fenced;
            } else if (r->status == 401) {
              auto s = api.Login(u);
              if (s.ok() && !StrOf(*s, "token").empty()) {
                u.token = StrOf(*s, "token");
                u.home = StrOf(*s, "home_region");
                ++relogins;
              }
            } else {
              ++other;
            }
            std::this_thread::sleep_for(10ms);
          }
        }
      });
    }
  }
  ~Traffic() { Stop(); }
  void Stop() {
    stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
  }
};

Status GreatShift(const config::ClusterConfig& cfg, const ScenarioOptions& o,
                  const std::atomic<bool>& stop) {
  const auto stopped = [] { return Error(Code::kUnavailable, "stopped"); };
  ASSIGN_OR_RETURN(std::string admin, config::LoadAdminToken(cfg));
  net::ClientOptions copts;
  if (cfg.tls) copts.ca_file = cfg.ca_file;
  ASSIGN_OR_RETURN(auto http, net::MakeClient(copts));
  Api api(cfg, std::move(http), admin);
  if (api.Url(kEdge).empty() || api.Url(kSource).empty()) {
    return Error(Code::kInternal, "the cluster has no california edge or no beijing region");
  }

  // 1. Users from many countries, all homed in beijing by the legacy policy.
  std::vector<User> users(static_cast<size_t>(o.users));
  std::map<std::string, int> per_country;
  constexpr int kNumCountries = static_cast<int>(std::size(kCountries));
  for (int i = 0; i < o.users; ++i) {
    User& u = users[i];
    u.country = kCountries[i % kNumCountries];
    u.phone = PhoneOf(u.country, i / kNumCountries);
    if (auto e164 = accounts::NormalizePhone(u.phone, u.country); !e164.ok()) {
      return Error(Code::kInternal, "generated an invalid phone number for " + u.country);
    }
    ++per_country[u.country];
  }
  Say(
      fmt::format("registering {} users from {} countries through {} (legacy policy: every "
                  "country is homed in beijing)",
                  o.users, per_country.size(), kEdge));
  Problems problems;
  const auto reg_started = Clock::now();
  ParallelFor(users.size(), 8, stop, [&](size_t i) {
    User& u = users[i];
    auto j =
        api.PostIdentified("/v1/accounts", Json{{"country", u.country},
                                                {"phone", u.phone},
                                                {"password", kPassword},
                                                {"name", fmt::format("User {}", i)},
                                                {"email", fmt::format("user{}@example.com", i)}});
    if (!j.ok())
      return problems.Add("registering a user from " + u.country + ": " + j.status().message());
    u.user_id = StrOf(*j, "user_id");
    u.token = StrOf(*j, "token");
    u.home = StrOf(*j, "home_region");
    const std::pair<std::string, std::string> records[] = {
        {"notes/first", "hello from " + u.country},
        {"profile/settings", R"({"theme":"dark","lang":")" + u.country + R"("})"}};
    for (const auto& [path, body] : records) {
      auto r = api.Call(api.Url(kEdge), "PUT", "/v1/me/records/" + path, body, u.token);
      if (!r.ok() || r->status != 200) {
        return problems.Add(fmt::format("storing {} of a user from {}: {}", path, u.country,
                                        r.ok() ? std::to_string(r->status) : r.status().message()));
      }
    }
  });
  if (stop) return stopped();
  if (problems.count() > 0) {
    return Error(Code::kInternal, fmt::format("{} registrations failed; first: {}",
                                              problems.count(), problems.first()));
  }
  std::map<std::string, int> homes;
  for (const auto& u : users) ++homes[u.home];
  Say(fmt::format("registered {} users ({}) with 2 records each in {:.1f} s", users.size(),
                  CountsLine(per_country),
                  std::chrono::duration<double>(Clock::now() - reg_started).count()));
  Say("where users live: " + CountsLine(homes));

  // 2. Live traffic through the edge.
  Traffic traffic;
  traffic.Start(api, users, o.writers, stop);
  Say(fmt::format("live traffic: {} writers storing records through {}", o.writers, kEdge));
  Nap(stop, 1500ms);

  // 3. The new policy, then the move.
  Json m;
  if (stop) return stopped();
  {
    ASSIGN_OR_RETURN(auto r, api.Admin("PUT", "/v1/admin/policy", R"({"builtin":"current"})"));
    if (r.status != 200) {
      return Error(Code::kInternal,
                   "PUT /v1/admin/policy answered " + std::to_string(r.status) + ": " + r.body);
    }
    auto j = ParseJsonObject(r.body);
    if (!j.ok()) return j.status();
    Say(fmt::format("applied the current policy (version {}): {} misplaced users",
                    IntOf(*j, "policy_version"), IntOf(*j, "misplaced_users")));
  }
  auto started = api.Admin("POST", "/v1/admin/migrations",
                           fmt::format(R"({{"from":"{}","cohort":"misplaced"}})", kSource));
  if (!started.ok() || started->status != 202) {
    return Error(Code::kInternal,
                 "POST /v1/admin/migrations failed: " +
                     (started.ok() ? std::to_string(started->status) + " " + started->body
                                   : started.status().message()));
  }
  auto sj = ParseJsonObject(started->body);
  const std::string id = sj.ok() ? StrOf(*sj, "id") : "";
  if (id.empty()) return Error(Code::kInternal, "the migration has no id");
  Say(fmt::format("migration {} started: misplaced users leave {}", id, kSource));
  const auto move_started = Clock::now();
  const auto deadline = move_started + 60s + std::chrono::milliseconds(500) * o.users;
  for (;;) {
    if (!Nap(stop, 1s)) return stopped();
    auto r = api.Admin("GET", "/v1/admin/migrations/" + id);
    if (r.ok() && r->status == 200) {
      if (auto j = ParseJsonObject(r->body); j.ok()) m = std::move(j).value();
      const std::string state = StrOf(m, "state");
      const double eta = NumOf(m, "eta_s", -1);
      const double p99 = NumOf(m, "fence_ms_p99", -1);
      Say(fmt::format(
          "  {:>7} {:>5}/{:<5} {:6.1f} users/s  ETA {:>6}  fence p99 {:>8}  failed {}", state,
          IntOf(m, "users_moved"), IntOf(m, "users_total"), NumOf(m, "rate_users_per_s", 0),
          eta < 0 ? std::string("-") : fmt::format("{:.1f} s", eta),
          p99 < 0 ? std::string("-") : fmt::format("{:.1f} ms", p99), IntOf(m, "users_failed")));
      if (state != "running") break;
    }
    if (Clock::now() > deadline) {
      return Error(Code::kUnavailable,
                   "the migration " + id + " was still running at the time limit");
    }
  }
  Say(fmt::format("migration {}: {} moved, {} failed, {} bytes in {:.1f} s", StrOf(m, "state"),
                  IntOf(m, "users_moved"), IntOf(m, "users_failed"), IntOf(m, "bytes"),
                  std::chrono::duration<double>(Clock::now() - move_started).count()));
  Nap(stop, 1s);  // a little traffic after the move too
  traffic.Stop();
  if (stop) return stopped();

  // 4. Everyone logs in at the home region the policy gives them, with every write.
  std::map<std::string, std::string> countries;
  std::string default_region;
  {
    ASSIGN_OR_RETURN(auto r, api.Call(api.Url(kEdge), "GET", "/v1/regions"));
    auto j = ParseJsonObject(r.body);
    if (r.status != 200 || !j.ok()) return Error(Code::kInternal, "GET /v1/regions failed");
    default_region = StrOf(*j, "default_region");
    if (auto it = j->find("countries"); it != j->end() && it->is_object()) {
      for (const auto& [k, v] : it->items()) {
        if (v.is_string()) countries[k] = v.get<std::string>();
      }
    }
  }
  Say("checking that every user logs in at home and every acknowledged write is readable");
  std::atomic<int64_t> lost{0};
  std::atomic<int> wrong_home{0};
  Problems checks;
  ParallelFor(users.size(), 8, stop, [&](size_t i) {
    User& u = users[i];
    auto it = countries.find(u.country);
    const std::string expected = it != countries.end() ? it->second : default_region;
    Result<Json> s = api.Login(u);
    for (int attempt = 0; attempt < 20 && !s.ok() && s.status().code() == Code::kFenced;
         ++attempt) {
      std::this_thread::sleep_for(250ms);
      s = api.Login(u);
    }
    if (!s.ok())
      return checks.Add("login of a user from " + u.country + ": " + s.status().message());
    u.token = StrOf(*s, "token");
    u.home = StrOf(*s, "home_region");
    if (u.home != expected) {
      ++wrong_home;
      checks.Add(fmt::format("a user from {} logs in at {}, the policy says {}", u.country, u.home,
                             expected));
    }
    auto list = api.Call(api.Url(kEdge), "GET", "/v1/me/records/live", {}, u.token);
    auto lj = list.ok() && list->status == 200 ? ParseJsonObject(list->body)
                                               : Result<Json>(Error(Code::kInternal, "list"));
    if (!lj.ok()) {
      lost += static_cast<int64_t>(u.acked.size());
      return checks.Add("cannot list the records of a user from " + u.country);
    }
    std::set<std::string> present;
    if (auto k = lj->find("keys"); k != lj->end() && k->is_array()) {
      for (const auto& key : *k) {
        if (key.is_string()) present.insert(key.get<std::string>());
      }
    }
    for (const auto& key : u.acked) lost += present.count(key) == 0;
    auto first = api.Call(api.Url(kEdge), "GET", "/v1/me/records/notes/first", {}, u.token);
    if (!first.ok() || first->status != 200 || first->body != "hello from " + u.country) {
      ++lost;
      checks.Add("the first note of a user from " + u.country + " is not readable");
    }
  });
  if (stop) return stopped();
  homes.clear();
  for (const auto& u : users) ++homes[u.home.empty() ? "?" : u.home];
  Say("where users live now: " + CountsLine(homes));
  Say(fmt::format(
      "summary: {} users, {} moved, {} failed, {} writes acknowledged, {} lost, {} "
      "fenced answers, {} re-logins",
      users.size(), IntOf(m, "users_moved"), IntOf(m, "users_failed"), traffic.acked.load(),
      lost.load(), traffic.fenced.load(), traffic.relogins.load()));
  if (StrOf(m, "state") != "done") {
    return Error(Code::kInternal, "the migration ended " + StrOf(m, "state"));
  }
  if (checks.count() > 0 || lost > 0) {
    return Error(Code::kInternal, fmt::format("{} check(s) failed, {} write(s) lost; first: {}",
                                              checks.count(), lost.load(), checks.first()));
  }
  return Status::Ok();
}

}  // namespace

bool IsKnownScenario(std::string_view name) { return name == kGreatShift; }

std::string ScenarioStartPolicy(std::string_view name) {
  return name == kGreatShift ? "legacy" : "";
}

Status RunScenario(const config::ClusterConfig& cfg, const ScenarioOptions& opts,
                   const std::atomic<bool>& stop) {
  if (opts.name != kGreatShift) return Error(Code::kInvalidField, "unknown scenario " + opts.name);
  if (opts.users < 1 || opts.users > 10000 || opts.writers < 1) {
    return Error(Code::kInvalidField, "the scenario needs 1 to 10000 users and a writer");
  }
  return GreatShift(cfg, opts, stop);
}

}  // namespace meridian::dev
