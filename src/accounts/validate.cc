#include "accounts/validate.h"

#include <phonenumbers/phonenumberutil.h>

#include "policy/policy.h"

namespace meridian::accounts {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

Result<std::string> NormalizePhone(std::string_view raw, std::string_view country) {
  if (raw.empty() || raw.size() > 64) return Error(Code::kInvalidPhone, "phone is not valid");
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  if (util.Parse(std::string(raw), std::string(country), &number) !=
          PhoneNumberUtil::NO_PARSING_ERROR ||
      !util.IsValidNumber(number)) {
    return Error(Code::kInvalidPhone, "phone is not a valid phone number");
  }
  std::string e164;
  util.Format(number, PhoneNumberUtil::E164, &e164);
  return e164;
}

std::string PhoneCountry(std::string_view e164) {
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  if (util.Parse(std::string(e164), "ZZ", &number) != PhoneNumberUtil::NO_PARSING_ERROR) return "";
  std::string region;
  util.GetRegionCodeForNumber(number, &region);
  return region == "ZZ" ? "" : region;
}

bool IsValidImei(std::string_view imei) {
  if (imei.size() != 15) return false;
  int sum = 0;
  for (size_t i = 0; i < 15; ++i) {
    if (imei[i] < '0' || imei[i] > '9') return false;
    int d = imei[i] - '0';
    if (i % 2 == 1) {  // every second digit from the left is doubled
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 == 0;
}

Status ValidateCountry(std::string_view country) {
  if (country.size() != 2 || !policy::IsIsoCountry(country)) {
    return Error(Code::kInvalidCountry, "country must be an ISO 3166-1 alpha-2 code");
  }
  return Status::Ok();
}

Status ValidatePassword(std::string_view password) {
  size_t code_points = 0;
  for (unsigned char c : password) {
    if ((c & 0xC0) != 0x80) ++code_points;
  }
  if (code_points < 10) {
    return Error(Code::kWeakPassword, "password must have at least 10 characters");
  }
  if (password.size() > 1024) return Error(Code::kInvalidField, "password is too long");
  return Status::Ok();
}

Status ValidateRecordName(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 256 || name.find("..") != std::string_view::npos ||
      name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Error(Code::kInvalidField,
                 std::string(what) + " must be 1 to 256 bytes without '..', '/' or NUL");
  }
  return Status::Ok();
}

Result<RegisterRequest> ParseRegister(const Json& body) {
  RegisterRequest r;
  ASSIGN_OR_RETURN(r.country, RequireString(body, "country", 8));
  RETURN_IF_ERROR(ValidateCountry(r.country));
  ASSIGN_OR_RETURN(auto phone, RequireString(body, "phone", 64));
  ASSIGN_OR_RETURN(r.phone.value, NormalizePhone(phone, r.country));
  ASSIGN_OR_RETURN(r.password.value, RequireString(body, "password", 1024));
  RETURN_IF_ERROR(ValidatePassword(r.password.value));
  ASSIGN_OR_RETURN(auto name, OptionalString(body, "name", 256));
  r.name.value = name.value_or("");
  ASSIGN_OR_RETURN(auto email, OptionalString(body, "email", 254));
  r.email.value = email.value_or("");
  if (!r.email.value.empty()) {
    const std::string& e = r.email.value;
    size_t at = e.find('@');
    if (at == 0 || at == std::string::npos || at + 1 >= e.size() ||
        e.find_first_of(" \t\r\n") != std::string::npos) {
      return Error(Code::kInvalidField, "email is not a valid address");
    }
  }
  return r;
}

Result<LoginRequest> ParseLogin(const Json& body) {
  LoginRequest r;
  ASSIGN_OR_RETURN(auto phone, RequireString(body, "phone", 64));
  // A login names no country: the number must be in international form (or be resolvable).
  ASSIGN_OR_RETURN(r.phone.value, NormalizePhone(phone, "ZZ"));
  ASSIGN_OR_RETURN(r.password.value, RequireString(body, "password", 1024));
  return r;
}

Result<DeviceRequest> ParseDevice(const Json& body) {
  DeviceRequest r;
  ASSIGN_OR_RETURN(r.imei.value, RequireString(body, "imei", 32));
  if (!IsValidImei(r.imei.value)) {
    return Error(Code::kInvalidImei, "imei must be 15 digits with a valid Luhn check digit");
  }
  ASSIGN_OR_RETURN(auto model, OptionalString(body, "model", 128));
  r.model = model.value_or("");
  return r;
}

}  // namespace meridian::accounts
