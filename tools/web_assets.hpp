// Files served by `edgews serve` over plain HTTP (the test page and the reusable client script), compiled in from
// tools/web/ so the binary needs nothing beside it.
#pragma once

#include <string_view>

namespace edgews::tools {

struct WebAsset {
  std::string_view path;          // "/", "/edgews-client.js"
  std::string_view content_type;
  std::string_view body;
};

// The asset for a request target (query string ignored), or nullptr.
const WebAsset* find_web_asset(std::string_view target);

}  // namespace edgews::tools
