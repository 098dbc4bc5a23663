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

inline std::string ToLower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Copies a Beast header block into our header list (lowercase names).
template <typename Fields>
Headers CopyHeaders(const Fields& fields) {
  Headers h;
  for (const auto& f : fields) h.emplace_back(ToLower(f.name_string()), std::string(f.value()));
  return h;
}
// Our request value from a parsed Beast message.
HttpRequest FromBeast(http::request<http::string_body>&& msg);
}  // namespace meridian::net
