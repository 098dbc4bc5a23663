// `meridian audit verify` and `meridian audit prove`: an auditor's and a user's checks of a
// region's log, from outside the cluster, with nothing but the published keys.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <fmt/format.h>

#include "audit/log.h"
#include "audit/merkle.h"
#include "common/encoding.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "sdk/client.h"
#include "tools/admin_client.h"
#include "tools/tools.h"

namespace meridian::tools {
namespace {

// A check that failed (exit 1), as opposed to a usage or connection problem (exit 2).
Status Bad(std::string message) { return Error(Code::kIntegrityError, std::move(message)); }
Status Usage(std::string message) { return Error(Code::kInvalidField, std::move(message)); }

int Fail(std::string_view command, const Status& st) {
  std::fprintf(stderr, "meridian audit %.*s: %s\n", static_cast<int>(command.size()),
               command.data(), st.message().c_str());
  return st.code() == Code::kIntegrityError ? 1 : 2;
}

// GET `target`; an answer other than 200 is an error quoting the server's message.
Result<std::string> Get(sdk::Client& c, const std::string& target) {
  ASSIGN_OR_RETURN(auto r, c.Call("GET", target));
  if (r.status == 200) return std::move(r.body);
  auto j = ParseJsonObject(r.body);
  const std::string code = j.ok() ? j->value("error", "") : "";
  std::string msg =
      fmt::format("GET {} answered HTTP {} {}: {}", target.substr(0, target.find('?')), r.status,
                  code, ErrorMessageOf(r));
  // The server itself found its log damaged: that is a failed check, not a transport error.
  return code == "integrity_error" ? Bad(std::move(msg)) : Error(Code::kUnavailable, msg);
}

Result<Json> GetJson(sdk::Client& c, const std::string& target) {
  ASSIGN_OR_RETURN(auto body, Get(c, target));
  auto j = ParseJsonObject(body);
  if (!j.ok()) return Bad("GET " + target.substr(0, target.find('?')) + " is not a JSON object");
  return j;
}

// The "hashes" of an RFC 9162 proof answer (or of a proof in a residency report).
Result<std::vector<audit::Hash>> HashesOf(const Json& proof) {
  const Json hashes = proof.value("hashes", Json());
  if (!hashes.is_array()) return Bad("a proof has no \"hashes\" list");
  std::vector<audit::Hash> out;
  for (const auto& h : hashes) {
    auto raw = h.is_string() ? Base64Decode(h.get<std::string>()) : std::nullopt;
    if (!raw || raw->size() != 32) return Bad("a proof hash is not 32 bytes of base64");
    out.push_back(std::move(*raw));
  }
  return out;
}

// Note verifier keys by signer name ("meridian/<region>") from a GET /v1/regions answer.
std::map<std::string, std::string> VerifierKeys(const Json& regions_doc) {
  std::map<std::string, std::string> keys;
  const Json regions =
      regions_doc.is_object() ? regions_doc.value("regions", Json::array()) : Json::array();
  if (!regions.is_array()) return keys;
  for (const auto& r : regions) {
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string()) continue;
    if (!r.contains("audit_verifier_key") || !r["audit_verifier_key"].is_string()) continue;
    keys["meridian/" + r["name"].get<std::string>()] = r["audit_verifier_key"].get<std::string>();
  }
  return keys;
}

// Verifies every signature line of `note` on its own under the key of the signer it names:
// the log's own and each witness's cosignature. Returns the cosigners' names.
Result<std::vector<std::string>> VerifySigners(std::string_view note, const std::string& origin,
                                               const std::map<std::string, std::string>& keys) {
  constexpr std::string_view kDash = "\xE2\x80\x94 ";  // U+2014 and a space
  const std::string_view text = audit::NoteText(note);
  std::string_view sigs = note.substr(std::min(note.size(), text.size() + 1));
  std::vector<std::string> cosigners;
  while (!sigs.empty()) {
    const size_t nl = sigs.find('\n');
    const std::string_view line = sigs.substr(0, nl);
    sigs = nl == std::string_view::npos ? std::string_view() : sigs.substr(nl + 1);
    if (line.empty()) continue;
    const size_t name_end = line.rfind(' ');
    if (line.substr(0, kDash.size()) != kDash || name_end <= kDash.size()) {
      return Bad("the tree head has a malformed signature line");
    }
    const std::string name(line.substr(kDash.size(), name_end - kDash.size()));
    const std::string who = name == origin ? "signature" : "cosignature";
    auto key = keys.find(name);
    if (key == keys.end()) {
      return Bad(fmt::format("{} by {}: unknown signer (no audit_verifier_key in /v1/regions)", who,
                             name));
    }
    std::string alone = std::string(text) + "\n" + std::string(line) + "\n";
    if (!audit::VerifyCheckpoint(alone, key->second).ok()) {
      return Bad(fmt::format("{} by {} does not verify", who, name));
    }
    if (name != origin) cosigners.push_back(name);
  }
  return cosigners;
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

// The first leaf of `tree` the server's signed tree (`size`, `root`) does not hold, found by
// bisection over prefixes: the prefix [0, m) of good leaves is consistent with the signed
// root, one that includes a bad leaf is not. The leaf found is then checked on its own.
Result<std::string> FirstBadEntry(sdk::Client& c, const audit::MemoryTree& tree, uint64_t size,
                                  const audit::Hash& root) {
  const auto subtrees = tree.Subtrees();
  auto prefix_ok = [&](uint64_t m) -> Result<bool> {
    ASSIGN_OR_RETURN(auto prefix_root, audit::RootHash(m, subtrees));
    ASSIGN_OR_RETURN(auto proof, GetJson(c, fmt::format("/v1/admin/audit/proof/consistency"
                                                        "?first={}&second={}",
                                                        m, size)));
    ASSIGN_OR_RETURN(auto path, HashesOf(proof));
    return audit::VerifyConsistency(m, size, prefix_root, root, path);
  };
  uint64_t good = 0, bad = size;  // prefix [0, good) holds, [0, bad) does not
  while (bad - good > 1) {
    const uint64_t mid = good + (bad - good) / 2;
    ASSIGN_OR_RETURN(bool ok, prefix_ok(mid));
    (ok ? good : bad) = mid;
  }
  const uint64_t index = good;
  ASSIGN_OR_RETURN(auto leaf_hash, subtrees(0, index));
  ASSIGN_OR_RETURN(auto proof, GetJson(c, fmt::format("/v1/admin/audit/proof/inclusion"
                                                      "?index={}&size={}",
                                                      index, size)));
  ASSIGN_OR_RETURN(auto path, HashesOf(proof));
  if (!audit::VerifyInclusion(index, size, leaf_hash, path, root)) {
    return fmt::format(
        "first bad index {}: entry {} is not the leaf the signed tree head (size {}) holds "
        "(its inclusion proof fails against the signed root)",
        index, index, size);
  }
  return fmt::format(
      "first bad index {}: the entries do not recompute the signed root (size {}) from entry {} "
      "on",
      index, size, index);
}

// Checks the signed tree head `cp` of size `size` against a checkpoint saved earlier.
Status CheckTrusted(sdk::Client& c, const std::string& file, const std::string& key,
                    const audit::CheckpointBody& cp) {
  ASSIGN_OR_RETURN(auto note, ReadFile(file, "trusted checkpoint"));
  auto trusted = audit::VerifyCheckpoint(note, key);
  if (!trusted.ok()) {
    return Bad(
        fmt::format("trusted checkpoint {}: its signature does not verify under the key "
                    "of {} ({})",
                    file, cp.origin, trusted.status().message()));
  }
  if (trusted->origin != cp.origin) {
    // Another region's checkpoint can carry a valid cosignature of this region.
    return Bad(fmt::format("trusted checkpoint {} is the checkpoint of {}, not of {}", file,
                           trusted->origin, cp.origin));
  }
  const std::string prefix =
      fmt::format("the tree head (size {}) is not consistent with the trusted checkpoint (size {})",
                  cp.size, trusted->size);
  if (trusted->size > cp.size) return Bad(prefix + ": the log shrank");
  if (trusted->size == cp.size) {
    if (trusted->root != cp.root) return Bad(prefix + ": same size, different root (fork)");
    return Status::Ok();
  }
  if (trusted->size == 0) return Status::Ok();
  ASSIGN_OR_RETURN(auto proof, GetJson(c, fmt::format("/v1/admin/audit/proof/consistency"
                                                      "?first={}&second={}",
                                                      trusted->size, cp.size)));
  ASSIGN_OR_RETURN(auto path, HashesOf(proof));
  if (!audit::VerifyConsistency(trusted->size, cp.size, trusted->root, cp.root, path)) {
    return Bad(prefix + ": the consistency proof fails");
  }
  return Status::Ok();
}

Result<std::string> Verify(const AuditVerifyArgs& a) {
  ASSIGN_OR_RETURN(auto client, ConnectAdmin(a.url, a.ca_file, a.admin_token_file));
  sdk::Client& c = *client;
  const auto keys = VerifierKeys(c.regions());

  // Which region answers: its health names it, and its tree head must be that region's.
  ASSIGN_OR_RETURN(auto health, GetJson(c, "/v1/health"));
  const std::string region = health.value("region", "");
  ASSIGN_OR_RETURN(auto note, Get(c, "/v1/admin/audit/tree-head"));
  const std::string origin = "meridian/" + region;
  const std::string_view first_line = std::string_view(note).substr(0, note.find('\n'));
  if (first_line != origin) {
    return Bad(fmt::format("the node is region {} but its tree head's origin is \"{}\"", region,
                           first_line));
  }
  auto key = keys.find(origin);
  if (key == keys.end()) {
    return Bad(fmt::format("/v1/regions publishes no audit_verifier_key for region {}", region));
  }
  auto cp = audit::VerifyCheckpoint(note, key->second);
  if (!cp.ok()) {
    return Bad(fmt::format("tree head of {}: {}", origin, cp.status().message()));
  }
  ASSIGN_OR_RETURN(auto cosigners, VerifySigners(note, origin, keys));

  if (!a.trusted_file.empty()) RETURN_IF_ERROR(CheckTrusted(c, a.trusted_file, key->second, *cp));

  // Every entry, in pages of at most 1000 (the server's limit), recomputes the root.
  constexpr uint64_t kPage = 1000;
  audit::MemoryTree tree;
  while (tree.size() < cp->size) {
    const uint64_t start = tree.size();
    const uint64_t end = std::min(cp->size, start + kPage);
    ASSIGN_OR_RETURN(
        auto page, GetJson(c, fmt::format("/v1/admin/audit/entries?start={}&end={}", start, end)));
    const Json entries = page.value("entries", Json());
    if (!entries.is_array() || entries.empty()) {
      return Bad(fmt::format("entries from index {} are missing", start));
    }
    for (const auto& e : entries) {
      const uint64_t expected = tree.size();
      if (!e.is_object() || !e.contains("index") || !e["index"].is_number_unsigned() ||
          e["index"].get<uint64_t>() != expected) {
        return Bad(fmt::format("entry {} came with the wrong index", expected));
      }
      if (expected >= end) return Bad(fmt::format("entry {} was not asked for", expected));
      auto leaf = e.contains("leaf") && e["leaf"].is_string()
                      ? Base64Decode(e["leaf"].get<std::string>())
                      : std::nullopt;
      if (!leaf) return Bad(fmt::format("entry {} has no base64 leaf", expected));
      tree.Append(audit::LeafHash(*leaf));
    }
  }
  if (tree.Root() != cp->root) {
    ASSIGN_OR_RETURN(auto bad, FirstBadEntry(c, tree, cp->size, cp->root));
    return Bad(bad);
  }

  if (!a.save_file.empty()) {
    if (auto st = config::WriteFileAtomic(a.save_file, note); !st.ok()) {
      return Usage(fmt::format("cannot write {}: {}", a.save_file, st.message()));
    }
  }
  std::string out = fmt::format(
      "{}: log verified\n"
      "  size:       {}\n"
      "  root:       {}\n"
      "  entries:    all {} recompute the signed root\n"
      "  cosigned:   {}\n",
      origin, cp->size, Base64Encode(cp->root), cp->size, Join(cosigners));
  if (!a.trusted_file.empty()) {
    out += fmt::format("  trusted:    consistent with {}\n", a.trusted_file);
  }
  if (!a.save_file.empty()) out += fmt::format("  saved:      {}\n", a.save_file);
  return out;
}

// A residency report's inclusion proof: {"log_index", "hashes", and "leaf" (base64 of the
// entry's bytes) or "leaf_hash" (base64), optionally "tree_size"}.
Status CheckProof(const Json& proof, const audit::CheckpointBody& cp, uint64_t* index) {
  if (!proof.is_object()) return Bad("a proof is not a JSON object");
  const Json idx = proof.contains("log_index") ? proof["log_index"] : proof.value("index", Json());
  if (!idx.is_number_unsigned()) return Bad("a proof has no log_index");
  *index = idx.get<uint64_t>();
  const std::string name = fmt::format("proof for log index {}", *index);
  if (proof.contains("tree_size") &&
      (!proof["tree_size"].is_number_unsigned() || proof["tree_size"].get<uint64_t>() != cp.size)) {
    return Bad(
        fmt::format("{}: it is for another tree size than the tree head's ({})", name, cp.size));
  }
  std::optional<std::string> leaf_hash;
  if (proof.contains("leaf") && proof["leaf"].is_string()) {
    auto leaf = Base64Decode(proof["leaf"].get<std::string>());
    if (leaf) leaf_hash = audit::LeafHash(*leaf);
  } else if (proof.contains("leaf_hash") && proof["leaf_hash"].is_string()) {
    leaf_hash = Base64Decode(proof["leaf_hash"].get<std::string>());
  }
  if (!leaf_hash || leaf_hash->size() != 32) return Bad(name + ": no leaf or leaf_hash");
  auto path = HashesOf(proof);
  if (!path.ok()) return Bad(name + ": " + path.status().message());
  if (*index >= cp.size || !audit::VerifyInclusion(*index, cp.size, *leaf_hash, *path, cp.root)) {
    return Bad(fmt::format("{} does not verify against the tree head (size {})", name, cp.size));
  }
  return Status::Ok();
}

Result<std::string> Prove(const AuditProveArgs& a) {
  RETURN_IF_ERROR(crypto::Init());
  ASSIGN_OR_RETURN(auto text, ReadFile(a.report_file, "residency report"));
  auto report = ParseJsonObject(text);
  if (!report.ok()) return Usage(a.report_file + " is not a JSON object (GET /v1/me/residency)");
  const Json home_j = report->value("home_region", Json());
  const Json note_j = report->value("tree_head", Json());
  if (!home_j.is_string()) return Bad("the report names no home_region");
  if (!note_j.is_string()) return Bad("the report has no signed tree_head");
  const std::string home = home_j.get<std::string>();
  const std::string note = note_j.get<std::string>();
  const std::string origin = "meridian/" + home;

  std::map<std::string, std::string> keys;
  std::string key_source;
  if (!a.regions_file.empty()) {
    ASSIGN_OR_RETURN(auto regions_text, ReadFile(a.regions_file, "regions file"));
    auto regions = ParseJsonObject(regions_text);
    if (!regions.ok()) return Usage(a.regions_file + " is not a JSON object (GET /v1/regions)");
    keys = VerifierKeys(*regions);
    key_source = a.regions_file;
    if (!keys.count(origin)) {
      return Bad(fmt::format("{} has no audit_verifier_key for {}", a.regions_file, home));
    }
  } else {
    const Json k = report->value("audit_verifier_key", Json());
    if (!k.is_string()) {
      return Usage("the report carries no audit_verifier_key: pass --regions (GET /v1/regions)");
    }
    keys[origin] = k.get<std::string>();
    key_source = "the report itself (pass --regions to check it independently)";
  }

  auto cp = audit::VerifyCheckpoint(note, keys[origin]);
  if (!cp.ok()) {
    return Bad(fmt::format("tree head: the signature of {} does not verify ({})", origin,
                           cp.status().message()));
  }
  if (cp->origin != origin) {
    return Bad(fmt::format("tree head is for \"{}\", not the home region {}", cp->origin, home));
  }
  std::string cosigned = "not checked (no --regions)";
  if (!a.regions_file.empty()) {
    ASSIGN_OR_RETURN(auto cosigners, VerifySigners(note, origin, keys));
    cosigned = Join(cosigners);
  }

  std::map<uint64_t, bool> proven;
  const Json proofs = report->value("proofs", Json::array());
  if (!proofs.is_array()) return Bad("the report's proofs are not a list");
  for (const auto& p : proofs) {
    uint64_t index = 0;
    RETURN_IF_ERROR(CheckProof(p, *cp, &index));
    proven[index] = true;
  }
  const Json transfers = report->value("transfers", Json::array());
  if (!transfers.is_array()) return Bad("the report's transfers are not a list");
  size_t n = 0;
  for (const auto& t : transfers) {
    const Json idx = t.is_object() ? t.value("log_index", Json()) : Json();
    if (!idx.is_number_unsigned()) return Bad(fmt::format("transfer {} has no log_index", n));
    if (!proven.count(idx.get<uint64_t>())) {
      return Bad(
          fmt::format("transfer {} (log index {}) has no inclusion proof", n, idx.get<uint64_t>()));
    }
    ++n;
  }
  return fmt::format(
      "{}: tree head verified\n"
      "  size:       {}\n"
      "  root:       {}\n"
      "  key from:   {}\n"
      "  cosigned:   {}\n"
      "{} {}{}\n",
      origin, cp->size, Base64Encode(cp->root), key_source, cosigned, n,
      n == 1 ? "transfer" : "transfers", n > 0 ? ", each included in the signed log" : "");
}

}  // namespace

int AuditVerify(const AuditVerifyArgs& a) {
  auto out = Verify(a);
  if (!out.ok()) return Fail("verify", out.status());
  std::fputs(out->c_str(), stdout);
  return 0;
}

int AuditProve(const AuditProveArgs& a) {
  auto out = Prove(a);
  if (!out.ok()) return Fail("prove", out.status());
  std::fputs(out->c_str(), stdout);
  return 0;
}

}  // namespace meridian::tools
