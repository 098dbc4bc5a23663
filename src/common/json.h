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

// A flat JSON object written straight into a string, byte for byte what DumpJson gives for
// the same members: for the few objects of the purchase path, where building a document
// cost more than the rest of the answer. Members must be added in ascending key order
// (nlohmann's objects are sorted); keys are literals.
class JsonObjectWriter {
 public:
  JsonObjectWriter() { out_.reserve(192); }  // the purchase path's objects, in one allocation
  JsonObjectWriter& String(std::string_view key, std::string_view value);
  JsonObjectWriter& Int(std::string_view key, int64_t value);
  // A member whose value is JSON text already in DumpJson's form (a nested object).
  JsonObjectWriter& Raw(std::string_view key, std::string_view json);
  std::string Finish();  // the object; the writer is spent

 private:
  void Key(std::string_view key);
  std::string out_ = "{";
  std::string_view last_key_;
};

// {"error": "<code>", "message": "<text>"} as API.md requires.
std::string ErrorBody(const Status& status);

}  // namespace meridian
