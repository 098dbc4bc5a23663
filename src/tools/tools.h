// Operator and user commands behind `meridian keys ...`, `meridian client ...`,
// `meridian audit ...`, `meridian migrate ...` and `meridian policy check`: each prints its result
// and returns the process exit code.
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

// `meridian audit verify`: checks a region's log as served by one node (audit_verify.cc):
// the tree head's signature and every cosignature under the keys of GET /v1/regions, every
// entry against the signed root (naming the first bad index), and with `trusted_file` the
// consistency of the log with a checkpoint saved earlier (by `save_file`). Exit 0 when all
// hold, 1 naming what fails, 2 on usage or connection errors.
struct AuditVerifyArgs {
  std::string url;
  std::string ca_file;
  std::string admin_token_file;  // else MERIDIAN_ADMIN_TOKEN
  std::string trusted_file;
  std::string save_file;
};
int AuditVerify(const AuditVerifyArgs& a);
// `meridian audit prove`: checks a saved GET /v1/me/residency report offline: its tree head
// under the home region's verifier key (from a saved GET /v1/regions, else the report's) and
// every transfer's inclusion proof against that tree head.
struct AuditProveArgs {
  std::string report_file;
  std::string regions_file;
};
int AuditProve(const AuditProveArgs& a);

// `meridian migrate plan|start|status|pause|resume|verify` (migrate.cc): moving users out of
// a region over the admin API of any node. Exit 1 when the cluster refuses (naming its
// message), a migration failed or does not verify; 2 on usage or connection errors.
struct MigrateArgs {
  std::string url;
  std::string ca_file;
  std::string admin_token_file;  // else MERIDIAN_ADMIN_TOKEN
  std::string from;              // plan, start: the region users leave
  std::string cohort = "misplaced";
  std::string id;  // status, pause, resume, verify
  bool json = false;
  bool watch = false;  // status: until the migration is no longer running
  int interval_ms = 1000;
};
int MigratePlan(const MigrateArgs& a);
int MigrateStart(const MigrateArgs& a);
int MigrateStatus(const MigrateArgs& a);
int MigratePause(const MigrateArgs& a);
int MigrateResume(const MigrateArgs& a);
int MigrateVerify(const MigrateArgs& a);

}  // namespace meridian::tools
