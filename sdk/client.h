// The Meridian client library. It seals identifiers by default: phone numbers, passwords
// and IMEIs leave the device only inside HPKE messages to the home region's public key
// (API.md, "Sealed messages"), so an edge or a foreign region that carries them cannot read
// them. Used by the tests, the benchmarks and `meridian client`.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/json.h"
#include "common/status.h"
#include "net/endpoints.h"
#include "net/http.h"

namespace meridian::sdk {

struct Options {
  // Any node, e.g. the nearest edge. Once connected, calls spread over every node of that
  // node's region (GET /v1/regions lists them) and go around a node that fails.
  std::string url;
  std::string ca_file;  // for https
  bool seal = true;     // false sends identifiers in the clear (tests and debugging)
};

class Client {
 public:
  // Connects and reads the regions, their keys and the policy (GET /v1/regions).
  static Result<std::unique_ptr<Client>> Connect(Options options);

  // Registers; returns {"user_id","home_region","token"} and keeps the token.
  Result<Json> Register(const Json& fields);
  Result<Json> Login(std::string_view phone, std::string_view password);
  Result<Json> Me();
  Result<int64_t> Put(std::string_view collection, std::string_view key, std::string body,
                      std::string content_type = "application/octet-stream");
  Result<std::string> Get(std::string_view collection, std::string_view key);
  Result<std::string> AddDevice(std::string_view imei, std::string_view model);

  const std::string& token() const { return token_; }
  // GET /v1/regions as read by Connect.
  const Json& regions() const { return regions_; }
  void set_token(std::string token) { token_ = std::move(token); }
  // A raw call with the current token (for everything the helpers above do not cover).
  Result<net::HttpResponse> Call(const std::string& method, const std::string& target,
                                 std::string body = {}, net::Headers headers = {});
  // The sealed form of `plain` for `region` ({"sealed": "..."}), with ts and nonce added.
  Result<std::string> SealFor(const std::string& region, Json plain);

 private:
  explicit Client(Options o)
      : opts_(std::move(o)),
        nodes_(std::make_unique<net::Endpoints>(std::vector<std::string>{opts_.url})) {}
  Result<Json> SendIdentified(const std::string& target, Json plain, std::string region);
  // Calls go to `url` and the other nodes of its region.
  void Enter(const std::string& url);

  Options opts_;
  std::unique_ptr<net::HttpClient> http_;
  std::unique_ptr<net::Endpoints> nodes_;
  Json regions_;
  std::string token_;
};

}  // namespace meridian::sdk
