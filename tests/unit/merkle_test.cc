// RFC 6962 Merkle trees: the reference vectors of the certificate-transparency test suite,
// and generated proofs checked for every index and size pair up to 64 leaves.
#include <gtest/gtest.h>

#include "audit/merkle.h"
#include "common/encoding.h"

namespace meridian::audit {
namespace {

const std::vector<std::string> kLeaves = {
    "",
    std::string("\x00", 1),
    "\x10",
    "\x20\x21",
    "\x30\x31",
    "\x40\x41\x42\x43",
    "\x50\x51\x52\x53\x54\x55\x56\x57",
    "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
const std::vector<std::string> kRoots = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

MemoryTree Tree(size_t n) {
  MemoryTree t;
  for (size_t i = 0; i < n; ++i)
    t.Append(LeafHash(kLeaves[i % kLeaves.size()] + std::to_string(i / kLeaves.size())));
  return t;
}

MemoryTree ReferenceTree(size_t n) {
  MemoryTree t;
  for (size_t i = 0; i < n; ++i) t.Append(LeafHash(kLeaves[i]));
  return t;
}

std::vector<std::string> Hex(const std::vector<Hash>& v) {
  std::vector<std::string> out;
  for (const auto& h : v) out.push_back(HexEncode(h));
  return out;
}

TEST(MerkleTest, ReferenceRoots) {
  EXPECT_EQ(HexEncode(EmptyRoot()), kRoots[0]);
  for (size_t n = 0; n <= 8; ++n) {
    EXPECT_EQ(HexEncode(ReferenceTree(n).Root()), kRoots[n]) << n;
  }
}

TEST(MerkleTest, ReferenceProofs) {
  auto t = ReferenceTree(8);
  EXPECT_EQ(Hex(*InclusionProof(0, 8, t.Subtrees())),
            (std::vector<std::string>{
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}));
  EXPECT_EQ(Hex(*InclusionProof(5, 8, t.Subtrees())),
            (std::vector<std::string>{
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}));
  EXPECT_EQ(Hex(*ConsistencyProof(1, 8, t.Subtrees())),
            (std::vector<std::string>{
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}));
  EXPECT_EQ(Hex(*ConsistencyProof(6, 8, t.Subtrees())),
            (std::vector<std::string>{
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}));
  EXPECT_EQ(Hex(*ConsistencyProof(2, 5, ReferenceTree(5).Subtrees())),
            (std::vector<std::string>{
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}));
}

TEST(MerkleTest, EveryInclusionAndConsistencyProofUpTo64Leaves) {
  auto full = Tree(64);
  std::vector<Hash> roots = {EmptyRoot()};
  {
    MemoryTree t;
    for (size_t n = 1; n <= 64; ++n) {
      t.Append(
          LeafHash(kLeaves[(n - 1) % kLeaves.size()] + std::to_string((n - 1) / kLeaves.size())));
      roots.push_back(t.Root());
    }
  }
  for (uint64_t size = 1; size <= 64; ++size) {
    for (uint64_t i = 0; i < size; ++i) {
      auto proof = InclusionProof(i, size, full.Subtrees());
      ASSERT_TRUE(proof.ok());
      Hash leaf = LeafHash(kLeaves[i % kLeaves.size()] + std::to_string(i / kLeaves.size()));
      ASSERT_TRUE(VerifyInclusion(i, size, leaf, *proof, roots[size])) << i << "/" << size;
      EXPECT_FALSE(VerifyInclusion(i, size, LeafHash("other"), *proof, roots[size]));
      if (size > 1) {
        EXPECT_FALSE(VerifyInclusion((i + 1) % size, size, leaf, *proof, roots[size]));
      }
    }
    for (uint64_t first = 1; first <= size; ++first) {
      auto proof = ConsistencyProof(first, size, full.Subtrees());
      ASSERT_TRUE(proof.ok());
      ASSERT_TRUE(VerifyConsistency(first, size, roots[first], roots[size], *proof))
          << first << "->" << size;
      if (first < size) {
        EXPECT_FALSE(VerifyConsistency(first, size, roots[first], roots[size - 1], *proof));
        auto tampered = *proof;
        tampered.back()[0] ^= 1;
        EXPECT_FALSE(VerifyConsistency(first, size, roots[first], roots[size], tampered));
      }
    }
  }
  EXPECT_FALSE(InclusionProof(5, 5, full.Subtrees()).ok());
  EXPECT_FALSE(ConsistencyProof(6, 5, full.Subtrees()).ok());
}

}  // namespace
}  // namespace meridian::audit
