// HTTP request bytes -> the server's parser and limits -> route matching and path decoding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "accounts/validate.h"
#include "net/http.h"
#include "node/router.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto req = meridian::net::ParseRequest(bytes, 8 * 1024, 64 * 1024);
  if (!req.ok()) return 0;
  std::vector<std::string> params;
  auto route = meridian::node::RouteTemplateOf(req->path, &params);
  for (const auto& p : params) (void)meridian::accounts::ValidateRecordName(p, "name");
  (void)req->Query("start");
  (void)req->Header("authorization");
  (void)route;
  return 0;
}
