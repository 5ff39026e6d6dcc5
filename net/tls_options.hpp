// What a TLS client checks of the servers it connects to: a plain value, apart from net/tls.hpp so that the client
// API can carry it without OpenSSL's headers.
#pragma once

#include <string>
#include <vector>

namespace edgews::net {

struct ClientTlsOptions {
  // Off only where the operator asked for it explicitly: without verification anyone on the path is the server.
  bool verify = true;
  std::string ca_file;  // PEM CA certificate(s) to trust; empty: the system's store (OpenSSL's default paths)
  std::vector<std::string> alpn = {"http/1.1"};
};

}  // namespace edgews::net
