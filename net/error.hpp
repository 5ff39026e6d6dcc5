// Results without exceptions: an errno (0 = success) and a message that names the operation that failed.
#pragma once

#include <string>
#include <string_view>

namespace edgews::net {

struct Error {
  int code = 0;
  std::string message;

  explicit operator bool() const { return code != 0; }
};

// "<what>: <strerror(code)>". Only called on failure paths, so the allocation is fine.
Error system_error(int code, std::string_view what);

}  // namespace edgews::net
