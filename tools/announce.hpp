// The start-up line that scripts and tests read to learn the ports a server bound (it may have asked for port 0):
// "edgews: listening on port(s) P [P...]". Shared by `edgews serve` and the integration test server.
#pragma once

#include <cstdio>
#include <string>

#include "core/server.hpp"

namespace edgews::tools {

inline void announce_ports(const core::Server& server) {
  std::string ports;
  for (std::uint16_t p : server.ports()) {
    if (!ports.empty()) ports += ' ';
    ports += std::to_string(p);
  }
  std::printf("edgews: listening on port%s %s\n", server.ports().size() > 1 ? "s" : "", ports.c_str());
}

}  // namespace edgews::tools
