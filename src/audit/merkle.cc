#include "audit/merkle.h"

#include <bit>

#include "crypto/crypto.h"

namespace meridian::audit {
namespace {
// The largest power of two smaller than n (n > 1).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

Result<std::vector<Hash>> Path(uint64_t m, uint64_t start, uint64_t end, const SubtreeFn& sub) {
  std::vector<Hash> proof;
  // Iterative form of PATH(m, D[start:end]): collect siblings from the top, then reverse.
  std::vector<Hash> top_down;
  while (end - start > 1) {
    uint64_t k = SplitPoint(end - start);
    if (m < k) {
      ASSIGN_OR_RETURN(auto h, RangeHash(start + k, end, sub));
      top_down.push_back(std::move(h));
      end = start + k;
    } else {
      ASSIGN_OR_RETURN(auto h, RangeHash(start, start + k, sub));
      top_down.push_back(std::move(h));
      m -= k;
      start += k;
    }
  }
  proof.assign(top_down.rbegin(), top_down.rend());
  return proof;
}

Status SubProof(uint64_t m, uint64_t start, uint64_t end, bool b, const SubtreeFn& sub,
                std::vector<Hash>* top_down) {
  const uint64_t n = end - start;
  if (m == n) {
    if (!b) {
      ASSIGN_OR_RETURN(auto h, RangeHash(start, end, sub));
      top_down->push_back(std::move(h));
    }
    return Status::Ok();
  }
  uint64_t k = SplitPoint(n);
  if (m <= k) {
    ASSIGN_OR_RETURN(auto h, RangeHash(start + k, end, sub));
    top_down->push_back(std::move(h));
    return SubProof(m, start, start + k, b, sub, top_down);
  }
  ASSIGN_OR_RETURN(auto h, RangeHash(start, start + k, sub));
  top_down->push_back(std::move(h));
  return SubProof(m - k, start + k, end, false, sub, top_down);
}
}  // namespace

// RFC 6962's domain separation: 0x00 before a leaf, 0x01 before two child hashes.
Hash LeafHash(std::string_view leaf) { return crypto::Sha256({std::string_view("\x00", 1), leaf}); }
Hash NodeHash(std::string_view l, std::string_view r) { return crypto::Sha256({"\x01", l, r}); }
Hash EmptyRoot() { return crypto::Sha256({}); }

Result<Hash> RangeHash(uint64_t start, uint64_t end, const SubtreeFn& subtree) {
  const uint64_t n = end - start;
  if (n == 0) return EmptyRoot();
  if (std::has_single_bit(n) && start % n == 0) {
    return subtree(std::countr_zero(n), start / n);
  }
  uint64_t k = SplitPoint(n);
  ASSIGN_OR_RETURN(auto l, RangeHash(start, start + k, subtree));
  ASSIGN_OR_RETURN(auto r, RangeHash(start + k, end, subtree));
  return NodeHash(l, r);
}

Result<Hash> RootHash(uint64_t size, const SubtreeFn& subtree) {
  return RangeHash(0, size, subtree);
}

Result<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t size, const SubtreeFn& subtree) {
  if (index >= size) return Error(Code::kInvalidField, "index must be below size");
  return Path(index, 0, size, subtree);
}

Result<std::vector<Hash>> ConsistencyProof(uint64_t first, uint64_t second,
                                           const SubtreeFn& subtree) {
  if (first > second) return Error(Code::kInvalidField, "first must not exceed second");
  if (first == 0 || first == second) return std::vector<Hash>();
  std::vector<Hash> top_down;
  RETURN_IF_ERROR(SubProof(first, 0, second, true, subtree, &top_down));
  return std::vector<Hash>(top_down.rbegin(), top_down.rend());
}

bool VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                     const std::vector<Hash>& proof, const Hash& root) {
  if (index >= size) return false;
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf_hash;
  for (const auto& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool VerifyConsistency(uint64_t first, uint64_t second, const Hash& first_root,
                       const Hash& second_root, const std::vector<Hash>& proof) {
  if (first > second) return false;
  if (first == second) return proof.empty() && first_root == second_root;
  if (first == 0) return proof.empty();
  if (proof.empty()) return false;
  std::vector<Hash> path = proof;
  if (std::has_single_bit(first)) path.insert(path.begin(), first_root);
  uint64_t fn = first - 1, sn = second - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && fr == first_root && sr == second_root;
}

void MemoryTree::Append(const Hash& leaf_hash) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf_hash);
  uint64_t idx = levels_[0].size() - 1;
  for (size_t level = 0; idx & 1; ++level, idx >>= 1) {
    if (levels_.size() <= level + 1) levels_.emplace_back();
    const auto& row = levels_[level];
    levels_[level + 1].push_back(NodeHash(row[idx - 1], row[idx]));
  }
}

SubtreeFn MemoryTree::Subtrees() const {
  return [this](int level, uint64_t index) -> Result<Hash> {
    if (static_cast<size_t>(level) >= levels_.size() || index >= levels_[level].size()) {
      return Error(Code::kInternal, "subtree not in the tree");
    }
    return levels_[level][index];
  };
}

Hash MemoryTree::Root() const { return *RootHash(size(), Subtrees()); }

}  // namespace meridian::audit
