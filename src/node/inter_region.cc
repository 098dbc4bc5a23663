#include "node/inter_region.h"

#include <future>

namespace meridian::node {

InterRegion::InterRegion(const config::ClusterConfig& config, std::string self,
                         std::string internal_token, std::unique_ptr<net::HttpClient> client,
                         Metrics& metrics)
    : config_(config),
      self_(std::move(self)),
      internal_token_(std::move(internal_token)),
      client_(std::move(client)),
      metrics_(metrics) {
  for (const auto& r : config_.regions) {
    nodes_[r.name] = std::make_unique<net::Endpoints>(r.Urls());
  }
}

void InterRegion::Call(const std::string& region, net::HttpRequest request,
                       std::function<void(Result<net::HttpResponse>)> done) {
  const config::RegionConfig* dest = config_.Find(region);
  if (dest == nullptr || region == self_) {
    done(Error(Code::kInternal, "no such region to call"));
    return;
  }
  request.SetHeader(kInternalHeader, internal_token_);
  request.SetHeader(kForwardedHeader, self_);
  net::ClientCall call;
  call.request = std::move(request);
  call.timeout = std::chrono::milliseconds(config_.knobs.forward_timeout_ms);
  if (config_.knobs.emulate_latency) {
    call.added_latency = std::chrono::milliseconds(config_.RttMs(self_, region));
  }
  net::SendSpread(*client_, *nodes_.at(region), std::move(call),
                  [this, region, done = std::move(done)](auto r) {
                    metrics_.CountForward(region, r.ok());
                    done(std::move(r));
                  });
}

Result<net::HttpResponse> InterRegion::CallSync(const std::string& region,
                                                net::HttpRequest request) {
  std::promise<Result<net::HttpResponse>> p;
  auto f = p.get_future();
  Call(region, std::move(request), [&p](auto r) { p.set_value(std::move(r)); });
  return f.get();
}

std::vector<std::pair<std::string, Result<net::HttpResponse>>> InterRegion::FanOut(
    const std::vector<const config::RegionConfig*>& regions, const net::HttpRequest& request) {
  std::vector<std::pair<std::string, std::future<Result<net::HttpResponse>>>> pending;
  for (const auto* r : regions) {
    if (r->name == self_) continue;
    auto p = std::make_shared<std::promise<Result<net::HttpResponse>>>();
    pending.emplace_back(r->name, p->get_future());
    Call(r->name, request, [p](auto res) { p->set_value(std::move(res)); });
  }
  std::vector<std::pair<std::string, Result<net::HttpResponse>>> out;
  for (auto& [name, f] : pending) out.emplace_back(name, f.get());
  return out;
}

std::vector<std::pair<std::string, Result<net::HttpResponse>>> InterRegion::FanOutHomes(
    const net::HttpRequest& request) {
  return FanOut(config_.HomeRegions(), request);
}

std::vector<std::pair<std::string, Result<net::HttpResponse>>> InterRegion::FanOutAll(
    const net::HttpRequest& request) {
  std::vector<const config::RegionConfig*> all;
  for (const auto& r : config_.regions) all.push_back(&r);
  return FanOut(all, request);
}

Result<std::optional<std::string>> PeerDirectory::FindElsewhere(const std::string& pseudonym) {
  net::HttpRequest req;
  req.method = "GET";
  req.target = "/internal/v1/directory/phone/" + pseudonym;
  for (auto& [region, res] : ir_.FanOutHomes(req)) {
    if (!res.ok()) {
      return Error(Code::kUnavailable,
                   "region " + region + " cannot be reached to check the phone");
    }
    if (res->status == 200) return std::optional<std::string>(region);
    if (res->status != 404) {
      return Error(Code::kUnavailable, "region " + region + " could not check the phone");
    }
  }
  return std::optional<std::string>();
}

}  // namespace meridian::node
