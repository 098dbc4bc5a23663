#include <sodium.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "common/encoding.h"
#include "common/json.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "crypto/hpke.h"
#include "keys/keys.h"

namespace meridian::keys {
namespace {
constexpr std::string_view kMagic = "MKS1";
constexpr size_t kSaltSize = crypto_pwhash_SALTBYTES;
constexpr size_t kNonceSize = crypto_secretbox_NONCEBYTES;

Result<std::string> StretchSecret(std::string_view secret, std::string_view salt, bool fast) {
  std::string key(crypto_secretbox_KEYBYTES, '\0');
  if (crypto_pwhash(reinterpret_cast<unsigned char*>(key.data()), key.size(), secret.data(),
                    secret.size(), reinterpret_cast<const unsigned char*>(salt.data()),
                    fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE,
                    fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE,
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Error(Code::kInternal, "keystore: cannot stretch the secret (out of memory)");
  }
  return key;
}

std::string Hex(std::string_view s) { return HexEncode(s); }
std::string Unhex(const Json& j, std::string_view field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return {};
  return HexDecode(it->get<std::string>()).value_or("");
}
}  // namespace

ClusterKeys NewClusterKeys(Random& random) { return ClusterKeys{random.Bytes(32), random.Hex(32)}; }

Result<std::string> ReadSecret(const std::string& file) {
  if (const char* env = std::getenv("MERIDIAN_KEYSTORE_SECRET"); env != nullptr && *env) {
    return std::string(env);
  }
  std::string s = config::ReadFileOr(file);
  s = s.substr(0, s.find('\n'));
  if (s.empty()) {
    return Error(Code::kUnauthenticated,
                 "no keystore secret: set MERIDIAN_KEYSTORE_SECRET or provide " + file);
  }
  return s;
}

Result<std::unique_ptr<FileKeystore>> FileKeystore::Create(const std::string& path,
                                                           const std::string& region,
                                                           uint8_t hpke_key_id_base,
                                                           const ClusterKeys& cluster,
                                                           std::string_view secret, bool fast_kdf,
                                                           Random& random, const Clock& clock) {
  if (std::filesystem::exists(path)) {
    return Error(Code::kConflict, "keystore " + path + " exists already");
  }
  if (secret.size() < 8) return Error(Code::kInvalidField, "keystore secret is too short");
  std::unique_ptr<FileKeystore> ks(new FileKeystore(path, std::string(secret), fast_kdf, random));
  ks->region_ = region;
  ks->keks_[1] = random.Bytes(32);
  ks->primary_kek_ = 1;
  ks->pseudonym_keys_["phone"] = cluster.phone_pseudonym_key;
  ks->pseudonym_keys_["names"] = random.Bytes(32);
  ks->pseudonym_keys_["device"] = random.Bytes(32);
  ks->token_key_ = random.Bytes(32);
  ks->internal_token_ = cluster.internal_token;
  ks->hpke_key_id_base_ = hpke_key_id_base;
  ASSIGN_OR_RETURN(auto kp, crypto::hpke::GenerateKeyPair());
  ks->hpke_.push_back({hpke_key_id_base, kp.private_key, kp.public_key, clock.NowMs(), 0});
  auto signing = crypto::NewSigningKey();
  ks->signing_secret_ = signing.secret_key;
  ks->signing_public_ = signing.public_key;
  std::lock_guard lock(ks->mu_);
  RETURN_IF_ERROR(ks->Save());
  return ks;
}

Result<std::unique_ptr<FileKeystore>> FileKeystore::Open(const std::string& path,
                                                         std::string_view secret, Random& random) {
  std::string file = config::ReadFileOr(path);
  const size_t header = kMagic.size() + 1 + kSaltSize + kNonceSize;
  if (file.size() < header + crypto_secretbox_MACBYTES || file.substr(0, 4) != kMagic) {
    return Error(Code::kInternal, "keystore " + path + " is missing or not a Meridian keystore");
  }
  const bool fast = file[4] == 1;
  std::string salt = file.substr(5, kSaltSize);
  std::string nonce = file.substr(5 + kSaltSize, kNonceSize);
  std::string box = file.substr(header);
  ASSIGN_OR_RETURN(auto key, StretchSecret(secret, salt, fast));
  std::string plain(box.size() - crypto_secretbox_MACBYTES, '\0');
  int rc =
      crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(plain.data()),
                                 reinterpret_cast<const unsigned char*>(box.data()), box.size(),
                                 reinterpret_cast<const unsigned char*>(nonce.data()),
                                 reinterpret_cast<const unsigned char*>(key.data()));
  sodium_memzero(key.data(), key.size());
  if (rc != 0) {
    return Error(Code::kUnauthenticated,
                 "keystore " + path + " cannot be opened: wrong secret or damaged file");
  }
  std::unique_ptr<FileKeystore> ks(new FileKeystore(path, std::string(secret), fast, random));
  Status st = ks->Load(plain);
  sodium_memzero(plain.data(), plain.size());
  RETURN_IF_ERROR(st);
  return ks;
}

Status FileKeystore::Load(std::string_view plain) {
  auto doc = ParseJsonObject(plain);
  if (!doc.ok()) return Error(Code::kInternal, "keystore contents are corrupt");
  const Json& j = *doc;
  region_ = j.value("region", "");
  primary_kek_ = j.value("primary_kek", 0u);
  const Json keks = j.value("keks", Json::object());
  const Json pseudonyms = j.value("pseudonym_keys", Json::object());
  const Json hpke = j.value("hpke", Json::array());
  for (const auto& [v, hex] : keks.items()) {
    keks_[static_cast<uint32_t>(std::stoul(v))] = HexDecode(hex.get<std::string>()).value_or("");
  }
  for (const auto& [purpose, hex] : pseudonyms.items()) {
    pseudonym_keys_[purpose] = HexDecode(hex.get<std::string>()).value_or("");
  }
  token_key_ = Unhex(j, "token_key");
  internal_token_ = j.value("internal_token", "");
  hpke_key_id_base_ = j.value("hpke_key_id_base", uint8_t{0});
  for (const auto& h : hpke) {
    hpke_.push_back({h.value("key_id", uint8_t{0}), Unhex(h, "private_key"), Unhex(h, "public_key"),
                     h.value("created_ms", int64_t{0}), h.value("retire_at_ms", int64_t{0})});
  }
  signing_secret_ = Unhex(j, "signing_secret");
  signing_public_ = Unhex(j, "signing_public");
  if (region_.empty() || !keks_.count(primary_kek_) || token_key_.size() != 32 || hpke_.empty() ||
      signing_secret_.size() != crypto_sign_SECRETKEYBYTES) {
    return Error(Code::kInternal, "keystore contents are incomplete");
  }
  return Status::Ok();
}

Status FileKeystore::Save() const {
  Json keks = Json::object();
  for (const auto& [v, k] : keks_) keks[std::to_string(v)] = Hex(k);
  Json pk = Json::object();
  for (const auto& [p, k] : pseudonym_keys_) pk[p] = Hex(k);
  Json hpke = Json::array();
  for (const auto& h : hpke_) {
    hpke.push_back({{"key_id", h.key_id},
                    {"private_key", Hex(h.private_key)},
                    {"public_key", Hex(h.public_key)},
                    {"created_ms", h.created_ms},
                    {"retire_at_ms", h.retire_at_ms}});
  }
  Json doc = {{"format", 1},
              {"region", region_},
              {"keks", keks},
              {"primary_kek", primary_kek_},
              {"pseudonym_keys", pk},
              {"token_key", Hex(token_key_)},
              {"internal_token", internal_token_},
              {"hpke_key_id_base", hpke_key_id_base_},
              {"hpke", hpke},
              {"signing_secret", Hex(signing_secret_)},
              {"signing_public", Hex(signing_public_)}};
  std::string plain = DumpJson(doc);
  std::string salt = random_.Bytes(kSaltSize);
  std::string nonce = random_.Bytes(kNonceSize);
  ASSIGN_OR_RETURN(auto key, StretchSecret(secret_, salt, fast_kdf_));
  std::string box(plain.size() + crypto_secretbox_MACBYTES, '\0');
  crypto_secretbox_easy(reinterpret_cast<unsigned char*>(box.data()),
                        reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
                        reinterpret_cast<const unsigned char*>(nonce.data()),
                        reinterpret_cast<const unsigned char*>(key.data()));
  sodium_memzero(key.data(), key.size());
  sodium_memzero(plain.data(), plain.size());
  std::string file(kMagic);
  file.push_back(fast_kdf_ ? 1 : 0);
  file += salt + nonce + box;
  return config::WriteFileAtomic(path_, file, 0600);
}

uint32_t FileKeystore::PrimaryKekVersion() const {
  std::lock_guard lock(mu_);
  return primary_kek_;
}

std::vector<uint32_t> FileKeystore::KekVersions() const {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> v;
  for (const auto& [k, _] : keks_) v.push_back(k);
  return v;
}

Result<std::string> FileKeystore::Wrap(uint32_t kek_version, std::string_view plaintext,
                                       std::string_view aad) const {
  std::string kek;
  {
    std::lock_guard lock(mu_);
    auto it = keks_.find(kek_version);
    if (it == keks_.end()) return Error(Code::kIntegrityError, "KEK version is not available");
    kek = it->second;
  }
  std::string nonce = random_.Bytes(crypto::kGcmNonceSize);
  ASSIGN_OR_RETURN(auto ct, crypto::AesGcmSeal(kek, nonce, aad, plaintext));
  sodium_memzero(kek.data(), kek.size());
  return nonce + ct;
}

Result<std::string> FileKeystore::Unwrap(uint32_t kek_version, std::string_view wrapped,
                                         std::string_view aad) const {
  std::string kek;
  {
    std::lock_guard lock(mu_);
    auto it = keks_.find(kek_version);
    if (it == keks_.end()) return Error(Code::kIntegrityError, "KEK version was destroyed");
    kek = it->second;
  }
  if (wrapped.size() < crypto::kGcmNonceSize) {
    return Error(Code::kIntegrityError, "wrapped key is malformed");
  }
  auto r = crypto::AesGcmOpen(kek, wrapped.substr(0, crypto::kGcmNonceSize), aad,
                              wrapped.substr(crypto::kGcmNonceSize));
  sodium_memzero(kek.data(), kek.size());
  return r;
}

Result<uint32_t> FileKeystore::RotateKek() {
  std::lock_guard lock(mu_);
  uint32_t next = keks_.empty() ? 1 : keks_.rbegin()->first + 1;
  keks_[next] = random_.Bytes(32);
  uint32_t before = primary_kek_;
  primary_kek_ = next;
  Status st = Save();
  if (!st.ok()) {
    keks_.erase(next);
    primary_kek_ = before;
    return st;
  }
  return next;
}

Status FileKeystore::DestroyKek(uint32_t version) {
  std::lock_guard lock(mu_);
  if (version == primary_kek_) return Error(Code::kConflict, "the primary KEK cannot be destroyed");
  auto it = keks_.find(version);
  if (it == keks_.end()) return Status::Ok();
  std::string old = it->second;
  sodium_memzero(it->second.data(), it->second.size());
  keks_.erase(it);
  Status st = Save();
  if (!st.ok()) keks_[version] = old;
  sodium_memzero(old.data(), old.size());
  return st;
}

Result<std::string> FileKeystore::PseudonymKey(std::string_view purpose) const {
  std::lock_guard lock(mu_);
  auto it = pseudonym_keys_.find(purpose);
  if (it == pseudonym_keys_.end()) {
    return Error(Code::kInternal, fmt::format("no pseudonym key for '{}'", purpose));
  }
  return it->second;
}

HpkeKey FileKeystore::CurrentHpke() const {
  std::lock_guard lock(mu_);
  return hpke_.back();
}

std::optional<HpkeKey> FileKeystore::HpkeById(uint8_t key_id, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  for (const auto& h : hpke_) {
    if (h.key_id == key_id && (h.retire_at_ms == 0 || now_ms < h.retire_at_ms)) return h;
  }
  return std::nullopt;
}

std::vector<HpkeKey> FileKeystore::HpkeKeys() const {
  std::lock_guard lock(mu_);
  return hpke_;
}

Result<HpkeKey> FileKeystore::RotateHpke(int64_t now_ms, int64_t grace_ms) {
  ASSIGN_OR_RETURN(auto kp, crypto::hpke::GenerateKeyPair());
  std::lock_guard lock(mu_);
  // Key ids cycle through 16 values per region so they stay unique across the cluster.
  uint8_t generation = static_cast<uint8_t>((hpke_.back().key_id - hpke_key_id_base_ + 1) & 0x0f);
  uint8_t next = static_cast<uint8_t>(hpke_key_id_base_ + generation);
  std::erase_if(hpke_, [&](const HpkeKey& h) {
    return h.key_id == next || (h.retire_at_ms != 0 && h.retire_at_ms <= now_ms);
  });
  for (auto& h : hpke_) {
    if (h.retire_at_ms == 0) h.retire_at_ms = now_ms + grace_ms;
  }
  hpke_.push_back({next, kp.private_key, kp.public_key, now_ms, 0});
  RETURN_IF_ERROR(Save());
  return hpke_.back();
}

std::string FileKeystore::Sign(std::string_view message) const {
  std::lock_guard lock(mu_);
  return crypto::SignEd25519(signing_secret_, message);
}

Result<int> InitKeystores(const config::ClusterConfig& config, std::string_view secret,
                          Random& random, const Clock& clock) {
  std::optional<ClusterKeys> cluster;
  for (const auto& r : config.regions) {
    if (!std::filesystem::exists(r.keystore_file)) continue;
    ASSIGN_OR_RETURN(auto ks, FileKeystore::Open(r.keystore_file, secret, random));
    ASSIGN_OR_RETURN(auto phone, ks->PseudonymKey("phone"));
    cluster = ClusterKeys{phone, ks->InternalToken()};
    break;
  }
  if (!cluster) cluster = NewClusterKeys(random);
  std::error_code ec;
  std::filesystem::create_directories(config.secrets_dir, ec);
  std::filesystem::permissions(config.secrets_dir, std::filesystem::perms::owner_all, ec);
  int made = 0;
  for (size_t i = 0; i < config.regions.size(); ++i) {
    const auto& r = config.regions[i];
    if (std::filesystem::exists(r.keystore_file)) continue;
    auto ks = FileKeystore::Create(r.keystore_file, r.name, static_cast<uint8_t>(i * 16), *cluster,
                                   secret, config.keystore_fast_kdf, random, clock);
    if (!ks.ok()) return ks.status();
    ++made;
  }
  return made;
}

Result<std::unique_ptr<FileKeystore>> OpenRegionKeystore(const config::ClusterConfig& config,
                                                         std::string_view region, Random& random) {
  const config::RegionConfig* r = config.Find(region);
  if (r == nullptr) return Error(Code::kNotFound, "no such region in the cluster config");
  ASSIGN_OR_RETURN(auto secret, ReadSecret(config.keystore_secret_file));
  return FileKeystore::Open(r->keystore_file, secret, random);
}

const std::string* RegionOfKeyId(const config::ClusterConfig& config, uint8_t key_id) {
  size_t index = key_id >> 4;
  return index < config.regions.size() ? &config.regions[index].name : nullptr;
}

}  // namespace meridian::keys
