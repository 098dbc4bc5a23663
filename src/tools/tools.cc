#include "tools/tools.h"

#include <cstdio>
#include <cstdlib>

#include "common/encoding.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "keys/keys.h"
#include "sdk/client.h"
#include "tools/admin_client.h"

namespace meridian::tools {
namespace {
void PrintError(const Status& st) { std::fprintf(stderr, "meridian: %s\n", st.message().c_str()); }

Result<config::ClusterConfig> LoadConfig(const std::string& path) {
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(path, &diags);
  if (!cfg.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  }
  return cfg;
}

std::unique_ptr<sdk::Client> Connect(const ClientArgs& a) {
  auto c = sdk::Client::Connect({a.url, a.ca_file, !a.plain});
  if (!c.ok()) {
    PrintError(c.status());
    return nullptr;
  }
  if (!a.token.empty()) (*c)->set_token(a.token);
  return std::move(c).value();
}

// The region's keystore, opened with the cluster's secret; prints why not.
std::unique_ptr<keys::FileKeystore> OpenKeystore(const std::string& cluster,
                                                 const std::string& region) {
  auto cfg = LoadConfig(cluster);
  if (!cfg.ok() || !crypto::Init().ok()) return nullptr;
  auto ks = keys::OpenRegionKeystore(*cfg, region, SystemRandom::Instance());
  if (!ks.ok()) {
    PrintError(ks.status());
    return nullptr;
  }
  return std::move(ks).value();
}

int PrintJson(const Result<Json>& r) {
  if (!r.ok()) {
    PrintError(r.status());
    return 1;
  }
  std::printf("%s\n", r->dump(2).c_str());
  return 0;
}
}  // namespace

int PolicyCheck(const std::string& file, const std::string& cluster) {
  std::vector<policy::Diagnostic> diags;
  policy::RegionRoles roles = policy::BuiltinRegionRoles();
  if (!cluster.empty()) {
    auto cfg = LoadConfig(cluster);
    if (!cfg.ok()) return 1;
    roles = cfg->Roles();
  }
  auto p = policy::Load(file, roles, &diags);
  if (!p.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    return 1;
  }
  std::printf("%s: ok (policy \"%s\" version %lld, %zu countries listed, default %s)\n",
              file.c_str(), p->name().c_str(), static_cast<long long>(p->version()),
              p->countries().size(), p->default_region().c_str());
  return 0;
}

int KeysInit(const std::string& cluster) {
  auto cfg = LoadConfig(cluster);
  if (!cfg.ok() || !crypto::Init().ok()) return 1;
  auto secret = keys::ReadSecret(cfg->keystore_secret_file);
  if (!secret.ok()) {
    PrintError(secret.status());
    return 2;
  }
  auto made = keys::InitKeystores(*cfg, *secret, SystemRandom::Instance(), SystemClock::Instance());
  if (!made.ok()) {
    PrintError(made.status());
    return 1;
  }
  std::printf("created %d keystore(s) under %s\n", *made, cfg->secrets_dir.c_str());
  return 0;
}

int KeysRotate(const std::string& cluster, const std::string& region) {
  auto ks = OpenKeystore(cluster, region);
  if (!ks) return 2;
  auto v = ks->RotateKek();
  if (!v.ok()) {
    PrintError(v.status());
    return 1;
  }
  std::printf("%s: KEK version %u is primary; data keys are rewrapped when the node runs\n",
              region.c_str(), *v);
  return 0;
}

int KeysStatus(const std::string& cluster, const std::string& region) {
  auto ks = OpenKeystore(cluster, region);
  if (!ks) return 2;
  Json kek_versions = Json::array();
  for (uint32_t v : ks->KekVersions()) kek_versions.push_back(v);
  Json hpke = Json::array();
  for (const auto& h : ks->HpkeKeys()) {
    hpke.push_back({{"key_id", h.key_id},
                    {"public_key", Base64UrlEncode(h.public_key)},
                    {"retire_at_ms", h.retire_at_ms}});
  }
  Json out = {{"region", region},
              {"primary_kek_version", ks->PrimaryKekVersion()},
              {"kek_versions", kek_versions},
              {"hpke", hpke},
              {"audit_verifier_key",
               crypto::NoteVerifierKey("meridian/" + region, ks->SigningPublicKey())}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int ClientRegister(const ClientArgs& a) {
  auto c = Connect(a);
  if (!c) return 1;
  Json fields = {{"country", a.country}, {"phone", a.phone}, {"password", a.password}};
  if (!a.name.empty()) fields["name"] = a.name;
  if (!a.email.empty()) fields["email"] = a.email;
  return PrintJson(c->Register(fields));
}

int ClientLogin(const ClientArgs& a) {
  auto c = Connect(a);
  return c ? PrintJson(c->Login(a.phone, a.password)) : 1;
}

int ClientMe(const ClientArgs& a) {
  auto c = Connect(a);
  return c ? PrintJson(c->Me()) : 1;
}

int ClientPut(const ClientArgs& a) {
  auto c = Connect(a);
  if (!c) return 1;
  auto v = c->Put(a.collection, a.key, a.body, "text/plain");
  return PrintJson(v.ok() ? Result<Json>(Json{{"version", *v}}) : Result<Json>(v.status()));
}

int ClientGet(const ClientArgs& a) {
  auto c = Connect(a);
  if (!c) return 1;
  auto body = c->Get(a.collection, a.key);
  if (!body.ok()) {
    PrintError(body.status());
    return 1;
  }
  std::fwrite(body->data(), 1, body->size(), stdout);
  std::printf("\n");
  return 0;
}

Result<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::string text = config::ReadFileOr(path);
  if (text.empty()) {
    return Error(Code::kInvalidField, "cannot read " + std::string(what) + " " + path);
  }
  return text;
}

Result<std::unique_ptr<sdk::Client>> ConnectAdmin(const std::string& url,
                                                  const std::string& ca_file,
                                                  const std::string& admin_token_file) {
  std::string token;
  if (!admin_token_file.empty()) {
    ASSIGN_OR_RETURN(token, ReadFile(admin_token_file, "admin token file"));
  } else if (const char* env = std::getenv("MERIDIAN_ADMIN_TOKEN")) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) {
    return Error(Code::kInvalidField,
                 "the admin token is needed: --admin-token-file FILE or MERIDIAN_ADMIN_TOKEN");
  }
  RETURN_IF_ERROR(crypto::Init());
  auto client = sdk::Client::Connect({url, ca_file, true});
  if (!client.ok()) {
    return Error(Code::kUnavailable, "cannot reach " + url + ": " + client.status().message());
  }
  (*client)->set_token(std::move(token));
  return client;
}

std::string ErrorMessageOf(const net::HttpResponse& r) {
  auto j = ParseJsonObject(r.body);
  return j.ok() ? j->value("message", "") : r.body.substr(0, 200);
}

}  // namespace meridian::tools
