// Online migration of misplaced users (issue 6). The region users move out of coordinates:
// its migration record and every user's step are stored next to its data, so the move goes
// on after any node (this one included) is killed and restarted. Each user moves through
// idempotent steps:
//   pending   -> the destination is checked against the policy; the account (profile,
//                records, devices, orders, idempotency entries) and its data key go to the
//                destination in one HPKE message sealed to the destination's key; the
//                destination imports it ("incoming", not served) and answers the digest of
//                what it stored, which must equal the source's
//   copied    -> the user's writes are fenced here (503 fenced, Retry-After)
//   fenced    -> changes made during the copy are caught up (the account is sent again when
//                its digest changed), digests compared again, and the destination activates
//                the user at the next placement epoch
//   activated -> the source deletes the user's data, keeps a forwarding tombstone and
//                destroys its copy of the data key; both regions log the transfer
//   done
// A destination that cannot be reached leaves the user at their step (fenced users stay
// fenced, never served by two regions) and the step is retried.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "accounts/accounts.h"
#include "config/cluster.h"
#include "keys/envelope.h"
#include "keys/keys.h"
#include "node/inter_region.h"
#include "node/policy_service.h"
#include "shop/shop.h"
#include "storage/store.h"

namespace meridian::node {

struct MigrationContext {
  const config::ClusterConfig& config;
  std::string region;
  storage::Store& store;
  accounts::Accounts& accounts;
  shop::Shop& shop;
  keys::EnvelopeCodec& codec;
  keys::KeyProvider& keys;
  InterRegion& inter;
  PolicyService& policies;
};

struct MigrationSettings {
  int parallel = 4;          // users moving at once
  double users_per_s = 200;  // throttle, to protect live traffic (0: none)
  int64_t retry_ms = 500;    // a step that failed is tried again after this
  // This node among the region's: one node runs a migration, another takes it over once
  // the runner's heartbeat is older than runner_timeout_ms.
  std::string node = "n0";
  int64_t runner_timeout_ms = 3000;
};

class Migrations {
 public:
  Migrations(MigrationContext c, MigrationSettings s);
  ~Migrations();
  // Resumes the migrations this region coordinates.
  Status Start();
  void Stop();

  // Coordinator side. `request`: {"from": this region, "cohort": "misplaced"} -> {"id"}.
  Result<Json> Begin(const Json& request);
  Result<Json> Get(const std::string& id);
  // Every migration this region coordinates, as Get() describes each (for the console).
  Result<std::vector<Json>> List();
  Status SetPaused(const std::string& id, bool paused);
  // Every moved user checked again: gone here (tombstone, no data key) and active there.
  Result<Json> Verify(const std::string& id);
  // Users homed here whom the current policy places elsewhere.
  Result<int64_t> CountMisplaced();
  // What a migration from here would move: users and bytes per destination.
  Result<Json> Plan();

  // Destination side (internal calls from the coordinator).
  Result<Json> Receive(const std::string& from, const Json& body);
  Status Activate(const std::string& from, const Json& body);
  // The user's state here, for Verify: {"state","epoch"}.
  Result<Json> UserState(const std::string& user_id);
  // The same for many users at once: {"users": [...]} -> {"users": {id: state}}.
  Result<Json> UserStates(const Json& body);

  // The coordinator's region, from a migration id ("m-<region>-<hex>").
  static std::string CoordinatorOf(std::string_view id);

 private:
  struct UserStep {
    std::string user;
    std::string to;
    std::string state = "pending";
    std::string digest;
    int64_t epoch = 0;
    int attempts = 0;
  };
  void Loop();
  // Takes (or keeps) the right to run `id` on this node; false while another node runs it.
  bool Claim(const std::string& id);
  // The heartbeat of the claim; false once another node took the migration over.
  bool KeepRunning(const std::string& id);
  std::optional<std::string> RunnerClaim();
  void RunOne(const std::string& id);
  bool Paused(const std::string& id);
  // Sends the migration's status to every other region, so any node can answer for it
  // while this one is down.
  void Publish(const std::string& id);  // read from the stored record, so a pause acts at once
  Status MoveOne(const std::string& id, UserStep& step, int64_t* bytes);
  // Stores the user's step; with `counter`, also adds one to that field of the migration.
  Status SaveStep(const std::string& id, const UserStep& step, std::string_view counter = {});
  Result<Json> Snapshot(const std::string& user);
  Result<std::string> SendAccount(const std::string& id, const UserStep& step, const Json& snapshot,
                                  int64_t* bytes);
  // The destination's HPKE public key: fetched over the authenticated channel, then reused
  // for a few seconds (one fetch per destination, not per user).
  struct DestinationKey {
    std::string public_key;
    int key_id = -1;
    std::chrono::steady_clock::time_point fetched;
  };
  Result<DestinationKey> KeyOf(const std::string& region, bool refresh);
  Status Count(const std::string& id, std::string_view field, int64_t delta);
  // Changes the stored record (expecting what it read, retried), writing `with` alongside.
  Status UpdateRecord(const std::string& id, const std::function<void(Json&)>& change,
                      const storage::WriteBatch& with = {});
  bool Holds(const storage::WriteBatch& batch);
  Json TransferDetails(const std::string& id, const UserStep& step, const Json& snapshot) const;

  MigrationContext c_;
  MigrationSettings s_;
  std::mutex mu_;  // migration records
  std::mutex claim_mu_;
  std::optional<std::string> claim_;  // the runner claim this node holds
  int64_t last_beat_ms_ = 0;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::map<std::string, std::vector<double>> fence_ms_;  // per migration, for p50/p99
  std::map<std::string, DestinationKey> keys_;           // per destination region
};

}  // namespace meridian::node
