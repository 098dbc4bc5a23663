// RFC 9180 from OpenSSL 3.0 parts: EVP_PKEY X25519, EVP_KDF HKDF (extract and expand as
// separate calls, since HPKE labels each step) and EVP chacha20-poly1305.
#include "crypto/hpke.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <climits>
#include <memory>

#include "common/encoding.h"
#include "crypto/openssl_ptr.h"

namespace meridian::crypto::hpke {
namespace {

using KdfPtr = OpenSslPtr<EVP_KDF, EVP_KDF_free>;
using KdfCtxPtr = OpenSslPtr<EVP_KDF_CTX, EVP_KDF_CTX_free>;

constexpr size_t kHashSize = 32;    // Nh of HKDF-SHA256
constexpr size_t kSecretSize = 32;  // Nsecret of DHKEM(X25519)
constexpr size_t kAeadKeySize = 32;
constexpr size_t kNonceSize = 12;
constexpr uint8_t kModeBase = 0x00;

Status Internal(const char* what) { return Error(Code::kInternal, std::string("hpke: ") + what); }
Status Invalid(const char* what) {
  return Error(Code::kInvalidField, std::string("hpke: ") + what);
}

// Secrets live in std::string; wipe the intermediate ones when done with them.
struct Wiped {
  Wiped(std::string v) : value(std::move(v)) {}  // NOLINT: implicit for ASSIGN_OR_RETURN
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;
  std::string value;
  ~Wiped() { OPENSSL_cleanse(value.data(), value.size()); }
};

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* Bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

void AppendU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

std::string KemSuiteId() {
  std::string id = "KEM";
  AppendU16(id, kKemId);
  return id;
}

std::string HpkeSuiteId() {
  std::string id = "HPKE";
  AppendU16(id, kKemId);
  AppendU16(id, kKdfId);
  AppendU16(id, kAeadId);
  return id;
}

// One HKDF-SHA256 step; `salt` may be empty, which HKDF treats as Nh zero bytes.
Result<std::string> Hkdf(int mode, std::string_view key, std::string_view salt,
                         std::string_view info, size_t length) {
  KdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) return Internal("HKDF unavailable");
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return Internal("out of memory");
  char digest[] = "SHA256";
  OSSL_PARAM params[6];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(key.data()),
                                                  key.size());
  // HKDF treats an empty salt or info as absent; leave them out rather than pass empty buffers.
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<char*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<char*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), Bytes(out), out.size(), params) != 1) {
    return Internal("HKDF failed");
  }
  return out;
}

// RFC 9180 section 4: every KDF call is bound to a label and the suite in use.
Result<std::string> LabeledExtract(std::string_view suite_id, std::string_view salt,
                                   std::string_view label, std::string_view ikm) {
  Wiped labeled_ikm(std::string("HPKE-v1"));
  labeled_ikm.value.append(suite_id).append(label).append(ikm);
  return Hkdf(EVP_KDF_HKDF_MODE_EXTRACT_ONLY, labeled_ikm.value, salt, {}, kHashSize);
}

Result<std::string> LabeledExpand(std::string_view suite_id, std::string_view prk,
                                  std::string_view label, std::string_view info, size_t length) {
  std::string labeled_info;
  AppendU16(labeled_info, static_cast<uint16_t>(length));
  labeled_info.append("HPKE-v1").append(suite_id).append(label).append(info);
  return Hkdf(EVP_KDF_HKDF_MODE_EXPAND_ONLY, prk, {}, labeled_info, length);
}

Result<KeyPtr> PrivateKey(std::string_view sk) {
  if (sk.size() != kPrivateKeySize) return Invalid("private key must be 32 bytes");
  KeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, Bytes(sk), sk.size()));
  if (!key) return Internal("cannot load private key");
  return key;
}

Result<KeyPtr> PublicKey(std::string_view pk) {
  if (pk.size() != kPublicKeySize) return Invalid("public key must be 32 bytes");
  KeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, Bytes(pk), pk.size()));
  if (!key) return Invalid("public key is not an X25519 key");
  return key;
}

Result<std::string> RawPublicKey(EVP_PKEY* key) {
  std::string out(kPublicKeySize, '\0');
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key, Bytes(out), &len) != 1 || len != kPublicKeySize) {
    return Internal("cannot read public key");
  }
  return out;
}

Result<KeyPair> ToKeyPair(EVP_PKEY* key) {
  KeyPair kp;
  kp.private_key.assign(kPrivateKeySize, '\0');
  size_t len = kp.private_key.size();
  if (EVP_PKEY_get_raw_private_key(key, Bytes(kp.private_key), &len) != 1 ||
      len != kPrivateKeySize) {
    return Internal("cannot read private key");
  }
  ASSIGN_OR_RETURN(kp.public_key, RawPublicKey(key));
  return kp;
}

// X25519, refusing a zero result (RFC 9180 section 7.1.4): a low-order public key would
// otherwise give a shared secret that anyone can compute.
Result<std::string> Dh(std::string_view sk, std::string_view pk) {
  ASSIGN_OR_RETURN(KeyPtr priv, PrivateKey(sk));
  ASSIGN_OR_RETURN(KeyPtr peer, PublicKey(pk));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(priv.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return Internal("cannot start X25519");
  // OpenSSL itself fails the derivation on an all-zero result; either way it is the peer
  // key that is bad.
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return Invalid("public key is not usable for X25519");
  }
  std::string out(kSecretSize, '\0');
  size_t len = out.size();
  if (EVP_PKEY_derive(ctx.get(), Bytes(out), &len) != 1 || len != kSecretSize) {
    return Invalid("X25519 shared secret is zero");
  }
  unsigned char acc = 0;
  for (char c : out) acc |= static_cast<unsigned char>(c);
  if (acc == 0) return Invalid("X25519 shared secret is zero");
  return out;
}

// DHKEM ExtractAndExpand (RFC 9180 section 4.1).
Result<std::string> ExtractAndExpand(std::string_view dh, std::string_view kem_context) {
  const std::string suite_id = KemSuiteId();
  ASSIGN_OR_RETURN(Wiped eae_prk, LabeledExtract(suite_id, {}, "eae_prk", dh));
  return LabeledExpand(suite_id, eae_prk.value, "shared_secret", kem_context, kSecretSize);
}

// KeySchedule for mode_base: no PSK, so psk and psk_id are empty.
Result<internal::Context> KeySchedule(std::string_view shared_secret, std::string_view info) {
  const std::string suite_id = HpkeSuiteId();
  ASSIGN_OR_RETURN(std::string psk_id_hash, LabeledExtract(suite_id, {}, "psk_id_hash", {}));
  ASSIGN_OR_RETURN(std::string info_hash, LabeledExtract(suite_id, {}, "info_hash", info));
  std::string context(1, static_cast<char>(kModeBase));
  context.append(psk_id_hash).append(info_hash);
  ASSIGN_OR_RETURN(Wiped secret, LabeledExtract(suite_id, shared_secret, "secret", {}));
  internal::Context out;
  ASSIGN_OR_RETURN(out.key, LabeledExpand(suite_id, secret.value, "key", context, kAeadKeySize));
  ASSIGN_OR_RETURN(out.base_nonce,
                   LabeledExpand(suite_id, secret.value, "base_nonce", context, kNonceSize));
  ASSIGN_OR_RETURN(out.exporter_secret,
                   LabeledExpand(suite_id, secret.value, "exp", context, kHashSize));
  return out;
}

// base_nonce XOR I2OSP(seq, Nn).
std::string ComputeNonce(const internal::Context& ctx) {
  std::string nonce = ctx.base_nonce;
  for (size_t i = 0; i < sizeof ctx.seq; ++i) {
    nonce[kNonceSize - 1 - i] ^= static_cast<char>((ctx.seq >> (8 * i)) & 0xff);
  }
  return nonce;
}

Status CheckContext(const internal::Context& ctx) {
  if (ctx.key.size() != kAeadKeySize || ctx.base_nonce.size() != kNonceSize) {
    return Internal("context is not set up");
  }
  // The RFC's limit is 2^96 - 1 messages; a uint64_t counter reaches its own limit first.
  if (ctx.seq == UINT64_MAX) return Invalid("message limit reached");
  return Status::Ok();
}

Result<std::string> AeadSeal(std::string_view key, std::string_view nonce, std::string_view aad,
                             std::string_view pt) {
  if (aad.size() > INT_MAX || pt.size() > INT_MAX - kTagSize) return Invalid("input too long");
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_chacha20_poly1305(), nullptr, Bytes(key),
                                 Bytes(nonce)) != 1) {
    return Internal("cannot start ChaCha20-Poly1305");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1) {
    return Internal("ChaCha20-Poly1305 failed");
  }
  std::string out(pt.size() + kTagSize, '\0');
  int written = 0;
  if (!pt.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), Bytes(out), &len, Bytes(pt), static_cast<int>(pt.size())) !=
        1) {
      return Internal("ChaCha20-Poly1305 failed");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), Bytes(out) + written, &len) != 1) {
    return Internal("ChaCha20-Poly1305 failed");
  }
  written += len;
  if (static_cast<size_t>(written) != pt.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize),
                          Bytes(out) + written) != 1) {
    return Internal("ChaCha20-Poly1305 failed");
  }
  return out;
}

Result<std::string> AeadOpen(std::string_view key, std::string_view nonce, std::string_view aad,
                             std::string_view ct) {
  if (ct.size() < kTagSize) return Invalid("ciphertext is shorter than its tag");
  if (aad.size() > INT_MAX || ct.size() > INT_MAX) return Invalid("input too long");
  const std::string_view body = ct.substr(0, ct.size() - kTagSize);
  std::string tag(ct.substr(body.size()));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_chacha20_poly1305(), nullptr, Bytes(key), Bytes(nonce)) !=
          1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                          Bytes(tag)) != 1) {
    return Internal("cannot start ChaCha20-Poly1305");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1) {
    return Internal("ChaCha20-Poly1305 failed");
  }
  std::string out(body.size(), '\0');
  int written = 0;
  if (!body.empty()) {
    if (EVP_DecryptUpdate(ctx.get(), Bytes(out), &len, Bytes(body),
                          static_cast<int>(body.size())) != 1) {
      return Internal("ChaCha20-Poly1305 failed");
    }
    written = len;
  }
  // Plaintext is only released once the tag has been checked here.
  if (EVP_DecryptFinal_ex(ctx.get(), Bytes(out) + written, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return Invalid("message does not authenticate");
  }
  return out;
}

std::string SealedHeader(uint8_t key_id) {
  std::string hdr(1, static_cast<char>(key_id));
  AppendU16(hdr, kKemId);
  AppendU16(hdr, kKdfId);
  AppendU16(hdr, kAeadId);
  return hdr;
}

std::string SealedInfo(std::string_view hdr) {
  std::string info(kSealedInfoPrefix);
  info.append(hdr);
  return info;
}

uint16_t ReadU16(std::string_view s, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[at]) << 8) |
                               static_cast<uint8_t>(s[at + 1]));
}

}  // namespace

Result<KeyPair> GenerateKeyPair() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return Internal("X25519 key generation failed");
  }
  KeyPtr key(raw);
  return ToKeyPair(key.get());
}

Result<KeyPair> DeriveKeyPair(std::string_view ikm) {
  if (ikm.size() < kPrivateKeySize) return Invalid("key derivation input is too short");
  const std::string suite_id = KemSuiteId();
  ASSIGN_OR_RETURN(Wiped dkp_prk, LabeledExtract(suite_id, {}, "dkp_prk", ikm));
  ASSIGN_OR_RETURN(std::string sk, LabeledExpand(suite_id, dkp_prk.value, "sk", {}, 32));
  ASSIGN_OR_RETURN(std::string pk, PublicKeyOf(sk));
  return KeyPair{std::move(sk), std::move(pk)};
}

Result<std::string> PublicKeyOf(std::string_view private_key) {
  ASSIGN_OR_RETURN(KeyPtr key, PrivateKey(private_key));
  return RawPublicKey(key.get());
}

namespace internal {

Result<SenderSetup> SetupBaseS(std::string_view pk_r, std::string_view info,
                               const KeyPair& ephemeral) {
  if (pk_r.size() != kPublicKeySize) return Invalid("public key must be 32 bytes");
  // Encap(pkR): the ephemeral public key is the encapsulation.
  ASSIGN_OR_RETURN(Wiped dh, Dh(ephemeral.private_key, pk_r));
  ASSIGN_OR_RETURN(std::string enc, PublicKeyOf(ephemeral.private_key));
  std::string kem_context = enc;
  kem_context.append(pk_r);
  SenderSetup out;
  ASSIGN_OR_RETURN(out.shared_secret, ExtractAndExpand(dh.value, kem_context));
  ASSIGN_OR_RETURN(out.context, KeySchedule(out.shared_secret, info));
  out.enc = std::move(enc);
  return out;
}

Result<Context> SetupBaseR(std::string_view enc, std::string_view sk_r, std::string_view info) {
  if (enc.size() != kEncSize) return Invalid("encapsulated key must be 32 bytes");
  // Decap(enc, skR).
  ASSIGN_OR_RETURN(Wiped dh, Dh(sk_r, enc));
  ASSIGN_OR_RETURN(std::string pk_r, PublicKeyOf(sk_r));
  std::string kem_context(enc);
  kem_context.append(pk_r);
  ASSIGN_OR_RETURN(Wiped shared_secret, ExtractAndExpand(dh.value, kem_context));
  return KeySchedule(shared_secret.value, info);
}

Result<std::string> ContextSeal(Context& context, std::string_view aad,
                                std::string_view plaintext) {
  RETURN_IF_ERROR(CheckContext(context));
  ASSIGN_OR_RETURN(std::string ct, AeadSeal(context.key, ComputeNonce(context), aad, plaintext));
  ++context.seq;
  return ct;
}

Result<std::string> ContextOpen(Context& context, std::string_view aad, std::string_view ct) {
  RETURN_IF_ERROR(CheckContext(context));
  ASSIGN_OR_RETURN(std::string pt, AeadOpen(context.key, ComputeNonce(context), aad, ct));
  ++context.seq;
  return pt;
}

Result<Sealed> SealWithEphemeral(std::string_view pk_r, std::string_view info, std::string_view aad,
                                 std::string_view plaintext, const KeyPair& ephemeral) {
  ASSIGN_OR_RETURN(SenderSetup setup, SetupBaseS(pk_r, info, ephemeral));
  OPENSSL_cleanse(setup.shared_secret.data(), setup.shared_secret.size());
  Sealed out;
  auto ct = ContextSeal(setup.context, aad, plaintext);
  OPENSSL_cleanse(setup.context.key.data(), setup.context.key.size());
  OPENSSL_cleanse(setup.context.exporter_secret.data(), setup.context.exporter_secret.size());
  if (!ct.ok()) return ct.status();
  out.enc = std::move(setup.enc);
  out.ct = std::move(ct).value();
  return out;
}

}  // namespace internal

Result<Sealed> Seal(std::string_view pk_r, std::string_view info, std::string_view aad,
                    std::string_view plaintext) {
  ASSIGN_OR_RETURN(KeyPair ephemeral, GenerateKeyPair());
  auto sealed = internal::SealWithEphemeral(pk_r, info, aad, plaintext, ephemeral);
  OPENSSL_cleanse(ephemeral.private_key.data(), ephemeral.private_key.size());
  return sealed;
}

Result<std::string> Open(std::string_view sk_r, std::string_view enc, std::string_view info,
                         std::string_view aad, std::string_view ct) {
  ASSIGN_OR_RETURN(internal::Context context, internal::SetupBaseR(enc, sk_r, info));
  auto pt = internal::ContextOpen(context, aad, ct);
  OPENSSL_cleanse(context.key.data(), context.key.size());
  OPENSSL_cleanse(context.exporter_secret.data(), context.exporter_secret.size());
  return pt;
}

Result<std::string> SealMessage(uint8_t key_id, std::string_view pk_r, std::string_view plaintext) {
  const std::string hdr = SealedHeader(key_id);
  ASSIGN_OR_RETURN(Sealed sealed, Seal(pk_r, SealedInfo(hdr), {}, plaintext));
  std::string encoded = Base64UrlEncode(hdr + sealed.enc + sealed.ct);
  // Refuse what ParseSealed would refuse rather than send it.
  if (encoded.size() > kMaxSealedSize) return Error(Code::kTooLarge, "hpke: message too large");
  return encoded;
}

Result<ParsedSealed> ParseSealed(std::string_view b64) {
  if (b64.size() > kMaxSealedSize) {
    return Error(Code::kTooLarge, "sealed message is over 64 KiB");
  }
  auto raw = Base64UrlDecode(b64);
  if (!raw) return Error(Code::kInvalidField, "sealed message is not unpadded base64url");
  const std::string_view bytes = *raw;
  if (bytes.size() < kHeaderSize) return Error(Code::kInvalidField, "sealed message is truncated");
  // The ids come before the length check: another suite would have other sizes.
  if (ReadU16(bytes, 1) != kKemId) {
    return Error(Code::kInvalidField, "sealed message has an unsupported kem_id");
  }
  if (ReadU16(bytes, 3) != kKdfId) {
    return Error(Code::kInvalidField, "sealed message has an unsupported kdf_id");
  }
  if (ReadU16(bytes, 5) != kAeadId) {
    return Error(Code::kInvalidField, "sealed message has an unsupported aead_id");
  }
  if (bytes.size() < kHeaderSize + kEncSize + kTagSize) {
    return Error(Code::kInvalidField, "sealed message is truncated");
  }
  ParsedSealed out;
  out.key_id = static_cast<uint8_t>(bytes[0]);
  out.hdr = bytes.substr(0, kHeaderSize);
  out.enc = bytes.substr(kHeaderSize, kEncSize);
  out.ct = bytes.substr(kHeaderSize + kEncSize);
  return out;
}

Result<std::string> OpenMessage(const ParsedSealed& message, std::string_view sk_r) {
  // The header is bound through info, so a changed key id or suite id fails to open.
  return Open(sk_r, message.enc, SealedInfo(message.hdr), {}, message.ct);
}

}  // namespace meridian::crypto::hpke
