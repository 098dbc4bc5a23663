// JSON at the edges of the system: exception-free parsing and typed field access over
// nlohmann::json, so a bad body becomes a Status, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace meridian {

using Json = nlohmann::json;

// Parses a JSON object; anything else (invalid syntax, an array, a number) is invalid_json.
Result<Json> ParseJsonObject(std::string_view text);

// Required string field: missing or not a string -> invalid_field naming the field.
Result<std::string> RequireString(const Json& obj, std::string_view field, size_t max_len = 4096);
// Optional string field: absent or null -> nullopt; present but not a string -> invalid_field.
Result<std::optional<std::string>> OptionalString(const Json& obj, std::string_view field,
                                                  size_t max_len = 4096);
Result<std::optional<int64_t>> OptionalInt(const Json& obj, std::string_view field);

// Serialises without throwing: invalid UTF-8 is replaced rather than aborting the answer.
std::string DumpJson(const Json& value);

// {"error": "<code>", "message": "<text>"} as API.md requires.
std::string ErrorBody(const Status& status);

}  // namespace meridian
