#include "sdk/client.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "accounts/validate.h"
#include "common/encoding.h"
#include "common/random.h"
#include "crypto/hpke.h"

namespace meridian::sdk {
namespace {
Status ErrorFrom(const net::HttpResponse& r) {
  auto j = ParseJsonObject(r.body);
  std::string code = j.ok() ? j->value("error", "") : "";
  std::string msg = j.ok() ? j->value("message", "") : r.body.substr(0, 200);
  return Error(Code::kInternal, "HTTP " + std::to_string(r.status) + " " + code + ": " + msg);
}
}  // namespace

Result<std::unique_ptr<Client>> Client::Connect(Options options) {
  std::unique_ptr<Client> c(new Client(std::move(options)));
  net::ClientOptions co;
  co.ca_file = c->opts_.ca_file;
  ASSIGN_OR_RETURN(c->http_, net::MakeClient(co));
  ASSIGN_OR_RETURN(auto r, c->Call("GET", "/v1/regions"));
  if (r.status != 200) return ErrorFrom(r);
  ASSIGN_OR_RETURN(c->regions_, ParseJsonObject(r.body));
  c->Enter(c->opts_.url);
  return c;
}

void Client::Enter(const std::string& url) {
  opts_.url = url;
  std::vector<std::string> nodes{url};
  for (const auto& r : regions_.value("regions", Json::array())) {
    std::vector<std::string> listed;
    for (const auto& n : r.value("nodes", Json::array())) {
      if (n.is_string()) listed.push_back(n.get<std::string>());
    }
    if (std::find(listed.begin(), listed.end(), url) != listed.end()) nodes = listed;
  }
  nodes_ = std::make_unique<net::Endpoints>(std::move(nodes));
}

Result<net::HttpResponse> Client::Call(const std::string& method, const std::string& target,
                                       std::string body, net::Headers headers) {
  net::ClientCall call;
  call.request.method = method;
  call.request.target = target;
  call.request.body = std::move(body);
  call.request.headers = std::move(headers);
  if (!token_.empty()) call.request.SetHeader("authorization", "Bearer " + token_);
  call.timeout = std::chrono::seconds(10);
  std::promise<Result<net::HttpResponse>> answer;
  auto f = answer.get_future();
  net::SendSpread(*http_, *nodes_, std::move(call),
                  [&answer](Result<net::HttpResponse> r) { answer.set_value(std::move(r)); });
  return f.get();
}

Result<std::string> Client::SealFor(const std::string& region, Json plain) {
  const Json regions = regions_.value("regions", Json::array());
  for (const auto& r : regions) {
    if (r.value("name", "") != region || !r["hpke_public_key"].is_string()) continue;
    auto pk = Base64UrlDecode(r["hpke_public_key"].get<std::string>());
    if (!pk) break;
    plain["ts"] = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    plain["nonce"] = SystemRandom::Instance().Hex(16);
    ASSIGN_OR_RETURN(auto sealed, crypto::hpke::SealMessage(r["hpke_key_id"].get<uint8_t>(), *pk,
                                                            DumpJson(plain)));
    return DumpJson(Json{{"sealed", sealed}});
  }
  return Error(Code::kUnavailable, "no public key known for region " + region);
}

// Sends identifying fields sealed to `region`; a wrong guess comes back as 307 with the
// right home region, and is sealed again for it.
Result<Json> Client::SendIdentified(const std::string& target, Json plain, std::string region) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string body;
    if (opts_.seal) {
      ASSIGN_OR_RETURN(body, SealFor(region, plain));
    } else {
      body = DumpJson(plain);
    }
    ASSIGN_OR_RETURN(auto r, Call("POST", target, body));
    if (r.status == 307) {
      auto j = ParseJsonObject(r.body);
      if (!j.ok() || !j->contains("home_region")) return ErrorFrom(r);
      region = (*j)["home_region"].get<std::string>();
      if (!opts_.seal) {
        // In the clear the client follows the redirect itself.
        Enter(std::string(r.Header("location")).substr(0, r.Header("location").find("/v1/")));
      }
      continue;
    }
    if (r.status != 200 && r.status != 201) return ErrorFrom(r);
    ASSIGN_OR_RETURN(auto j, ParseJsonObject(r.body));
    token_ = j.value("token", "");
    return j;
  }
  return Error(Code::kWrongRegion, "too many redirects");
}

Result<Json> Client::Register(const Json& fields) {
  std::string country = fields.value("country", "");
  const Json countries = regions_.value("countries", Json::object());
  std::string home = countries.value(country, regions_.value("default_region", ""));
  return SendIdentified("/v1/accounts", fields, home);
}

Result<Json> Client::Login(std::string_view phone, std::string_view password) {
  // Best guess of the home region: the number's country under the policy.
  std::string country = accounts::PhoneCountry(phone);
  const Json countries = regions_.value("countries", Json::object());
  std::string home = countries.value(country, regions_.value("default_region", ""));
  return SendIdentified("/v1/sessions", Json{{"phone", phone}, {"password", password}}, home);
}

Result<Json> Client::Me() {
  ASSIGN_OR_RETURN(auto r, Call("GET", "/v1/me"));
  if (r.status != 200) return ErrorFrom(r);
  return ParseJsonObject(r.body);
}

Result<int64_t> Client::Put(std::string_view collection, std::string_view key, std::string body,
                            std::string content_type) {
  ASSIGN_OR_RETURN(auto r, Call("PUT",
                                "/v1/me/records/" + net::PercentEncode(collection) + "/" +
                                    net::PercentEncode(key),
                                std::move(body), {{"content-type", std::move(content_type)}}));
  if (r.status != 200) return ErrorFrom(r);
  ASSIGN_OR_RETURN(auto j, ParseJsonObject(r.body));
  return j.value("version", int64_t{0});
}

Result<std::string> Client::Get(std::string_view collection, std::string_view key) {
  ASSIGN_OR_RETURN(auto r, Call("GET", "/v1/me/records/" + net::PercentEncode(collection) + "/" +
                                           net::PercentEncode(key)));
  if (r.status != 200) return ErrorFrom(r);
  return r.body;
}

Result<std::string> Client::AddDevice(std::string_view imei, std::string_view model) {
  Json plain = {{"imei", imei}, {"model", model}};
  std::string body;
  if (opts_.seal) {
    ASSIGN_OR_RETURN(auto me, Me());
    ASSIGN_OR_RETURN(body, SealFor(me.value("home_region", ""), plain));
  } else {
    body = DumpJson(plain);
  }
  ASSIGN_OR_RETURN(auto r, Call("POST", "/v1/me/devices", body));
  if (r.status != 201) return ErrorFrom(r);
  ASSIGN_OR_RETURN(auto j, ParseJsonObject(r.body));
  return j.value("device_id", "");
}

}  // namespace meridian::sdk
