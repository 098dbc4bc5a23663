// Accounts, records and devices of the users homed in this region. Synchronous: it runs on
// the node's worker threads, never on an event loop. Everything personal it stores goes
// through the ValueCodec; every storage key is a user id or a pseudonym.
#pragma once

#include <array>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "accounts/validate.h"
#include "audit/log.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/random.h"
#include "common/status.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace meridian::accounts {

// The phone pseudonym of the cluster-wide directory: the only form in which a phone number
// leaves its home region (directory lookups between regions carry it).
std::string PhonePseudonym(std::string_view directory_key, std::string_view e164);

// Asks the other home regions about a phone pseudonym (phone_taken is cluster-wide).
class PhoneDirectory {
 public:
  virtual ~PhoneDirectory() = default;
  // The region (other than this one) that holds the pseudonym, or nullopt if none does.
  // Fails with unavailable when a region cannot be asked.
  virtual Result<std::optional<std::string>> FindElsewhere(const std::string& pseudonym) = 0;
};

struct AccountKeys {
  std::string token_key;      // this region's token MAC key
  std::string directory_key;  // cluster-wide phone pseudonym key
  std::string names_key;      // this region's key for record and device name pseudonyms
};

struct AccountSettings {
  std::string region;
  bool dev_fast_password_hashing = false;
  int64_t token_ttl_ms = 24 * 3600 * 1000;
};

struct Principal {
  std::string user_id;
  std::string region;
};

struct Issued {
  std::string user_id;
  std::string home_region;
  std::string token;
};

struct Record {
  std::string content_type;
  std::string body;
  int64_t version = 0;
};

class Accounts {
 public:
  // Every access to personal data commits through `audit` with its log entry.
  Accounts(storage::Store& store, storage::ValueCodec& codec, audit::AuditSink& audit,
           PhoneDirectory& directory, const Clock& clock, Random& random, AccountKeys keys,
           AccountSettings settings);

  // Who holds this pseudonym here: user id, or nullopt (reservations count as held).
  Result<std::optional<std::string>> FindPhone(const std::string& pseudonym);

  Result<Issued> Register(const RegisterRequest& req);
  Result<Issued> Login(const LoginRequest& req);
  // Verifies a bearer token issued by this region and still valid for the user. With
  // Wait::kNever, kWouldBlock when the user's placement is not in memory.
  Result<Principal> Authenticate(std::string_view token, Wait wait = Wait::kMay);

  Result<Json> Me(const Principal& p);
  Result<int64_t> PutRecord(const Principal& p, std::string_view collection, std::string_view key,
                            std::string content_type, std::string body);
  Result<Record> GetRecord(const Principal& p, std::string_view collection, std::string_view key);
  Result<std::vector<std::string>> ListRecords(const Principal& p, std::string_view collection);
  Status DeleteRecord(const Principal& p, std::string_view collection, std::string_view key);
  Result<std::string> AddDevice(const Principal& p, const DeviceRequest& req);
  Result<Json> ListDevices(const Principal& p);

  // Every piece of the user's data, as one JSON document (the caller signs it).
  Result<Json> Export(const Principal& p);
  // Deletes records, devices and profile, frees the phone, revokes every token and
  // destroys the user's data key. Returns the receipt's content (the caller signs it).
  Result<Json> DeleteUser(const Principal& p);

  Result<std::optional<storage::Placement>> PlacementOf(std::string_view user_id,
                                                        Wait wait = Wait::kMay);

  // --- Moving a user to another region (node/migration.h drives these) ---
  // The user's whole account as one canonical document: profile (password hash included),
  // records and devices, each list sorted. Source and destination each compute it from what
  // they store: equal documents (and digests) mean an exact copy.
  Result<Json> Snapshot(std::string_view uid);
  // Active users homed here with their country (decrypted here, never sent anywhere).
  Result<std::vector<std::pair<std::string, std::string>>> UsersWithCountry();
  // Changes the user's placement state here: "fenced" refuses every write of theirs (503
  // fenced) until "active" again.
  Status SetState(std::string_view uid, std::string_view state);
  // Destination: the user arrives "incoming" (not served yet) with exactly `snapshot`,
  // replacing whatever an earlier attempt left. The data key must be installed first.
  Status Import(std::string_view uid, const Json& snapshot);
  // The transfers that brought the user here: [{"from","to","at","reason","log_index"}].
  Result<Json> Transfers(std::string_view uid);
  // Destination: the user is served here from now on, at placement `epoch`.
  Status Activate(std::string_view uid, int64_t epoch, const Json& transfer_details);
  // Source, once the destination is active: deletes the user's data here, leaves a
  // forwarding tombstone naming the new home, and destroys the data key here.
  Status PurgeMoved(std::string_view uid, const std::string& to, int64_t epoch,
                    const Json& transfer_details);
  // Users homed here (for counts in metrics and the overview).
  Result<int64_t> CountUsers();

 private:
  std::mutex& StripeFor(std::string_view id);
  std::string NamePseudonym(std::string_view purpose, std::string_view value) const;
  std::string RecordKey(std::string_view uid, std::string_view collection,
                        std::string_view key) const;
  Result<Json> LoadProfile(std::string_view uid);
  Result<Record> LoadRecord(const Principal& p, std::string_view collection, std::string_view key);
  // A stored record's bytes (key `rk`) opened and unframed.
  Result<Record> OpenRecord(const Principal& p, const std::string& rk, std::string_view stored);
  Result<Json> DeviceList(const Principal& p);
  // Opens every value of `space` under "<uid>/" (codec context `collection`) as JSON.
  Result<std::vector<Json>> OpenAll(storage::Space space, std::string_view uid,
                                    std::string_view collection);
  // Deletes the user's records, devices, profile and phone directory entry into `batch`.
  Result<std::pair<int64_t, int64_t>> DeleteRows(std::string_view uid, storage::WriteBatch* batch);
  // The log entry of an operation on a user's data: pseudonymous, no personal values.
  audit::EntryText Entry(std::string_view op, std::string_view uid,
                         const Json& details = Json::object()) const;
  Status Log(std::string_view op, std::string_view uid, Json details = Json::object());
  Issued IssueFor(const std::string& uid, int64_t token_epoch);

  storage::Store& store_;
  storage::ValueCodec& codec_;
  audit::AuditSink& audit_;
  PhoneDirectory& directory_;
  const Clock& clock_;
  Random& random_;
  AccountKeys keys_;
  AccountSettings settings_;
  std::array<std::mutex, 64> stripes_;
};

}  // namespace meridian::accounts
