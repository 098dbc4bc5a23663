// RFC 6962 / RFC 9162 Merkle tree hashing and proofs, over any source of leaf hashes.
// Pure functions: the log (log.h) stores subtree hashes; an auditor recomputes from leaves.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace meridian::audit {

using Hash = std::string;  // 32 bytes

Hash LeafHash(std::string_view leaf);                   // SHA-256(0x00 || leaf)
Hash NodeHash(std::string_view l, std::string_view r);  // SHA-256(0x01 || l || r)
Hash EmptyRoot();                                       // SHA-256("")

// The hash of the complete subtree of 2^level leaves starting at leaf index << level.
// Only asked for subtrees that lie entirely within the tree.
using SubtreeFn = std::function<Result<Hash>(int level, uint64_t index)>;

// MTH(D[start:end]) from stored complete subtrees: O(log n) lookups.
Result<Hash> RangeHash(uint64_t start, uint64_t end, const SubtreeFn& subtree);
Result<Hash> RootHash(uint64_t size, const SubtreeFn& subtree);

// RFC 9162 section 2.1.3: inclusion proof of leaf `index` in the tree of `size` leaves.
Result<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t size, const SubtreeFn& subtree);
// RFC 9162 section 2.1.4: consistency proof between sizes `first` <= `second`.
Result<std::vector<Hash>> ConsistencyProof(uint64_t first, uint64_t second,
                                           const SubtreeFn& subtree);

// Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2).
bool VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                     const std::vector<Hash>& proof, const Hash& root);
bool VerifyConsistency(uint64_t first, uint64_t second, const Hash& first_root,
                       const Hash& second_root, const std::vector<Hash>& proof);

// A tree held in memory (for auditors, tests and the verifier): leaf hashes in order.
class MemoryTree {
 public:
  void Append(const Hash& leaf_hash);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  SubtreeFn Subtrees() const;
  Hash Root() const;

 private:
  std::vector<std::vector<Hash>> levels_;  // levels_[l][i]: complete subtree hashes
};

}  // namespace meridian::audit
