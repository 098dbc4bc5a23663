// Wiring of one region node: storage, keys, services, router and server.
#pragma once

#include <string>

namespace meridian::node {

// Runs the node of `region` described by the cluster config until SIGTERM or SIGINT, then
// shuts down gracefully. Returns the process exit code.
int RunNode(const std::string& config_path, const std::string& region);

}  // namespace meridian::node
