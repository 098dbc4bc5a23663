// `meridian dev --scenario NAME`: a scripted story played against the dev cluster once it is
// up, from a background thread of the dev process, printing to stdout as it goes.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "common/status.h"
#include "config/cluster.h"

namespace meridian::dev {

struct ScenarioOptions {
  std::string name;  // "great-shift"
  int users = 300;   // users registered before the policy changes
  int writers = 4;   // live-traffic threads
};

// True for the scenarios `meridian dev --scenario` knows.
bool IsKnownScenario(std::string_view name);
// The policy the scenario needs the cluster to start with ("legacy" for great-shift).
std::string ScenarioStartPolicy(std::string_view name);

// great-shift: registers users from many countries under the legacy policy (everyone in
// beijing) through the edge, starts live writes through the edge, applies the current policy,
// moves the misplaced users out of beijing while printing progress, then checks that every
// user logs in at the home region the policy gives them and that no acknowledged write was
// lost, and prints a summary. Returns the first problem; returns early (kUnavailable) once
// `stop` is set. The cluster itself is left as it is.
Status RunScenario(const config::ClusterConfig& cfg, const ScenarioOptions& opts,
                   const std::atomic<bool>& stop);

}  // namespace meridian::dev
