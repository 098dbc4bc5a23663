// The web console's files (console/, a Vite build), compiled into the binary so that a node
// needs no Node.js at run time. CMake embeds console/dist when it exists
// (cmake/EmbedConsole.cmake); a binary built without it serves a page that says how to
// build the console.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace meridian::node {

struct ConsoleFile {
  std::string_view path;  // "/index.html", "/console/index-1a2b3c.js", ...
  std::string_view body;
};

// Every embedded file; empty when the binary was built without console/dist. Defined in
// the generated console_assets.cc.
std::span<const ConsoleFile> ConsoleFiles();

const ConsoleFile* FindConsoleFile(std::string_view path);
// The content type to serve a file with, from its extension.
std::string_view ConsoleContentType(std::string_view path);
// The page served at / by a binary built without the console.
std::string ConsoleFallbackPage(std::string_view region);

}  // namespace meridian::node
