#include <gtest/gtest.h>

#include <thread>

#include <vector>

#include "common/encoding.h"
#include "crypto/crypto.h"

namespace meridian::crypto {
namespace {

class CryptoTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Init().ok()); }
  const std::string key_ = std::string(32, 'k');
};

TEST_F(CryptoTest, HmacSha256MatchesRfc4231Case2) {
  auto mac = HmacSha256("Jefe", "what do ya want for nothing?");
  EXPECT_EQ(HexEncode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// Keys longer than SHA-256's block are hashed first (RFC 4231 case 6); the empty key works;
// and a thread's keyed contexts (eight at most, the oldest evicted) never mix keys up.
TEST_F(CryptoTest, HmacSha256LongEmptyAndManyKeys) {
  EXPECT_EQ(HexEncode(HmacSha256(std::string(131, '\xaa'),
                                 "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(HexEncode(HmacSha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  std::vector<std::string> first;
  for (int i = 0; i < 20; ++i) first.push_back(HmacSha256(std::string(32, char('a' + i)), "m"));
  for (int round = 0; round < 3; ++round) {
    for (int i = 19; i >= 0; --i) {
      EXPECT_EQ(HmacSha256(std::string(32, char('a' + i)), "m"), first[i]) << i;
    }
  }
  for (int i = 1; i < 20; ++i) EXPECT_NE(first[i], first[i - 1]);
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// Word-at-a-time comparison: every length around the 8-byte steps, a difference in any one
// byte (in the words and in the tail) and a length difference are each unequal.
TEST_F(CryptoTest, ConstantTimeEqualsFindsADifferenceInAnyByte) {
  for (size_t n = 0; n <= 41; ++n) {
    std::string a;
    for (size_t i = 0; i < n; ++i) a.push_back(static_cast<char>('a' + i % 26));
    const std::string same = a;
    EXPECT_TRUE(ConstantTimeEquals(a, same)) << n;
    for (size_t i = 0; i < n; ++i) {
      for (unsigned char bit : {0x01, 0x80}) {
        std::string b = a;
        b[i] = static_cast<char>(static_cast<unsigned char>(b[i]) ^ bit);
        EXPECT_FALSE(ConstantTimeEquals(a, b)) << n << " " << i;
        EXPECT_FALSE(ConstantTimeEquals(b, a)) << n << " " << i;
      }
    }
    EXPECT_FALSE(ConstantTimeEquals(a, a + "x")) << n;
    if (n > 0) {
      EXPECT_FALSE(ConstantTimeEquals(a, a.substr(0, n - 1))) << n;
    }
  }
  // Bytes with the high bit set and embedded zeros compare as bytes.
  EXPECT_TRUE(ConstantTimeEquals(std::string("\x00\xff\x80z", 4), std::string("\x00\xff\x80z", 4)));
  EXPECT_FALSE(
      ConstantTimeEquals(std::string("\x00\xff\x80z", 4), std::string("\x00\xff\x81z", 4)));
}

TEST_F(CryptoTest, PseudonymIsKeyedAndPerPurpose) {
  auto a = Pseudonym(key_, "phone", "+919876543210");
  EXPECT_EQ(a, Pseudonym(key_, "phone", "+919876543210"));
  EXPECT_NE(a, Pseudonym(std::string(32, 'j'), "phone", "+919876543210"));
  EXPECT_NE(a, Pseudonym(key_, "device", "+919876543210"));
  EXPECT_EQ(a.find("919876543210"), std::string::npos);
}

TEST_F(CryptoTest, TokenRoundTrip) {
  TokenClaims c{"u_1", "singapore", 3, 10'000};
  auto t = IssueToken(c, key_);
  auto v = VerifyToken(t, key_, 9'999);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->user_id, "u_1");
  EXPECT_EQ(v->region, "singapore");
  EXPECT_EQ(v->epoch, 3);
  EXPECT_EQ(PeekToken(t)->region, "singapore");
}

TEST_F(CryptoTest, ExpiredTokenIsRefused) {
  auto t = IssueToken({"u_1", "oregon", 1, 10'000}, key_);
  EXPECT_EQ(VerifyToken(t, key_, 10'000).status().code(), Code::kUnauthenticated);
}

TEST_F(CryptoTest, TamperedTokenIsRefused) {
  auto t = IssueToken({"u_1", "oregon", 1, 10'000}, key_);
  // Change the payload to another user, keeping the MAC.
  auto forged_payload = Base64UrlEncode("u_2\noregon\n1\n10000");
  std::string forged = "mt1." + forged_payload + t.substr(t.rfind('.'));
  EXPECT_EQ(VerifyToken(forged, key_, 0).status().code(), Code::kUnauthenticated);
  // Flip one character of the MAC.
  std::string flipped = t;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(VerifyToken(flipped, key_, 0).status().code(), Code::kUnauthenticated);
  // Another region's key.
  EXPECT_EQ(VerifyToken(t, std::string(32, 'x'), 0).status().code(), Code::kUnauthenticated);
  for (const char* junk : {"", "mt1.", "mt1.a.b.c", "Bearer", "mt2.abc.def"}) {
    EXPECT_FALSE(VerifyToken(junk, key_, 0).ok()) << junk;
  }
}

TEST_F(CryptoTest, AVerifiedTokenIsStillCheckedForExpiryKeyAndEveryByte) {
  // A token verified once is remembered by the thread: the memory must not let through
  // what the full check refuses.
  const std::string other_key(32, 'x');
  auto t = IssueToken({"u_1", "oregon", 1, 10'000}, key_);
  ASSERT_TRUE(VerifyToken(t, key_, 5'000).ok());
  ASSERT_TRUE(VerifyToken(t, key_, 5'000).ok());
  EXPECT_EQ(VerifyToken(t, key_, 10'000).status().code(), Code::kUnauthenticated);  // expired
  EXPECT_EQ(VerifyToken(t, other_key, 5'000).status().code(), Code::kUnauthenticated);
  std::string flipped = t;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(VerifyToken(flipped, key_, 5'000).status().code(), Code::kUnauthenticated);
  EXPECT_EQ(VerifyToken(t.substr(0, t.size() - 1), key_, 5'000).status().code(),
            Code::kUnauthenticated);
  // The one-lookup form knows only tokens verified here, under that key, not yet expired.
  auto t2 = IssueToken({"u_3", "oregon", 1, 10'000}, key_);
  EXPECT_EQ(RecentlyVerified(t2, key_, 5'000), nullptr);
  EXPECT_EQ(PeekToken(t2)->user_id, "u_3");
  EXPECT_EQ(RecentlyVerified(t2, key_, 5'000), nullptr);  // peeking verifies nothing
  ASSERT_TRUE(VerifyToken(t2, key_, 5'000).ok());
  const TokenClaims* known = RecentlyVerified(t2, key_, 5'000);
  ASSERT_NE(known, nullptr);
  EXPECT_EQ(known->user_id, "u_3");
  EXPECT_EQ(known->region, "oregon");
  EXPECT_EQ(RecentlyVerified(t2, key_, 10'000), nullptr);
  EXPECT_EQ(RecentlyVerified(t2, other_key, 5'000), nullptr);
  std::string flipped2 = t2;
  flipped2.back() = flipped2.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(RecentlyVerified(flipped2, key_, 5'000), nullptr);
  // More tokens than the memory holds: every one still verifies, and the first one too.
  for (int i = 0; i < 5'000; ++i) {
    auto ti = IssueToken({"u_" + std::to_string(i), "oregon", 1, 10'000}, key_);
    ASSERT_TRUE(VerifyToken(ti, key_, 5'000).ok());
  }
  auto again = VerifyToken(t, key_, 5'000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->user_id, "u_1");
  // Tokens under several keys (a rotation, or more keys than the memory keeps): each is
  // accepted under its own key only.
  std::vector<std::pair<std::string, std::string>> keyed;
  for (char c = 'a'; c < 'g'; ++c) {
    const std::string k(32, c);
    keyed.emplace_back(k, IssueToken({std::string("k_") + c, "oregon", 1, 10'000}, k));
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < keyed.size(); ++i) {
      const auto& [k, tok] = keyed[i];
      EXPECT_TRUE(VerifyToken(tok, k, 5'000).ok()) << i;
      EXPECT_FALSE(VerifyToken(tok, keyed[(i + 1) % keyed.size()].first, 5'000).ok()) << i;
    }
  }
  // Another thread has its own memory and checks from scratch.
  std::thread([&] {
    EXPECT_EQ(VerifyToken(t, other_key, 5'000).status().code(), Code::kUnauthenticated);
    EXPECT_TRUE(VerifyToken(t, key_, 5'000).ok());
  }).join();
}

TEST_F(CryptoTest, PasswordHashVerifies) {
  auto h = HashPassword("correct horse battery", /*dev_fast=*/true);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(VerifyPassword(*h, "correct horse battery"));
  EXPECT_FALSE(VerifyPassword(*h, "correct horse batterY"));
}

TEST_F(CryptoTest, PreparedAesGcmKeyMatchesTheOneShotFunctions) {
  const std::string key(32, 'K');
  const std::string nonce(kGcmNonceSize, 'n');
  AesGcmKey prepared(key);
  auto a = prepared.Seal(nonce, "aad", "plaintext bytes");
  auto b = AesGcmSeal(key, nonce, "aad", "plaintext bytes");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(*AesGcmOpen(key, nonce, "aad", *a), "plaintext bytes");
  EXPECT_EQ(*prepared.Open(nonce, "aad", *b), "plaintext bytes");
  EXPECT_EQ(prepared.Open(nonce, "other", *b).status().code(), Code::kIntegrityError);
  std::string flipped = *b;
  flipped[0] ^= 1;
  EXPECT_EQ(prepared.Open(nonce, "aad", flipped).status().code(), Code::kIntegrityError);
}

TEST_F(CryptoTest, DevCaIssuesNodeCertificates) {
  auto ca = GenerateCa("test CA");
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  auto node = IssueNodeCert(*ca, "oregon", "127.0.0.1");
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_NE(node->cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(node->key_pem.find("PRIVATE KEY"), std::string::npos);
}

}  // namespace
}  // namespace meridian::crypto
