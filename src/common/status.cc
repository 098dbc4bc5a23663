#include "common/status.h"

#include <string>

namespace meridian {
namespace {
struct CodeInfo {
  std::string_view name;
  int http;
};

CodeInfo Info(Code code) {
  switch (code) {
    case Code::kOk:
      return {"ok", 200};
    case Code::kInvalidJson:
      return {"invalid_json", 400};
    case Code::kInvalidCountry:
      return {"invalid_country", 400};
    case Code::kInvalidPhone:
      return {"invalid_phone", 400};
    case Code::kInvalidImei:
      return {"invalid_imei", 400};
    case Code::kWeakPassword:
      return {"weak_password", 400};
    case Code::kInvalidField:
      return {"invalid_field", 400};
    case Code::kUnauthenticated:
      return {"unauthenticated", 401};
    case Code::kForbidden:
      return {"forbidden", 403};
    case Code::kLimitReached:
      return {"limit_reached", 403};
    case Code::kResidencyViolation:
      return {"residency_violation", 403};
    case Code::kNotFound:
      return {"not_found", 404};
    case Code::kMethodNotAllowed:
      return {"method_not_allowed", 405};
    case Code::kPhoneTaken:
      return {"phone_taken", 409};
    case Code::kSoldOut:
      return {"sold_out", 409};
    case Code::kNotOpen:
      return {"not_open", 409};
    case Code::kConflict:
      return {"conflict", 409};
    case Code::kExpired:
      return {"expired", 410};
    case Code::kTooLarge:
      return {"too_large", 413};
    case Code::kHeadersTooLarge:
      return {"too_large", 431};
    case Code::kWrongRegion:
      return {"wrong_region", 421};
    case Code::kOverloaded:
      return {"overloaded", 429};
    case Code::kFenced:
      return {"fenced", 503};
    case Code::kUnavailable:
      return {"unavailable", 503};
    case Code::kIntegrityError:
      return {"integrity_error", 500};
    case Code::kInternal:
      return {"internal", 500};
    case Code::kWouldBlock:
      return {"unavailable", 503};
  }
  return {"internal", 500};
}
}  // namespace

std::string_view CodeName(Code code) { return Info(code).name; }
int HttpStatusOf(Code code) { return Info(code).http; }

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace meridian
