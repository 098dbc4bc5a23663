#include "node/witness.h"

#include <charconv>

#include "audit/merkle.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/thread.h"

namespace meridian::node {
namespace {
Result<net::HttpResponse> Ask(InterRegion& inter, const std::string& region,
                              const std::string& method, const std::string& target,
                              std::string body = {}) {
  net::HttpRequest req;
  req.method = method;
  req.target = target;
  req.body = std::move(body);
  ASSIGN_OR_RETURN(auto r, inter.CallSync(region, std::move(req)));
  if (r.status != 200)
    return Error(Code::kUnavailable, "region answered " + std::to_string(r.status));
  return r;
}
}  // namespace

AuditDaemon::AuditDaemon(audit::AuditLog& log, storage::Store& store, InterRegion& inter,
                         const config::ClusterConfig& config, keys::KeyProvider& keys,
                         Metrics& metrics, bool witness)
    : log_(log),
      store_(store),
      inter_(inter),
      config_(config),
      keys_(keys),
      metrics_(metrics),
      witness_(witness) {}

AuditDaemon::~AuditDaemon() { Stop(); }

void AuditDaemon::Start() {
  metrics_.SetGauge("meridian_audit_alarms", 0);
  thread_ = NamedThread("audit-witness", [this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });
      if (stop_) break;
      lock.unlock();
      RunOnce();
      lock.lock();
    }
  });
}

void AuditDaemon::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Json AuditDaemon::Alarms() const {
  std::lock_guard lock(mu_);
  return alarms_;
}

void AuditDaemon::RunOnce() {
  if (auto st = log_.Publish(); !st.ok()) {
    log::Error("checkpoint_failed", {{"error", st.message()}});
  }
  if (!witness_) return;
  for (const auto* r : config_.HomeRegions()) {
    if (r->name != inter_.self()) Witness(r->name);
  }
}

void AuditDaemon::Alarm(const std::string& region, const std::string& reason) {
  log::Error("audit_alarm", {{"log_region", region}, {"reason", reason}});
  std::lock_guard lock(mu_);
  alarms_.push_back({{"region", region},
                     {"reason", reason},
                     {"at", FormatRfc3339(SystemClock::Instance().NowMs())}});
  metrics_.SetGauge("meridian_audit_alarms", static_cast<double>(alarms_.size()));
}

void AuditDaemon::Witness(const std::string& region) {
  // The last checkpoint seen from this region: "<size>|<base64 root>". Read before the new
  // one is fetched, and replaced only if unchanged: with several nodes witnessing, a
  // checkpoint fetched earlier is never compared with one seen later.
  const std::string seen_key = "witness/" + region;
  auto seen = store_.Get(storage::Space::kMeta, seen_key);
  if (!seen.ok()) return;
  auto keys = Ask(inter_, region, "GET", "/internal/v1/keys");
  auto note = Ask(inter_, region, "GET", "/internal/v1/audit/checkpoint");
  if (!keys.ok() || !note.ok()) return;  // unreachable now: try again next round
  auto k = ParseJsonObject(keys->body);
  if (!k.ok()) return;
  const std::string verifier = k->value("audit_verifier_key", "");
  auto body = audit::VerifyCheckpoint(note->body, verifier);
  if (!body.ok()) return Alarm(region, "checkpoint signature does not verify");

  if (seen->has_value()) {
    std::string_view v = **seen;
    uint64_t old_size = 0;
    std::from_chars(v.data(), v.data() + v.find('|'), old_size);
    auto old_root = Base64Decode(v.substr(v.find('|') + 1));
    if (!old_root) return;
    if (body->size < old_size) return Alarm(region, "the log shrank (rollback)");
    if (body->size == old_size && body->root != *old_root) {
      return Alarm(region, "same size, different root (fork)");
    }
    if (body->size > old_size && old_size > 0) {
      auto proof = Ask(inter_, region, "GET",
                       "/internal/v1/audit/consistency?first=" + std::to_string(old_size) +
                           "&second=" + std::to_string(body->size));
      if (!proof.ok()) return;
      auto j = ParseJsonObject(proof->body);
      std::vector<audit::Hash> path;
      if (j.ok()) {
        for (const auto& h : j->value("hashes", Json::array())) {
          path.push_back(Base64Decode(h.get<std::string>()).value_or(""));
        }
      }
      if (!audit::VerifyConsistency(old_size, body->size, *old_root, body->root, path)) {
        return Alarm(region, "new checkpoint is not consistent with the last one seen");
      }
    }
  }
  storage::WriteBatch b;
  b.Put(storage::Space::kMeta, seen_key,
        std::to_string(body->size) + "|" + Base64Encode(body->root));
  b.Expect(storage::Space::kMeta, seen_key, *seen);
  if (!store_.Write(b).ok()) return;  // another node of this region witnessed meanwhile
  // Cosign: our note signature over the same text, sent back to the log's region.
  const std::string name = "meridian/" + inter_.self();
  std::string text(audit::NoteText(note->body));
  std::string line = audit::SignatureLine(name, keys_.SigningPublicKey(), keys_.Sign(text));
  (void)Ask(inter_, region, "POST", "/internal/v1/audit/cosign",
            DumpJson({{"text", text}, {"line", line}}));
}

}  // namespace meridian::node
