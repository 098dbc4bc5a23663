// The nodes of one destination (a region, or a cluster a client talks to): calls spread
// over them in turn, and a node whose call failed is left out for a while, so one dead node
// costs one failed attempt, not one per call. Used by the inter-region channel and the
// client library.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "net/http.h"

namespace meridian::net {

class Endpoints {
 public:
  explicit Endpoints(std::vector<std::string> urls,
                     std::chrono::milliseconds cooldown = std::chrono::milliseconds(2000));
  Endpoints(const Endpoints& o) : Endpoints(o.urls_, o.cooldown_) {}

  // Every node, in the order to try for the next call: the live ones starting from the
  // next in turn, then those left out (a last resort when all failed).
  std::vector<std::string> Order();
  void Failed(const std::string& url);
  void Succeeded(const std::string& url);
  const std::vector<std::string>& urls() const { return urls_; }

 private:
  std::vector<std::string> urls_;
  std::chrono::milliseconds cooldown_;
  std::mutex mu_;
  size_t next_ = 0;
  std::vector<std::chrono::steady_clock::time_point> down_until_;
};

// True when a client call failed before the request could reach the node (no connection):
// repeating it elsewhere cannot apply it twice.
bool NotDelivered(const Status& status);
// True when repeating `request` on another node is harmless even if the first node applied
// it: reads, PUT and DELETE, and requests carrying an Idempotency-Key.
bool SafeToRepeat(const HttpRequest& request);

// Sends `call` to the nodes of `nodes` in turn (call.base_url is set per attempt): the next
// node is tried when a node cannot be reached, or failed on a request safe to repeat. The
// answer of the first node that answers (any status) is the result.
void SendSpread(HttpClient& client, Endpoints& nodes, ClientCall call,
                std::function<void(Result<HttpResponse>)> done);

}  // namespace meridian::net
