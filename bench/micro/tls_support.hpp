// Shared by the TLS benchmarks: development certificates in a temporary directory and loopback TCP pairs.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "net/fd.hpp"
#include "net/tls.hpp"

namespace edgews::bench {

// Creates <dir>/<name>.crt/.key with tools/make-dev-cert.sh; returns false when the script fails.
inline bool make_cert(const std::string& dir, const std::string& name, const std::string& key_type) {
  std::string cmd = "'" EDGEWS_SOURCE_DIR "/tools/make-dev-cert.sh' --name " + name + " --key-type " + key_type +
                    " '" + dir + "' >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

inline std::string temp_dir() {
  char tmpl[] = "/tmp/edgews-tls-bench-XXXXXX";
  return ::mkdtemp(tmpl) ? tmpl : "";
}

inline void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// A listening socket on 127.0.0.1 with an ephemeral port.
inline net::Fd listen_loopback(sockaddr_in& addr) {
  net::Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener.get(), 4096);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return listener;
}

struct TcpPair {
  net::Fd client;
  net::Fd server;
};

inline TcpPair tcp_pair(int listener, const sockaddr_in& addr) {
  TcpPair pair{net::Fd(::socket(AF_INET, SOCK_STREAM, 0)), net::Fd()};
  ::connect(pair.client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  pair.server = net::Fd(::accept(listener, nullptr, nullptr));
  int one = 1;
  for (int fd : {pair.client.get(), pair.server.get()}) {
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblocking(fd);
  }
  return pair;
}

inline short events_for(net::TlsIo status) { return status == net::TlsIo::want_write ? POLLOUT : POLLIN; }

// Drives the client and the server handshake in this thread; true when both complete.
inline bool handshake_pair(net::TlsStream& client, int client_fd, net::TlsStream& server, int server_fd) {
  using net::TlsIo;
  TlsIo c = TlsIo::want_write, s = TlsIo::want_read;
  auto waiting = [](TlsIo st) { return st == TlsIo::want_read || st == TlsIo::want_write; };
  for (int turns = 0; (waiting(c) || waiting(s)) && turns < 10000; ++turns) {
    if (waiting(c)) c = client.handshake().status;
    if (waiting(s)) s = server.handshake().status;
    if (!waiting(c) && !waiting(s)) break;
    pollfd fds[2] = {{client_fd, waiting(c) ? events_for(c) : short(0), 0},
                     {server_fd, waiting(s) ? events_for(s) : short(0), 0}};
    ::poll(fds, 2, 1000);
  }
  return c == TlsIo::ok && s == TlsIo::ok;
}

}  // namespace edgews::bench
