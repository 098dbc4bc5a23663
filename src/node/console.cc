#include "node/console.h"

#include <fmt/format.h>

namespace meridian::node {

const ConsoleFile* FindConsoleFile(std::string_view path) {
  for (const auto& f : ConsoleFiles()) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

std::string_view ConsoleContentType(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".ico")) return "image/x-icon";
  if (ends(".woff2")) return "font/woff2";
  return "application/octet-stream";
}

std::string ConsoleFallbackPage(std::string_view region) {
  return fmt::format(
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<link rel=\"icon\" href=\"data:,\"><title>Meridian console (not built)</title></head>"
      "<body style=\"font-family:sans-serif;max-width:40em;margin:2em auto;line-height:1.5\">"
      "<h1>Meridian: {}</h1><p>This node answers the API, but its binary was built without "
      "the web console.</p><p>Build the console, then the binary again:</p>"
      "<pre>scripts/build-console   # npm ci &amp;&amp; npm run build in console/\n"
      "make build</pre><p>(<code>make run</code> and <code>make test</code> do both.)</p>"
      "</body></html>",
      region);
}

}  // namespace meridian::node
