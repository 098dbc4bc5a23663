#include "net/beast.h"

namespace meridian::net {

void RequestParser::on_request_impl(http::verb, beast::string_view method,
                                    beast::string_view target, int, beast::error_code&) {
  req_.method.assign(method.data(), method.size());
  req_.target.assign(target.data(), target.size());
  const size_t q = req_.target.find('?');
  req_.path = req_.target.substr(0, q);
  if (q != std::string::npos) req_.query = req_.target.substr(q + 1);
  req_.headers.reserve(8);  // a client's usual few: one allocation, not one per doubling
}

Result<HttpRequest> ParseRequest(std::string_view bytes, size_t max_header_bytes,
                                 size_t max_body_bytes) {
  RequestParser parser;
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
  return parser.Release();
}

}  // namespace meridian::net
