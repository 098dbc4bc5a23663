// The one error vocabulary of Meridian: every fallible call returns Status or Result<T>.
// Codes are the public error codes of API.md, so an error travels unchanged from the
// storage layer to the HTTP answer.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace meridian {

enum class Code {
  kOk,
  kInvalidJson,
  kInvalidCountry,
  kInvalidPhone,
  kInvalidImei,
  kWeakPassword,
  kInvalidField,
  kUnauthenticated,
  kForbidden,
  kLimitReached,
  kResidencyViolation,
  kNotFound,
  kMethodNotAllowed,
  kPhoneTaken,
  kSoldOut,
  kNotOpen,
  kConflict,
  kExpired,
  kTooLarge,
  kHeadersTooLarge,
  kWrongRegion,
  kOverloaded,
  kFenced,
  kUnavailable,
  kIntegrityError,
  kInternal,
  // Internal, never an answer: a call told not to wait (Wait::kNever) would have waited
  // for a file read, a busy lock or a key unwrap, and did nothing. Its caller retries on a
  // thread that may wait; should one ever reach a client it reads as 503 unavailable.
  kWouldBlock,
};

// Whether a call may wait for a file read, a lock another operation holds or a key unwrap.
// The event loops call with kNever and hand the work to a worker when it answers
// kWouldBlock.
enum class Wait { kMay, kNever };

// The API error code string ("invalid_phone", ...).
std::string_view CodeName(Code code);
// The HTTP status that API.md pairs with the code.
int HttpStatusOf(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  // Human text. Never contains personal data: callers describe the field, not its value.
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status Error(Code code, std::string message) { return {code, std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace meridian

// Early return of a failed Status or Result.
#define MERIDIAN_CONCAT_INNER(a, b) a##b
#define MERIDIAN_CONCAT(a, b) MERIDIAN_CONCAT_INNER(a, b)
#define RETURN_IF_ERROR(expr)        \
  do {                               \
    ::meridian::Status _st = (expr); \
    if (!_st.ok()) return _st;       \
  } while (0)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(MERIDIAN_CONCAT(_res_, __LINE__), lhs, expr)
