// Shared by the operator commands that talk to a cluster with the admin token
// (`meridian audit verify`, `meridian migrate ...`). Local to src/tools.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "net/http.h"
#include "sdk/client.h"

namespace meridian::tools {

// A file's text; a usage error (kInvalidField) when it cannot be read or is empty.
Result<std::string> ReadFile(const std::string& path, std::string_view what);

// A client of `url` (any node) carrying the admin token: from `admin_token_file`, else from
// MERIDIAN_ADMIN_TOKEN. A usage error (kInvalidField) when there is no token, kUnavailable
// when the node cannot be reached.
Result<std::unique_ptr<sdk::Client>> ConnectAdmin(const std::string& url,
                                                  const std::string& ca_file,
                                                  const std::string& admin_token_file);

// The "message" of an API error answer (else the start of its body).
std::string ErrorMessageOf(const net::HttpResponse& r);

}  // namespace meridian::tools
