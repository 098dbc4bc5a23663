// The one inter-region channel: every call from this region to another goes through it.
// It adds the internal credentials, the emulated WAN round trip from the latency matrix,
// the per-call deadline, spreads calls over the destination region's nodes (leaving out a
// node that failed for a while), and counts forwards by destination.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "accounts/accounts.h"
#include "config/cluster.h"
#include "net/endpoints.h"
#include "net/http.h"
#include "node/metrics.h"

namespace meridian::node {

inline constexpr std::string_view kInternalHeader = "x-meridian-internal";
inline constexpr std::string_view kForwardedHeader = "x-meridian-forwarded-by";

class InterRegion {
 public:
  InterRegion(const config::ClusterConfig& config, std::string self, std::string internal_token,
              std::unique_ptr<net::HttpClient> client, Metrics& metrics);

  const std::string& self() const { return self_; }
  void Call(const std::string& region, net::HttpRequest request,
            std::function<void(Result<net::HttpResponse>)> done);
  // Blocks: only from worker threads.
  Result<net::HttpResponse> CallSync(const std::string& region, net::HttpRequest request);
  // Calls every other home region at once and waits for all answers.
  std::vector<std::pair<std::string, Result<net::HttpResponse>>> FanOutHomes(
      const net::HttpRequest& request);
  // Calls every other region (homes and edges) at once and waits for all answers.
  std::vector<std::pair<std::string, Result<net::HttpResponse>>> FanOutAll(
      const net::HttpRequest& request);

 private:
  std::vector<std::pair<std::string, Result<net::HttpResponse>>> FanOut(
      const std::vector<const config::RegionConfig*>& regions, const net::HttpRequest& request);

  const config::ClusterConfig& config_;
  std::string self_;
  std::string internal_token_;
  std::unique_ptr<net::HttpClient> client_;
  Metrics& metrics_;
  std::map<std::string, std::unique_ptr<net::Endpoints>> nodes_;  // by region
};

// PhoneDirectory over the internal directory endpoint of the other home regions.
class PeerDirectory final : public accounts::PhoneDirectory {
 public:
  explicit PeerDirectory(InterRegion& ir) : ir_(ir) {}
  Result<std::optional<std::string>> FindElsewhere(const std::string& pseudonym) override;

 private:
  InterRegion& ir_;
};

}  // namespace meridian::node
