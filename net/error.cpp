#include "net/error.hpp"

#include <cstring>

namespace edgews::net {

Error system_error(int code, std::string_view what) {
  Error error{code, std::string(what)};
  error.message += ": ";
  error.message += ::strerrordesc_np(code) ? ::strerrordesc_np(code) : "unknown error";
  return error;
}

}  // namespace edgews::net
