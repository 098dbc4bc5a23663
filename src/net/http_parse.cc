#include "net/beast.h"

namespace meridian::net {

HttpRequest FromBeast(http::request<http::string_body>&& msg) {
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  req.headers = CopyHeaders(msg);
  req.body = std::move(msg.body());
  return req;
}

Result<HttpRequest> ParseRequest(std::string_view bytes, size_t max_header_bytes,
                                 size_t max_body_bytes) {
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(static_cast<uint32_t>(max_header_bytes));
  parser.body_limit(max_body_bytes);
  beast::error_code ec;
  size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
  if (!ec && !parser.is_done() && used == bytes.size()) parser.put_eof(ec);
  if (ec == http::error::body_limit)
    return Error(Code::kTooLarge, "request body is over the limit");
  if (ec == http::error::header_limit)
    return Error(Code::kHeadersTooLarge, "headers over the limit");
  if (ec || !parser.is_done()) return Error(Code::kInvalidField, "malformed HTTP request");
  return FromBeast(parser.release());
}

}  // namespace meridian::net
