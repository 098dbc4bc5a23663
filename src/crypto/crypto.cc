#include "crypto/crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <charconv>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "common/encoding.h"
#include "common/string_hash.h"

namespace meridian::crypto {

Status Init() {
  if (sodium_init() < 0) return Error(Code::kInternal, "libsodium failed to initialise");
  return Status::Ok();
}

namespace {
// libsodium's HMAC-SHA256: the fallback should OpenSSL's ever fail.
std::string SodiumHmacSha256(std::string_view key, std::string_view message) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size());
  std::string out(crypto_auth_hmacsha256_BYTES, '\0');
  crypto_auth_hmacsha256_final(&st, reinterpret_cast<unsigned char*>(out.data()));
  sodium_memzero(&st, sizeof st);
  return out;
}

// OpenSSL's HMAC keeps the keyed state in its context, so a thread keeps one context per key
// it uses (a node has a handful: token and pseudonym keys): each MAC is then a re-init and
// one short SHA-256 (with the CPU's SHA instructions), not a key schedule.
class MacContexts {
 public:
  ~MacContexts() {
    for (auto& e : entries_) {
      EVP_MAC_CTX_free(e.ctx);
      sodium_memzero(e.key.data(), e.key.size());
    }
  }
  // The context keyed with `key`, ready for a new message; nullptr if OpenSSL fails.
  EVP_MAC_CTX* For(std::string_view key) {
    for (auto& e : entries_) {
      if (e.key == key) return EVP_MAC_init(e.ctx, nullptr, 0, nullptr) == 1 ? e.ctx : nullptr;
    }
    static EVP_MAC* const kHmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (kHmac == nullptr) return nullptr;
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(kHmac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    static const unsigned char kEmpty = 0;  // OpenSSL wants a key pointer even for no bytes
    const auto* bytes = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
    if (ctx == nullptr || EVP_MAC_init(ctx, bytes, key.size(), params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return nullptr;
    }
    if (entries_.size() >= kMaxKeys) {  // the oldest goes
      EVP_MAC_CTX_free(entries_.front().ctx);
      sodium_memzero(entries_.front().key.data(), entries_.front().key.size());
      entries_.erase(entries_.begin());
    }
    entries_.push_back({std::string(key), ctx});
    return ctx;
  }

 private:
  static constexpr size_t kMaxKeys = 8;
  struct Entry {
    std::string key;
    EVP_MAC_CTX* ctx;
  };
  std::vector<Entry> entries_;
};
}  // namespace

std::string HmacSha256(std::string_view key, std::string_view message) {
  thread_local MacContexts contexts;
  EVP_MAC_CTX* ctx = contexts.For(key);
  std::string out(crypto_auth_hmacsha256_BYTES, '\0');
  size_t len = 0;
  if (ctx == nullptr ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(message.data()), message.size()) !=
          1 ||
      EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, out.size()) != 1 ||
      len != out.size()) {
    return SodiumHmacSha256(key, message);
  }
  return out;
}

std::string Sha256(std::initializer_list<std::string_view> parts) {
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Context c;
  std::string out(crypto_hash_sha256_BYTES, '\0');
  unsigned int len = 0;
  bool ok = kSha256 != nullptr && c.ctx != nullptr && EVP_DigestInit_ex2(c.ctx, kSha256, nullptr);
  for (std::string_view p : parts) ok = ok && EVP_DigestUpdate(c.ctx, p.data(), p.size());
  if (ok && EVP_DigestFinal_ex(c.ctx, reinterpret_cast<unsigned char*>(out.data()), &len) &&
      len == out.size()) {
    return out;
  }
  // libsodium's, should OpenSSL ever fail.
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  for (std::string_view p : parts) {
    crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(p.data()), p.size());
  }
  crypto_hash_sha256_final(&st, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // lengths are public (a token's, a key's)
  // Eight bytes a step, every byte read whatever the others hold. The accumulator passes
  // through an empty asm statement at each step, so the compiler can neither stop at the
  // first difference nor fold the loop into memcmp. Tokens are compared on every request:
  // 13 ns against 143 ns for OpenSSL's byte-at-a-time CRYPTO_memcmp on a 220-byte token.
  uint64_t diff = 0;
  size_t i = 0;
  for (; i + 8 <= a.size(); i += 8) {
    uint64_t x = 0;
    uint64_t y = 0;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    diff |= x ^ y;
    asm volatile("" : "+r"(diff));
  }
  for (; i < a.size(); ++i) {
    diff |= static_cast<uint8_t>(a[i] ^ b[i]);
    asm volatile("" : "+r"(diff));
  }
  return diff == 0;
}

std::string Pseudonym(std::string_view key, std::string_view purpose, std::string_view value) {
  std::string msg;
  msg.reserve(purpose.size() + 1 + value.size());
  msg.append(purpose).push_back('\0');
  msg.append(value);
  return HexEncode(HmacSha256(key, msg));
}

Result<std::string> HashPassword(std::string_view password, bool dev_fast) {
  char out[crypto_pwhash_STRBYTES];
  unsigned long long ops =
      dev_fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  size_t mem = dev_fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops, mem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Error(Code::kInternal, "password hashing ran out of memory");
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view stored_hash, std::string_view password) {
  std::string h(stored_hash);  // needs NUL termination
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

SigningKeyPair NewSigningKey() {
  SigningKeyPair kp{std::string(crypto_sign_SECRETKEYBYTES, '\0'),
                    std::string(crypto_sign_PUBLICKEYBYTES, '\0')};
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(kp.public_key.data()),
                      reinterpret_cast<unsigned char*>(kp.secret_key.data()));
  return kp;
}

std::string SignEd25519(std::string_view secret_key, std::string_view message) {
  std::string sig(crypto_sign_BYTES, '\0');
  if (secret_key.size() != crypto_sign_SECRETKEYBYTES) return {};
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  return sig;
}

bool VerifyEd25519(std::string_view public_key, std::string_view message,
                   std::string_view signature) {
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) {
    return false;
  }
  return crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

std::string NoteKeyHash(std::string_view name, std::string_view ed25519_public_key) {
  return Sha256({name, "\n\x01", ed25519_public_key}).substr(0, 4);
}

std::string NoteVerifierKey(std::string_view name, std::string_view ed25519_public_key) {
  std::string keydata(1, '\x01');  // algorithm: Ed25519
  keydata.append(ed25519_public_key);
  return std::string(name) + "+" + HexEncode(NoteKeyHash(name, ed25519_public_key)) + "+" +
         Base64Encode(keydata);
}

namespace {
constexpr std::string_view kTokenPrefix = "mt1.";

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

bool ParseInt(std::string_view s, int64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::optional<TokenClaims> ParsePayload(std::string_view b64) {
  auto payload = Base64UrlDecode(b64);
  if (!payload) return std::nullopt;
  auto f = Split(*payload, '\n');
  if (f.size() != 4 || f[0].empty() || f[1].empty()) return std::nullopt;
  TokenClaims c;
  c.user_id = f[0];
  c.region = f[1];
  if (!ParseInt(f[2], &c.epoch) || !ParseInt(f[3], &c.expires_ms)) return std::nullopt;
  return c;
}
}  // namespace

std::string IssueToken(const TokenClaims& claims, std::string_view key) {
  std::string payload = claims.user_id + "\n" + claims.region + "\n" +
                        std::to_string(claims.epoch) + "\n" + std::to_string(claims.expires_ms);
  std::string signed_part = std::string(kTokenPrefix) + Base64UrlEncode(payload);
  return signed_part + "." + Base64UrlEncode(HmacSha256(key, signed_part));
}

namespace {
// Tokens this thread verified lately, with their claims and the key that verified them: a
// buyer pressing "buy" again and again in a rush costs one lookup instead of two base64
// decodes and a MAC. Expiry is checked on every use; revocation (the epoch) is the
// caller's, as without the cache. Only verified tokens enter, so made-up tokens can at
// worst empty it (it is cleared when full), never grow it. Lookups compare in constant time.
class VerifiedTokens {
 public:
  static VerifiedTokens& OfThisThread() {
    thread_local VerifiedTokens cache;
    return cache;
  }
  ~VerifiedTokens() { Clear(); }
  // The claims of `token` if this thread verified it (under `key`, when one is given).
  const TokenClaims* Find(std::string_view token, std::optional<std::string_view> key) const {
    auto it = map_.find(token);
    if (it == map_.end()) return nullptr;
    if (key && !ConstantTimeEquals(*key, keys_[it->second.key])) return nullptr;
    return &it->second.claims;
  }
  void Add(std::string_view token, std::string_view key, const TokenClaims& claims) {
    // One copy of each key (a node has one token key, two across a rotation), not one a token.
    size_t k = 0;
    while (k < keys_.size() && !ConstantTimeEquals(keys_[k], key)) ++k;
    if (map_.size() >= kMax || (k == keys_.size() && keys_.size() >= kMaxKeys)) {
      Clear();
      k = 0;
    }
    if (k == keys_.size()) keys_.emplace_back(key);
    map_.insert_or_assign(std::string(token), Entry{claims, k});
  }

 private:
  static constexpr size_t kMax = 4096;
  static constexpr size_t kMaxKeys = 4;
  // Bearer tokens and keys are credentials: wiped before their memory goes back.
  void Clear() {
    for (auto& [token, entry] : map_) {
      sodium_memzero(const_cast<char*>(token.data()), token.size());
    }
    map_.clear();
    for (auto& k : keys_) sodium_memzero(k.data(), k.size());
    keys_.clear();
  }
  struct Entry {
    TokenClaims claims;
    size_t key = 0;  // in keys_
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const {
      return ConstantTimeEquals(a, b);
    }
  };
  std::unordered_map<std::string, Entry, StringHash, Equal> map_;
  std::vector<std::string> keys_;
};

std::optional<TokenClaims> ParseToken(std::string_view token) {
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return std::nullopt;
  auto parts = Split(token.substr(kTokenPrefix.size()), '.');
  if (parts.size() != 2) return std::nullopt;
  return ParsePayload(parts[0]);
}
}  // namespace

std::optional<TokenClaims> PeekToken(std::string_view token) {
  // The claims are a function of the token's bytes: a verified copy serves as well.
  if (const TokenClaims* c = VerifiedTokens::OfThisThread().Find(token, std::nullopt)) return *c;
  return ParseToken(token);
}

Result<TokenClaims> VerifyToken(std::string_view token, std::string_view key, int64_t now_ms) {
  VerifiedTokens& verified = VerifiedTokens::OfThisThread();
  std::optional<TokenClaims> claims;
  if (const TokenClaims* c = verified.Find(token, key)) {
    claims = *c;
  } else {
    claims = ParseToken(token);
    const size_t dot = token.rfind('.');
    if (!claims || dot == std::string_view::npos) {
      return Error(Code::kUnauthenticated, "malformed token");
    }
    auto mac = Base64UrlDecode(token.substr(dot + 1));
    if (!mac || !ConstantTimeEquals(*mac, HmacSha256(key, token.substr(0, dot)))) {
      return Error(Code::kUnauthenticated, "invalid token");
    }
    verified.Add(token, key, *claims);
  }
  if (claims->expires_ms <= now_ms) return Error(Code::kUnauthenticated, "token expired");
  return std::move(*claims);
}

const TokenClaims* RecentlyVerified(std::string_view token, std::string_view key, int64_t now_ms) {
  const TokenClaims* c = VerifiedTokens::OfThisThread().Find(token, key);
  return c != nullptr && c->expires_ms > now_ms ? c : nullptr;
}

}  // namespace meridian::crypto
