#include "accounts/accounts.h"

#include <algorithm>
#include <functional>

#include <fmt/format.h>

#include "common/encoding.h"
#include "crypto/crypto.h"

namespace meridian::accounts {

using storage::Space;

namespace {
constexpr std::string_view kPendingPrefix = "pending:";

std::string DirectoryKey(std::string_view pseudonym) { return "phone/" + std::string(pseudonym); }
std::string ProfileKey(std::string_view uid) { return std::string(uid) + "/profile"; }
std::string TransfersKey(std::string_view uid) { return "transfers/" + std::string(uid); }

// Records are stored as one line of JSON metadata, a newline, then the raw bytes.
std::string FrameRecord(const Json& meta, std::string_view body) {
  std::string out = DumpJson(meta);
  out.push_back('\n');
  out.append(body);
  return out;
}

Result<std::pair<Json, std::string>> UnframeRecord(std::string_view bytes) {
  size_t nl = bytes.find('\n');
  if (nl == std::string_view::npos) return Error(Code::kIntegrityError, "corrupt record");
  ASSIGN_OR_RETURN(auto meta, ParseJsonObject(bytes.substr(0, nl)));
  return std::pair{std::move(meta), std::string(bytes.substr(nl + 1))};
}
}  // namespace

Accounts::Accounts(storage::Store& store, storage::ValueCodec& codec, audit::AuditSink& audit,
                   PhoneDirectory& directory, const Clock& clock, Random& random, AccountKeys keys,
                   AccountSettings settings)
    : store_(store),
      codec_(codec),
      audit_(audit),
      directory_(directory),
      clock_(clock),
      random_(random),
      keys_(std::move(keys)),
      settings_(std::move(settings)) {}

std::mutex& Accounts::StripeFor(std::string_view id) {
  return stripes_[std::hash<std::string_view>{}(id) % stripes_.size()];
}

std::string PhonePseudonym(std::string_view directory_key, std::string_view e164) {
  return crypto::Pseudonym(directory_key, "phone", e164);
}

std::string Accounts::NamePseudonym(std::string_view purpose, std::string_view value) const {
  // 128 bits are plenty for a per-user name and keep storage keys short.
  return crypto::Pseudonym(keys_.names_key, purpose, value).substr(0, 32);
}

std::string Accounts::RecordKey(std::string_view uid, std::string_view collection,
                                std::string_view key) const {
  std::string k(uid);
  k += '/';
  k += NamePseudonym("collection", collection);
  if (!key.empty()) {
    k += '/';
    k += NamePseudonym("key", std::string(collection) + '\0' + std::string(key));
  }
  return k;
}

Result<std::optional<std::string>> Accounts::FindPhone(const std::string& pseudonym) {
  ASSIGN_OR_RETURN(auto v, store_.Get(Space::kDirectory, DirectoryKey(pseudonym)));
  if (!v) return std::optional<std::string>();
  std::string_view id = *v;
  if (id.substr(0, kPendingPrefix.size()) == kPendingPrefix)
    id.remove_prefix(kPendingPrefix.size());
  return std::optional<std::string>(std::string(id));
}

Issued Accounts::IssueFor(const std::string& uid, int64_t token_epoch) {
  crypto::TokenClaims c{uid, settings_.region, token_epoch,
                        clock_.NowMs() + settings_.token_ttl_ms};
  return Issued{uid, settings_.region, crypto::IssueToken(c, keys_.token_key)};
}

Result<Issued> Accounts::Register(const RegisterRequest& req) {
  // Hash first: it is the slow part and needs no lock.
  ASSIGN_OR_RETURN(auto pw_hash,
                   crypto::HashPassword(req.password.value, settings_.dev_fast_password_hashing));
  const std::string pseudonym = PhonePseudonym(keys_.directory_key, req.phone.value);
  const std::string dir_key = DirectoryKey(pseudonym);
  const std::string uid = "u_" + random_.Hex(16);

  // Reserve the pseudonym here, then ask the other home regions. Two concurrent
  // registrations of one phone in two regions each see the other's reservation and both
  // fail: never both succeed.
  {
    std::lock_guard lock(StripeFor(pseudonym));
    ASSIGN_OR_RETURN(auto existing, store_.Get(Space::kDirectory, dir_key));
    if (existing) return Error(Code::kPhoneTaken, "this phone number is already registered");
    storage::WriteBatch reserve;
    reserve.Put(Space::kDirectory, dir_key, std::string(kPendingPrefix) + uid);
    // Another node of this region may be registering the same phone right now.
    reserve.Expect(Space::kDirectory, dir_key, std::nullopt);
    Status st = store_.Write(reserve);
    if (st.code() == Code::kConflict) {
      return Error(Code::kPhoneTaken, "this phone number is already registered");
    }
    RETURN_IF_ERROR(st);
  }
  const std::string reserved = std::string(kPendingPrefix) + uid;
  auto release = [&] {
    storage::WriteBatch undo;
    undo.Delete(Space::kDirectory, dir_key);
    undo.Expect(Space::kDirectory, dir_key, reserved);  // only this registration's
    (void)store_.Write(undo);
  };
  auto elsewhere = directory_.FindElsewhere(pseudonym);
  if (!elsewhere.ok()) {
    release();
    return elsewhere.status();
  }
  if (elsewhere->has_value()) {
    release();
    return Error(Code::kPhoneTaken, "this phone number is already registered");
  }

  const int64_t now = clock_.NowMs();
  Json profile = {{"country", req.country},   {"phone", req.phone.value},
                  {"name", req.name.value},   {"email", req.email.value},
                  {"password_hash", pw_hash}, {"created_at", FormatRfc3339(now)}};
  storage::Placement placement{settings_.region, "active", 1, 1};
  const std::string pkey = ProfileKey(uid);
  ASSIGN_OR_RETURN(auto sealed,
                   codec_.Seal({settings_.region, uid, "profile", pkey, 0}, DumpJson(profile)));
  storage::WriteBatch batch;
  batch.Put(Space::kPlacement, uid, storage::EncodePlacement(placement));
  batch.Put(Space::kIdentity, pkey, std::move(sealed));
  batch.Put(Space::kDirectory, dir_key, uid);
  batch.Expect(Space::kDirectory, dir_key, reserved);
  Status st = audit_.Commit(std::move(batch), {Entry("account.create", uid)});
  if (!st.ok()) {
    release();
    return st;
  }
  return IssueFor(uid, placement.token_epoch);
}

Result<Json> Accounts::LoadProfile(std::string_view uid) {
  const std::string pkey = ProfileKey(uid);
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kIdentity, pkey));
  if (!stored) return Error(Code::kNotFound, "user not found");
  ASSIGN_OR_RETURN(auto plain, codec_.Open({settings_.region, uid, "profile", pkey, 0}, *stored));
  auto j = ParseJsonObject(plain);
  if (!j.ok()) return Error(Code::kIntegrityError, "stored profile is corrupt");
  return std::move(j).value();
}

Result<Issued> Accounts::Login(const LoginRequest& req) {
  const Status bad(Code::kUnauthenticated, "phone or password is wrong");
  ASSIGN_OR_RETURN(auto uid, FindPhone(PhonePseudonym(keys_.directory_key, req.phone.value)));
  ASSIGN_OR_RETURN(auto placement, PlacementOf(uid.value_or("")));
  if (!uid || !placement || placement->region != settings_.region) {
    // Same cost as a real check, so timing does not tell registered numbers apart.
    (void)crypto::VerifyPassword(
        "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        req.password.value);
    return bad;
  }
  ASSIGN_OR_RETURN(auto profile, LoadProfile(*uid));
  auto hash = profile.value("password_hash", std::string());
  if (!crypto::VerifyPassword(hash, req.password.value)) return bad;
  RETURN_IF_ERROR(Log("account.login", *uid));
  return IssueFor(*uid, placement->token_epoch);
}

Result<std::optional<storage::Placement>> Accounts::PlacementOf(std::string_view user_id,
                                                                Wait wait) {
  if (user_id.empty()) return std::optional<storage::Placement>();
  ASSIGN_OR_RETURN(auto v, store_.Read(Space::kPlacement, user_id, wait));
  if (!v) return std::optional<storage::Placement>();
  auto p = storage::DecodePlacement(*v);
  if (!p) return Error(Code::kIntegrityError, "stored placement is corrupt");
  return std::optional<storage::Placement>(std::move(*p));
}

Result<Principal> Accounts::Authenticate(std::string_view token, Wait wait) {
  ASSIGN_OR_RETURN(auto claims, crypto::VerifyToken(token, keys_.token_key, clock_.NowMs()));
  if (claims.region != settings_.region) {
    return Error(Code::kUnauthenticated, "token was issued by another region");
  }
  ASSIGN_OR_RETURN(auto placement, PlacementOf(claims.user_id, wait));
  if (placement && placement->state == "fenced") {
    return Error(Code::kFenced, "the account is moving to its home region; retry shortly");
  }
  if (placement && placement->state == "moved") {
    // Tokens are per region: after a move the user logs in again (any node finds the new
    // home by the phone directory).
    return Error(Code::kUnauthenticated,
                 "the account moved to " + placement->region + "; log in again");
  }
  if (!placement || placement->region != settings_.region || placement->state != "active" ||
      placement->token_epoch != claims.epoch) {
    return Error(Code::kUnauthenticated, "token is no longer valid");
  }
  return Principal{claims.user_id, claims.region};
}

audit::EntryText Accounts::Entry(std::string_view op, std::string_view uid,
                                 const Json& details) const {
  return audit::MakeEntry(op, settings_.region, audit::SubjectPseudonym(keys_.names_key, uid),
                          clock_.NowMs(), details);
}

Status Accounts::Log(std::string_view op, std::string_view uid, Json details) {
  return audit_.Commit({}, {Entry(op, uid, std::move(details))});
}

Result<Json> Accounts::Me(const Principal& p) {
  ASSIGN_OR_RETURN(auto profile, LoadProfile(p.user_id));
  RETURN_IF_ERROR(Log("profile.read", p.user_id));
  return Json{{"user_id", p.user_id},
              {"country", profile.value("country", "")},
              {"home_region", settings_.region},
              {"phone", profile.value("phone", "")},
              {"name", profile.value("name", "")},
              {"email", profile.value("email", "")},
              {"created_at", profile.value("created_at", "")}};
}

Result<int64_t> Accounts::PutRecord(const Principal& p, std::string_view collection,
                                    std::string_view key, std::string content_type,
                                    std::string body) {
  RETURN_IF_ERROR(ValidateRecordName(collection, "collection"));
  RETURN_IF_ERROR(ValidateRecordName(key, "key"));
  if (content_type.empty()) content_type = "application/octet-stream";
  if (content_type.size() > 256) return Error(Code::kInvalidField, "content type is too long");
  const std::string rk = RecordKey(p.user_id, collection, key);
  std::lock_guard lock(StripeFor(p.user_id));
  for (int attempt = 0;; ++attempt) {
    // The version follows the stored record; another node of the region writing the same
    // record meanwhile makes this write conflict, and it is numbered again.
    ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kContent, rk));
    int64_t version = 1;
    if (stored) {
      ASSIGN_OR_RETURN(auto current, OpenRecord(p, rk, *stored));
      version = current.version + 1;
    }
    Json meta = {{"collection", collection},
                 {"key", key},
                 {"content_type", content_type},
                 {"version", version},
                 {"updated_at", FormatRfc3339(clock_.NowMs())}};
    ASSIGN_OR_RETURN(auto sealed, codec_.Seal({settings_.region, p.user_id, "record", rk, 0},
                                              FrameRecord(meta, body)));
    storage::WriteBatch batch;
    batch.Put(Space::kContent, rk, std::move(sealed));
    batch.Expect(Space::kContent, rk, std::move(stored));
    Status st = audit_.Commit(std::move(batch), {Entry("record.write", p.user_id)});
    if (st.code() == Code::kConflict && attempt < 5) continue;
    RETURN_IF_ERROR(st);
    return version;
  }
}

Result<Record> Accounts::GetRecord(const Principal& p, std::string_view collection,
                                   std::string_view key) {
  ASSIGN_OR_RETURN(auto record, LoadRecord(p, collection, key));
  RETURN_IF_ERROR(Log("record.read", p.user_id));
  return record;
}

Result<Record> Accounts::LoadRecord(const Principal& p, std::string_view collection,
                                    std::string_view key) {
  RETURN_IF_ERROR(ValidateRecordName(collection, "collection"));
  RETURN_IF_ERROR(ValidateRecordName(key, "key"));
  const std::string rk = RecordKey(p.user_id, collection, key);
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kContent, rk));
  if (!stored) return Error(Code::kNotFound, "no such record");
  return OpenRecord(p, rk, *stored);
}

Result<Record> Accounts::OpenRecord(const Principal& p, const std::string& rk,
                                    std::string_view stored) {
  ASSIGN_OR_RETURN(auto plain, codec_.Open({settings_.region, p.user_id, "record", rk, 0}, stored));
  ASSIGN_OR_RETURN(auto parts, UnframeRecord(plain));
  return Record{parts.first.value("content_type", "application/octet-stream"),
                std::move(parts.second), parts.first.value("version", int64_t{1})};
}

Result<std::vector<std::string>> Accounts::ListRecords(const Principal& p,
                                                       std::string_view collection) {
  RETURN_IF_ERROR(ValidateRecordName(collection, "collection"));
  const std::string prefix = RecordKey(p.user_id, collection, "") + "/";
  std::vector<std::string> keys;
  Status inner;
  RETURN_IF_ERROR(store_.Scan(Space::kContent, prefix, [&](std::string_view k, std::string_view v) {
    auto plain = codec_.Open({settings_.region, p.user_id, "record", k, 0}, v);
    if (!plain.ok()) {
      inner = plain.status();
      return false;
    }
    auto parts = UnframeRecord(*plain);
    if (!parts.ok()) {
      inner = parts.status();
      return false;
    }
    keys.push_back(parts->first.value("key", ""));
    return true;
  }));
  RETURN_IF_ERROR(inner);
  std::sort(keys.begin(), keys.end());
  RETURN_IF_ERROR(Log("record.list", p.user_id));
  return keys;
}

Status Accounts::DeleteRecord(const Principal& p, std::string_view collection,
                              std::string_view key) {
  RETURN_IF_ERROR(ValidateRecordName(collection, "collection"));
  RETURN_IF_ERROR(ValidateRecordName(key, "key"));
  const std::string rk = RecordKey(p.user_id, collection, key);
  std::lock_guard lock(StripeFor(p.user_id));
  ASSIGN_OR_RETURN(auto stored, store_.Get(Space::kContent, rk));
  if (!stored) return Error(Code::kNotFound, "no such record");
  storage::WriteBatch batch;
  batch.Delete(Space::kContent, rk);
  return audit_.Commit(std::move(batch), {Entry("record.delete", p.user_id)});
}

Result<std::string> Accounts::AddDevice(const Principal& p, const DeviceRequest& req) {
  // The pseudonym is over the IMEI without its check digit (the identifying part).
  const std::string device_id = "d_" + NamePseudonym("device", req.imei.value.substr(0, 14));
  const std::string dk = p.user_id + "/" + device_id;
  Json dev = {{"device_id", device_id},
              {"imei", req.imei.value},
              {"model", req.model},
              {"added_at", FormatRfc3339(clock_.NowMs())}};
  ASSIGN_OR_RETURN(auto sealed,
                   codec_.Seal({settings_.region, p.user_id, "device", dk, 0}, DumpJson(dev)));
  storage::WriteBatch batch;
  batch.Put(Space::kDevice, dk, std::move(sealed));
  RETURN_IF_ERROR(audit_.Commit(std::move(batch),
                                {Entry("device.add", p.user_id, {{"device_id", device_id}})}));
  return device_id;
}

Result<Json> Accounts::ListDevices(const Principal& p) {
  ASSIGN_OR_RETURN(auto list, DeviceList(p));
  RETURN_IF_ERROR(Log("device.list", p.user_id));
  return list;
}

Result<Json> Accounts::DeviceList(const Principal& p) {
  Json devices = Json::array();
  Status inner;
  RETURN_IF_ERROR(
      store_.Scan(Space::kDevice, p.user_id + "/", [&](std::string_view k, std::string_view v) {
        auto plain = codec_.Open({settings_.region, p.user_id, "device", k, 0}, v);
        if (!plain.ok()) {
          inner = plain.status();
          return false;
        }
        auto j = ParseJsonObject(*plain);
        if (!j.ok()) {
          inner = Status(Code::kIntegrityError, "stored device is corrupt");
          return false;
        }
        devices.push_back({{"device_id", j->value("device_id", "")},
                           {"model", j->value("model", "")},
                           {"added_at", j->value("added_at", "")}});
        return true;
      }));
  RETURN_IF_ERROR(inner);
  return Json{{"devices", std::move(devices)}};
}

Result<std::vector<Json>> Accounts::OpenAll(Space space, std::string_view uid,
                                            std::string_view collection) {
  std::vector<Json> out;
  Status inner;
  RETURN_IF_ERROR(
      store_.Scan(space, std::string(uid) + "/", [&](std::string_view k, std::string_view v) {
        auto plain = codec_.Open({settings_.region, uid, collection, k, 0}, v);
        if (!plain.ok()) {
          inner = plain.status();
          return false;
        }
        if (collection == "record") {
          auto parts = UnframeRecord(*plain);
          if (!parts.ok()) {
            inner = parts.status();
            return false;
          }
          Json rec = std::move(parts->first);
          rec["body_base64"] = Base64Encode(parts->second);
          out.push_back(std::move(rec));
        } else {
          auto j = ParseJsonObject(*plain);
          if (!j.ok()) {
            inner = Status(Code::kIntegrityError, "stored value is corrupt");
            return false;
          }
          out.push_back(std::move(j).value());
        }
        return true;
      }));
  RETURN_IF_ERROR(inner);
  return out;
}

Result<Json> Accounts::Snapshot(std::string_view uid) {
  ASSIGN_OR_RETURN(auto profile, LoadProfile(uid));
  ASSIGN_OR_RETURN(auto records, OpenAll(Space::kContent, uid, "record"));
  ASSIGN_OR_RETURN(auto devices, OpenAll(Space::kDevice, uid, "device"));
  // Storage order follows pseudonyms, which differ between regions: sort by content.
  std::sort(records.begin(), records.end(), [](const Json& a, const Json& b) {
    return std::pair(a.value("collection", ""), a.value("key", "")) <
           std::pair(b.value("collection", ""), b.value("key", ""));
  });
  std::sort(devices.begin(), devices.end(), [](const Json& a, const Json& b) {
    return a.value("device_id", "") < b.value("device_id", "");
  });
  return Json{{"profile", std::move(profile)},
              {"records", std::move(records)},
              {"devices", std::move(devices)}};
}

Result<Json> Accounts::Export(const Principal& p) {
  ASSIGN_OR_RETURN(auto doc, Snapshot(p.user_id));
  doc["profile"].erase("password_hash");  // a credential, not data the user gave us to keep
  RETURN_IF_ERROR(Log("account.export", p.user_id));
  return Json{{"format", "meridian-export-v1"},  {"user_id", p.user_id},
              {"home_region", settings_.region}, {"exported_at", FormatRfc3339(clock_.NowMs())},
              {"profile", doc["profile"]},       {"devices", doc["devices"]},
              {"records", doc["records"]}};
}

Result<std::vector<std::pair<std::string, std::string>>> Accounts::UsersWithCountry() {
  std::vector<std::string> uids;
  RETURN_IF_ERROR(store_.Scan(Space::kPlacement, "", [&](std::string_view k, std::string_view v) {
    auto p = storage::DecodePlacement(v);
    if (p && p->region == settings_.region && p->state == "active") uids.emplace_back(k);
    return true;
  }));
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& uid : uids) {
    auto profile = LoadProfile(uid);
    if (!profile.ok()) continue;  // deleted meanwhile
    out.emplace_back(std::move(uid), profile->value("country", ""));
  }
  return out;
}

Status Accounts::SetState(std::string_view uid, std::string_view state) {
  std::lock_guard lock(StripeFor(uid));
  ASSIGN_OR_RETURN(auto placement, PlacementOf(uid));
  if (!placement || placement->region != settings_.region) {
    return Error(Code::kNotFound, "user not homed here");
  }
  if (placement->state == state) return Status::Ok();
  placement->state = std::string(state);
  storage::WriteBatch b;
  b.Put(Space::kPlacement, std::string(uid), storage::EncodePlacement(*placement));
  return store_.Write(b);
}

Result<std::pair<int64_t, int64_t>> Accounts::DeleteRows(std::string_view uid,
                                                         storage::WriteBatch* batch) {
  ASSIGN_OR_RETURN(auto profile, LoadProfile(uid));
  int64_t records = 0;
  int64_t devices = 0;
  const std::string prefix = std::string(uid) + "/";
  RETURN_IF_ERROR(store_.Scan(Space::kContent, prefix, [&](std::string_view k, auto) {
    batch->Delete(Space::kContent, std::string(k));
    ++records;
    return true;
  }));
  RETURN_IF_ERROR(store_.Scan(Space::kDevice, prefix, [&](std::string_view k, auto) {
    batch->Delete(Space::kDevice, std::string(k));
    ++devices;
    return true;
  }));
  batch->Delete(Space::kIdentity, ProfileKey(uid));
  batch->Delete(Space::kDirectory,
                DirectoryKey(PhonePseudonym(keys_.directory_key, profile.value("phone", ""))));
  return std::pair{records, devices};
}

Status Accounts::Import(std::string_view uid, const Json& snapshot) {
  std::lock_guard lock(StripeFor(uid));
  ASSIGN_OR_RETURN(auto placement, PlacementOf(uid));
  if (placement && placement->state != "incoming") {
    return Error(Code::kConflict, "the user already lives here");
  }
  auto profile_it = snapshot.find("profile");
  auto records_it = snapshot.find("records");
  auto devices_it = snapshot.find("devices");
  if (profile_it == snapshot.end() || !profile_it->is_object() || records_it == snapshot.end() ||
      !records_it->is_array() || devices_it == snapshot.end() || !devices_it->is_array()) {
    return Error(Code::kInvalidField, "malformed account snapshot");
  }
  const std::string user(uid);
  {
    // The guard stores personal data only of users placed here: place first.
    storage::WriteBatch place;
    place.Put(Space::kPlacement, user,
              storage::EncodePlacement({settings_.region, "incoming", 1, 1}));
    RETURN_IF_ERROR(store_.Write(place));
  }
  storage::WriteBatch batch;
  if (placement) (void)DeleteRows(uid, &batch);  // an earlier attempt's rows
  const std::string pkey = ProfileKey(uid);
  ASSIGN_OR_RETURN(auto sealed,
                   codec_.Seal({settings_.region, uid, "profile", pkey, 0}, DumpJson(*profile_it)));
  batch.Put(Space::kIdentity, pkey, std::move(sealed));
  batch.Put(Space::kDirectory,
            DirectoryKey(PhonePseudonym(keys_.directory_key, profile_it->value("phone", ""))),
            user);
  for (const auto& rec : *records_it) {
    auto body = Base64Decode(rec.value("body_base64", ""));
    if (!body) return Error(Code::kInvalidField, "malformed record in snapshot");
    Json meta = rec;
    meta.erase("body_base64");
    const std::string rk = RecordKey(uid, rec.value("collection", ""), rec.value("key", ""));
    ASSIGN_OR_RETURN(auto value, codec_.Seal({settings_.region, uid, "record", rk, 0},
                                             FrameRecord(meta, *body)));
    batch.Put(Space::kContent, rk, std::move(value));
  }
  for (const auto& dev : *devices_it) {
    // The device keeps its id (its pseudonym where it was registered).
    const std::string dk = user + "/" + dev.value("device_id", "");
    ASSIGN_OR_RETURN(auto value,
                     codec_.Seal({settings_.region, uid, "device", dk, 0}, DumpJson(dev)));
    batch.Put(Space::kDevice, dk, std::move(value));
  }
  return store_.Write(batch);
}

Status Accounts::Activate(std::string_view uid, int64_t epoch, const Json& transfer_details) {
  std::lock_guard lock(StripeFor(uid));
  ASSIGN_OR_RETURN(auto placement, PlacementOf(uid));
  if (!placement) return Error(Code::kNotFound, "the user was never imported here");
  if (placement->state == "active" && placement->epoch >= epoch) return Status::Ok();  // a retry
  if (placement->state != "incoming") return Error(Code::kConflict, "the user is not incoming");
  storage::WriteBatch b;
  b.Put(Space::kPlacement, std::string(uid),
        storage::EncodePlacement({settings_.region, "active", epoch, 1}));
  uint64_t index = 0;
  RETURN_IF_ERROR(
      audit_.Commit(std::move(b), {Entry("transfer.in", uid, transfer_details)}, &index));
  // The user's residency report lists the transfer with its log index.
  ASSIGN_OR_RETURN(auto transfers, Transfers(uid));
  transfers.push_back({{"from", transfer_details.value("from", "")},
                       {"to", settings_.region},
                       {"at", FormatRfc3339(clock_.NowMs())},
                       {"reason", fmt::format("residency policy version {}",
                                              transfer_details.value("policy_version", 0))},
                       {"log_index", index}});
  storage::WriteBatch t;
  t.Put(Space::kMeta, TransfersKey(uid), DumpJson({{"transfers", transfers}}));
  return store_.Write(t);
}

Result<Json> Accounts::Transfers(std::string_view uid) {
  ASSIGN_OR_RETURN(auto raw, store_.Get(Space::kMeta, TransfersKey(uid)));
  if (!raw) return Json::array();
  auto j = ParseJsonObject(*raw);
  if (!j.ok() || !(*j)["transfers"].is_array()) {
    return Error(Code::kIntegrityError, "stored transfers are corrupt");
  }
  return (*j)["transfers"];
}

Status Accounts::PurgeMoved(std::string_view uid, const std::string& to, int64_t epoch,
                            const Json& transfer_details) {
  {
    std::lock_guard lock(StripeFor(uid));
    ASSIGN_OR_RETURN(auto placement, PlacementOf(uid));
    if (!placement) return Error(Code::kNotFound, "user not found");
    if (placement->state != "moved") {
      storage::WriteBatch batch;
      ASSIGN_OR_RETURN(auto counts, DeleteRows(uid, &batch));
      (void)counts;
      // Every token issued here stops working; the tombstone says where the user went.
      batch.Put(Space::kPlacement, std::string(uid),
                storage::EncodePlacement({to, "moved", epoch, placement->token_epoch + 1}));
      RETURN_IF_ERROR(
          audit_.Commit(std::move(batch), {Entry("transfer.out", uid, transfer_details)}));
    }
  }
  // Crypto-shredding of anything left behind (backups, engine files). A migration purges
  // the engine's files once for many users (Migrations::RunOne).
  return codec_.ShredDeferred(uid).status();
}

Result<Json> Accounts::DeleteUser(const Principal& p) {
  std::lock_guard lock(StripeFor(p.user_id));
  ASSIGN_OR_RETURN(auto placement, PlacementOf(p.user_id));
  if (!placement) return Error(Code::kNotFound, "user not found");
  storage::WriteBatch batch;
  ASSIGN_OR_RETURN(auto counts, DeleteRows(p.user_id, &batch));
  const auto [records, devices] = counts;
  batch.Delete(Space::kMeta, TransfersKey(p.user_id));
  // A tombstone keeps the id from coming back and revokes every token (state and epoch).
  storage::Placement tomb = *placement;
  tomb.state = "deleted";
  ++tomb.token_epoch;
  batch.Put(Space::kPlacement, p.user_id, storage::EncodePlacement(tomb));
  RETURN_IF_ERROR(audit_.Commit(std::move(batch), {Entry("account.delete", p.user_id)}));
  ASSIGN_OR_RETURN(auto key_id, codec_.Shred(p.user_id));
  return Json{{"format", "meridian-deletion-receipt-v1"},
              {"user_pseudonym", NamePseudonym("user", p.user_id)},
              {"region", settings_.region},
              {"deleted_at", FormatRfc3339(clock_.NowMs())},
              {"destroyed",
               {{"profile", true},
                {"records", records},
                {"devices", devices},
                {"phone_directory_entry", true}}},
              {"data_key_id", key_id},
              {"tokens_revoked", true}};
}

Result<int64_t> Accounts::CountUsers() {
  int64_t n = 0;
  RETURN_IF_ERROR(store_.Scan(Space::kPlacement, "", [&](std::string_view, std::string_view v) {
    auto p = storage::DecodePlacement(v);
    if (p && p->region == settings_.region && p->state == "active") ++n;
    return true;
  }));
  return n;
}

}  // namespace meridian::accounts
