// The library's version, for embedders that must know which API they build against. Kept equal to
// project(edgews VERSION ...) in CMakeLists.txt: the configure step stops when the two differ.
#pragma once

#include <string_view>

#define EDGEWS_VERSION_MAJOR 0
#define EDGEWS_VERSION_MINOR 2
#define EDGEWS_VERSION_PATCH 0

namespace edgews::core {

// "0.2.0". A change of the public API bumps the minor version while the major one is 0.
constexpr std::string_view version() { return "0.2.0"; }

}  // namespace edgews::core
