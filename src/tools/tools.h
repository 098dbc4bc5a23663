// Operator and user commands behind `meridian keys ...`, `meridian client ...` and
// `meridian policy check`: each prints its result and returns the process exit code.
#pragma once

#include <string>

namespace meridian::tools {

int PolicyCheck(const std::string& file, const std::string& cluster_config);

// Creates the missing keystores of a cluster (secret from MERIDIAN_KEYSTORE_SECRET or the
// cluster's keystore_secret_file).
int KeysInit(const std::string& cluster_config);
// A new primary KEK for a region (offline; the node rewraps data keys when it starts).
int KeysRotate(const std::string& cluster_config, const std::string& region);
// Key versions, key ids and public keys of a region (never a secret).
int KeysStatus(const std::string& cluster_config, const std::string& region);

struct ClientArgs {
  std::string url;
  std::string ca_file;
  std::string token;
  bool plain = false;  // send identifiers unsealed
  std::string country, phone, password, name, email;
  std::string collection, key, body;
};
int ClientRegister(const ClientArgs& a);
int ClientLogin(const ClientArgs& a);
int ClientMe(const ClientArgs& a);
int ClientPut(const ClientArgs& a);
int ClientGet(const ClientArgs& a);

}  // namespace meridian::tools
