// An open-loop load generator over raw loopback sockets. Requests leave on a fixed schedule
// whether or not earlier ones have returned, and each latency is measured from the request's
// scheduled send time: a slow server cannot hide its queue by slowing the sender (no
// coordinated omission). One event-loop thread, a fixed set of keep-alive connections and one
// request outstanding per connection (no pipelining, like wrk); a request that finds every
// connection busy waits in the generator's queue, and that wait counts in its latency.
// Speaks HTTP/1.1 (Content-Length bodies) or the Redis protocol (RESP).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace meridian::bench {

enum class Protocol { kHttp, kResp };

struct LoadOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or "localhost"
  uint16_t port = 0;
  // Further ports of the same service (the other nodes of a region): connection j goes to
  // the (j mod n)-th of {port, more_ports...}.
  std::vector<uint16_t> more_ports;
  Protocol protocol = Protocol::kHttp;
  int connections = 64;
  // Requests per second on the schedule. 0: closed loop, each connection sends its next
  // request as soon as the previous one is answered (for set-up, never for measuring).
  double rate = 0;
  size_t requests = 0;  // how many in all
  // After the last scheduled send time, how long to wait for the remaining answers.
  std::chrono::milliseconds drain{15'000};
  // One request unanswered this long after it was sent fails (its connection is reopened).
  std::chrono::milliseconds timeout{30'000};
};

struct Reply {
  // HTTP status; for RESP 200, or 500 for an error reply; 0 when there was no answer
  // (connection failed, timed out, or the run ended first).
  int status = 0;
  std::string_view body;     // valid during the callback only; RESP: the reply's payload
  int64_t scheduled_ns = 0;  // since the start of the schedule
  int64_t done_ns = 0;       // latency is done_ns - scheduled_ns
};

struct LoadSummary {
  size_t requests = 0;
  size_t answered = 0;    // replies with a status
  size_t failed = 0;      // status 0
  size_t reconnects = 0;  // connections reopened after a close, error or timeout
  int64_t last_scheduled_ns = 0;
  int64_t last_done_ns = 0;    // the last answer, since the start of the schedule
  double offered_rate = 0;     // requests / schedule length (0 for a closed loop)
  double achieved_rate = 0;    // answered / last_done
  double generator_cpu_s = 0;  // CPU time of the generator thread during the run
};

// Appends the bytes of request `i` to `out` (which is empty on entry).
using RequestFn = std::function<void(size_t i, std::string& out)>;
// Called on the generator thread exactly once per request, in completion order.
using ReplyFn = std::function<void(size_t i, const Reply& reply)>;

// A plain-HTTP URL split for the generator (it speaks no TLS).
struct HttpEndpoint {
  std::string host;
  uint16_t port = 80;
  std::string path = "/";            // with the query, if any
  std::string base_url;              // http://host:port
  std::vector<uint16_t> more_ports;  // the service's other nodes, on the same host
};
Result<HttpEndpoint> ParseHttpUrl(std::string_view url);

// Runs the load until every request is answered or failed; fails only when the connections
// cannot be opened at all.
Result<LoadSummary> RunLoad(const LoadOptions& options, const RequestFn& make,
                            const ReplyFn& on_reply);

// Appends one HTTP/1.1 request for `ep` to `out`; `extra_headers` are complete lines.
void AppendRequest(std::string& out, const HttpEndpoint& ep, std::string_view method,
                   std::string_view target, std::string_view token, std::string_view body,
                   std::string_view content_type = "application/json",
                   std::string_view extra_headers = {});
// Closed-loop set-up work: `n` requests over `connections`, each sent when one returns.
Result<LoadSummary> RunClosed(const HttpEndpoint& ep, int connections, size_t n,
                              const RequestFn& make, const ReplyFn& on_reply,
                              std::chrono::milliseconds drain = std::chrono::seconds(15));
// Registers accounts 0..n-1 at `ep` (POST /v1/accounts with body_of(i)), a few passes for
// transient refusals; `created(i, body)` takes a 201's answer and says whether it is usable.
Status RegisterAccounts(const HttpEndpoint& ep, int connections, size_t n,
                        const std::function<std::string(size_t)>& body_of,
                        const std::function<bool(size_t, std::string_view)>& created);

}  // namespace meridian::bench
