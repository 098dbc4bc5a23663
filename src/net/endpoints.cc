#include "net/endpoints.h"

#include <memory>

namespace meridian::net {

Endpoints::Endpoints(std::vector<std::string> urls, std::chrono::milliseconds cooldown)
    : urls_(std::move(urls)), cooldown_(cooldown), down_until_(urls_.size()) {}

std::vector<std::string> Endpoints::Order() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  std::vector<std::string> live, down;
  const size_t n = urls_.size();
  const size_t first = n == 0 ? 0 : next_++ % n;
  for (size_t i = 0; i < n; ++i) {
    const size_t k = (first + i) % n;
    (down_until_[k] > now ? down : live).push_back(urls_[k]);
  }
  live.insert(live.end(), down.begin(), down.end());
  return live;
}

void Endpoints::Failed(const std::string& url) {
  std::lock_guard lock(mu_);
  for (size_t k = 0; k < urls_.size(); ++k) {
    if (urls_[k] == url) down_until_[k] = std::chrono::steady_clock::now() + cooldown_;
  }
}

void Endpoints::Succeeded(const std::string& url) {
  std::lock_guard lock(mu_);
  for (size_t k = 0; k < urls_.size(); ++k) {
    if (urls_[k] == url) down_until_[k] = {};
  }
}

bool NotDelivered(const Status& status) {
  constexpr std::string_view kSuffix = "could not connect";
  const std::string& m = status.message();
  return status.code() == Code::kUnavailable && m.size() >= kSuffix.size() &&
         m.compare(m.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

bool SafeToRepeat(const HttpRequest& request) {
  const std::string& m = request.method;
  return m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" ||
         !request.Header("idempotency-key").empty();
}

namespace {
struct Attempts {
  HttpClient& client;
  Endpoints& nodes;
  ClientCall call;
  std::vector<std::string> order;
  size_t at = 0;
  std::function<void(Result<HttpResponse>)> done;
};

void Next(std::shared_ptr<Attempts> a) {
  a->call.base_url = a->order[a->at];
  ClientCall call = a->call;
  a->client.Send(std::move(call), [a](Result<HttpResponse> r) mutable {
    const std::string& url = a->order[a->at];
    if (r.ok()) {
      a->nodes.Succeeded(url);
      return a->done(std::move(r));
    }
    a->nodes.Failed(url);
    const bool again = NotDelivered(r.status()) || SafeToRepeat(a->call.request);
    if (!again || ++a->at >= a->order.size()) return a->done(std::move(r));
    Next(std::move(a));
  });
}
}  // namespace

void SendSpread(HttpClient& client, Endpoints& nodes, ClientCall call,
                std::function<void(Result<HttpResponse>)> done) {
  auto a = std::make_shared<Attempts>(
      Attempts{client, nodes, std::move(call), nodes.Order(), 0, std::move(done)});
  if (a->order.empty()) {
    return a->done(Error(Code::kInternal, "no node to call"));
  }
  Next(std::move(a));
}

}  // namespace meridian::net
