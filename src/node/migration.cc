#include "node/migration.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include <fmt/format.h>
#include <sodium.h>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/json.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread.h"
#include "crypto/crypto.h"
#include "crypto/hpke.h"

namespace meridian::node {
namespace {
using storage::Space;
constexpr std::string_view kInfo = "meridian migrate v1";

std::string RecordKey(std::string_view id) { return fmt::format("mig/{}", id); }
std::string StepPrefix(std::string_view id) { return fmt::format("mig/{}/u/", id); }
// Which node runs a migration ("<node>|<since>") and its last heartbeat (ms).
std::string RunnerKey(std::string_view id) { return fmt::format("migrun/{}", id); }
std::string BeatKey(std::string_view id) { return fmt::format("migbeat/{}", id); }

// What both sides hash: the account and order documents each computes from its own store.
std::string Digest(const Json& snapshot) {
  return HexEncode(crypto::HmacSha256("meridian migrate checksum", DumpJson(snapshot)));
}

// The associated data binds the sealed account to its user and route.
std::string SealAad(std::string_view from, std::string_view to, std::string_view user) {
  return fmt::format("{}\n{}\n{}", from, to, user);
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}
}  // namespace

Migrations::Migrations(MigrationContext c, MigrationSettings s) : c_(std::move(c)), s_(s) {}

Migrations::~Migrations() { Stop(); }

std::string Migrations::CoordinatorOf(std::string_view id) {
  if (id.substr(0, 2) != "m-") return {};
  auto rest = id.substr(2);
  auto dash = rest.rfind('-');
  return dash == std::string_view::npos ? std::string() : std::string(rest.substr(0, dash));
}

std::optional<std::string> Migrations::RunnerClaim() {
  std::lock_guard lock(claim_mu_);
  return claim_;
}

bool Migrations::Claim(const std::string& id) {
  const int64_t now = SystemClock::Instance().NowMs();
  auto runner = c_.store.Get(Space::kMeta, RunnerKey(id));
  auto beat = c_.store.Get(Space::kMeta, BeatKey(id));
  if (!runner.ok() || !beat.ok()) return false;
  int64_t beat_ms = 0;
  if (*beat) beat_ms = std::atoll((*beat)->c_str());
  const std::string mine_prefix = s_.node + "|";
  const bool mine = *runner && (*runner)->rfind(mine_prefix, 0) == 0;
  if (*runner && !mine && now - beat_ms < s_.runner_timeout_ms) return false;  // alive elsewhere
  std::string claim = mine ? **runner : mine_prefix + std::to_string(now);
  storage::WriteBatch b;
  b.Put(Space::kMeta, RunnerKey(id), claim);
  b.Expect(Space::kMeta, RunnerKey(id), *runner);
  b.Put(Space::kMeta, BeatKey(id), std::to_string(now));
  if (!c_.store.Write(b).ok()) return false;  // another node claimed it first
  if (!mine) log::Info(*runner ? "migration_taken_over" : "migration_running", {{"id", id}});
  std::lock_guard lock(claim_mu_);
  claim_ = claim;
  last_beat_ms_ = now;
  return true;
}

bool Migrations::KeepRunning(const std::string& id) {
  const int64_t now = SystemClock::Instance().NowMs();
  std::lock_guard lock(claim_mu_);
  if (now - last_beat_ms_ < 1000) return true;
  // Every second: the heartbeat, written only while the claim is still this node's.
  storage::WriteBatch b;
  b.Put(Space::kMeta, BeatKey(id), std::to_string(now));
  b.Expect(Space::kMeta, RunnerKey(id), claim_);
  if (!c_.store.Write(b).ok()) return false;
  last_beat_ms_ = now;
  return true;
}

Status Migrations::Start() {
  thread_ = NamedThread("migration", [this] { Loop(); });
  return Status::Ok();
}

void Migrations::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<int64_t> Migrations::CountMisplaced() {
  auto pol = c_.policies.Latest();
  ASSIGN_OR_RETURN(auto users, c_.accounts.UsersWithCountry());
  int64_t n = 0;
  for (const auto& [uid, country] : users) n += pol->HomeFor(country) != c_.region;
  return n;
}

Result<Json> Migrations::Plan() {
  auto pol = c_.policies.Latest();
  ASSIGN_OR_RETURN(auto users, c_.accounts.UsersWithCountry());
  Json destinations = Json::object();
  int64_t total = 0;
  int64_t bytes = 0;
  for (const auto& [uid, country] : users) {
    const std::string& to = pol->HomeFor(country);
    if (to == c_.region) continue;
    auto snapshot = Snapshot(uid);
    const int64_t size = snapshot.ok() ? static_cast<int64_t>(DumpJson(*snapshot).size()) : 0;
    Json& d = destinations[to];
    if (!d.is_object()) d = {{"users", 0}, {"bytes", 0}};
    d["users"] = d["users"].get<int64_t>() + 1;
    d["bytes"] = d["bytes"].get<int64_t>() + size;
    ++total;
    bytes += size;
  }
  return Json{{"from", c_.region},
              {"policy_version", pol->version()},
              {"users_total", total},
              {"bytes_total", bytes},
              {"destinations", destinations}};
}

Result<Json> Migrations::Begin(const Json& request) {
  ASSIGN_OR_RETURN(auto from, RequireString(request, "from", 64));
  ASSIGN_OR_RETURN(auto cohort, RequireString(request, "cohort", 64));
  if (from != c_.region) {
    return Error(Code::kInvalidField, "'from' must name the region the users leave");
  }
  if (cohort != "misplaced") return Error(Code::kInvalidField, "'cohort' must be \"misplaced\"");
  auto pol = c_.policies.Latest();
  ASSIGN_OR_RETURN(auto users, c_.accounts.UsersWithCountry());
  const std::string id = "m-" + c_.region + "-" + SystemRandom::Instance().Hex(6);
  const int64_t now = SystemClock::Instance().NowMs();
  storage::WriteBatch b;
  int64_t total = 0;
  std::map<std::string, int64_t> per_destination;
  for (const auto& [uid, country] : users) {
    const std::string& to = pol->HomeFor(country);
    if (to == c_.region) continue;
    b.Put(Space::kMeta, StepPrefix(id) + uid, DumpJson({{"to", to}, {"state", "pending"}}));
    ++total;
    ++per_destination[to];
  }
  Json record = {{"id", id},
                 {"from", c_.region},
                 {"cohort", "misplaced"},
                 {"policy_version", pol->version()},
                 {"state", total == 0 ? "done" : "running"},
                 {"paused", false},
                 {"users_total", total},
                 {"users_moved", 0},
                 {"users_failed", 0},
                 {"bytes", 0},
                 {"destinations", per_destination},
                 {"started_at", FormatRfc3339(now)},
                 {"started_ms", now}};
  b.Put(Space::kMeta, RecordKey(id), DumpJson(record));
  RETURN_IF_ERROR(c_.store.Write(b));
  log::Info("migration_started", {{"id", id}, {"users", std::to_string(total)}});
  cv_.notify_all();
  return Json{{"id", id}};
}

Result<Json> Migrations::Get(const std::string& id) {
  ASSIGN_OR_RETURN(auto raw, c_.store.Get(Space::kMeta, RecordKey(id)));
  if (!raw) return Error(Code::kNotFound, "no such migration");
  ASSIGN_OR_RETURN(auto rec, ParseJsonObject(*raw));
  const int64_t now = SystemClock::Instance().NowMs();
  const double elapsed_s = std::max(0.001, (now - rec.value("started_ms", now)) / 1000.0);
  const int64_t moved = rec.value("users_moved", int64_t{0});
  const int64_t left =
      rec.value("users_total", int64_t{0}) - moved - rec.value("users_failed", int64_t{0});
  const double rate = moved / elapsed_s;
  rec["rate_users_per_s"] = rate;
  rec["eta_s"] = left <= 0 ? 0.0 : (rate > 0 ? left / rate : -1.0);
  std::lock_guard lock(mu_);
  auto it = fence_ms_.find(id);
  if (it != fence_ms_.end()) {
    rec["fence_ms_p50"] = Percentile(it->second, 0.5);
    rec["fence_ms_p99"] = Percentile(it->second, 0.99);
  }
  rec.erase("started_ms");
  return rec;
}

Result<std::vector<Json>> Migrations::List() {
  std::vector<std::string> ids;
  RETURN_IF_ERROR(c_.store.Scan(Space::kMeta, "mig/", [&](std::string_view k, std::string_view) {
    if (k.find("/u/") == std::string_view::npos) ids.emplace_back(k.substr(4));
    return true;
  }));
  std::vector<Json> out;
  for (const auto& id : ids) {
    auto m = Get(id);
    if (m.ok()) out.push_back(std::move(m).value());
  }
  return out;
}

Status Migrations::UpdateRecord(const std::string& id, const std::function<void(Json&)>& change,
                                const storage::WriteBatch& with) {
  std::lock_guard lock(mu_);
  // Expects the record it read: the region's other nodes update it too (a pause, say).
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto raw, c_.store.Get(Space::kMeta, RecordKey(id)));
    if (!raw) return Error(Code::kNotFound, "no such migration");
    ASSIGN_OR_RETURN(auto rec, ParseJsonObject(*raw));
    change(rec);
    storage::WriteBatch b = with;
    b.Put(Space::kMeta, RecordKey(id), DumpJson(rec));
    b.Expect(Space::kMeta, RecordKey(id), *raw);
    Status st = c_.store.Write(b);
    if (st.code() != Code::kConflict || !Holds(with)) return st;
  }
  return Error(Code::kUnavailable, "the migration record is busy; retry");
}

bool Migrations::Holds(const storage::WriteBatch& batch) {
  for (const auto& e : batch.expectations()) {
    auto current = c_.store.Get(e.space, e.key);
    if (!current.ok() || *current != e.value) return false;
  }
  return true;
}

Status Migrations::SetPaused(const std::string& id, bool paused) {
  RETURN_IF_ERROR(UpdateRecord(id, [&](Json& rec) { rec["paused"] = paused; }));
  cv_.notify_all();
  return Status::Ok();
}

Status Migrations::Count(const std::string& id, std::string_view field, int64_t delta) {
  return UpdateRecord(id, [&](Json& rec) {
    rec[std::string(field)] = rec.value(std::string(field), int64_t{0}) + delta;
  });
}

Status Migrations::SaveStep(const std::string& id, const UserStep& step, std::string_view counter) {
  storage::WriteBatch b;
  b.Put(Space::kMeta, StepPrefix(id) + step.user,
        DumpJson({{"to", step.to},
                  {"state", step.state},
                  {"digest", step.digest},
                  {"epoch", step.epoch},
                  {"attempts", step.attempts}}));
  // Only the node that runs the migration writes its steps (one that lost it stops).
  b.Expect(Space::kMeta, RunnerKey(id), RunnerClaim());
  if (counter.empty()) return c_.store.Write(b);
  // The user's last step and the count it adds to are one write: a crash between them
  // cannot count a user twice or not at all.
  return UpdateRecord(
      id,
      [&](Json& rec) {
        rec[std::string(counter)] = rec.value(std::string(counter), int64_t{0}) + 1;
        if (counter == "users_moved") {
          // Per destination too, for the console's arcs (users moved to each region).
          Json& to = rec["moved_to"];
          if (!to.is_object()) to = Json::object();
          to[step.to] = (to[step.to].is_number_integer() ? to[step.to].get<int64_t>() : 0) + 1;
        }
      },
      b);
}

Result<Json> Migrations::Snapshot(const std::string& user) {
  ASSIGN_OR_RETURN(auto account, c_.accounts.Snapshot(user));
  ASSIGN_OR_RETURN(auto orders, c_.shop.SnapshotUser(user));
  return Json{{"account", std::move(account)}, {"orders", std::move(orders)}};
}

Json Migrations::TransferDetails(const std::string& id, const UserStep& step,
                                 const Json& snapshot) const {
  Json details = {{"migration", id},         {"from", c_.region},
                  {"to", step.to},           {"policy_version", c_.policies.Current()->version()},
                  {"checksum", step.digest}, {"epoch", step.epoch}};
  if (snapshot.is_object()) {
    details["records"] = snapshot["account"]["records"].size();
    details["devices"] = snapshot["account"]["devices"].size();
    details["orders"] = snapshot["orders"]["orders"].size();
  }
  return details;
}

Result<Migrations::DestinationKey> Migrations::KeyOf(const std::string& region, bool refresh) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = keys_.find(region);
    if (!refresh && it != keys_.end() && now - it->second.fetched < std::chrono::seconds(10)) {
      return it->second;
    }
  }
  net::HttpRequest ask;
  ask.method = "GET";
  ask.target = "/internal/v1/keys";
  ASSIGN_OR_RETURN(auto keys_res, c_.inter.CallSync(region, ask));
  if (keys_res.status != 200) return Error(Code::kUnavailable, "destination keys unavailable");
  ASSIGN_OR_RETURN(auto keys, ParseJsonObject(keys_res.body));
  ASSIGN_OR_RETURN(auto pk_text, RequireString(keys, "hpke_public_key"));
  ASSIGN_OR_RETURN(auto key_id, OptionalInt(keys, "hpke_key_id"));
  auto pk = Base64UrlDecode(pk_text);
  if (!pk || !key_id || *key_id < 0 || *key_id > 255) {
    return Error(Code::kUnavailable, "destination keys malformed");
  }
  DestinationKey key{*pk, static_cast<int>(*key_id), now};
  std::lock_guard lock(mu_);
  keys_[region] = key;
  return key;
}

Result<std::string> Migrations::SendAccount(const std::string& id, const UserStep& step,
                                            const Json& snapshot, int64_t* bytes) {
  ASSIGN_OR_RETURN(auto dek, c_.codec.ExportUserKey(step.user));
  Json bundle = {{"user", step.user},
                 {"epoch", step.epoch},
                 {"dek_id", Base64Encode(dek.raw_id)},
                 {"dek", Base64Encode(dek.key)},
                 {"snapshot", snapshot}};
  std::string plain = DumpJson(bundle);
  bundle["dek"] = "";
  // A refusal with a reused key may only mean the destination rotated it: fetch it anew
  // and try once more before taking the refusal as final.
  Result<net::HttpResponse> res = Error(Code::kUnavailable, "not sent");
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto key = KeyOf(step.to, attempt > 0);
    if (!key.ok()) {
      sodium_memzero(plain.data(), plain.size());
      return key.status();
    }
    auto sealed =
        crypto::hpke::Seal(key->public_key, kInfo, SealAad(c_.region, step.to, step.user), plain);
    if (!sealed.ok()) {
      sodium_memzero(plain.data(), plain.size());
      return sealed.status();
    }
    net::HttpRequest send;
    send.method = "POST";
    send.target = "/internal/v1/migrate/receive";
    send.body = DumpJson({{"migration", id},
                          {"user", step.user},
                          {"key_id", key->key_id},
                          {"enc", Base64Encode(sealed->enc)},
                          {"ct", Base64Encode(sealed->ct)}});
    *bytes += static_cast<int64_t>(send.body.size());
    res = c_.inter.CallSync(step.to, send);
    if (!res.ok() || res->status != 400) break;
  }
  sodium_memzero(plain.data(), plain.size());
  if (!res.ok()) return res.status();
  if (res->status != 200) {
    auto err = ParseJsonObject(res->body);
    // Refusals are final (the policy or the user's state there); anything else is retried.
    const bool refused = res->status == 400 || res->status == 403 || res->status == 409;
    return Error(refused ? Code::kConflict : Code::kUnavailable,
                 "destination refused the account: " +
                     (err.ok() ? err->value("message", "") : std::to_string(res->status)));
  }
  ASSIGN_OR_RETURN(auto answer, ParseJsonObject(res->body));
  return answer.value("digest", "");
}

Status Migrations::MoveOne(const std::string& id, UserStep& step, int64_t* bytes) {
  std::optional<Json> fenced_snapshot;  // the last state, reused for the transfer's counts
  if (step.state == "pending") {
    ASSIGN_OR_RETURN(auto placement, c_.accounts.PlacementOf(step.user));
    if (!placement || placement->region != c_.region || placement->state != "active") {
      step.state = "skipped";  // deleted, or moved by someone else meanwhile
      return SaveStep(id, step);
    }
    ASSIGN_OR_RETURN(auto reserved, c_.shop.HasReservation(step.user));
    if (reserved) return Error(Code::kUnavailable, "waiting for a reservation to settle");
    ASSIGN_OR_RETURN(auto snapshot, Snapshot(step.user));
    ASSIGN_OR_RETURN(auto country, RequireString(snapshot["account"]["profile"], "country"));
    if (c_.policies.Latest()->HomeFor(country) != step.to) {
      return Error(Code::kConflict, "the policy no longer sends this user there");
    }
    step.epoch = placement->epoch + 1;
    step.digest = Digest(snapshot);
    ASSIGN_OR_RETURN(auto theirs, SendAccount(id, step, snapshot, bytes));
    if (theirs != step.digest) return Error(Code::kIntegrityError, "copy digest mismatch");
    step.state = "copied";
    RETURN_IF_ERROR(SaveStep(id, step));
  }
  // The fence is not recorded as a step: after a crash "copied" fences again, which changes
  // nothing for a fenced user, and saves a synced write per user.
  if (step.state == "copied") {
    RETURN_IF_ERROR(c_.accounts.SetState(step.user, "fenced"));
    step.state = "fenced";
  }
  if (step.state == "fenced") {
    const auto fenced_at = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(auto snapshot, Snapshot(step.user));
    const std::string now_digest = Digest(snapshot);
    if (now_digest != step.digest) {  // written to during the copy: catch up
      // The step keeps the digest the destination confirmed until it confirms this one.
      auto theirs = SendAccount(id, step, snapshot, bytes);
      if (!theirs.ok()) return theirs.status();
      if (*theirs != now_digest) return Error(Code::kIntegrityError, "catch-up digest mismatch");
      step.digest = now_digest;
      RETURN_IF_ERROR(SaveStep(id, step));
    }
    net::HttpRequest act;
    act.method = "POST";
    act.target = "/internal/v1/migrate/activate";
    act.body = DumpJson({{"migration", id},
                         {"user", step.user},
                         {"epoch", step.epoch},
                         {"digest", step.digest},
                         {"details", TransferDetails(id, step, snapshot)}});
    ASSIGN_OR_RETURN(auto res, c_.inter.CallSync(step.to, act));
    if (res.status != 200) return Error(Code::kUnavailable, "destination did not activate");
    // Recorded: from here a repeat would find the source changed by its own purge.
    step.state = "activated";
    RETURN_IF_ERROR(SaveStep(id, step));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - fenced_at)
            .count();
    {
      std::lock_guard lock(mu_);
      fence_ms_[id].push_back(ms);
    }
    fenced_snapshot = std::move(snapshot);
  }
  if (step.state == "activated") {
    // Fenced since, so unchanged. After a crash in the purge the data may already be gone:
    // the counts are then omitted.
    if (!fenced_snapshot) {
      auto snapshot = Snapshot(step.user);
      fenced_snapshot = snapshot.ok() ? std::move(*snapshot) : Json();
    }
    const Json details = TransferDetails(id, step, *fenced_snapshot);
    RETURN_IF_ERROR(c_.shop.DeleteUserData(step.user).status());
    RETURN_IF_ERROR(c_.accounts.PurgeMoved(step.user, step.to, step.epoch, details));
    step.state = "done";
    RETURN_IF_ERROR(SaveStep(id, step, "users_moved"));
  }
  return Status::Ok();
}

bool Migrations::Paused(const std::string& id) {
  auto raw = c_.store.Get(Space::kMeta, RecordKey(id));
  if (!raw.ok() || !*raw) return true;
  auto rec = ParseJsonObject(**raw);
  return !rec.ok() || rec->value("paused", false);
}

void Migrations::Publish(const std::string& id) {
  auto status = Get(id);
  if (!status.ok()) return;
  (*status)["as_of"] = FormatRfc3339(SystemClock::Instance().NowMs());
  net::HttpRequest put;
  put.method = "PUT";
  put.target = "/internal/v1/public/migration";
  put.body = DumpJson(*status);
  (void)c_.inter.FanOutAll(put);  // best effort: the next pass sends it again
}

void Migrations::RunOne(const std::string& id) {
  std::vector<UserStep> todo;
  (void)c_.store.Scan(Space::kMeta, StepPrefix(id), [&](std::string_view k, std::string_view v) {
    auto j = ParseJsonObject(v);
    if (!j.ok()) return true;
    UserStep s;
    s.user = std::string(k.substr(StepPrefix(id).size()));
    s.to = j->value("to", "");
    s.state = j->value("state", "pending");
    s.digest = j->value("digest", "");
    s.epoch = j->value("epoch", int64_t{0});
    s.attempts = j->value("attempts", 0);
    if (s.state != "done" && s.state != "failed" && s.state != "skipped") todo.push_back(s);
    return true;
  });
  if (todo.empty()) {
    // Done only once the moved users' keys are out of the engine's files too.
    if (Status st = c_.codec.PurgeShredded(); !st.ok()) {
      log::Error("migration_purge_failed", {{"id", id}, {"error", st.message()}});
      return;
    }
    Status st = UpdateRecord(id, [](Json& rec) {
      rec["state"] = "done";
      rec["finished_at"] = FormatRfc3339(SystemClock::Instance().NowMs());
    });
    if (!st.ok()) return;
    log::Info("migration_done", {{"id", id}});
    Publish(id);
    return;
  }
  // Fenced users first: they are the ones waiting.
  std::stable_sort(todo.begin(), todo.end(), [](const UserStep& a, const UserStep& b) {
    return (a.state != "pending") > (b.state != "pending");
  });
  const auto started = std::chrono::steady_clock::now();
  size_t next = 0;
  std::mutex next_mu;
  std::atomic<std::chrono::steady_clock::time_point> last_purge{std::chrono::steady_clock::now()};
  auto worker = [&] {
    for (;;) {
      size_t i;
      {
        std::lock_guard lock(next_mu);
        if (stop_ || next >= todo.size() || Paused(id) || !KeepRunning(id)) return;
        i = next++;
        if (s_.users_per_s > 0) {  // throttle: user i starts no earlier than i / rate
          auto due = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   std::chrono::duration<double>(i / s_.users_per_s));
          std::this_thread::sleep_until(due);
        }
      }
      UserStep& step = todo[i];
      int64_t bytes = 0;
      Status st = MoveOne(id, step, &bytes);
      // Shredded keys leave the engine's files at least every second, in one purge for
      // every user moved meanwhile (the workers share it).
      if (std::chrono::steady_clock::now() - last_purge.load() > std::chrono::seconds(1)) {
        last_purge = std::chrono::steady_clock::now();
        if (Status p = c_.codec.PurgeShredded(); !p.ok()) {
          log::Error("migration_purge_failed", {{"id", id}, {"error", p.message()}});
        }
      }
      if (bytes > 0) (void)Count(id, "bytes", bytes);
      if (!st.ok()) {
        ++step.attempts;
        // A policy that no longer sends the user there, or a copy that never verifies,
        // fails the user; anything else (a region down, a reservation) is retried.
        const bool final = st.code() == Code::kConflict ||
                           (st.code() == Code::kIntegrityError && step.attempts >= 5);
        if (final && step.state == "pending") {
          step.state = "failed";
          log::Error("migration_user_failed", {{"id", id}, {"error", st.message()}});
          (void)SaveStep(id, step, "users_failed");
        } else {
          (void)SaveStep(id, step);
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, s_.parallel); ++t)
    threads.push_back(NamedThread("migrate-user", worker));
  for (auto& t : threads) t.join();
  Publish(id);
}

void Migrations::Loop() {
  for (;;) {
    std::vector<std::string> running;
    {
      std::unique_lock lock(mu_);
      if (stop_) return;
      (void)c_.store.Scan(Space::kMeta, "mig/", [&](std::string_view k, std::string_view v) {
        if (k.find("/u/") != std::string_view::npos) return true;
        auto rec = ParseJsonObject(v);
        if (rec.ok() && rec->value("state", "") == "running" && !rec->value("paused", false)) {
          running.push_back(rec->value("id", ""));
        }
        return true;
      });
    }
    // One node of the region runs each migration: the one holding its claim.
    for (const auto& id : running) {
      if (Claim(id)) RunOne(id);
    }
    std::unique_lock lock(mu_);
    if (stop_) return;
    cv_.wait_for(lock, std::chrono::milliseconds(running.empty() ? 1000 : s_.retry_ms));
  }
}

Result<Json> Migrations::Receive(const std::string& from, const Json& body) {
  ASSIGN_OR_RETURN(auto user, RequireString(body, "user", 64));
  ASSIGN_OR_RETURN(auto enc_text, RequireString(body, "enc", 1024));
  ASSIGN_OR_RETURN(auto ct_text, RequireString(body, "ct", SIZE_MAX));
  ASSIGN_OR_RETURN(auto key_id_field, OptionalInt(body, "key_id"));
  auto enc = Base64Decode(enc_text);
  auto ct = Base64Decode(ct_text);
  const int64_t key_id = key_id_field.value_or(-1);
  if (user.empty() || !enc || !ct || key_id < 0 || key_id > 255) {
    return Error(Code::kInvalidField, "malformed account transfer");
  }
  auto key = c_.keys.HpkeById(static_cast<uint8_t>(key_id), SystemClock::Instance().NowMs());
  if (!key) return Error(Code::kInvalidField, "unknown key id");
  ASSIGN_OR_RETURN(auto plain, crypto::hpke::Open(key->private_key, *enc, kInfo,
                                                  SealAad(from, c_.region, user), *ct));
  auto bundle = ParseJsonObject(plain);
  sodium_memzero(plain.data(), plain.size());
  if (!bundle.ok() || bundle->value("user", "") != user) {
    return Error(Code::kInvalidField, "malformed account transfer");
  }
  auto field = [](const Json& j, const char* name) {
    auto it = j.is_object() ? j.find(name) : j.end();
    return it != j.end() && it->is_object() ? *it : Json::object();
  };
  const Json snapshot = field(*bundle, "snapshot");
  const Json account = field(snapshot, "account");
  const Json orders = field(snapshot, "orders");
  const std::string country = field(account, "profile").value("country", "");
  if (c_.policies.Latest()->HomeFor(country) != c_.region) {
    return Error(Code::kResidencyViolation, "the policy does not home this user here");
  }
  ASSIGN_OR_RETURN(auto placement, c_.accounts.PlacementOf(user));
  if (placement && placement->state == "active") {
    return Error(Code::kConflict, "the user is already active here");
  }
  auto dek_id = Base64Decode(bundle->value("dek_id", ""));
  auto dek = Base64Decode(bundle->value("dek", ""));
  (*bundle)["dek"] = "";
  if (!dek_id || !dek) return Error(Code::kInvalidField, "malformed data key");
  keys::EnvelopeCodec::ExportedKey k{*dek_id, *dek};
  sodium_memzero(dek->data(), dek->size());
  RETURN_IF_ERROR(c_.codec.InstallUserKey(user, k));
  RETURN_IF_ERROR(c_.accounts.Import(user, account));
  RETURN_IF_ERROR(c_.shop.ImportUser(user, orders));
  ASSIGN_OR_RETURN(auto mine, Snapshot(user));
  return Json{{"digest", Digest(mine)}};
}

Status Migrations::Activate(const std::string& from, const Json& body) {
  ASSIGN_OR_RETURN(auto user, RequireString(body, "user", 64));
  ASSIGN_OR_RETURN(auto epoch_field, OptionalInt(body, "epoch"));
  ASSIGN_OR_RETURN(auto digest, RequireString(body, "digest", 128));
  const int64_t epoch = epoch_field.value_or(0);
  if (user.empty() || epoch <= 0) return Error(Code::kInvalidField, "malformed activation");
  ASSIGN_OR_RETURN(auto placement, c_.accounts.PlacementOf(user));
  if (placement && placement->state == "active" && placement->epoch >= epoch) {
    return Status::Ok();  // a retry
  }
  // What is here must be what the source verified under its fence.
  ASSIGN_OR_RETURN(auto mine, Snapshot(user));
  if (Digest(mine) != digest) {
    return Error(Code::kConflict, "the copy here differs from the source's");
  }
  Json details =
      body.contains("details") && body["details"].is_object() ? body["details"] : Json::object();
  details["from"] = from;
  return c_.accounts.Activate(user, epoch, details);
}

Result<Json> Migrations::UserState(const std::string& user_id) {
  ASSIGN_OR_RETURN(auto p, c_.accounts.PlacementOf(user_id));
  if (!p) return Json{{"state", "absent"}};
  ASSIGN_OR_RETURN(auto dek, c_.codec.DekOf(user_id));
  return Json{{"region", p->region},
              {"state", p->state},
              {"epoch", p->epoch},
              {"has_data_key", dek.has_value()}};
}

Result<Json> Migrations::UserStates(const Json& body) {
  auto users = body.find("users");
  if (users == body.end() || !users->is_array()) {
    return Error(Code::kInvalidField, "expected {\"users\": [...]}");
  }
  Json out = Json::object();
  for (const auto& u : *users) {
    if (!u.is_string()) return Error(Code::kInvalidField, "user ids are strings");
    ASSIGN_OR_RETURN(auto state, UserState(u.get<std::string>()));
    out[u.get<std::string>()] = std::move(state);
  }
  return Json{{"users", std::move(out)}};
}

Result<Json> Migrations::Verify(const std::string& id) {
  ASSIGN_OR_RETURN(auto record, c_.store.Get(Space::kMeta, RecordKey(id)));
  if (!record) return Error(Code::kNotFound, "no such migration");
  int64_t checked = 0;
  Json problems = Json::array();
  std::vector<std::pair<std::string, std::string>> moved;  // user, to
  RETURN_IF_ERROR(
      c_.store.Scan(Space::kMeta, StepPrefix(id), [&](std::string_view k, std::string_view v) {
        auto j = ParseJsonObject(v);
        if (j.ok() && j->value("state", "") == "done") {
          moved.emplace_back(k.substr(StepPrefix(id).size()), j->value("to", ""));
        }
        return true;
      }));
  // One question per destination, about all the users that went there.
  std::map<std::string, Json> by_destination;
  for (const auto& [user, to] : moved) {
    ++checked;
    ASSIGN_OR_RETURN(auto here, UserState(user));
    if (here.value("state", "") != "moved" || here.value("has_data_key", true)) {
      problems.push_back({{"user", user}, {"problem", "still readable at the source"}});
    }
    by_destination[to].push_back(user);
  }
  for (const auto& [to, users] : by_destination) {
    net::HttpRequest ask;
    ask.method = "POST";
    ask.target = "/internal/v1/migrate/users";
    ask.body = DumpJson({{"users", users}});
    auto res = c_.inter.CallSync(to, ask);
    auto there = res.ok() && res->status == 200 ? ParseJsonObject(res->body)
                                                : Result<Json>(Error(Code::kUnavailable, "down"));
    const Json states = there.ok() ? there->value("users", Json::object()) : Json::object();
    for (const auto& user : users) {
      const std::string uid = user.get<std::string>();
      auto it = states.find(uid);
      if (it == states.end() || !it->is_object() || it->value("state", "") != "active" ||
          it->value("region", "") != to) {
        problems.push_back({{"user", uid}, {"problem", "not active at " + to}});
      }
    }
  }
  return Json{{"id", id}, {"checked", checked}, {"problems", problems}, {"ok", problems.empty()}};
}

}  // namespace meridian::node
