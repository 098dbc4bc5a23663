#include "node/policy_service.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "node/inter_region.h"

namespace meridian::node {
namespace {
using storage::Space;
constexpr std::string_view kStoredPolicyKey = "policy/source";
// The policy version last written into the audit log (a restart logs nothing new).
constexpr std::string_view kLoggedPolicyKey = "audit/seen/policy";

std::string LoggedName(const policy::Policy& p) {
  return fmt::format("{}/{}", p.name(), p.version());
}
}  // namespace

PolicyService::PolicyService(const config::ClusterConfig& config, std::string region,
                             storage::Store& store, audit::AuditSink& audit)
    : config_(config), region_(std::move(region)), store_(store), audit_(audit) {}

Result<policy::Policy> PolicyService::Parse(const std::string& source) const {
  std::vector<policy::Diagnostic> diags;
  auto p = policy::Parse(source, "<policy>", config_.Roles(), &diags);
  if (!p.ok()) {
    std::string msg = "invalid policy";
    for (const auto& d : diags) msg += "; line " + std::to_string(d.line) + ": " + d.message;
    return Error(Code::kInvalidField, msg);
  }
  return p;
}

Status PolicyService::Start() {
  std::string source;
  if (auto text = policy::BuiltinText(config_.policy_spec)) {
    source = std::string(*text);
  } else {
    source = config::ReadFileOr(config_.policy_spec);
  }
  auto current = std::make_shared<const policy::Policy>(config_.policy);
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, std::string(kStoredPolicyKey)));
  if (stored) {
    auto p = Parse(*stored);
    if (p.ok() && p->version() > current->version()) {
      current = std::make_shared<const policy::Policy>(std::move(p).value());
      source = *stored;
    }
  }
  // The policy in force is in the log once per version, whatever changed it.
  ASSIGN_OR_RETURN(auto logged, store_.Get(Space::kMeta, std::string(kLoggedPolicyKey)));
  if (logged.value_or("") != LoggedName(*current)) {
    storage::WriteBatch b;
    b.Put(Space::kMeta, std::string(kLoggedPolicyKey), LoggedName(*current));
    RETURN_IF_ERROR(audit_.Commit(
        std::move(b),
        {audit::MakeEntry("policy.apply", region_, {}, SystemClock::Instance().NowMs(),
                          {{"policy", current->name()}, {"policy_version", current->version()}})}));
  }
  std::lock_guard lock(mu_);
  current_ = std::move(current);
  source_ = std::move(source);
  return Status::Ok();
}

std::shared_ptr<const policy::Policy> PolicyService::Current() {
  if (store_.Shared()) {
    bool due = false;
    {
      std::lock_guard lock(mu_);
      const int64_t now = SystemClock::Instance().NowMs();
      due = now - refreshed_ms_ >= 500;
      if (due) refreshed_ms_ = now;  // one reader refreshes, the others go on
    }
    if (due) (void)Refresh();
  }
  std::lock_guard lock(mu_);
  return current_;
}

std::shared_ptr<const policy::Policy> PolicyService::Latest() {
  if (store_.Shared()) (void)Refresh();  // unreadable: the copy in hand is the best known
  std::lock_guard lock(mu_);
  return current_;
}

Status PolicyService::Refresh() {
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, std::string(kStoredPolicyKey)));
  if (!stored) return Status::Ok();
  {
    std::lock_guard lock(mu_);
    if (*stored == source_) return Status::Ok();
  }
  auto p = Parse(*stored);
  if (!p.ok()) return p.status();
  std::lock_guard lock(mu_);
  if (p->version() <= current_->version()) return Status::Ok();
  // Another node of this region adopted (and logged) it.
  log::Info("policy_applied", {{"policy", p->name()},
                               {"policy_version", std::to_string(p->version())},
                               {"by", "another node"}});
  current_ = std::make_shared<const policy::Policy>(std::move(p).value());
  source_ = *stored;
  return Status::Ok();
}

std::string PolicyService::CurrentSource() const {
  std::lock_guard lock(mu_);
  return source_;
}

Result<std::string> PolicyService::SourceOf(std::string_view body) {
  auto j = ParseJsonObject(body);
  if (!j.ok()) return std::string(body);  // a TOML document
  auto builtin = j->find("builtin");
  if (builtin == j->end() || !builtin->is_string() || j->size() != 1) {
    return Error(Code::kInvalidField, "expected {\"builtin\":\"current\"} or a policy document");
  }
  auto text = policy::BuiltinText(builtin->get<std::string>());
  if (!text) return Error(Code::kInvalidField, "unknown builtin policy");
  return std::string(*text);
}

Result<std::shared_ptr<const policy::Policy>> PolicyService::Adopt(const std::string& source) {
  ASSIGN_OR_RETURN(auto parsed, Parse(source));
  RETURN_IF_ERROR(Refresh());  // what another node of the region adopted counts
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kMeta, std::string(kStoredPolicyKey)));
  std::lock_guard lock(mu_);
  if (parsed.version() == current_->version()) {
    if (source == source_) return current_;  // a retry
    return Error(Code::kConflict, fmt::format("policy version {} is already in force with other "
                                              "content; a change needs a higher version",
                                              parsed.version()));
  }
  if (parsed.version() < current_->version()) {
    return Error(Code::kConflict, fmt::format("policy version {} is older than version {} in force",
                                              parsed.version(), current_->version()));
  }
  auto next = std::make_shared<const policy::Policy>(std::move(parsed));
  storage::WriteBatch b;
  b.Put(Space::kMeta, std::string(kStoredPolicyKey), source);
  b.Expect(Space::kMeta, std::string(kStoredPolicyKey), stored);  // no other node's meanwhile
  b.Put(Space::kMeta, std::string(kLoggedPolicyKey), LoggedName(*next));
  RETURN_IF_ERROR(audit_.Commit(
      std::move(b), {audit::MakeEntry("policy.apply", region_, {}, SystemClock::Instance().NowMs(),
                                      {{"policy", next->name()},
                                       {"policy_version", next->version()},
                                       {"previous_version", current_->version()}})}));
  log::Info("policy_applied",
            {{"policy", next->name()}, {"policy_version", std::to_string(next->version())}});
  current_ = next;
  source_ = source;
  return next;
}

void PolicyService::CatchUp(InterRegion& inter) {
  net::HttpRequest ask;
  ask.method = "GET";
  ask.target = "/internal/v1/policy";
  for (auto& [region, res] : inter.FanOutAll(ask)) {
    if (!res.ok() || res->status != 200) continue;
    auto theirs = Parse(res->body);
    if (!theirs.ok() || theirs->version() <= Current()->version()) continue;
    auto adopted = Adopt(res->body);
    if (!adopted.ok()) {
      log::Error("policy_catch_up_failed",
                 {{"from", region}, {"error", adopted.status().message()}});
    }
  }
}

}  // namespace meridian::node
