#include "node/router.h"

#include "node/console.h"
#include "node/overview.h"
#include "node/rebalancer.h"

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "common/encoding.h"
#include "common/json.h"
#include "common/log.h"
#include "crypto/crypto.h"
#include "crypto/hpke.h"
#include "keys/keys.h"

namespace meridian::node {
namespace {

using net::HttpRequest;
using net::HttpResponse;
using net::Respond;

enum class RouteId {
  kHealth,
  kRegions,
  kMetrics,
  kConsole,
  kAccounts,
  kSessions,
  kMe,
  kRecord,
  kRecordList,
  kDevices,
  kExport,
  kAdminPlacement,
  kAdminRotate,
  kInternalDirectory,
  kInternalPlacement,
  kInternalKeys,
  kProducts,
  kSale,
  kPurchase,
  kPay,
  kMyOrders,
  kAdminProducts,
  kAdminSales,
  kAdminSaleStats,
  kInternalPublic,
  kInternalQuota,
  kInternalGrant,
  kInternalTransfer,
  kInternalTransferAck,
  kAuditTreeHead,
  kAuditEntries,
  kAuditInclusion,
  kAuditConsistency,
  kAuditAlarms,
  kInternalCheckpoint,
  kInternalConsistency,
  kInternalCosign,
  kResidency,
  kAdminPolicy,
  kAdminMigrations,
  kAdminMigrationPlan,
  kAdminMigration,
  kAdminMigrationAction,
  kInternalPolicy,
  kInternalMisplaced,
  kInternalMigrations,
  kInternalMigrationPlan,
  kInternalMigration,
  kInternalMigrationAction,
  kInternalMigrate,
  kInternalMigrateUser,
  kAdminOverview,
  kInternalOverview,
  kConsoleAsset,
};

enum class Access { kPublic, kPersonalNoToken, kUser, kAdmin, kInternal };

struct Route {
  RouteId id;
  std::string_view name;  // the template: the only form of the path in logs and metrics
  Access access;
  std::vector<std::string_view> methods;
};

const std::vector<Route>& Routes() {
  static const std::vector<Route> kRoutes = {
      {RouteId::kHealth, "/v1/health", Access::kPublic, {"GET"}},
      {RouteId::kRegions, "/v1/regions", Access::kPublic, {"GET"}},
      {RouteId::kMetrics, "/metrics", Access::kPublic, {"GET"}},
      {RouteId::kConsole, "/", Access::kPublic, {"GET"}},
      // The console's built files (scripts, styles), embedded in the binary.
      {RouteId::kConsoleAsset, "/console/{file}", Access::kPublic, {"GET"}},
      // The whole cluster for the console: counts and states only, no personal data.
      {RouteId::kAdminOverview, "/v1/admin/overview", Access::kAdmin, {"GET"}},
      {RouteId::kInternalOverview, "/internal/v1/overview", Access::kInternal, {"GET"}},
      {RouteId::kAccounts, "/v1/accounts", Access::kPersonalNoToken, {"POST"}},
      {RouteId::kSessions, "/v1/sessions", Access::kPersonalNoToken, {"POST"}},
      {RouteId::kMe, "/v1/me", Access::kUser, {"GET", "DELETE"}},
      {RouteId::kExport, "/v1/me/export", Access::kUser, {"GET"}},
      {RouteId::kResidency, "/v1/me/residency", Access::kUser, {"GET"}},
      {RouteId::kRecord,
       "/v1/me/records/{collection}/{key}",
       Access::kUser,
       {"GET", "PUT", "DELETE"}},
      {RouteId::kRecordList, "/v1/me/records/{collection}", Access::kUser, {"GET"}},
      {RouteId::kDevices, "/v1/me/devices", Access::kUser, {"GET", "POST"}},
      {RouteId::kAdminPlacement, "/v1/admin/users/{user_id}/placement", Access::kAdmin, {"GET"}},
      {RouteId::kAdminRotate, "/v1/admin/keys/rotate", Access::kAdmin, {"POST"}},
      {RouteId::kInternalDirectory,
       "/internal/v1/directory/phone/{pseudonym}",
       Access::kInternal,
       {"GET"}},
      {RouteId::kInternalPlacement, "/internal/v1/placement/{user_id}", Access::kInternal, {"GET"}},
      {RouteId::kInternalKeys, "/internal/v1/keys", Access::kInternal, {"GET"}},
      {RouteId::kProducts, "/v1/products", Access::kPublic, {"GET"}},
      {RouteId::kSale, "/v1/sales/{id}", Access::kPublic, {"GET"}},
      {RouteId::kPurchase, "/v1/sales/{id}/purchase", Access::kUser, {"POST"}},
      {RouteId::kPay, "/v1/orders/{id}/pay", Access::kUser, {"POST"}},
      {RouteId::kMyOrders, "/v1/me/orders", Access::kUser, {"GET"}},
      {RouteId::kAdminProducts, "/v1/admin/products", Access::kAdmin, {"POST"}},
      {RouteId::kAdminSales, "/v1/admin/sales", Access::kAdmin, {"POST"}},
      {RouteId::kAdminSaleStats, "/v1/admin/sales/{id}/stats", Access::kAdmin, {"GET"}},
      {RouteId::kAuditTreeHead, "/v1/admin/audit/tree-head", Access::kAdmin, {"GET"}},
      {RouteId::kAuditEntries, "/v1/admin/audit/entries", Access::kAdmin, {"GET"}},
      {RouteId::kAuditInclusion, "/v1/admin/audit/proof/inclusion", Access::kAdmin, {"GET"}},
      {RouteId::kAuditConsistency, "/v1/admin/audit/proof/consistency", Access::kAdmin, {"GET"}},
      {RouteId::kAuditAlarms, "/v1/admin/audit/alarms", Access::kAdmin, {"GET"}},
      {RouteId::kInternalCheckpoint, "/internal/v1/audit/checkpoint", Access::kInternal, {"GET"}},
      {RouteId::kInternalConsistency, "/internal/v1/audit/consistency", Access::kInternal, {"GET"}},
      {RouteId::kInternalCosign, "/internal/v1/audit/cosign", Access::kInternal, {"POST"}},
      {RouteId::kInternalPublic, "/internal/v1/public/{kind}", Access::kInternal, {"PUT"}},
      {RouteId::kInternalQuota, "/internal/v1/sales/{id}/quota", Access::kInternal, {"GET"}},
      {RouteId::kInternalGrant, "/internal/v1/sales/{id}/grant", Access::kInternal, {"POST"}},
      {RouteId::kInternalTransfer,
       "/internal/v1/sales/{id}/transfers/{tid}",
       Access::kInternal,
       {"PUT"}},
      {RouteId::kInternalTransferAck,
       "/internal/v1/sales/{id}/transfers/{tid}/ack",
       Access::kInternal,
       {"POST"}},
      {RouteId::kAdminPolicy, "/v1/admin/policy", Access::kAdmin, {"PUT"}},
      {RouteId::kAdminMigrations, "/v1/admin/migrations", Access::kAdmin, {"POST"}},
      // ?from=REGION: users and bytes a migration would move (`meridian migrate plan`)
      {RouteId::kAdminMigrationPlan, "/v1/admin/migration-plan", Access::kAdmin, {"GET"}},
      {RouteId::kAdminMigration, "/v1/admin/migrations/{id}", Access::kAdmin, {"GET"}},
      // pause, resume, verify (for `meridian migrate`)
      {RouteId::kAdminMigrationAction,
       "/v1/admin/migrations/{id}/{action}",
       Access::kAdmin,
       {"POST"}},
      {RouteId::kInternalPolicy, "/internal/v1/policy", Access::kInternal, {"GET", "PUT"}},
      {RouteId::kInternalMisplaced, "/internal/v1/policy/misplaced", Access::kInternal, {"GET"}},
      {RouteId::kInternalMigrations, "/internal/v1/migrations", Access::kInternal, {"POST"}},
      {RouteId::kInternalMigrationPlan, "/internal/v1/migration-plan", Access::kInternal, {"GET"}},
      {RouteId::kInternalMigration, "/internal/v1/migrations/{id}", Access::kInternal, {"GET"}},
      {RouteId::kInternalMigrationAction,
       "/internal/v1/migrations/{id}/{action}",
       Access::kInternal,
       {"POST"}},
      {RouteId::kInternalMigrate, "/internal/v1/migrate/{step}", Access::kInternal, {"POST"}},
      {RouteId::kInternalMigrateUser,
       "/internal/v1/migrate/user/{user_id}",
       Access::kInternal,
       {"GET"}},
  };
  return kRoutes;
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  if (path.empty() || path[0] != '/') return parts;
  path.remove_prefix(1);
  while (!path.empty()) {
    size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
    if (path.empty()) parts.emplace_back();  // trailing slash: an empty segment
  }
  return parts;
}

struct Match {
  const Route* route = nullptr;
  std::vector<std::string> params;  // percent-decoded
  bool bad_escape = false;
};

Match MatchRoute(std::string_view path) {
  // The patterns' segments, split once.
  static const auto* const kPatterns = [] {
    auto* p = new std::vector<std::vector<std::string_view>>();
    for (const auto& r : Routes()) p->push_back(SplitPath(r.name));
    return p;
  }();
  const auto segs = SplitPath(path);
  const auto& routes = Routes();
  for (size_t k = 0; k < routes.size(); ++k) {
    const auto& pat = (*kPatterns)[k];
    if (pat.size() != segs.size()) continue;
    auto is_param = [&](size_t i) { return !pat[i].empty() && pat[i].front() == '{'; };
    bool ok = true;
    for (size_t i = 0; i < pat.size() && ok; ++i) ok = is_param(i) || pat[i] == segs[i];
    if (!ok) continue;
    Match m;
    m.route = &routes[k];
    for (size_t i = 0; i < pat.size(); ++i) {
      if (!is_param(i)) continue;
      auto decoded = net::PercentDecode(segs[i]);
      if (!decoded) m.bad_escape = true;
      m.params.push_back(decoded.value_or(""));
    }
    return m;
  }
  return {};
}

HttpResponse JsonOk(int status, const Json& body) {
  return HttpResponse::Json(status, DumpJson(body));
}

std::string_view BearerToken(const HttpRequest& req) {
  std::string_view h = req.Header("authorization");
  if (h.size() < 7) return {};
  std::string scheme(h.substr(0, 7));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer ") return {};
  h.remove_prefix(7);
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  return h;
}

// Sealed messages may carry "ts" (Unix seconds) and "nonce": such a message is accepted
// once, and only within the window around its time.
class ReplayCache {
 public:
  static constexpr int64_t kWindowMs = 300'000;
  static constexpr size_t kMaxEntries = 100'000;

  Status Check(const Json& msg, int64_t now_ms) {
    auto ts = msg.find("ts");
    auto nonce = msg.find("nonce");
    if (ts == msg.end() && nonce == msg.end()) return Status::Ok();
    if (ts == msg.end() || !ts->is_number_integer() || nonce == msg.end() || !nonce->is_string() ||
        nonce->get_ref<const std::string&>().size() > 128) {
      return Error(Code::kInvalidField, "sealed 'ts' and 'nonce' go together");
    }
    int64_t t_ms = ts->get<int64_t>() * 1000;
    if (t_ms < now_ms - kWindowMs || t_ms > now_ms + kWindowMs) {
      return Error(Code::kExpired, "sealed message is outside the replay window");
    }
    std::lock_guard lock(mu_);
    std::erase_if(seen_, [&](const auto& kv) { return kv.second < now_ms; });
    if (seen_.size() >= kMaxEntries) {
      return Error(Code::kOverloaded, "too many sealed messages in the replay window");
    }
    auto [it, fresh] = seen_.emplace(nonce->get<std::string>(), t_ms + kWindowMs);
    if (!fresh) return Error(Code::kConflict, "sealed message was replayed");
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> seen_;
};

// The largest account one migration message carries.
constexpr size_t kMaxAccountBytes = 256u << 20;

class Router final : public net::Handler {
 public:
  explicit Router(NodeContext ctx)
      : c_(std::move(ctx)),
        overview_(OverviewSources{c_.config, c_.self, c_.accounts, c_.shop, c_.audit, c_.policies,
                                  c_.migrations, c_.audit_alarms, c_.inter, c_.metrics}) {}

  size_t BodyLimit(std::string_view method, std::string_view path) const override {
    if (method == "PUT" && path.rfind("/v1/me/records/", 0) == 0) {
      return c_.config.knobs.max_record_bytes;
    }
    // A moving account travels as one sealed message (internal callers only).
    if (method == "POST" && path == "/internal/v1/migrate/receive") return kMaxAccountBytes;
    return c_.config.knobs.max_body_bytes;
  }

  void Handle(HttpRequest&& req, Respond respond) override {
    Match m = MatchRoute(req.path);
    std::string_view route_name = m.route ? m.route->name : "unmatched";
    auto start = std::chrono::steady_clock::now();
    // A request another region forwarded was already counted as an answer where it entered.
    const bool entry = req.Header(kForwardedHeader).empty();
    Respond done = [this, route_name, start, entry, respond = std::move(respond)](HttpResponse r) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      c_.metrics.ObserveRequest(route_name, r.status, secs, entry);
      respond(std::move(r));
    };
    if (m.route == nullptr) {
      return done(HttpResponse::FromStatus(Error(Code::kNotFound, "no such route")));
    }
    bool method_ok = false;
    for (auto meth : m.route->methods) method_ok |= meth == req.method;
    if (!method_ok) {
      auto r = HttpResponse::FromStatus(
          Error(Code::kMethodNotAllowed, "method not allowed on this route"));
      std::string allow;
      for (auto meth : m.route->methods) allow += (allow.empty() ? "" : ", ") + std::string(meth);
      r.SetHeader("allow", allow);
      return done(std::move(r));
    }
    if (m.bad_escape) {
      return done(HttpResponse::FromStatus(Error(Code::kInvalidField, "malformed path escape")));
    }
    Dispatch(*m.route, std::move(m.params), std::move(req), std::move(done));
  }

 private:
  bool IsInternal(const HttpRequest& req) const {
    // With TLS, the caller must also prove with its certificate that it is a region.
    if (c_.config.tls && c_.config.Find(req.peer_identity) == nullptr) return false;
    return crypto::ConstantTimeEquals(req.Header(kInternalHeader), c_.keys.InternalToken());
  }
  bool IsAdmin(const HttpRequest& req) const {
    return crypto::ConstantTimeEquals(BearerToken(req), c_.admin_token);
  }

  // Runs `fn(done)` on a worker of `pool` (the node's own by default), which answers
  // through `done` then or later; a full queue answers 429 at once.
  template <typename Fn>
  void OnWorkerAsync(Respond done, Fn fn, WorkerPool* pool = nullptr) {
    OnWorkerAsync(std::make_shared<Respond>(std::move(done)), std::move(fn), pool);
  }
  template <typename Fn>
  void OnWorkerAsync(std::shared_ptr<Respond> shared, Fn fn, WorkerPool* pool = nullptr) {
    bool posted = (pool ? *pool : c_.workers).TryPost([shared, fn = std::move(fn)]() mutable {
      fn(*shared);
    });
    if (!posted) {
      (*shared)(HttpResponse::FromStatus(Error(Code::kOverloaded, "node is overloaded")));
    }
  }
  // Runs `fn` on a worker and answers with what it returns.
  template <typename Fn>
  void OnWorker(Respond done, Fn fn, WorkerPool* pool = nullptr) {
    OnWorkerAsync(
        std::move(done), [fn = std::move(fn)](const Respond& respond) mutable { respond(fn()); },
        pool);
  }

  void Dispatch(const Route& route, std::vector<std::string> params, HttpRequest&& req,
                Respond done) {
    switch (route.access) {
      case Access::kPublic:
        if (route.id == RouteId::kRegions) {
          return OnWorker(std::move(done), [this] { return HttpResponse::Json(200, Regions()); });
        }
        if (route.id == RouteId::kSale) {
          return OnWorker(std::move(done),
                          [this, params = std::move(params)] { return SaleView(params[0]); });
        }
        if (route.id == RouteId::kConsoleAsset) return done(ConsoleAsset(params[0]));
        return done(Public(route.id));
      case Access::kPersonalNoToken: {
        auto shared_req = std::make_shared<HttpRequest>(std::move(req));
        return OnWorker(std::move(done), [this, id = route.id, shared_req] {
          return id == RouteId::kAccounts ? Register(*shared_req) : Login(*shared_req);
        });
      }
      case Access::kAdmin:
        if (!IsAdmin(req)) {
          return done(HttpResponse::FromStatus(
              Error(Code::kUnauthenticated, "this call needs the cluster's admin token")));
        }
        return OnWorker(std::move(done), [this, id = route.id, params = std::move(params),
                                          body = std::move(req.body), query = req.query] {
          switch (id) {
            case RouteId::kAuditTreeHead:
            case RouteId::kAuditEntries:
            case RouteId::kAuditInclusion:
            case RouteId::kAuditConsistency:
            case RouteId::kAuditAlarms: {
              HttpRequest q;
              q.query = query;
              return Audit(id, q);
            }
            case RouteId::kAdminRotate:
              return Rotate(body);
            case RouteId::kAdminProducts:
              return CreateProduct(body);
            case RouteId::kAdminSales:
              return CreateSale(body);
            case RouteId::kAdminSaleStats:
              return SaleStats(params[0]);
            case RouteId::kAdminPolicy:
              return PutPolicy(body);
            case RouteId::kAdminOverview:
              return JsonOk(200, overview_.Cluster());
            case RouteId::kAdminMigrations:
            case RouteId::kAdminMigration:
            case RouteId::kAdminMigrationAction:
              return MigrationCall(id, params, body);
            case RouteId::kAdminMigrationPlan: {
              HttpRequest q;
              q.query = query;
              return MigrationCall(id, {std::string(q.Query("from").value_or(""))}, body);
            }
            default:
              return AdminPlacement(params[0]);
          }
        });
      case Access::kInternal:
        if (!IsInternal(req)) {
          return done(HttpResponse::FromStatus(
              Error(Code::kUnauthenticated, "internal endpoint: region credentials required")));
        }
        // The calling region: its certificate's name with TLS, else the header it sent
        // (trusted only together with the internal credential checked above).
        return OnWorker(
            std::move(done),
            [this, id = route.id, params = std::move(params), body = std::move(req.body),
             query = req.query, method = req.method,
             peer = req.peer_identity.empty() ? std::string(req.Header(kForwardedHeader))
                                              : req.peer_identity] {
              if (id == RouteId::kInternalPublic) return StorePublic(params[0], body);
              if (id == RouteId::kInternalQuota) {
                // ?counts=0: the stock only, without scanning the sale's ledger.
                return QuotaOf(params[0], query.find("counts=0") == std::string::npos);
              }
              if (id == RouteId::kInternalCheckpoint || id == RouteId::kInternalConsistency) {
                HttpRequest q;
                q.query = query;
                return Audit(id == RouteId::kInternalCheckpoint ? RouteId::kAuditTreeHead
                                                                : RouteId::kAuditConsistency,
                             q);
              }
              if (id == RouteId::kInternalCosign) return Cosign(peer, body);
              if (id == RouteId::kInternalOverview) return JsonOk(200, overview_.Local());
              if (id >= RouteId::kInternalPolicy && id <= RouteId::kInternalMigrateUser) {
                return InternalMigration(id, method, params, peer, body);
              }
              if (id == RouteId::kInternalGrant || id == RouteId::kInternalTransfer ||
                  id == RouteId::kInternalTransferAck) {
                return Transfer(id, params, body);
              }
              return Internal(id, params.empty() ? std::string() : params[0]);
            },
            &c_.internal_workers);  // never queued behind this region's own waiting work
      case Access::kUser:
        return UserRequest(route, std::move(params), std::move(req), std::move(done));
    }
  }

  HttpResponse Public(RouteId id) {
    switch (id) {
      case RouteId::kHealth:
        return JsonOk(
            200,
            {{"status", "ok"}, {"region", c_.self.name}, {"role", policy::RoleName(c_.self.role)}});
      case RouteId::kProducts: {
        Json list = Json::array();
        for (const auto& prod : c_.shop.Products()) list.push_back(shop::ProductJson(prod));
        return JsonOk(200, {{"products", list}});
      }
      case RouteId::kMetrics: {
        HttpResponse r;
        r.SetHeader("content-type", "text/plain; version=0.0.4");
        r.body = c_.metrics.Render();
        return r;
      }
      default:
        return ConsolePage();
    }
  }

  // This region's public keys, as peers and /v1/regions publish them.
  Json OwnKeys() const {
    auto hpke = c_.keys.CurrentHpke();
    return {{"region", c_.self.name},
            {"hpke_public_key", Base64UrlEncode(hpke.public_key)},
            {"hpke_key_id", hpke.key_id},
            {"audit_verifier_key",
             crypto::NoteVerifierKey("meridian/" + c_.self.name, c_.keys.SigningPublicKey())}};
  }

  // Every region's public keys: ours, and the home regions' as they last answered
  // (refreshed at most every 10 s; a region that is down shows null).
  std::string Regions() {
    std::map<std::string, Json> keys;
    {
      std::lock_guard lock(peer_mu_);
      auto now = std::chrono::steady_clock::now();
      if (peer_keys_.empty() || now - peer_keys_at_ > std::chrono::seconds(10)) {
        net::HttpRequest ask;
        ask.method = "GET";
        ask.target = "/internal/v1/keys";
        peer_keys_.clear();
        for (auto& [region, res] : c_.inter.FanOutHomes(ask)) {
          if (!res.ok() || res->status != 200) continue;
          auto j = ParseJsonObject(res->body);
          if (j.ok()) peer_keys_[region] = *j;
        }
        peer_keys_at_ = now;
      }
      keys = peer_keys_;
    }
    if (c_.self.role == policy::Role::kHome) keys[c_.self.name] = OwnKeys();
    Json regions = Json::array();
    for (const auto& r : c_.config.regions) {
      Json k = keys.count(r.name) ? keys[r.name] : Json::object();
      regions.push_back({{"name", r.name},
                         {"role", policy::RoleName(r.role)},
                         {"url", r.url},
                         {"nodes", r.Urls()},
                         {"hpke_public_key", k.value("hpke_public_key", Json())},
                         {"hpke_key_id", k.value("hpke_key_id", Json())},
                         {"audit_verifier_key", k.value("audit_verifier_key", Json())}});
    }
    Json countries = Json::object();
    const auto pol = c_.policies.Current();
    for (const auto& [k, v] : pol->countries()) countries[k] = v;
    return DumpJson({{"policy_version", pol->version()},
                     {"policy_name", pol->name()},
                     {"regions", regions},
                     {"countries", countries},
                     {"default_region", pol->default_region()}});
  }

  // A request body, opening a sealed one. Sets `forward_to` instead when the message is
  // sealed to another region's key: it goes there unread.
  Result<Json> OpenBody(const HttpRequest& req, std::optional<std::string>* forward_to) {
    ASSIGN_OR_RETURN(auto body, ParseJsonObject(req.body));
    auto sealed = body.find("sealed");
    if (sealed == body.end()) return body;
    if (!sealed->is_string()) return Error(Code::kInvalidField, "field 'sealed' must be a string");
    ASSIGN_OR_RETURN(auto msg, crypto::hpke::ParseSealed(sealed->get_ref<const std::string&>()));
    const std::string* owner = keys::RegionOfKeyId(c_.config, msg.key_id);
    if (owner == nullptr) return Error(Code::kInvalidField, "sealed to an unknown key id");
    if (*owner != c_.self.name) {
      if (forward_to == nullptr)
        return Error(Code::kInvalidField, "sealed to another region's key");
      *forward_to = *owner;
      return Json::object();
    }
    auto key = c_.keys.HpkeById(msg.key_id, SystemClock::Instance().NowMs());
    if (!key) return Error(Code::kInvalidField, "sealed to an unknown or retired key id");
    ASSIGN_OR_RETURN(auto plain, crypto::hpke::OpenMessage(msg, key->private_key));
    auto inner = ParseJsonObject(plain);
    if (!inner.ok()) return Error(Code::kInvalidJson, "sealed content is not a JSON object");
    RETURN_IF_ERROR(replay_.Check(*inner, SystemClock::Instance().NowMs()));
    return std::move(inner).value();
  }

  // Sends a request to another region (from a worker) and relays its answer.
  HttpResponse ForwardSync(const std::string& region, const HttpRequest& req) {
    return Relay(c_.inter.CallSync(region, OutgoingCopy(req)));
  }

  // The console (console/, embedded at build time): index.html at /, its hashed files under
  // /console/. It talks only to this node's API (same origin), so the policy allows nothing
  // else.
  static void ConsoleHeaders(HttpResponse& r) {
    r.SetHeader("content-security-policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    r.SetHeader("x-content-type-options", "nosniff");
    r.SetHeader("referrer-policy", "no-referrer");
  }

  HttpResponse ConsolePage() const {
    HttpResponse r;
    r.SetHeader("content-type", "text/html; charset=utf-8");
    r.SetHeader("cache-control", "no-cache");
    ConsoleHeaders(r);
    const ConsoleFile* index = FindConsoleFile("/index.html");
    r.body = index != nullptr ? std::string(index->body) : ConsoleFallbackPage(c_.self.name);
    return r;
  }

  static HttpResponse ConsoleAsset(const std::string& file) {
    const std::string path = "/console/" + file;
    const ConsoleFile* f = FindConsoleFile(path);
    if (f == nullptr) return HttpResponse::FromStatus(Error(Code::kNotFound, "no such file"));
    HttpResponse r;
    r.SetHeader("content-type", std::string(ConsoleContentType(path)));
    // Vite names each file by its content's hash: a name never changes meaning.
    r.SetHeader("cache-control", "public, max-age=31536000, immutable");
    ConsoleHeaders(r);
    r.body = std::string(f->body);
    return r;
  }

  // 307 to the same path on the home node; nothing of the body is kept or logged.
  HttpResponse RedirectHome(const HttpRequest& req, const std::string& home) {
    const auto* dest = c_.config.Find(home);
    c_.metrics.CountRedirect(home);
    HttpResponse r = JsonOk(307, {{"error", "wrong_region"},
                                  {"home_region", home},
                                  {"message", "this request belongs to its home region"}});
    r.SetHeader("location", (dest ? dest->url : std::string()) + req.target);
    return r;
  }

  HttpResponse Register(const HttpRequest& req) {
    std::optional<std::string> forward_to;
    auto body = OpenBody(req, &forward_to);
    if (!body.ok()) return HttpResponse::FromStatus(body.status());
    if (forward_to) return ForwardSync(*forward_to, req);
    auto country = RequireString(*body, "country", 8);
    if (!country.ok()) return HttpResponse::FromStatus(country.status());
    if (auto st = accounts::ValidateCountry(*country); !st.ok()) {
      return HttpResponse::FromStatus(st);
    }
    const std::string home = c_.policies.Latest()->HomeFor(*country);
    if (home != c_.self.name || c_.accounts == nullptr) return RedirectHome(req, home);
    auto parsed = accounts::ParseRegister(*body);
    if (!parsed.ok()) return HttpResponse::FromStatus(parsed.status());
    auto issued = c_.accounts->Register(*parsed);
    if (!issued.ok()) return HttpResponse::FromStatus(issued.status());
    return JsonOk(201, {{"user_id", issued->user_id},
                        {"home_region", issued->home_region},
                        {"token", issued->token}});
  }

  HttpResponse Login(const HttpRequest& req) {
    std::optional<std::string> forward_to;
    auto body = OpenBody(req, &forward_to);
    if (!body.ok()) return HttpResponse::FromStatus(body.status());
    if (forward_to) return ForwardSync(*forward_to, req);
    auto parsed = accounts::ParseLogin(*body);
    if (!parsed.ok()) return HttpResponse::FromStatus(parsed.status());
    std::string pseudonym = accounts::PhonePseudonym(c_.phone_key, parsed->phone.value);
    if (c_.accounts != nullptr) {
      auto here = c_.accounts->FindPhone(pseudonym);
      if (!here.ok()) return HttpResponse::FromStatus(here.status());
      if (here->has_value()) {
        auto issued = c_.accounts->Login(*parsed);
        if (!issued.ok()) return HttpResponse::FromStatus(issued.status());
        return JsonOk(200, {{"user_id", issued->user_id},
                            {"home_region", issued->home_region},
                            {"token", issued->token}});
      }
    }
    net::HttpRequest ask;
    ask.method = "GET";
    ask.target = "/internal/v1/directory/phone/" + pseudonym;
    for (auto& [region, res] : c_.inter.FanOutHomes(ask)) {
      if (res.ok() && res->status == 200) return RedirectHome(req, region);
    }
    return HttpResponse::FromStatus(Error(Code::kUnauthenticated, "phone or password is wrong"));
  }

  HttpResponse AdminPlacement(const std::string& user_id) {
    if (c_.accounts != nullptr) {
      auto p = c_.accounts->PlacementOf(user_id);
      if (!p.ok()) return HttpResponse::FromStatus(p.status());
      if (p->has_value()) {
        return JsonOk(200, {{"user_id", user_id},
                            {"home_region", (*p)->region},
                            {"state", (*p)->state},
                            {"epoch", (*p)->epoch}});
      }
    }
    net::HttpRequest ask;
    ask.method = "GET";
    ask.target = "/internal/v1/placement/" + net::PercentEncode(user_id);
    for (auto& [region, res] : c_.inter.FanOutHomes(ask)) {
      if (res.ok() && res->status == 200) return HttpResponse::Json(200, res->body);
    }
    return HttpResponse::FromStatus(Error(Code::kNotFound, "no region knows this user"));
  }

  // Rotates the KEK; with {"hpke": true} also the HPKE key pair, whose previous key id
  // stays valid for a day so messages sealed to it still open.
  HttpResponse Rotate(const std::string& body) {
    bool hpke = false;
    if (!body.empty()) {
      auto j = ParseJsonObject(body);
      if (!j.ok()) return HttpResponse::FromStatus(j.status());
      auto flag = j->find("hpke");
      if (flag != j->end() && !flag->is_boolean()) {
        return HttpResponse::FromStatus(Error(Code::kInvalidField, "'hpke' must be a boolean"));
      }
      hpke = flag != j->end() && flag->get<bool>();
    }
    Json out = Json::object();
    if (hpke) {
      auto key = c_.keys.RotateHpke(SystemClock::Instance().NowMs(), 24 * 3600 * 1000);
      if (!key.ok()) return HttpResponse::FromStatus(key.status());
      out["hpke_key_id"] = key->key_id;
      log::Info("hpke_rotated", {{"key_id", std::to_string(key->key_id)}});
      if (auto st = LogKeyOperation("key.hpke_rotate", {{"hpke_key_id", key->key_id}}); !st.ok()) {
        return HttpResponse::FromStatus(st);
      }
    }
    auto v = c_.keys.RotateKek();
    if (!v.ok()) return HttpResponse::FromStatus(v.status());
    log::Info("kek_rotated", {{"kek_version", std::to_string(*v)}});
    storage::WriteBatch seen;
    seen.Put(storage::Space::kMeta, std::string(kLoggedKekVersionKey), std::to_string(*v));
    if (auto st = LogKeyOperation("key.kek_rotate", {{"kek_version", *v}}, std::move(seen));
        !st.ok()) {
      return HttpResponse::FromStatus(st);
    }
    c_.rewrap();  // data keys are rewrapped in the background; reads keep working
    out["kek_version"] = *v;
    return JsonOk(200, out);
  }

  Status LogKeyOperation(std::string_view op, Json details, storage::WriteBatch batch = {}) {
    return c_.audit.Commit(std::move(batch),
                           {audit::MakeEntry(op, c_.self.name, {}, SystemClock::Instance().NowMs(),
                                             std::move(details))});
  }

  // PUT /v1/admin/policy: adopted here, then by every other region (one that is down
  // catches up when it starts); answers how many users the new policy leaves misplaced.
  HttpResponse PutPolicy(const std::string& body) {
    auto source = PolicyService::SourceOf(body);
    if (!source.ok()) return HttpResponse::FromStatus(source.status());
    auto adopted = c_.policies.Adopt(*source);
    if (!adopted.ok()) return HttpResponse::FromStatus(adopted.status());
    net::HttpRequest put;
    put.method = "PUT";
    put.target = "/internal/v1/policy";
    put.body = *source;
    Json pending = Json::array();
    for (auto& [region, res] : c_.inter.FanOutAll(put)) {
      if (!res.ok() || res->status != 200) pending.push_back(region);
    }
    int64_t misplaced = 0;
    if (c_.migrations != nullptr) {
      auto here = c_.migrations->CountMisplaced();
      if (!here.ok()) return HttpResponse::FromStatus(here.status());
      misplaced += *here;
    }
    net::HttpRequest ask;
    ask.method = "GET";
    ask.target = "/internal/v1/policy/misplaced";
    for (auto& [region, res] : c_.inter.FanOutHomes(ask)) {
      auto j = res.ok() && res->status == 200 ? ParseJsonObject(res->body)
                                              : Result<Json>(Error(Code::kUnavailable, ""));
      if (j.ok()) misplaced += j->value("misplaced_users", int64_t{0});
    }
    Json out = {{"policy_version", (*adopted)->version()}, {"misplaced_users", misplaced}};
    if (!pending.empty()) out["regions_catching_up"] = pending;
    return JsonOk(200, out);
  }

  // Migrations are coordinated by the region users leave; any node answers by asking it.
  HttpResponse MigrationCall(RouteId id, const std::vector<std::string>& params,
                             const std::string& body) {
    std::string coordinator;
    net::HttpRequest fwd;
    if (id == RouteId::kAdminMigrations || id == RouteId::kAdminMigrationPlan) {
      if (id == RouteId::kAdminMigrations) {
        auto j = ParseJsonObject(body);
        if (!j.ok()) return HttpResponse::FromStatus(j.status());
        auto from = RequireString(*j, "from", 64);
        if (!from.ok()) return HttpResponse::FromStatus(from.status());
        coordinator = *from;
      } else {
        coordinator = params[0];
      }
      const auto* r = c_.config.Find(coordinator);
      if (r == nullptr || r->role != policy::Role::kHome) {
        return HttpResponse::FromStatus(
            Error(Code::kInvalidField, "'from' must name a home region"));
      }
      fwd.method = id == RouteId::kAdminMigrations ? "POST" : "GET";
      fwd.target = id == RouteId::kAdminMigrations ? "/internal/v1/migrations"
                                                   : "/internal/v1/migration-plan";
    } else {
      coordinator = Migrations::CoordinatorOf(params[0]);
      if (c_.config.Find(coordinator) == nullptr) {
        return HttpResponse::FromStatus(Error(Code::kNotFound, "no such migration"));
      }
      fwd.method = id == RouteId::kAdminMigration ? "GET" : "POST";
      fwd.target = "/internal/v1/migrations/" + net::PercentEncode(params[0]) +
                   (id == RouteId::kAdminMigrationAction ? "/" + params[1] : "");
    }
    fwd.body = body;
    if (coordinator == c_.self.name) {
      std::vector<std::string> p(params);
      const RouteId local = id == RouteId::kAdminMigrations      ? RouteId::kInternalMigrations
                            : id == RouteId::kAdminMigrationPlan ? RouteId::kInternalMigrationPlan
                            : id == RouteId::kAdminMigration     ? RouteId::kInternalMigration
                                                             : RouteId::kInternalMigrationAction;
      return InternalMigration(local, fwd.method, p, c_.self.name, body);
    }
    auto res = c_.inter.CallSync(coordinator, fwd);
    if (!res.ok() && id == RouteId::kAdminMigration) {
      // The coordinator is down: its last published status, marked as such.
      std::lock_guard lock(peer_mu_);
      auto it = migration_copies_.find(params[0]);
      if (it != migration_copies_.end()) {
        Json copy = it->second;
        copy["coordinator_reachable"] = false;
        return JsonOk(200, copy);
      }
    }
    if (!res.ok()) {
      return HttpResponse::FromStatus(
          Error(Code::kUnavailable, "the coordinating region " + coordinator + " is unreachable"));
    }
    return HttpResponse::Json(res->status, res->body);
  }

  HttpResponse InternalMigration(RouteId id, const std::string& method,
                                 const std::vector<std::string>& params, const std::string& peer,
                                 const std::string& body) {
    if (id == RouteId::kInternalPolicy) {
      if (method == "GET") {
        HttpResponse r;
        r.SetHeader("content-type", "text/plain; charset=utf-8");
        r.body = c_.policies.CurrentSource();
        return r;
      }
      auto adopted = c_.policies.Adopt(body);
      if (!adopted.ok()) return HttpResponse::FromStatus(adopted.status());
      return JsonOk(200, {{"policy_version", (*adopted)->version()}});
    }
    if (c_.migrations == nullptr) {
      return HttpResponse::FromStatus(Error(Code::kNotFound, "an edge region holds no users"));
    }
    auto& m = *c_.migrations;
    auto reply = [](const Result<Json>& r, int status = 200) {
      return r.ok() ? JsonOk(status, *r) : HttpResponse::FromStatus(r.status());
    };
    auto body_json = [&]() -> Result<Json> { return ParseJsonObject(body); };
    switch (id) {
      case RouteId::kInternalMisplaced: {
        auto n = m.CountMisplaced();
        if (!n.ok()) return HttpResponse::FromStatus(n.status());
        return JsonOk(200, {{"misplaced_users", *n}});
      }
      case RouteId::kInternalMigrations: {
        auto j = body_json();
        return reply(j.ok() ? m.Begin(*j) : Result<Json>(j.status()), 202);
      }
      case RouteId::kInternalMigration:
        return reply(m.Get(params[0]));
      case RouteId::kInternalMigrationPlan:
        return reply(m.Plan());
      case RouteId::kInternalMigrationAction: {
        const std::string& action = params[1];
        if (action == "verify") return reply(m.Verify(params[0]));
        if (action != "pause" && action != "resume") {
          return HttpResponse::FromStatus(Error(Code::kNotFound, "no such action"));
        }
        Status st = m.SetPaused(params[0], action == "pause");
        return st.ok() ? reply(m.Get(params[0])) : HttpResponse::FromStatus(st);
      }
      case RouteId::kInternalMigrate: {
        auto j = body_json();
        if (!j.ok()) return HttpResponse::FromStatus(j.status());
        if (params[0] == "receive") return reply(m.Receive(peer, *j));
        if (params[0] == "users") return reply(m.UserStates(*j));
        if (params[0] == "activate") {
          Status st = m.Activate(peer, *j);
          return st.ok() ? JsonOk(200, {{"active", true}}) : HttpResponse::FromStatus(st);
        }
        return HttpResponse::FromStatus(Error(Code::kNotFound, "no such step"));
      }
      default:
        return reply(m.UserState(params[0]));
    }
  }

  std::vector<std::string> HomeRegionNames() const {
    std::vector<std::string> names;
    for (const auto* r : c_.config.HomeRegions()) names.push_back(r->name);
    return names;
  }

  // Stores public data here and in every other region (all must take it).
  HttpResponse Broadcast(const std::string& kind, const Json& doc, Status local) {
    if (!local.ok()) return HttpResponse::FromStatus(local);
    net::HttpRequest put;
    put.method = "PUT";
    put.target = "/internal/v1/public/" + kind;
    put.body = DumpJson(doc);
    for (auto& [region, res] : c_.inter.FanOutAll(put)) {
      if (!res.ok() || res->status != 200) {
        return HttpResponse::FromStatus(
            Error(Code::kUnavailable, "region " + region + " did not take the " + kind));
      }
    }
    return JsonOk(201, doc);
  }

  HttpResponse CreateProduct(const std::string& body) {
    auto j = ParseJsonObject(body);
    if (!j.ok()) return HttpResponse::FromStatus(j.status());
    auto p = shop::ParseProduct(*j);
    if (!p.ok()) return HttpResponse::FromStatus(p.status());
    return Broadcast("product", shop::ProductJson(*p), c_.shop.PutProduct(*p));
  }

  HttpResponse CreateSale(const std::string& body) {
    auto j = ParseJsonObject(body);
    if (!j.ok()) return HttpResponse::FromStatus(j.status());
    auto s = shop::ParseSale(*j, HomeRegionNames());
    if (!s.ok()) return HttpResponse::FromStatus(s.status());
    bool known = false;
    for (const auto& prod : c_.shop.Products()) known |= prod.sku == s->sku;
    if (!known) {
      return HttpResponse::FromStatus(Error(Code::kInvalidField, "no product has this sku"));
    }
    return Broadcast("sale", shop::SaleJson(*s), c_.shop.PutSale(*s));
  }

  HttpResponse StorePublic(const std::string& kind, const std::string& body) {
    auto j = ParseJsonObject(body);
    if (!j.ok()) return HttpResponse::FromStatus(j.status());
    Status st;
    if (kind == "product") {
      auto p = shop::ParseProduct(*j);
      st = p.ok() ? c_.shop.PutProduct(*p) : p.status();
    } else if (kind == "sale") {
      auto s = shop::ParseSale(*j, HomeRegionNames());
      st = s.ok() ? c_.shop.PutSale(*s) : s.status();
    } else if (kind == "migration") {
      // A coordinator's latest status of its migration (counts only), kept in memory.
      auto id = RequireString(*j, "id", 64);
      st = id.status();
      if (id.ok()) {
        std::lock_guard lock(peer_mu_);
        migration_copies_[*id] = *j;
      }
    } else {
      st = Error(Code::kNotFound, "unknown kind of public data");
    }
    return st.ok() ? JsonOk(200, {{"stored", kind}}) : HttpResponse::FromStatus(st);
  }

  static Json QuotaJson(const shop::QuotaView& q) {
    Json out = Json::object();
    for (const auto& [tid, n] : q.unacked_out) out[tid] = n;
    return {{"quota", q.quota},     {"reserved", q.reserved},    {"paid", q.paid},
            {"expired", q.expired}, {"remaining", q.remaining},  {"sold", q.reserved + q.paid},
            {"unacked_out", out},   {"applied_in", q.applied_in}};
  }

  // The demarcation protocol's three calls between home regions.
  HttpResponse Transfer(RouteId id, const std::vector<std::string>& params,
                        const std::string& body) {
    Json j = Json::object();
    if (!body.empty()) {
      auto parsed = ParseJsonObject(body);
      if (!parsed.ok()) return HttpResponse::FromStatus(parsed.status());
      j = *parsed;
    }
    const std::string& sale_id = params[0];
    if (id == RouteId::kInternalGrant) {
      auto units = c_.shop.Donate(sale_id, j.value("to", ""), j.value("units", int64_t{0}),
                                  j.value("transfer_id", ""), j.value("asker_out", true));
      return units.ok() ? JsonOk(200, {{"units", *units}})
                        : HttpResponse::FromStatus(units.status());
    }
    Status st = id == RouteId::kInternalTransfer
                    ? c_.shop.ApplyGrant(sale_id, j.value("from", ""), j.value("units", int64_t{0}),
                                         params[1])
                    : c_.shop.AckGrant(sale_id, params[1]);
    return st.ok() ? JsonOk(200, {{"transfer_id", params[1]}}) : HttpResponse::FromStatus(st);
  }

  HttpResponse QuotaOf(const std::string& sale_id, bool counts) {
    auto q = c_.shop.Quota(sale_id, counts);
    return q.ok() ? JsonOk(200, QuotaJson(*q)) : HttpResponse::FromStatus(q.status());
  }

  // Every home region's quota view of a sale; `counts` adds their order counts.
  Result<std::map<std::string, Json>> AllQuotas(const std::string& sale_id, bool counts) {
    std::map<std::string, Json> out;
    if (c_.self.role == policy::Role::kHome) {
      ASSIGN_OR_RETURN(auto q, c_.shop.Quota(sale_id, counts));
      out[c_.self.name] = QuotaJson(q);
    }
    net::HttpRequest ask;
    ask.method = "GET";
    ask.target = "/internal/v1/sales/" + sale_id + "/quota" + (counts ? "" : "?counts=0");
    for (auto& [region, res] : c_.inter.FanOutHomes(ask)) {
      if (!res.ok() || res->status != 200) {
        return Error(Code::kUnavailable, "region " + region + " did not report its quota");
      }
      auto j = ParseJsonObject(res->body);
      if (!j.ok()) return j.status();
      out[region] = *j;
    }
    return out;
  }

  HttpResponse SaleStats(const std::string& sale_id) {
    auto sale = c_.shop.FindSale(sale_id);
    if (!sale) return HttpResponse::FromStatus(Error(Code::kNotFound, "no such sale"));
    auto quotas = AllQuotas(sale_id, true);
    if (!quotas.ok()) return HttpResponse::FromStatus(quotas.status());
    Json per_region = Json::object();
    int64_t reserved = 0, paid = 0, expired = 0, remaining = 0;
    const int64_t in_flight = InFlight(*quotas);
    for (const auto& [region, q] : *quotas) {
      reserved += q.value("reserved", int64_t{0});
      paid += q.value("paid", int64_t{0});
      expired += q.value("expired", int64_t{0});
      remaining += q.value("remaining", int64_t{0});
      per_region[region] = {{"quota", q.value("quota", int64_t{0})},
                            {"sold", q.value("sold", int64_t{0})},
                            {"remaining", q.value("remaining", int64_t{0})}};
    }
    return JsonOk(200, {{"stock", sale->stock},
                        {"sold", reserved + paid},
                        {"reserved", reserved},
                        {"paid", paid},
                        {"expired", expired},
                        {"remaining", remaining + in_flight},
                        {"in_flight", in_flight},
                        {"per_region", per_region}});
  }

  HttpResponse SaleView(const std::string& sale_id) {
    auto sale = c_.shop.FindSale(sale_id);
    if (!sale) return HttpResponse::FromStatus(Error(Code::kNotFound, "no such sale"));
    int64_t remaining = 0;
    {
      // Any node answers from a view at most a second old.
      std::lock_guard lock(remaining_mu_);
      auto& cached = remaining_cache_[sale_id];
      auto now = std::chrono::steady_clock::now();
      if (now - cached.first > std::chrono::seconds(1)) {
        auto quotas = AllQuotas(sale_id, false);
        if (quotas.ok()) {
          int64_t sum = InFlight(*quotas);
          for (const auto& [region, q] : *quotas) sum += q.value("remaining", int64_t{0});
          cached = {now, sum};
        }
      }
      remaining = cached.second;
    }
    const int64_t now_ms = SystemClock::Instance().NowMs();
    std::string state = now_ms < sale->starts_at_ms  ? "scheduled"
                        : now_ms >= sale->ends_at_ms ? "closed"
                        : remaining <= 0             ? "sold_out"
                                                     : "open";
    return JsonOk(200, {{"id", sale->id},
                        {"sku", sale->sku},
                        {"state", state},
                        {"starts_at", FormatRfc3339(sale->starts_at_ms)},
                        {"ends_at", FormatRfc3339(sale->ends_at_ms)},
                        {"remaining", remaining}});
  }

  // The audit endpoints of API.md: checkpoint, entries and RFC 9162 proofs.
  HttpResponse Audit(RouteId id, const HttpRequest& q) {
    auto& log = c_.audit;
    auto num = [&](std::string_view name) -> Result<uint64_t> {
      auto v = q.Query(name);
      if (!v || v->empty() || v->size() > 18 ||
          v->find_first_not_of("0123456789") != std::string::npos) {
        return Error(Code::kInvalidField,
                     "query parameter '" + std::string(name) + "' must be a non-negative integer");
      }
      return static_cast<uint64_t>(std::stoull(*v));
    };
    auto fail = [](const Status& st) { return HttpResponse::FromStatus(st); };
    if (id == RouteId::kAuditAlarms) return JsonOk(200, {{"alarms", c_.audit_alarms()}});
    if (id == RouteId::kAuditTreeHead) {
      auto note = log.Latest();
      if (!note.ok()) return fail(note.status());
      HttpResponse r;
      r.SetHeader("content-type", "text/plain; charset=utf-8");
      r.body = std::move(*note);
      return r;
    }
    auto hashes = [](const std::vector<audit::Hash>& v) {
      Json out = Json::array();
      for (const auto& h : v) out.push_back(Base64Encode(h));
      return out;
    };
    if (id == RouteId::kAuditEntries) {
      auto start = num("start");
      auto end = num("end");
      if (!start.ok()) return fail(start.status());
      if (!end.ok()) return fail(end.status());
      if (*end > *start + 1000) return fail(Error(Code::kInvalidField, "at most 1000 entries"));
      auto entries = log.Entries(*start, *end);
      if (!entries.ok()) return fail(entries.status());
      Json list = Json::array();
      for (uint64_t i = 0; i < entries->size(); ++i) {
        list.push_back({{"index", *start + i}, {"leaf", Base64Encode((*entries)[i])}});
      }
      return JsonOk(200, {{"entries", list}});
    }
    if (id == RouteId::kAuditInclusion) {
      auto index = num("index");
      auto size = num("size");
      if (!index.ok()) return fail(index.status());
      if (!size.ok()) return fail(size.status());
      auto proof = log.Inclusion(*index, *size);
      if (!proof.ok()) return fail(proof.status());
      return JsonOk(200, {{"index", *index}, {"size", *size}, {"hashes", hashes(*proof)}});
    }
    auto first = num("first");
    auto second = num("second");
    if (!first.ok()) return fail(first.status());
    if (!second.ok()) return fail(second.status());
    auto proof = log.Consistency(*first, *second);
    if (!proof.ok()) return fail(proof.status());
    return JsonOk(200, {{"first", *first}, {"second", *second}, {"hashes", hashes(*proof)}});
  }

  // A witness's cosignature of our latest checkpoint, checked with the witness's key.
  HttpResponse Cosign(const std::string& witness, const std::string& body) {
    auto j = ParseJsonObject(body);
    if (!j.ok()) return HttpResponse::FromStatus(j.status());
    const std::string* region = &witness;
    if (witness.empty() || c_.config.Find(witness) == nullptr)
      return HttpResponse::FromStatus(Error(Code::kForbidden, "unknown witness"));
    net::HttpRequest ask;
    ask.method = "GET";
    ask.target = "/internal/v1/keys";
    auto keys = c_.inter.CallSync(*region, std::move(ask));
    if (!keys.ok() || keys->status != 200) {
      return HttpResponse::FromStatus(Error(Code::kUnavailable, "witness keys unavailable"));
    }
    auto k = ParseJsonObject(keys->body);
    if (!k.ok()) return HttpResponse::FromStatus(k.status());
    Status st = c_.audit.AddCosignature(j->value("text", ""), j->value("line", ""),
                                        k->value("audit_verifier_key", ""));
    return st.ok() ? JsonOk(200, {{"cosigned", true}}) : HttpResponse::FromStatus(st);
  }

  HttpResponse Internal(RouteId id, const std::string& param) {
    if (id == RouteId::kInternalKeys) return JsonOk(200, OwnKeys());
    if (c_.accounts == nullptr) {
      return HttpResponse::FromStatus(Error(Code::kNotFound, "an edge region holds no users"));
    }
    if (id == RouteId::kInternalDirectory) {
      auto found = c_.accounts->FindPhone(param);
      if (!found.ok()) return HttpResponse::FromStatus(found.status());
      if (!found->has_value()) return HttpResponse::FromStatus(Error(Code::kNotFound, "unknown"));
      return JsonOk(200, {{"region", c_.self.name}});
    }
    auto p = c_.accounts->PlacementOf(param);
    if (!p.ok()) return HttpResponse::FromStatus(p.status());
    if (!p->has_value() || (*p)->region != c_.self.name) {
      return HttpResponse::FromStatus(Error(Code::kNotFound, "unknown"));
    }
    return JsonOk(200, {{"user_id", param},
                        {"home_region", (*p)->region},
                        {"state", (*p)->state},
                        {"epoch", (*p)->epoch}});
  }

  static const HttpResponse& SoldOutAnswer() {
    static const HttpResponse kSoldOut =
        HttpResponse::FromStatus(Error(Code::kSoldOut, "sold out"));
    return kSoldOut;
  }

  // Sold out for this buyer, from memory: the region's counter read without a lock, no
  // storage read. A request the worker would refuse for its own faults goes there instead.
  bool SoldOutFor(const std::string& sale_id, std::string_view user_id, const HttpRequest& req,
                  int64_t now) const {
    return shop::IsValidIdempotencyKey(req.Header("idempotency-key")) &&
           c_.shop.SoldOutNow(sale_id, user_id, now);
  }

  // The sold-out answer for a buyer whose token this thread verified lately (one lookup).
  // Anything else (a new token, another region's) takes the longer way below.
  bool SoldOutFromMemory(const std::string& sale_id, std::string_view token,
                         const HttpRequest& req) {
    if (c_.accounts == nullptr) return false;
    const int64_t now = SystemClock::Instance().NowMs();
    const crypto::TokenClaims* claims = crypto::RecentlyVerified(token, c_.keys.TokenKey(), now);
    return claims != nullptr && claims->region == c_.self.name &&
           SoldOutFor(sale_id, claims->user_id, req, now);
  }

  void UserRequest(const Route& route, std::vector<std::string> params, HttpRequest&& req,
                   Respond done) {
    std::string_view token = BearerToken(req);
    if (route.id == RouteId::kPurchase) {
      // The admin's token is no user token: a purchase with it is forbidden, not unknown.
      if (IsAdmin(req)) {
        return done(HttpResponse::FromStatus(Error(Code::kForbidden, "admins do not shop")));
      }
      if (SoldOutFromMemory(params[0], token, req)) return done(SoldOutAnswer());
    }
    auto claims = crypto::PeekToken(token);
    if (!claims) {
      return done(HttpResponse::FromStatus(
          Error(Code::kUnauthenticated, "a valid bearer token is required")));
    }
    if (claims->region != c_.self.name) {
      const auto* home = c_.config.Find(claims->region);
      if (home == nullptr || home->role != policy::Role::kHome) {
        return done(HttpResponse::FromStatus(Error(Code::kUnauthenticated, "invalid token")));
      }
      if (!req.Header(kForwardedHeader).empty() && IsInternal(req)) {
        // Never forward twice: the sender's view of the user's home is stale.
        return done(HttpResponse::FromStatus(
            Error(Code::kWrongRegion, "this region is not the user's home")));
      }
      return Forward(claims->region, std::move(req), std::move(done));
    }
    if (c_.accounts == nullptr) {
      return done(HttpResponse::FromStatus(Error(Code::kUnauthenticated, "invalid token")));
    }
    if (route.id == RouteId::kPurchase) {
      // A token not met lately: its MAC is checked only when the answer would be sold out.
      const int64_t now = SystemClock::Instance().NowMs();
      if (SoldOutFor(params[0], claims->user_id, req, now) &&
          crypto::VerifyToken(token, c_.keys.TokenKey(), now).ok()) {
        return done(SoldOutAnswer());
      }
    }
    auto shared_done = std::make_shared<Respond>(std::move(done));
    // The whole purchase here, on the event loop, when none of it waits: a hand-over to a
    // worker costs about as much as the purchase.
    if (route.id == RouteId::kPurchase && Purchase(params[0], req, *shared_done, Wait::kNever)) {
      return;
    }
    auto shared_req = std::make_shared<HttpRequest>(std::move(req));
    OnWorkerAsync(std::move(shared_done), [this, id = route.id, params = std::move(params),
                                           shared_req](const Respond& respond) {
      if (id == RouteId::kPurchase) {
        Purchase(params[0], *shared_req, respond, Wait::kMay);
        return;
      }
      auto principal = c_.accounts->Authenticate(BearerToken(*shared_req));
      if (!principal.ok()) return respond(HttpResponse::FromStatus(principal.status()));
      respond(UserCall(id, *principal, params, *shared_req));
    });
  }

  // A purchase from the token to the answer, which leaves once the order is durable (the
  // thread is free as soon as the write is queued). With Wait::kNever it runs only if none of
  // it waits (the buyer's placement, entries and data key in memory, a unit in this node's
  // lease); false then: nothing was done and a worker is to run it with Wait::kMay.
  bool Purchase(const std::string& sale_id, const HttpRequest& req, const Respond& respond,
                Wait wait) {
    auto principal = c_.accounts->Authenticate(BearerToken(req), wait);
    if (!principal.ok()) {
      if (principal.status().code() == Code::kWouldBlock && wait == Wait::kNever) return false;
      respond(HttpResponse::FromStatus(principal.status()));
      return true;
    }
    return c_.shop.StartPurchase(
        principal->user_id, sale_id, req.Header("idempotency-key"), wait,
        [respond](Result<shop::Shop::Purchased> r) { respond(PurchaseAnswer(std::move(r))); });
  }

  static HttpResponse PurchaseAnswer(Result<shop::Shop::Purchased> r) {
    if (!r.ok()) return HttpResponse::FromStatus(r.status());
    return HttpResponse::Json(r->created ? 201 : 200, shop::PurchaseAnswerText(r->order));
  }

  static net::HttpRequest OutgoingCopy(const HttpRequest& req) {
    net::HttpRequest out;
    out.method = req.method;
    out.target = req.target;
    out.body = req.body;
    for (const auto& [k, v] : req.headers) {
      if (k != kInternalHeader && k != kForwardedHeader) out.headers.emplace_back(k, v);
    }
    return out;
  }

  // Another region's answer, relayed without its hop-by-hop headers.
  static HttpResponse Relay(Result<HttpResponse> r) {
    if (!r.ok()) return HttpResponse::FromStatus(r.status());
    HttpResponse resp = std::move(r).value();
    std::erase_if(resp.headers, [](const auto& kv) {
      return kv.first == "connection" || kv.first == "keep-alive" ||
             kv.first == "transfer-encoding" || kv.first == "content-length" ||
             kv.first == "server";
    });
    return resp;
  }

  void Forward(const std::string& region, HttpRequest&& req, Respond done) {
    c_.inter.Call(region, OutgoingCopy(req),
                  [done = std::move(done)](Result<HttpResponse> r) { done(Relay(std::move(r))); });
  }

  // Signs a document with the region's Ed25519 key: the signature covers the document
  // without its "signature" member, serialised compactly with sorted keys.
  Json Signed(Json doc) const {
    std::string bytes = DumpJson(doc);
    doc["signature"] = {{"algorithm", "Ed25519"},
                        {"region", c_.self.name},
                        {"public_key", Base64Encode(c_.keys.SigningPublicKey())},
                        {"verifier_key", crypto::NoteVerifierKey("meridian/" + c_.self.name,
                                                                 c_.keys.SigningPublicKey())},
                        {"value", Base64Encode(c_.keys.Sign(bytes))}};
    return doc;
  }

  // Where the user's data is, every transfer that brought it here with its log index, the
  // witnessed checkpoint, and an inclusion proof of each transfer in that checkpoint
  // (checked offline by `meridian audit prove`).
  HttpResponse Residency(const accounts::Principal& p) {
    auto& acc = *c_.accounts;
    auto placement = acc.PlacementOf(p.user_id);
    if (!placement.ok()) return HttpResponse::FromStatus(placement.status());
    auto transfers = acc.Transfers(p.user_id);
    if (!transfers.ok()) return HttpResponse::FromStatus(transfers.status());
    const std::string verifier =
        crypto::NoteVerifierKey("meridian/" + c_.self.name, c_.keys.SigningPublicKey());
    auto head = [&]() -> Result<std::pair<std::string, audit::CheckpointBody>> {
      ASSIGN_OR_RETURN(auto note, c_.audit.Latest());
      ASSIGN_OR_RETURN(auto body, audit::VerifyCheckpoint(note, verifier));
      return std::pair{std::move(note), std::move(body)};
    };
    auto latest = head();
    if (!latest.ok()) return HttpResponse::FromStatus(latest.status());
    uint64_t newest = 0;
    for (const auto& t : *transfers) newest = std::max(newest, t.value("log_index", uint64_t{0}));
    if (!transfers->empty() && newest >= latest->second.size) {
      // The transfer is newer than the last checkpoint: publish one that covers it.
      if (auto st = c_.audit.Publish(); !st.ok()) return HttpResponse::FromStatus(st);
      latest = head();
      if (!latest.ok()) return HttpResponse::FromStatus(latest.status());
    }
    const uint64_t size = latest->second.size;
    Json proofs = Json::array();
    for (const auto& t : *transfers) {
      const uint64_t index = t.value("log_index", uint64_t{0});
      auto leaf = c_.audit.Entries(index, index + 1);
      auto path = c_.audit.Inclusion(index, size);
      if (!leaf.ok() || !path.ok()) {
        return HttpResponse::FromStatus(Error(Code::kInternal, "no proof for a transfer"));
      }
      Json hashes = Json::array();
      for (const auto& h : *path) hashes.push_back(Base64Encode(h));
      proofs.push_back({{"log_index", index},
                        {"tree_size", size},
                        {"leaf", Base64Encode((*leaf)[0])},
                        {"hashes", hashes}});
    }
    return JsonOk(200, {{"home_region", c_.self.name},
                        {"stored_in", Json::array({c_.self.name})},
                        {"placement_epoch", (*placement) ? (*placement)->epoch : 0},
                        {"transfers", *transfers},
                        {"tree_head", latest->first},
                        {"audit_verifier_key", verifier},
                        {"proofs", proofs}});
  }

  HttpResponse UserCall(RouteId id, const accounts::Principal& p,
                        const std::vector<std::string>& params, const HttpRequest& req) {
    auto& acc = *c_.accounts;
    switch (id) {
      case RouteId::kMe: {
        if (req.method == "DELETE") {
          // Orders first: the data key that opens them is destroyed with the account.
          auto orders = c_.shop.DeleteUserData(p.user_id);
          if (!orders.ok()) return HttpResponse::FromStatus(orders.status());
          auto receipt = acc.DeleteUser(p);
          if (!receipt.ok()) return HttpResponse::FromStatus(receipt.status());
          (*receipt)["destroyed"]["orders"] = *orders;
          log::Info("user_deleted", {});
          return JsonOk(200, {{"receipt", Signed(std::move(receipt).value())}});
        }
        auto me = acc.Me(p);
        return me.ok() ? JsonOk(200, *me) : HttpResponse::FromStatus(me.status());
      }
      case RouteId::kPay: {
        auto o = c_.shop.Pay(p.user_id, params[0]);
        if (!o.ok()) return HttpResponse::FromStatus(o.status());
        return JsonOk(200, {{"order_id", o->order_id}, {"state", o->state}});
      }
      case RouteId::kMyOrders: {
        auto orders = c_.shop.OrdersOf(p.user_id);
        if (!orders.ok()) return HttpResponse::FromStatus(orders.status());
        Json list = Json::array();
        for (const auto& o : *orders) list.push_back(shop::OrderJson(o));
        return JsonOk(200, {{"orders", list}});
      }
      case RouteId::kResidency:
        return Residency(p);
      case RouteId::kExport: {
        auto doc = acc.Export(p);
        auto orders = c_.shop.OrdersOf(p.user_id);
        if (!orders.ok()) return HttpResponse::FromStatus(orders.status());
        if (doc.ok()) {
          Json list = Json::array();
          for (const auto& o : *orders) list.push_back(shop::OrderJson(o));
          (*doc)["orders"] = list;
        }
        return doc.ok() ? JsonOk(200, Signed(std::move(doc).value()))
                        : HttpResponse::FromStatus(doc.status());
      }
      case RouteId::kRecordList: {
        auto keys = acc.ListRecords(p, params[0]);
        return keys.ok() ? JsonOk(200, {{"keys", *keys}}) : HttpResponse::FromStatus(keys.status());
      }
      case RouteId::kRecord: {
        if (req.method == "PUT") {
          auto v = acc.PutRecord(p, params[0], params[1], std::string(req.Header("content-type")),
                                 req.body);
          return v.ok() ? JsonOk(200, {{"version", *v}}) : HttpResponse::FromStatus(v.status());
        }
        if (req.method == "DELETE") {
          auto st = acc.DeleteRecord(p, params[0], params[1]);
          if (!st.ok()) return HttpResponse::FromStatus(st);
          HttpResponse r;
          r.status = 204;
          return r;
        }
        auto rec = acc.GetRecord(p, params[0], params[1]);
        if (!rec.ok()) return HttpResponse::FromStatus(rec.status());
        HttpResponse r;
        r.SetHeader("content-type", rec->content_type);
        r.SetHeader("x-record-version", std::to_string(rec->version));
        r.body = std::move(rec->body);
        return r;
      }
      case RouteId::kDevices: {
        if (req.method == "GET") {
          auto list = acc.ListDevices(p);
          return list.ok() ? JsonOk(200, *list) : HttpResponse::FromStatus(list.status());
        }
        auto body = OpenBody(req, nullptr);
        if (!body.ok()) return HttpResponse::FromStatus(body.status());
        auto dev = accounts::ParseDevice(*body);
        if (!dev.ok()) return HttpResponse::FromStatus(dev.status());
        auto id_or = acc.AddDevice(p, *dev);
        return id_or.ok() ? JsonOk(201, {{"device_id", *id_or}})
                          : HttpResponse::FromStatus(id_or.status());
      }
      default:
        return HttpResponse::FromStatus(Error(Code::kNotFound, "no such route"));
    }
  }

  NodeContext c_;
  Overview overview_;
  std::mutex peer_mu_;
  std::map<std::string, Json> peer_keys_;
  std::map<std::string, Json> migration_copies_;  // id -> last status its coordinator sent
  std::chrono::steady_clock::time_point peer_keys_at_;
  ReplayCache replay_;
  std::mutex remaining_mu_;
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, int64_t>> remaining_cache_;
};

}  // namespace

std::string_view RouteTemplateOf(std::string_view path, std::vector<std::string>* params) {
  Match m = MatchRoute(path);
  if (params != nullptr) *params = std::move(m.params);
  return m.route != nullptr ? m.route->name : "unmatched";
}

std::unique_ptr<net::Handler> MakeRouter(NodeContext ctx) { return std::make_unique<Router>(ctx); }

}  // namespace meridian::node
