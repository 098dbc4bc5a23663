// Byte encodings, all backed by libsodium's constant-time codecs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace meridian {

std::string HexEncode(std::string_view bytes);
std::optional<std::string> HexDecode(std::string_view hex);
// Unpadded base64url (RFC 4648 section 5), as API.md uses for keys and sealed messages.
std::string Base64UrlEncode(std::string_view bytes);
std::optional<std::string> Base64UrlDecode(std::string_view text);
// Standard padded base64, as RFC 6962 tooling and signed notes use.
std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace meridian
