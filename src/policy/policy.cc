#include "policy/policy.h"

#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/json.h"

namespace meridian::policy {

std::string_view RoleName(Role role) { return role == Role::kHome ? "home" : "edge"; }

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "home") return Role::kHome;
  if (name == "edge") return Role::kEdge;
  return std::nullopt;
}

namespace {
constexpr std::pair<DataClass, std::string_view> kClassNames[] = {
    {DataClass::kIdentity, "identity"},   {DataClass::kDevice, "device"},
    {DataClass::kContent, "content"},     {DataClass::kCommerce, "commerce"},
    {DataClass::kPseudonym, "pseudonym"}, {DataClass::kPublic, "public"},
};
}  // namespace

std::string_view DataClassName(DataClass c) {
  for (const auto& [k, n] : kClassNames) {
    if (k == c) return n;
  }
  return "unknown";
}

std::optional<DataClass> ParseDataClass(std::string_view name) {
  for (const auto& [k, n] : kClassNames) {
    if (n == name) return k;
  }
  return std::nullopt;
}

bool IsPersonal(DataClass c) {
  return c == DataClass::kIdentity || c == DataClass::kDevice || c == DataClass::kContent ||
         c == DataClass::kCommerce;
}

std::string Diagnostic::ToString() const { return fmt::format("{}:{}: {}", file, line, message); }

std::string JoinDiagnostics(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) {
    if (!out.empty()) out += "\n";
    out += d.ToString();
  }
  return out;
}

const RegionRoles& BuiltinRegionRoles() {
  static const RegionRoles kRoles = {{"beijing", Role::kHome},
                                     {"oregon", Role::kHome},
                                     {"singapore", Role::kHome},
                                     {"california", Role::kEdge}};
  return kRoles;
}

const std::string& Policy::HomeFor(std::string_view country) const {
  auto it = countries_.find(country);
  return it == countries_.end() ? default_region_ : it->second;
}

bool Policy::MayHold(Role role, DataClass c) const {
  auto it = role_classes_.find(role);
  return it != role_classes_.end() && it->second.count(c) > 0;
}

bool IsIsoCountry(std::string_view code) {
  static std::once_flag once;
  static std::set<std::string, std::less<>> codes;
  std::call_once(once, [] {
    std::ifstream in("/usr/share/iso-codes/json/iso_3166-1.json");
    std::stringstream ss;
    ss << in.rdbuf();
    auto doc = ParseJsonObject(ss.str());
    if (!doc.ok()) return;
    auto it = doc->find("3166-1");
    if (it == doc->end() || !it->is_array()) return;
    for (const auto& entry : *it) {
      auto a2 = entry.find("alpha_2");
      if (a2 != entry.end() && a2->is_string()) codes.insert(a2->get<std::string>());
    }
  });
  return codes.count(code) > 0;
}

namespace {
int LineOf(const toml::node* node, int fallback = 1) {
  if (node == nullptr || !node->source().begin) return fallback;
  return static_cast<int>(node->source().begin.line);
}
}  // namespace

Result<Policy> Parse(std::string_view text, std::string_view source_name,
                     const RegionRoles& regions, std::vector<Diagnostic>* diags) {
  const size_t errors_before = diags->size();
  auto add = [&](int line, std::string msg) {
    diags->push_back({std::string(source_name), line, std::move(msg)});
  };
  toml::table doc;
  // toml++ is built with exceptions; they stay inside this function.
  try {
    doc = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    add(static_cast<int>(e.source().begin.line), std::string(e.description()));
    return Error(Code::kInvalidField, JoinDiagnostics(*diags));
  }

  Policy p;
  auto region_is = [&](const std::string& name, Role role) {
    auto it = regions.find(name);
    return it != regions.end() && it->second == role;
  };

  if (auto n = doc.get("name"); n && n->is_string()) {
    p.name_ = **n->as_string();
  } else {
    add(LineOf(n), "'name' must be a string");
  }
  if (auto v = doc.get("version"); v && v->is_integer() && **v->as_integer() > 0) {
    p.version_ = **v->as_integer();
  } else {
    add(LineOf(v), "'version' must be a positive integer");
  }
  if (auto d = doc.get("default_region"); d && d->is_string()) {
    p.default_region_ = **d->as_string();
    if (!regions.count(p.default_region_)) {
      add(LineOf(d),
          fmt::format("default_region '{}' is not a region of the cluster", p.default_region_));
    } else if (!region_is(p.default_region_, Role::kHome)) {
      add(LineOf(d), fmt::format("default_region '{}' is an edge region, not a home region",
                                 p.default_region_));
    }
  } else {
    add(LineOf(d), "'default_region' must be a string");
  }
  if (auto e = doc.get("edge_regions"); e && e->is_array()) {
    for (const auto& item : *e->as_array()) {
      if (!item.is_string()) {
        add(LineOf(&item, LineOf(e)), "edge_regions entries must be strings");
        continue;
      }
      std::string name = **item.as_string();
      if (!region_is(name, Role::kEdge)) {
        add(LineOf(&item, LineOf(e)),
            fmt::format("'{}' in edge_regions is not an edge region of the cluster", name));
      }
      p.edge_regions_.push_back(std::move(name));
    }
  } else if (e) {
    add(LineOf(e), "'edge_regions' must be an array of region names");
  }

  if (auto r = doc.get("roles"); r && r->is_table()) {
    for (const auto& [key, val] : *r->as_table()) {
      auto role = ParseRole(key.str());
      if (!role) {
        add(LineOf(&val, LineOf(r)), fmt::format("unknown role '{}' (home or edge)", key.str()));
        continue;
      }
      auto& set = p.role_classes_[*role];
      if (!val.is_array()) {
        add(LineOf(&val, LineOf(r)), fmt::format("roles.{} must be an array", key.str()));
        continue;
      }
      for (const auto& c : *val.as_array()) {
        auto cls = c.is_string() ? ParseDataClass(**c.as_string()) : std::nullopt;
        if (!cls) {
          add(LineOf(&c, LineOf(&val)), fmt::format("unknown data class in roles.{}", key.str()));
          continue;
        }
        if (*role == Role::kEdge && IsPersonal(*cls)) {
          add(LineOf(&c, LineOf(&val)),
              fmt::format("an edge region may not hold personal data class '{}'",
                          DataClassName(*cls)));
        }
        set.insert(*cls);
      }
    }
  } else {
    add(LineOf(r), "'[roles]' table is required (data classes per role)");
  }

  if (auto c = doc.get("countries"); c && c->is_table()) {
    for (const auto& [key, val] : *c->as_table()) {
      int line = LineOf(&val, LineOf(c));
      std::string code(key.str());
      if (code.size() != 2 || !IsIsoCountry(code)) {
        add(line, fmt::format("'{}' is not an ISO 3166-1 alpha-2 country code", code));
      }
      if (!val.is_string()) {
        add(line, fmt::format("country '{}' must map to a region name", code));
        continue;
      }
      std::string region = **val.as_string();
      if (!regions.count(region)) {
        add(line, fmt::format("country '{}' maps to unknown region '{}'", code, region));
      } else if (!region_is(region, Role::kHome)) {
        add(line, fmt::format("country '{}' maps to '{}', an edge region cannot be a home", code,
                              region));
      }
      p.countries_[code] = std::move(region);
    }
  } else if (c) {
    add(LineOf(c), "'countries' must be a table");
  }

  if (diags->size() > errors_before) {
    std::vector<Diagnostic> mine(diags->begin() + static_cast<long>(errors_before), diags->end());
    return Error(Code::kInvalidField, JoinDiagnostics(mine));
  }
  return p;
}

Result<Policy> LoadFile(const std::string& path, const RegionRoles& regions,
                        std::vector<Diagnostic>* diags) {
  std::ifstream in(path);
  if (!in) {
    diags->push_back({path, 0, "cannot read file"});
    return Error(Code::kInvalidField, diags->back().ToString());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path, regions, diags);
}

Result<Policy> Load(const std::string& spec, const RegionRoles& regions,
                    std::vector<Diagnostic>* diags) {
  if (auto text = BuiltinText(spec)) {
    return Parse(*text, fmt::format("<builtin:{}>", spec), regions, diags);
  }
  return LoadFile(spec, regions, diags);
}

}  // namespace meridian::policy
