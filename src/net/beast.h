// Private to net/: the one header that includes Asio and Beast.
#pragma once

#include <utility>  // Boost 1.74 Asio in C++20 needs it first (DEBIAN12.md)

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "net/http.h"

namespace meridian::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// ASCII only, as HTTP field names are (std::tolower asks the locale for every byte).
inline std::string ToLower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  return out;
}

// Copies a Beast header block into our header list (lowercase names).
template <typename Fields>
Headers CopyHeaders(const Fields& fields) {
  Headers h;
  for (const auto& f : fields) h.emplace_back(ToLower(f.name_string()), std::string(f.value()));
  return h;
}

// Beast's HTTP/1.1 request parser, writing straight into our request value: no Beast header
// container built field by field and copied out again. The server and ParseRequest use it.
class RequestParser final : public http::basic_parser<true> {
 public:
  // The request once is_done(); the parser is spent after.
  HttpRequest Release() { return std::move(req_); }
  // The request line and headers, once is_header_done().
  std::string_view Method() const { return req_.method; }
  std::string_view Path() const { return req_.path; }
  std::string_view Header(std::string_view lower_name) const { return req_.Header(lower_name); }

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target, int,
                       beast::error_code&) override;
  void on_response_impl(int, beast::string_view, int, beast::error_code& ec) override {
    ec = http::error::bad_method;  // never called: this parses requests
  }
  void on_field_impl(http::field field, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    if (is_header_done()) return;  // a chunked body's trailer: never a header of the request
    if (field == http::field::transfer_encoding) transfer_encoding_ = true;
    req_.headers.emplace_back(ToLower(name), std::string(value));
  }
  void on_header_impl(beast::error_code& ec) override {
    // A Transfer-Encoding other than chunked leaves the body's end unknown: read as bodiless,
    // its bytes would be taken for the next request (RFC 7230 3.3.3 asks for a 400).
    if (transfer_encoding_ && !chunked()) ec = http::error::bad_transfer_encoding;
  }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code&) override {
    if (length) req_.body.reserve(*length);  // at most the body limit, checked before
  }
  size_t on_body_impl(beast::string_view body, beast::error_code&) override {
    req_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                            beast::error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(beast::error_code&) override {}

  HttpRequest req_;
  bool transfer_encoding_ = false;
};
}  // namespace meridian::net
