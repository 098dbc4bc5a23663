// Policy TOML -> parser and validator against the built-in regions.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<meridian::policy::Diagnostic> diags;
  auto p =
      meridian::policy::Parse(text, "fuzz.toml", meridian::policy::BuiltinRegionRoles(), &diags);
  if (p.ok()) (void)p->HomeFor("IN");
  return 0;
}
