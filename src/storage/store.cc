#include "storage/store.h"

#include <array>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "common/json.h"
#include "common/string_hash.h"

namespace meridian::storage {

std::string_view SpaceName(Space s) {
  switch (s) {
    case Space::kMeta:
      return "meta";
    case Space::kPlacement:
      return "placement";
    case Space::kDirectory:
      return "directory";
    case Space::kIdentity:
      return "identity";
    case Space::kDevice:
      return "device";
    case Space::kContent:
      return "content";
    case Space::kCommerce:
      return "commerce";
    case Space::kPublic:
      return "public";
    case Space::kKeys:
      return "keys";
  }
  return "meta";
}

policy::DataClass ClassOf(Space s) {
  switch (s) {
    case Space::kPlacement:
    case Space::kDirectory:
    case Space::kKeys:
      return policy::DataClass::kPseudonym;
    case Space::kIdentity:
      return policy::DataClass::kIdentity;
    case Space::kDevice:
      return policy::DataClass::kDevice;
    case Space::kContent:
      return policy::DataClass::kContent;
    case Space::kCommerce:
      return policy::DataClass::kCommerce;
    case Space::kMeta:
    case Space::kPublic:
      return policy::DataClass::kPublic;
  }
  return policy::DataClass::kPublic;
}

std::string EncodePlacement(const Placement& p) {
  return DumpJson(Json{{"region", p.region},
                       {"state", p.state},
                       {"epoch", p.epoch},
                       {"token_epoch", p.token_epoch}});
}

namespace {
// The exact bytes EncodePlacement writes (nlohmann orders keys), read without building a JSON
// document: every authenticated request and every personal write reads a placement. Anything
// else (spacing, escapes, another order) returns nullopt and takes the JSON parser.
std::optional<Placement> DecodeCanonicalPlacement(std::string_view in) {
  auto literal = [&](std::string_view l) {
    if (!in.starts_with(l)) return false;
    in.remove_prefix(l.size());
    return true;
  };
  auto number = [&](int64_t* out) {
    auto [end, ec] = std::from_chars(in.data(), in.data() + in.size(), *out);
    // As JSON reads it: no sign, no leading zero.
    const bool leading_zero = in.size() > 1 && in[0] == '0' && in[1] >= '0' && in[1] <= '9';
    if (ec != std::errc() || end == in.data() || in[0] == '-' || leading_zero) return false;
    in.remove_prefix(static_cast<size_t>(end - in.data()));
    return true;
  };
  auto plain_string = [&](std::string* out) {  // up to its closing quote, no escapes
    size_t q = in.find_first_of("\"\\");
    if (q == std::string_view::npos || in[q] != '"' || q > 4096) return false;
    for (char c : in.substr(0, q)) {
      if (static_cast<unsigned char>(c) < 0x20) return false;  // not JSON: the parser decides
    }
    out->assign(in.substr(0, q));
    in.remove_prefix(q + 1);
    return true;
  };
  Placement p;
  if (literal("{\"epoch\":") && number(&p.epoch) && literal(",\"region\":\"") &&
      plain_string(&p.region) && literal(",\"state\":\"") && plain_string(&p.state) &&
      literal(",\"token_epoch\":") && number(&p.token_epoch) && literal("}") && in.empty()) {
    return p;
  }
  return std::nullopt;
}
}  // namespace

std::optional<Placement> DecodePlacement(std::string_view bytes) {
  if (auto fast = DecodeCanonicalPlacement(bytes)) return fast;
  auto j = ParseJsonObject(bytes);
  if (!j.ok()) return std::nullopt;
  auto region = RequireString(*j, "region");
  auto state = RequireString(*j, "state");
  auto epoch = OptionalInt(*j, "epoch");
  auto token_epoch = OptionalInt(*j, "token_epoch");
  if (!region.ok() || !state.ok() || !epoch.ok() || !token_epoch.ok()) return std::nullopt;
  return Placement{*region, *state, epoch->value_or(1), token_epoch->value_or(1)};
}

std::string_view OwnerOf(std::string_view key) { return key.substr(0, key.find('/')); }

Result<std::optional<std::string>> Store::GetNow(Space, std::string_view) {
  return Error(Code::kWouldBlock, "this store reads only with waiting");
}

Status Store::ExpectationsHold(const WriteBatch& batch) {
  for (const auto& e : batch.expectations()) {
    ASSIGN_OR_RETURN(auto current, GetLatest(e.space, e.key));
    if (current != e.value) return Error(Code::kConflict, "the condition of the write changed");
  }
  return Status::Ok();
}

namespace {
class ResidencyGuard final : public Store {
 public:
  ResidencyGuard(StorePtr inner, std::string region, MayHoldFn may_hold)
      : inner_(std::move(inner)), region_(std::move(region)), may_hold_(std::move(may_hold)) {}

  Result<std::optional<std::string>> Get(Space space, std::string_view key) override {
    if (space == Space::kPlacement) return PlacementBytes(key, Wait::kMay);
    return inner_->Get(space, key);
  }
  Result<std::optional<std::string>> GetNow(Space space, std::string_view key) override {
    if (space == Space::kPlacement) return PlacementBytes(key, Wait::kNever);
    return inner_->GetNow(space, key);
  }
  Status Scan(Space space, std::string_view prefix, const ScanFn& fn) override {
    return inner_->Scan(space, prefix, fn);
  }
  Status Purge(Space space) override { return inner_->Purge(space); }

  bool Shared() const override { return inner_->Shared(); }

  Status Write(const WriteBatch& batch) override { return Checked(batch, true); }
  Status WriteUnsynced(const WriteBatch& batch) override { return Checked(batch, false); }
  Status Sync() override { return inner_->Sync(); }
  Result<std::optional<std::string>> GetLatest(Space space, std::string_view key) override {
    return inner_->GetLatest(space, key);
  }

  // Checks `batch` and writes it if it may be stored here.
  Status Checked(const WriteBatch& batch, bool synced) {
    // The check and the write are atomic for each user the batch touches: a placement
    // change (a fence) cannot slip between another write's check and its write. Within
    // this process the users' stripes do it; across the nodes of a shared database, the
    // write expects each placement to be what the check read.
    std::set<size_t> stripes;
    for (const auto& op : batch.ops()) {
      // A placement change is durable before this guard's copy (read by authentication and
      // every residency check) shows it: a crash cannot take back what a request was
      // answered on.
      if (op.space == Space::kPlacement) synced = true;
      if (op.space == Space::kPlacement || policy::IsPersonal(ClassOf(op.space))) {
        stripes.insert(
            ShardIndex(op.space == Space::kPlacement ? std::string_view(op.key) : OwnerOf(op.key)));
      }
    }
    std::vector<std::unique_lock<std::mutex>> held;
    for (size_t i : stripes) held.emplace_back(stripes_[i]);  // in index order: no deadlock
    // Each user's placement is read once per batch (a group commit holds many users).
    std::map<std::string_view, std::optional<std::string>> read;
    std::set<std::string_view> placed;
    for (const auto& op : batch.ops()) {
      if (op.space == Space::kPlacement && !op.is_delete) placed.insert(op.key);
    }
    for (const auto& op : batch.ops()) {
      if (op.space == Space::kPlacement && Shared() && !read.contains(op.key)) {
        ASSIGN_OR_RETURN(read[op.key],
                         PlacementBytes(op.key, Wait::kMay));  // what this write replaces
      }
      if (op.is_delete) continue;  // removing data never breaks residency
      policy::DataClass cls = ClassOf(op.space);
      if (!may_hold_(cls)) {
        return Error(Code::kResidencyViolation, fmt::format("region {} may not store {} data",
                                                            region_, policy::DataClassName(cls)));
      }
      if (op.space == Space::kPlacement) {
        auto p = DecodePlacement(op.value);
        // A user who moved away leaves a forwarding tombstone naming the new home.
        if (!p || (p->region != region_ && p->state != "moved")) {
          return Error(Code::kResidencyViolation,
                       fmt::format("placement written in {} must name {}", region_, region_));
        }
      }
      if (policy::IsPersonal(cls)) {
        std::string_view user = OwnerOf(op.key);
        // A placement in the same batch (a new user) counts; it was checked above.
        if (!placed.contains(user) && !read.contains(user)) {
          ASSIGN_OR_RETURN(read[user], PlacementBytes(user, Wait::kMay));
          RETURN_IF_ERROR(CheckHomedHere(read[user]));
        }
      }
    }
    if (Shared()) {
      WriteBatch expecting = batch;
      for (const auto& [user, bytes] : read) {
        expecting.Expect(Space::kPlacement, std::string(user), bytes);
      }
      return synced ? inner_->Write(expecting) : inner_->WriteUnsynced(expecting);
    }
    RETURN_IF_ERROR(synced ? inner_->Write(batch) : inner_->WriteUnsynced(batch));
    // Still under the users' stripes: the next write for them sees the new placement.
    for (const auto& op : batch.ops()) {
      if (op.space != Space::kPlacement) continue;
      PlacementShard& shard = ShardOf(op.key);
      std::lock_guard lock(shard.mu);
      ++shard.generation;
      shard.values.insert_or_assign(
          op.key, op.is_delete ? std::optional<std::string>() : std::optional(op.value));
    }
    return Status::Ok();
  }

  // When this process is the only writer, every placement write passes through Write
  // above, so a copy of the stored bytes kept here is never stale: authentication and every
  // write's residency check read a user's placement without a storage read or a lock held
  // across one. A shard's generation keeps a read that raced with a write from caching what
  // the write replaced. (A shared database is read every time: other nodes write it.)
  struct PlacementShard {
    std::mutex mu;
    uint64_t generation = 0;
    StringMap<std::optional<std::string>> values;
  };
  static constexpr size_t kCachedPerShard = 1 << 15;  // 2 M users in all, then start over

  // A user's stripe (lock) and placement shard: the same index into both arrays.
  static constexpr size_t kShards = 64;
  static size_t ShardIndex(std::string_view user) {
    return std::hash<std::string_view>{}(user) % kShards;
  }
  PlacementShard& ShardOf(std::string_view user) { return cache_[ShardIndex(user)]; }

  Result<std::optional<std::string>> PlacementBytes(std::string_view user, Wait wait) {
    if (Shared()) return inner_->Read(Space::kPlacement, user, wait);
    PlacementShard& shard = ShardOf(user);
    uint64_t generation;
    {
      std::lock_guard lock(shard.mu);
      if (auto it = shard.values.find(user); it != shard.values.end()) return it->second;
      generation = shard.generation;
    }
    ASSIGN_OR_RETURN(auto stored, inner_->Read(Space::kPlacement, user, wait));
    std::lock_guard lock(shard.mu);
    if (shard.generation == generation) {
      if (shard.values.size() >= kCachedPerShard) shard.values.clear();
      shard.values.emplace(user, stored);
    }
    return stored;
  }

  Status CheckHomedHere(const std::optional<std::string>& stored) {
    std::optional<Placement> p;
    if (stored) p = DecodePlacement(*stored);
    if (!p || p->region != region_ || p->state == "gone") {
      return Error(Code::kResidencyViolation,
                   fmt::format("user is not homed in {}; personal data refused", region_));
    }
    // While a user's move is being switched, nothing of theirs may change here: the last
    // copy the destination verified must stay the last state.
    if (p->state == "fenced") return Error(Code::kFenced, "the account is moving; retry shortly");
    return Status::Ok();
  }

  StorePtr inner_;
  std::string region_;
  MayHoldFn may_hold_;
  std::array<std::mutex, kShards> stripes_;
  std::array<PlacementShard, kShards> cache_;
};
}  // namespace

StorePtr WithResidencyGuard(StorePtr inner, std::string region, MayHoldFn may_hold) {
  return std::make_unique<ResidencyGuard>(std::move(inner), std::move(region), std::move(may_hold));
}

}  // namespace meridian::storage
