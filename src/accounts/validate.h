// Validation of personal-data input. Pure functions over strings: no storage, no network,
// so they are unit tested and fuzzed directly.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/log.h"
#include "common/status.h"

namespace meridian::accounts {

// A phone number in any common format -> E.164 ("+919876543210"), using the country as the
// default region for numbers written without "+". invalid_phone if it is not a valid number.
Result<std::string> NormalizePhone(std::string_view raw, std::string_view country);
// The ISO 3166-1 alpha-2 region of an E.164 number, "" if unknown.
std::string PhoneCountry(std::string_view e164);

// 15 digits whose last is the Luhn check digit of the first 14.
bool IsValidImei(std::string_view imei);

// An ISO 3166-1 alpha-2 code, upper case.
Status ValidateCountry(std::string_view country);
// At least 10 characters (Unicode code points), at most 1024 bytes.
Status ValidatePassword(std::string_view password);
// Record collection and key names: 1..256 bytes, no "..", "/" or NUL.
Status ValidateRecordName(std::string_view name, std::string_view what);

// Personal values travel in Redacted<>: formatting one prints "[redacted]", so a request
// can never be logged by accident; code that needs the value says `.value`.
using Personal = Redacted<std::string>;

struct RegisterRequest {
  std::string country;
  Personal phone;  // E.164
  Personal password;
  Personal name;
  Personal email;
};
// Validates a registration body (the plain form).
Result<RegisterRequest> ParseRegister(const Json& body);

struct LoginRequest {
  Personal phone;  // E.164
  Personal password;
};
Result<LoginRequest> ParseLogin(const Json& body);

struct DeviceRequest {
  Personal imei;
  std::string model;
};
Result<DeviceRequest> ParseDevice(const Json& body);

}  // namespace meridian::accounts
