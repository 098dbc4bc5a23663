// HTTP messages as plain values, and the server and client interfaces. Boost.Beast stays
// inside this folder's .cc files: nothing else includes it (it is slow to compile).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace meridian::net {

using Headers = std::vector<std::pair<std::string, std::string>>;  // names in lowercase

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as received
  std::string path;    // percent-decoding is the router's job
  std::string query;
  Headers headers;
  std::string body;
  // The common name of a verified TLS client certificate (mutual TLS), else empty.
  std::string peer_identity;

  std::string_view Header(std::string_view lower_name) const;
  void SetHeader(std::string_view lower_name, std::string value);
  void RemoveHeader(std::string_view lower_name);
  // A query parameter's raw value, or nullopt.
  std::optional<std::string> Query(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  Headers headers;
  std::string body;

  std::string_view Header(std::string_view lower_name) const;
  void SetHeader(std::string_view lower_name, std::string value);

  static HttpResponse Json(int status, std::string body);
  // The API error body for a failed Status, with its HTTP status.
  static HttpResponse FromStatus(const Status& status);
};

// The response's bytes on the wire (HTTP/1.1), in one buffer so that it leaves in one send:
// the status line, its headers (framing headers and any with CR or LF are dropped: framing is
// decided here), Server, Content-Length (none for 1xx, 204 and 304), Connection: close unless
// the connection stays open, then the body.
std::string SerializeResponse(const HttpResponse& response, bool keep_alive);
// The same bytes into `out` (replacing what it held, keeping its capacity: a session reuses
// one buffer for all its answers).
void SerializeResponse(const HttpResponse& response, bool keep_alive, std::string* out);

// Called exactly once per request, from any thread.
using Respond = std::function<void(HttpResponse)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // The body limit for a request, decided from its method and path once the header is in.
  virtual size_t BodyLimit(std::string_view method, std::string_view path) const = 0;
  // Runs on an event-loop thread: must not block. Hand slow work to a worker pool.
  virtual void Handle(HttpRequest&& request, Respond respond) = 0;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;   // 0: any free port
  int io_threads = 1;  // one event loop per thread, sharing the port (SO_REUSEPORT)
  bool tls = false;
  std::string cert_file;
  std::string key_file;
  // When set, clients may present a certificate from this CA (mutual TLS); a verified one
  // names the peer in HttpRequest::peer_identity. Clients without one are still served.
  std::string client_ca_file;
  size_t max_header_bytes = 8 * 1024;
  std::chrono::milliseconds read_timeout{10'000};  // to receive one whole request
  std::chrono::milliseconds shutdown_grace{10'000};
};

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting, lets in-flight requests finish (up to the grace period), closes idle
  // connections and stops the event loops. Safe to call from any thread, once.
  virtual void Shutdown() = 0;
  // Blocks until the event loops have stopped.
  virtual void Wait() = 0;
};
Result<std::unique_ptr<HttpServer>> StartServer(const ServerOptions& options, Handler& handler);

// The first of `count` consecutive loopback ports nothing is bound to, picked at random below
// Linux's ephemeral range (32768+) so that no outgoing connection can be holding one. For
// test and benchmark clusters; another process may still take them before they are bound.
Result<int> FreeLoopbackPorts(int count);

struct ClientOptions {
  std::string ca_file;    // trust anchor for https:// URLs
  std::string cert_file;  // client certificate, when the peer asks for one
  std::string key_file;
  size_t max_response_bytes = 64 << 20;
  std::chrono::milliseconds max_idle{2'000};  // pooled connections older than this are dropped
};

struct ClientCall {
  std::string base_url;  // http(s)://host:port
  HttpRequest request;   // method, target, headers, body
  std::chrono::milliseconds timeout{5'000};
  std::chrono::milliseconds added_latency{0};  // emulated WAN round trip, half each way
};

// A pooled, keep-alive HTTP/1.1 client with its own event loop thread.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual void Send(ClientCall call, std::function<void(Result<HttpResponse>)> done) = 0;
  // Blocks the calling thread: never call it from an event-loop thread.
  Result<HttpResponse> SendSync(ClientCall call);
};
Result<std::unique_ptr<HttpClient>> MakeClient(const ClientOptions& options);

// Percent-decoding of a path segment; nullopt for malformed escapes.
std::optional<std::string> PercentDecode(std::string_view s);
std::string PercentEncode(std::string_view s);

}  // namespace meridian::net

namespace meridian::net {
// Parses one complete HTTP/1.1 request from bytes with the server's parser and limits (the
// same conversion the server applies). For fuzzing and tests: the server reads from sockets.
Result<HttpRequest> ParseRequest(std::string_view bytes, size_t max_header_bytes,
                                 size_t max_body_bytes);
}  // namespace meridian::net
