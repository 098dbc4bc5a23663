#include "common/json.h"

#include <cassert>
#include <charconv>

#include <fmt/format.h>

namespace meridian {

Result<Json> ParseJsonObject(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(Code::kInvalidJson, "body is not valid JSON");
  if (!j.is_object()) return Error(Code::kInvalidJson, "body must be a JSON object");
  return j;
}

Result<std::optional<std::string>> OptionalString(const Json& obj, std::string_view field,
                                                  size_t max_len) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return Error(Code::kInvalidField, fmt::format("field '{}' must be a string", field));
  }
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_len) {
    return Error(Code::kInvalidField, fmt::format("field '{}' is too long", field));
  }
  return std::optional<std::string>(s);
}

Result<std::string> RequireString(const Json& obj, std::string_view field, size_t max_len) {
  ASSIGN_OR_RETURN(auto v, OptionalString(obj, field, max_len));
  if (!v) return Error(Code::kInvalidField, fmt::format("field '{}' is required", field));
  return std::move(*v);
}

Result<std::optional<int64_t>> OptionalInt(const Json& obj, std::string_view field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) {
    return Error(Code::kInvalidField, fmt::format("field '{}' must be an integer", field));
  }
  return std::optional<int64_t>(it->get<int64_t>());
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {
// A JSON string as DumpJson writes it. Printable ASCII without quote or backslash is copied;
// anything else (escapes, UTF-8, invalid bytes to replace) goes through nlohmann itself.
void AppendJsonString(std::string& out, std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || c == '"' || c == '\\') {
      out += DumpJson(Json(std::string(s)));
      return;
    }
  }
  out.push_back('"');
  out.append(s);
  out.push_back('"');
}
}  // namespace

void JsonObjectWriter::Key(std::string_view key) {
  assert(out_.size() == 1 || last_key_ < key);  // sorted, as DumpJson writes them
  last_key_ = key;
  if (out_.size() > 1) out_.push_back(',');
  AppendJsonString(out_, key);
  out_.push_back(':');
}

JsonObjectWriter& JsonObjectWriter::String(std::string_view key, std::string_view value) {
  Key(key);
  AppendJsonString(out_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Int(std::string_view key, int64_t value) {
  Key(key);
  char buf[24];
  out_.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Raw(std::string_view key, std::string_view json) {
  Key(key);
  out_.append(json);
  return *this;
}

std::string JsonObjectWriter::Finish() {
  out_.push_back('}');
  return std::move(out_);
}

std::string ErrorBody(const Status& status) {
  return DumpJson(Json{{"error", CodeName(status.code())}, {"message", status.message()}});
}

}  // namespace meridian
