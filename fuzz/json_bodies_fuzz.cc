// JSON request bodies -> every body parser and validator, and bearer tokens.
#include <cstddef>
#include <cstdint>
#include <string>

#include "accounts/validate.h"
#include "common/json.h"
#include "crypto/crypto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto body = meridian::ParseJsonObject(text);
  if (body.ok()) {
    (void)meridian::accounts::ParseRegister(*body);
    (void)meridian::accounts::ParseLogin(*body);
    (void)meridian::accounts::ParseDevice(*body);
    (void)meridian::DumpJson(*body);
  }
  (void)meridian::crypto::PeekToken(text);
  (void)meridian::crypto::VerifyToken(text, std::string(32, 'k'), 0);
  (void)meridian::accounts::IsValidImei(text);
  return 0;
}
