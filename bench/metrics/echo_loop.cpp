// A minimal WebSocket echo load client for ratio measurements (metrics on beside off): C connections on one
// epoll thread, each keeping W small text messages in flight, for S seconds. Prints messages echoed per second.
//   echo_loop PORT [connections=50] [window=16] [seconds=5] [payload=64]
// Figures only; nothing is asserted.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/handshake_client.hpp"

namespace {

struct Client {
  int fd = -1;
  std::string in;
  bool open = false;
};

bool write_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      usleep(50);  // rare with small windows; keeps the client simple
    } else {
      return false;
    }
  }
  return true;
}

std::string frame(std::size_t payload) {
  std::string f;
  f += static_cast<char>(0x81);
  f += static_cast<char>(0x80 | payload);  // payload < 126
  f += std::string("\x11\x22\x33\x44", 4);
  for (std::size_t i = 0; i < payload; ++i) f += static_cast<char>('a' ^ "\x11\x22\x33\x44"[i % 4]);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_loop PORT [connections] [window] [seconds] [payload<126]\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const int connections = argc > 2 ? std::atoi(argv[2]) : 50;
  const int window = argc > 3 ? std::atoi(argv[3]) : 16;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 5;
  const std::size_t payload = argc > 5 ? static_cast<std::size_t>(std::atoi(argv[5])) : 64;
  if (payload >= 126) return 2;
  const std::string message = frame(payload);
  const std::size_t reply_size = 2 + payload;
  std::string burst;
  for (int i = 0; i < window; ++i) burst += message;

  const int ep = epoll_create1(0);
  std::vector<Client> clients(static_cast<std::size_t>(connections));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::mt19937_64 random(std::random_device{}());
  const std::string host = "127.0.0.1:" + std::to_string(port);
  edgews::codec::ClientRequest request;
  request.host = host;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    Client& c = clients[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    edgews::codec::ClientHandshake handshake;
    std::string upgrade;
    if (handshake.write_request(upgrade, request, edgews::codec::make_websocket_key(random))) return 1;
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || !write_all(c.fd, upgrade)) {
      std::perror("connect");
      return 1;
    }
    // Read the 101 head (blocking), then go non-blocking.
    std::string head;
    char buf[4096];
    edgews::codec::ResponseCheck check;
    while (!check.complete) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n <= 0) return 1;
      head.append(buf, static_cast<std::size_t>(n));
      check = handshake.check_response(head);
      if (!check.complete && !check.defects.empty()) break;  // head too large
    }
    if (const edgews::codec::ResponseDefect* defect = check.refusal(edgews::codec::ResponseMode::strict)) {
      std::fprintf(stderr, "echo_loop: the upgrade failed: %s\n", defect->message.c_str());
      return 1;
    }
    c.in = head.substr(check.head_length);
    {
      const int flags = fcntl(c.fd, F_GETFL);
      fcntl(c.fd, F_SETFL, flags | O_NONBLOCK);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    write_all(c.fd, burst);
  }
  std::uint64_t echoed = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  epoll_event events[256];
  static char buf[1 << 16];
  std::string refill;
  while (std::chrono::steady_clock::now() < end) {
    const int n = epoll_wait(ep, events, 256, 100);
    for (int e = 0; e < n; ++e) {
      Client& c = clients[events[e].data.u64];
      for (;;) {
        const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        c.in.append(buf, static_cast<std::size_t>(r));
      }
      const std::size_t replies = c.in.size() / reply_size;
      c.in.erase(0, replies * reply_size);
      echoed += replies;
      refill.clear();
      for (std::size_t k = 0; k < replies; ++k) refill += message;
      if (!refill.empty() && !write_all(c.fd, refill)) return 1;
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("connections=%d window=%d payload=%zu seconds=%.2f echoed=%llu rate=%.0f msg/s\n", connections, window,
              payload, elapsed, static_cast<unsigned long long>(echoed), static_cast<double>(echoed) / elapsed);
  return 0;
}
