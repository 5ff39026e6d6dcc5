// Repetitive JSON messages (same keys, changing numbers) for the permessage-deflate benchmarks: the kind of
// traffic compression is meant for (quotes, game state, chat events).
#pragma once

#include <cstddef>
#include <string>

namespace edgews::bench {

// A JSON text of exactly `size` bytes (cut, so not always well-formed at the end); `variant` changes the numbers
// from one message to the next.
inline std::string json_sample(std::size_t size, unsigned variant) {
  std::string s = "{\"type\":\"quote\",\"seq\":" + std::to_string(variant * 7919) + ",\"items\":[";
  for (unsigned i = 0; s.size() < size; ++i) {
    const unsigned x = (i + 1) * 2654435761u ^ variant * 40503u;
    s += "{\"symbol\":\"ACME\",\"bid\":" + std::to_string(100 + x % 97) + "." + std::to_string(x % 100) +
         ",\"ask\":" + std::to_string(101 + x % 89) + ".75,\"volume\":" + std::to_string(x % 100000) + "},";
  }
  s.resize(size);
  return s;
}

}  // namespace edgews::bench
