#include "crypto/hpke.h"

#include <gtest/gtest.h>

#include <string>

#include "common/encoding.h"

namespace meridian::crypto::hpke {
namespace {

std::string Unhex(std::string_view hex) {
  auto bytes = HexDecode(hex);
  EXPECT_TRUE(bytes.has_value()) << hex;
  return bytes.value_or("");
}

// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, Base.
// Copied from the RFC source, cfrg/draft-irtf-cfrg-hpke, draft-irtf-cfrg-hpke.md.
constexpr std::string_view kInfo = "4f6465206f6e2061204772656369616e2055726e";
constexpr std::string_view kIkmE =
    "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b";
constexpr std::string_view kPkEm =
    "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
constexpr std::string_view kSkEm =
    "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600";
constexpr std::string_view kIkmR =
    "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df";
constexpr std::string_view kPkRm =
    "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
constexpr std::string_view kSkRm =
    "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
constexpr std::string_view kEnc =
    "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
constexpr std::string_view kSharedSecret =
    "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
constexpr std::string_view kKey =
    "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91";
constexpr std::string_view kBaseNonce = "5c4d98150661b848853b547f";
constexpr std::string_view kExporterSecret =
    "a3b010d4994890e2c6968a36f64470d3c824c8f5029942feb11e7a74b2921922";
constexpr std::string_view kPt = "4265617574792069732074727574682c20747275746820626561757479";

struct Encryption {
  uint64_t seq;
  std::string_view aad;
  std::string_view ct;
};
constexpr Encryption kEncryptions[] = {
    {0, "436f756e742d30",
     "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"},
    {1, "436f756e742d31",
     "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c"},
    {2, "436f756e742d32",
     "71146bd6795ccc9c49ce25dda112a48f202ad220559502cef1f34271e0cb4b02b4f10ecac6f48c32f878fae86b"},
    {4, "436f756e742d34",
     "63357a2aa291f5a4e5f27db6baa2af8cf77427c7c1a909e0b37214dd47db122bb153495ff0b02e9e54a50dbe16"},
    {255, "436f756e742d323535",
     "18ab939d63ddec9f6ac2b60d61d36a7375d2070c9b683861110757062c52b8880a5f6b3936da9cd6c23ef2a95c"},
    {256, "436f756e742d323536",
     "7a4a13e9ef23978e2c520fd4d2e757514ae160cd0cd05e556ef692370ca53076214c0c40d4c728d6ed9e727a5b"},
};

KeyPair VectorEphemeral() { return {Unhex(kSkEm), Unhex(kPkEm)}; }

TEST(HpkeVectors, DeriveKeyPairMatchesRfc) {
  auto e = DeriveKeyPair(Unhex(kIkmE));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(HexEncode(e->private_key), kSkEm);
  EXPECT_EQ(HexEncode(e->public_key), kPkEm);
  auto r = DeriveKeyPair(Unhex(kIkmR));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(HexEncode(r->private_key), kSkRm);
  EXPECT_EQ(HexEncode(r->public_key), kPkRm);
  auto pk = PublicKeyOf(Unhex(kSkRm));
  ASSERT_TRUE(pk.ok());
  EXPECT_EQ(HexEncode(*pk), kPkRm);
}

TEST(HpkeVectors, SenderKeyScheduleMatchesRfc) {
  auto s = internal::SetupBaseS(Unhex(kPkRm), Unhex(kInfo), VectorEphemeral());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(HexEncode(s->enc), kEnc);
  EXPECT_EQ(HexEncode(s->shared_secret), kSharedSecret);
  EXPECT_EQ(HexEncode(s->context.key), kKey);
  EXPECT_EQ(HexEncode(s->context.base_nonce), kBaseNonce);
  EXPECT_EQ(HexEncode(s->context.exporter_secret), kExporterSecret);
}

TEST(HpkeVectors, ReceiverKeyScheduleMatchesRfc) {
  auto ctx = internal::SetupBaseR(Unhex(kEnc), Unhex(kSkRm), Unhex(kInfo));
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  EXPECT_EQ(HexEncode(ctx->key), kKey);
  EXPECT_EQ(HexEncode(ctx->base_nonce), kBaseNonce);
  EXPECT_EQ(HexEncode(ctx->exporter_secret), kExporterSecret);
}

TEST(HpkeVectors, EncryptionsMatchRfc) {
  auto s = internal::SetupBaseS(Unhex(kPkRm), Unhex(kInfo), VectorEphemeral());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (const auto& v : kEncryptions) {
    s->context.seq = v.seq;
    auto ct = internal::ContextSeal(s->context, Unhex(v.aad), Unhex(kPt));
    ASSERT_TRUE(ct.ok()) << ct.status().ToString();
    EXPECT_EQ(HexEncode(*ct), v.ct) << "seq " << v.seq;
    EXPECT_EQ(s->context.seq, v.seq + 1);
  }
}

TEST(HpkeVectors, DecryptionsMatchRfc) {
  auto ctx = internal::SetupBaseR(Unhex(kEnc), Unhex(kSkRm), Unhex(kInfo));
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  for (const auto& v : kEncryptions) {
    ctx->seq = v.seq;
    auto pt = internal::ContextOpen(*ctx, Unhex(v.aad), Unhex(v.ct));
    ASSERT_TRUE(pt.ok()) << "seq " << v.seq << ": " << pt.status().ToString();
    EXPECT_EQ(HexEncode(*pt), kPt);
  }
}

TEST(HpkeVectors, SingleShotMatchesRfc) {
  auto sealed = internal::SealWithEphemeral(Unhex(kPkRm), Unhex(kInfo), Unhex(kEncryptions[0].aad),
                                            Unhex(kPt), VectorEphemeral());
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(HexEncode(sealed->enc), kEnc);
  EXPECT_EQ(HexEncode(sealed->ct), kEncryptions[0].ct);
  auto pt = Open(Unhex(kSkRm), Unhex(kEnc), Unhex(kInfo), Unhex(kEncryptions[0].aad),
                 Unhex(kEncryptions[0].ct));
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_EQ(HexEncode(*pt), kPt);
}

class HpkeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kp = GenerateKeyPair();
    ASSERT_TRUE(kp.ok()) << kp.status().ToString();
    recipient_ = *kp;
  }
  KeyPair recipient_;
};

TEST_F(HpkeTest, GeneratedKeysAreConsistent) {
  EXPECT_EQ(recipient_.private_key.size(), kPrivateKeySize);
  EXPECT_EQ(recipient_.public_key.size(), kPublicKeySize);
  auto pk = PublicKeyOf(recipient_.private_key);
  ASSERT_TRUE(pk.ok());
  EXPECT_EQ(*pk, recipient_.public_key);
  auto other = GenerateKeyPair();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->private_key, recipient_.private_key);
}

TEST_F(HpkeTest, RoundTrip) {
  for (std::string pt : {std::string(), std::string("hello"), std::string(5000, 'x')}) {
    auto sealed = Seal(recipient_.public_key, "info", "aad", pt);
    ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
    EXPECT_EQ(sealed->enc.size(), kEncSize);
    EXPECT_EQ(sealed->ct.size(), pt.size() + kTagSize);
    auto opened = Open(recipient_.private_key, sealed->enc, "info", "aad", sealed->ct);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(*opened, pt);
  }
}

TEST_F(HpkeTest, FreshEphemeralEachTime) {
  auto a = Seal(recipient_.public_key, "info", "", "same");
  auto b = Seal(recipient_.public_key, "info", "", "same");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->enc, b->enc);
  EXPECT_NE(a->ct, b->ct);
}

TEST_F(HpkeTest, TamperedMessageFails) {
  auto sealed = Seal(recipient_.public_key, "info", "aad", "secret payload");
  ASSERT_TRUE(sealed.ok());
  std::string ct = sealed->ct;
  ct.back() ^= 0x01;  // in the tag
  auto r = Open(recipient_.private_key, sealed->enc, "info", "aad", ct);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidField);
  ct = sealed->ct;
  ct.front() ^= 0x01;  // in the body
  EXPECT_FALSE(Open(recipient_.private_key, sealed->enc, "info", "aad", ct).ok());
  std::string enc = sealed->enc;
  enc[3] ^= 0x01;
  EXPECT_FALSE(Open(recipient_.private_key, enc, "info", "aad", sealed->ct).ok());
}

TEST_F(HpkeTest, WrongInfoAadOrKeyFails) {
  auto sealed = Seal(recipient_.public_key, "info", "aad", "secret payload");
  ASSERT_TRUE(sealed.ok());
  EXPECT_FALSE(Open(recipient_.private_key, sealed->enc, "other", "aad", sealed->ct).ok());
  EXPECT_FALSE(Open(recipient_.private_key, sealed->enc, "info", "other", sealed->ct).ok());
  auto other = GenerateKeyPair();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(Open(other->private_key, sealed->enc, "info", "aad", sealed->ct).ok());
}

TEST_F(HpkeTest, WrongLengthsAreRejected) {
  auto r = Seal(recipient_.public_key.substr(1), "", "", "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidField);
  auto sealed = Seal(recipient_.public_key, "", "", "x");
  ASSERT_TRUE(sealed.ok());
  EXPECT_FALSE(Open(recipient_.private_key + "x", sealed->enc, "", "", sealed->ct).ok());
  EXPECT_FALSE(Open(recipient_.private_key, sealed->enc.substr(1), "", "", sealed->ct).ok());
  EXPECT_FALSE(Open(recipient_.private_key, sealed->enc, "", "", sealed->ct.substr(0, 15)).ok());
  EXPECT_FALSE(PublicKeyOf("short").ok());
  EXPECT_FALSE(DeriveKeyPair("short").ok());
}

TEST_F(HpkeTest, ZeroSharedSecretIsRejected) {
  // All zeros and 1 are points of small order: X25519 with them gives all zeros.
  std::string one(32, '\0');
  one[0] = 1;
  for (const std::string& bad : {std::string(32, '\0'), one}) {
    auto r = Seal(bad, "info", "", "x");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidField);
    auto o = Open(recipient_.private_key, bad, "info", "", std::string(32, 'c'));
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().code(), Code::kInvalidField);
  }
}

TEST_F(HpkeTest, ErrorsCarryNoKeyMaterial) {
  auto r = Seal(std::string(32, '\0'), "", "", "x");
  ASSERT_FALSE(r.ok());
  auto sealed = Seal(recipient_.public_key, "", "", "x");
  ASSERT_TRUE(sealed.ok());
  auto o = Open(recipient_.private_key, sealed->enc, "wrong", "", sealed->ct);
  ASSERT_FALSE(o.ok());
  for (const std::string& msg : {r.status().message(), o.status().message()}) {
    EXPECT_EQ(msg.find(HexEncode(recipient_.private_key)), std::string::npos);
    EXPECT_EQ(msg.find(Base64UrlEncode(recipient_.private_key)), std::string::npos);
    EXPECT_EQ(msg.find(Base64UrlEncode(sealed->enc)), std::string::npos);
  }
}

TEST_F(HpkeTest, SealedMessageRoundTrip) {
  auto msg = SealMessage(42, recipient_.public_key, R"({"phone":"+15550100"})");
  ASSERT_TRUE(msg.ok()) << msg.status().ToString();
  EXPECT_EQ(msg->find_first_of("+/="), std::string::npos);  // unpadded base64url
  auto parsed = ParseSealed(*msg);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->key_id, 42);
  EXPECT_EQ(HexEncode(parsed->hdr), "2a002000010003");
  EXPECT_EQ(parsed->enc.size(), kEncSize);
  auto pt = OpenMessage(*parsed, recipient_.private_key);
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_EQ(*pt, R"({"phone":"+15550100"})");
}

TEST_F(HpkeTest, SealedMessageUsesApiInfoAndEmptyAad) {
  auto msg = SealMessage(7, recipient_.public_key, "payload");
  ASSERT_TRUE(msg.ok());
  auto raw = Base64UrlDecode(*msg);
  ASSERT_TRUE(raw.has_value());
  std::string hdr = raw->substr(0, kHeaderSize);
  std::string info("meridian sealed v1");
  info.push_back('\0');
  info += hdr;
  auto pt = Open(recipient_.private_key, raw->substr(kHeaderSize, kEncSize), info, "",
                 raw->substr(kHeaderSize + kEncSize));
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_EQ(*pt, "payload");
}

TEST_F(HpkeTest, ChangedKeyIdDoesNotOpen) {
  auto msg = SealMessage(1, recipient_.public_key, "payload");
  ASSERT_TRUE(msg.ok());
  auto parsed = ParseSealed(*msg);
  ASSERT_TRUE(parsed.ok());
  parsed->hdr[0] = 2;
  parsed->key_id = 2;
  EXPECT_FALSE(OpenMessage(*parsed, recipient_.private_key).ok());
}

TEST_F(HpkeTest, ParseSealedRejectsBadFraming) {
  auto msg = SealMessage(1, recipient_.public_key, "payload");
  ASSERT_TRUE(msg.ok());
  auto raw = *Base64UrlDecode(*msg);

  auto expect_invalid = [](const std::string& bytes, std::string_view what) {
    auto r = ParseSealed(Base64UrlEncode(bytes));
    EXPECT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Code::kInvalidField) << what;
    return std::string(r.status().message());
  };
  expect_invalid("", "empty");
  expect_invalid(raw.substr(0, 5), "short header");
  expect_invalid(raw.substr(0, kHeaderSize + kEncSize + kTagSize - 1), "truncated");

  std::string bad = raw;
  bad[2] = 0x10;  // kem_id 0x0010, P-256
  EXPECT_NE(expect_invalid(bad, "kem").find("kem_id"), std::string::npos);
  bad = raw;
  bad[4] = 0x02;  // kdf_id 0x0002
  EXPECT_NE(expect_invalid(bad, "kdf").find("kdf_id"), std::string::npos);
  bad = raw;
  bad[6] = 0x01;  // aead_id 0x0001, AES-128-GCM
  EXPECT_NE(expect_invalid(bad, "aead").find("aead_id"), std::string::npos);

  EXPECT_FALSE(ParseSealed(*msg + "=").ok());     // padded
  EXPECT_FALSE(ParseSealed("ab+/" + *msg).ok());  // standard alphabet
  EXPECT_FALSE(ParseSealed("not base64!").ok());
}

TEST_F(HpkeTest, TruncatedSealedMessageDoesNotOpen) {
  auto msg = SealMessage(1, recipient_.public_key, "a longer payload to cut");
  ASSERT_TRUE(msg.ok());
  auto raw = *Base64UrlDecode(*msg);
  auto parsed = ParseSealed(Base64UrlEncode(raw.substr(0, raw.size() - 1)));
  ASSERT_TRUE(parsed.ok());  // still long enough to frame
  auto pt = OpenMessage(*parsed, recipient_.private_key);
  ASSERT_FALSE(pt.ok());
  EXPECT_EQ(pt.status().code(), Code::kInvalidField);
}

TEST_F(HpkeTest, SizeLimit) {
  auto big = SealMessage(1, recipient_.public_key, std::string(60 * 1024, 'x'));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Code::kTooLarge);
  auto r = ParseSealed(std::string(kMaxSealedSize + 1, 'A'));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  // The largest plaintext that fits still round-trips.
  const size_t max_raw = kMaxSealedSize / 4 * 3;
  auto fits = SealMessage(1, recipient_.public_key,
                          std::string(max_raw - kHeaderSize - kEncSize - kTagSize, 'x'));
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_LE(fits->size(), kMaxSealedSize);
  auto parsed = ParseSealed(*fits);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(OpenMessage(*parsed, recipient_.private_key).ok());
}

}  // namespace
}  // namespace meridian::crypto::hpke
