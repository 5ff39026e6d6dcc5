// edgews_floor: the yardstick for the echo benchmarks. A WebSocket echo server that does only the system calls
// this traffic needs and nothing a real server must do: epoll, accept4, one recv of the request, one fixed 101
// (with the computed Sec-WebSocket-Accept), then per readiness one recv, unmask, one send of the frames back.
// No validation of any kind (no UTF-8, no limits, no close handshake, no timers). Single thread.
//
// Frames are echoed in a streaming way: a frame's payload is unmasked and written back as its bytes arrive, so
// the only per-connection state is the current frame's remaining length, its mask and a partial header
// (under 14 bytes). Epoll is level-triggered: a read shorter than the buffer needs no second read, and a read
// that filled it is reported again.
//
// usage: edgews_floor [--port N]   (0 = any free port; prints "edgews_floor: listening on port N")
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "codec/handshake_response.hpp"
#include "codec/mask.hpp"

namespace {

constexpr std::size_t kBuffer = 256 * 1024;

struct Conn {
  bool upgraded = false;
  bool blocked = false;            // a write was short: wait for EPOLLOUT before reading more
  std::uint8_t hdr_len = 0;        // bytes of a partial frame header kept in hdr
  std::uint8_t hdr[14] = {};
  std::uint8_t key[4] = {};
  std::uint32_t phase = 0;
  std::uint64_t remaining = 0;     // payload bytes of the current frame still to come
  std::string* pending = nullptr;  // request bytes before the 101, or output the kernel did not take
};

std::vector<Conn> conns;
int epfd = -1;

void close_conn(int fd) {
  delete conns[static_cast<std::size_t>(fd)].pending;
  conns[static_cast<std::size_t>(fd)] = Conn{};
  ::close(fd);
}

void set_events(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

// Writes [p, p+n); keeps what the kernel does not take and waits for writability.
bool send_all(int fd, Conn& c, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      c.pending = new std::string(reinterpret_cast<const char*>(p), n);
      c.blocked = true;
      set_events(fd, EPOLLOUT);
      return true;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// RFC 6455 4.2.2: the 101 with base64(SHA-1(key + GUID)), computed by the codec as edgews computes it.
bool upgrade(int fd, Conn& c, std::uint8_t* buf, std::size_t& n, std::size_t& consumed) {
  std::string_view req(reinterpret_cast<const char*>(buf), n);
  const std::size_t end = req.find("\r\n\r\n");
  if (end == std::string_view::npos) return true;  // more to come (the caller keeps it)
  consumed = end + 4;
  std::size_t k = std::string_view::npos;
  for (std::size_t i = 0; i + 18 <= end; ++i) {
    if (strncasecmp(req.data() + i, "\nSec-WebSocket-Key:", 19) == 0) {
      k = i + 19;
      break;
    }
  }
  if (k == std::string_view::npos) return false;
  while (req[k] == ' ') ++k;
  std::size_t e = k;
  while (e < end && req[e] != '\r' && req[e] != ' ') ++e;
  const std::array<char, 28> accept = edgews::codec::compute_accept(req.substr(k, e - k));
  char response[160];
  const int len = std::snprintf(response, sizeof response,
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: %.28s\r\n\r\n",
                                accept.data());
  c.upgraded = true;
  return send_all(fd, c, reinterpret_cast<const std::uint8_t*>(response), static_cast<std::size_t>(len));
}

// Echoes the frames in buf[0, n): unmasks in place and compacts the output towards the front of buf (an
// unmasked header is 4 bytes shorter than the masked one), then one write.
bool echo(int fd, Conn& c, std::uint8_t* buf, std::size_t n) {
  std::size_t pos = 0;
  std::size_t out = 0;     // end of the output written so far
  std::size_t begin = 0;   // start of the output
  bool first = true;
  while (pos < n) {
    if (c.remaining > 0) {
      const std::size_t take = c.remaining < n - pos ? static_cast<std::size_t>(c.remaining) : n - pos;
      c.phase = static_cast<std::uint32_t>(edgews::codec::unmask_in_place(buf + pos, take, c.key, c.phase));
      if (first) begin = out = pos, first = false;
      if (out != pos) std::memmove(buf + out, buf + pos, take);
      out += take;
      pos += take;
      c.remaining -= take;
      continue;
    }
    // A header: complete the partial one kept from the previous read first.
    const std::size_t want_min = 2;
    while (c.hdr_len < want_min && pos < n) c.hdr[c.hdr_len++] = buf[pos++];
    if (c.hdr_len < want_min) break;
    const std::uint8_t len7 = c.hdr[1] & 0x7F;
    const std::size_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((c.hdr[1] & 0x80) ? 4 : 0);
    while (c.hdr_len < hlen && pos < n) c.hdr[c.hdr_len++] = buf[pos++];
    if (c.hdr_len < hlen) break;
    std::uint64_t plen = len7;
    std::size_t at = 2;
    if (len7 == 126) plen = (std::uint64_t{c.hdr[2]} << 8) | c.hdr[3], at = 4;
    if (len7 == 127) {
      plen = 0;
      for (int i = 0; i < 8; ++i) plen = (plen << 8) | c.hdr[2 + i];
      at = 10;
    }
    if (c.hdr[1] & 0x80) std::memcpy(c.key, c.hdr + at, 4);
    else std::memset(c.key, 0, 4);
    c.phase = 0;
    c.remaining = plen;
    c.hdr_len = 0;
    // The unmasked header goes right before the payload when this is the first output (no copy at all).
    const std::size_t out_hlen = at;
    if (first) begin = out = pos >= out_hlen ? pos - out_hlen : 0, first = false;
    std::uint8_t h[10];
    h[0] = c.hdr[0];
    h[1] = static_cast<std::uint8_t>(len7);
    std::memcpy(h + 2, c.hdr + 2, out_hlen - 2);
    if (out + out_hlen > pos) {
      // Only when a header straddled two reads: the payload must make room (rare).
      std::memmove(buf + out + out_hlen, buf + pos, n - pos);
      n += out + out_hlen - pos;
      pos = out + out_hlen;
    }
    std::memcpy(buf + out, h, out_hlen);
    out += out_hlen;
  }
  if (first || out == begin) return true;
  return send_all(fd, c, buf + begin, out - begin);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = std::atoi(argv[++i]);
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  conns.resize(static_cast<std::size_t>(rl.rlim_cur) + 1);

  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4096) != 0) {
    std::perror("edgews_floor: bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
  std::printf("edgews_floor: listening on port %u\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  // 14 bytes in front for a partial header carried over from the previous read.
  static std::uint8_t storage[kBuffer + 16];
  epoll_event events[512];
  for (;;) {
    const int n = epoll_wait(epfd, events, 512, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          if (static_cast<std::size_t>(c) >= conns.size()) {
            ::close(c);
            continue;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(epfd, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      Conn& c = conns[static_cast<std::size_t>(fd)];
      if (c.blocked) {
        if (!(events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        std::string* rest = c.pending;
        c.pending = nullptr;
        c.blocked = false;
        set_events(fd, EPOLLIN);
        const bool ok = send_all(fd, c, reinterpret_cast<const std::uint8_t*>(rest->data()), rest->size());
        delete rest;
        if (!ok) close_conn(fd);
        continue;
      }
      std::uint8_t* buf = storage;
      const ssize_t r = ::recv(fd, buf, kBuffer, 0);  // not read(2): that adds the VFS layer to every call
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close_conn(fd);
        continue;
      }
      std::size_t len = static_cast<std::size_t>(r);
      bool ok = true;
      if (!c.upgraded) {
        std::string* req = c.pending ? c.pending : new std::string;
        c.pending = nullptr;
        req->append(reinterpret_cast<const char*>(buf), len);
        std::size_t consumed = 0;
        std::size_t rlen = req->size();
        ok = upgrade(fd, c, reinterpret_cast<std::uint8_t*>(req->data()), rlen, consumed);
        if (ok && !c.upgraded) {
          if (req->size() > 16384) ok = false;
          else c.pending = req, req = nullptr;
        } else if (ok && consumed < req->size() && !c.blocked) {
          len = req->size() - consumed;
          std::memcpy(buf, req->data() + consumed, len);
          ok = echo(fd, c, buf, len);
        }
        delete req;
      } else {
        ok = echo(fd, c, buf, len);
      }
      if (!ok) close_conn(fd);
    }
  }
}
