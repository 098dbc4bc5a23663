#include "net/http.h"

#include <cctype>
#include <future>

#include "common/json.h"
#include "net/beast.h"

namespace meridian::net {
namespace {
std::string_view Find(const Headers& h, std::string_view name) {
  for (const auto& [k, v] : h) {
    if (k == name) return v;
  }
  return {};
}
void Set(Headers& h, std::string_view name, std::string value) {
  for (auto& [k, v] : h) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  h.emplace_back(std::string(name), std::move(value));
}
int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string_view HttpRequest::Header(std::string_view n) const { return Find(headers, n); }
void HttpRequest::SetHeader(std::string_view n, std::string v) { Set(headers, n, std::move(v)); }
void HttpRequest::RemoveHeader(std::string_view n) {
  std::erase_if(headers, [&](const auto& kv) { return kv.first == n; });
}

std::optional<std::string> HttpRequest::Query(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    size_t eq = part.find('=');
    if (part.substr(0, eq) == name) {
      return PercentDecode(eq == std::string_view::npos ? "" : part.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string_view HttpResponse::Header(std::string_view n) const { return Find(headers, n); }
void HttpResponse::SetHeader(std::string_view n, std::string v) { Set(headers, n, std::move(v)); }

HttpResponse HttpResponse::Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", "application/json");
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::FromStatus(const Status& status) {
  HttpResponse r = Json(HttpStatusOf(status.code()), ErrorBody(status));
  if (status.code() == Code::kOverloaded || status.code() == Code::kFenced ||
      status.code() == Code::kUnavailable) {
    r.SetHeader("retry-after", "1");
  }
  return r;
}

std::string SerializeResponse(const HttpResponse& r, bool keep_alive) {
  std::string out;
  SerializeResponse(r, keep_alive, &out);
  return out;
}

void SerializeResponse(const HttpResponse& r, bool keep_alive, std::string* out_ptr) {
  std::string& out = *out_ptr;
  const auto reason = http::obsolete_reason(static_cast<http::status>(r.status));
  const bool bodiless = (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304;
  out.clear();
  out.reserve(128 + r.body.size() + r.headers.size() * 48);
  out.append("HTTP/1.1 ").append(std::to_string(r.status)).append(" ");
  out.append(reason.data(), reason.size()).append("\r\n");
  for (const auto& [name, value] : r.headers) {
    if (name == "content-length" || name == "transfer-encoding" || name == "connection" ||
        name == "server" || name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out.append("server: meridian\r\n");
  if (!bodiless)
    out.append("content-length: ").append(std::to_string(r.body.size())).append("\r\n");
  if (!keep_alive) out.append("connection: close\r\n");
  out.append("\r\n");
  if (!bodiless) out.append(r.body);
}

Result<HttpResponse> HttpClient::SendSync(ClientCall call) {
  std::promise<Result<HttpResponse>> p;
  auto f = p.get_future();
  Send(std::move(call), [&p](Result<HttpResponse> r) { p.set_value(std::move(r)); });
  return f.get();
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = HexVal(s[i + 1]);
      int lo = HexVal(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace meridian::net
