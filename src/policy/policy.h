// The residency policy: which region is home for each country, which regions are edges,
// and which data classes each role may hold. Parsed from versioned TOML and validated
// against ISO 3166-1 and the cluster's regions.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace meridian::policy {

enum class Role { kHome, kEdge };
std::string_view RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);

enum class DataClass { kIdentity, kDevice, kContent, kCommerce, kPseudonym, kPublic };
std::string_view DataClassName(DataClass c);
std::optional<DataClass> ParseDataClass(std::string_view name);
// Personal data classes: only ever stored in the user's home region.
bool IsPersonal(DataClass c);

// A problem found in a file, printed as "file:line: message".
struct Diagnostic {
  std::string file;
  int line = 0;
  std::string message;
  std::string ToString() const;
};
std::string JoinDiagnostics(const std::vector<Diagnostic>& diags);

// The regions a policy is checked against: name -> role.
using RegionRoles = std::map<std::string, Role, std::less<>>;
// The built-in four-region layout (beijing, oregon, singapore homes; california edge).
const RegionRoles& BuiltinRegionRoles();

class Policy {
 public:
  const std::string& name() const { return name_; }
  int64_t version() const { return version_; }
  const std::string& default_region() const { return default_region_; }
  const std::vector<std::string>& edge_regions() const { return edge_regions_; }
  const std::map<std::string, std::string, std::less<>>& countries() const { return countries_; }

  // Home region of a country (an ISO 3166-1 alpha-2 code); the default for unlisted ones.
  const std::string& HomeFor(std::string_view country) const;
  bool MayHold(Role role, DataClass c) const;

 private:
  friend Result<Policy> Parse(std::string_view, std::string_view, const RegionRoles&,
                              std::vector<Diagnostic>*);
  std::string name_;
  int64_t version_ = 0;
  std::string default_region_;
  std::vector<std::string> edge_regions_;
  std::map<std::string, std::string, std::less<>> countries_;
  std::map<Role, std::set<DataClass>> role_classes_;
};

// Parses and validates. Every problem is appended to `diags` (with its line); the result is
// an error if there was any.
Result<Policy> Parse(std::string_view text, std::string_view source_name,
                     const RegionRoles& regions, std::vector<Diagnostic>* diags);
Result<Policy> LoadFile(const std::string& path, const RegionRoles& regions,
                        std::vector<Diagnostic>* diags);
// The shipped policies: "current" and "legacy".
std::optional<std::string_view> BuiltinText(std::string_view name);
// A builtin name or a file path.
Result<Policy> Load(const std::string& spec, const RegionRoles& regions,
                    std::vector<Diagnostic>* diags);

// ISO 3166-1 alpha-2 codes, read from Debian's iso-codes package.
bool IsIsoCountry(std::string_view code);

}  // namespace meridian::policy
