// edgews_hostile: the misbehaving clients of the overload benchmark (bench/overload/run.sh), each kind switchable,
// against any WebSocket echo server on loopback. One epoll thread, bounded in time: it stops by itself after
// --duration seconds and closes everything it opened.
//
// Kinds (rates are new connections per second, counts are connections held for the whole run):
//   slowloris  N connections that send a valid upgrade request one byte per --trickle-ms
//   huge       N upgraded connections that announce a 1 GiB binary frame and trickle one byte per --trickle-ms
//   garbage    R/s connections sending 1 KiB of random bytes, alternately before and after a valid upgrade
//   reset      R/s connections that upgrade, send half a frame and reset (SO_LINGER 0)
//   flood      N upgraded connections that send 64 KiB messages as fast as they can and never read
//
// The hostile connections come from 127.0.0.2 and up (--sources N spreads them over N addresses), so that an
// honest load generator on 127.0.0.1 is told apart by per-address limits. What the server did to each kind is
// printed: closed by the server (with the close code or HTTP status it sent, when it sent one before closing),
// still open at the end, connect failures; --json FILE writes the same as JSON.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "tools/options.hpp"

namespace {

using edgews::tools::OptionTable;

constexpr const char* kUsage = R"(usage: edgews_hostile --port N [options]

The misbehaving clients of the overload benchmark (bench/overload/run.sh). Each kind is off at 0.

)";

constexpr std::uint64_t kSecond = 1000000000ull;
constexpr std::uint64_t kGiB = 1ull << 30;
// A short-lived hostile connection (garbage, reset) that the server has not closed after this long is counted
// as surviving and closed by us, so the run's descriptors stay bounded.
constexpr std::uint64_t kShortLivedNs = 10 * kSecond;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * kSecond + static_cast<std::uint64_t>(ts.tv_nsec);
}

enum class Kind : std::uint8_t { slowloris, huge, garbage_before, garbage_after, reset, flood };
constexpr std::array<const char*, 6> kKindNames = {"slowloris", "huge_frame", "garbage_before_upgrade",
                                                   "garbage_after_upgrade", "half_frame_reset", "flood_no_read"};

enum class Phase : std::uint8_t { connecting, upgrading, active };

struct Stats {
  std::uint64_t started = 0, connect_failed = 0, upgraded = 0, closed_by_server = 0, survived = 0,
                open_at_end = 0, reset_sent = 0, messages_sent = 0, bytes_sent = 0;
  std::map<std::string, std::uint64_t> answers;  // "close 1009", "http 408", "none" (closed without a word)
  std::vector<double> close_seconds;             // from connect to the server's close
};

struct Conn {
  int fd = -1;
  Kind kind{};
  Phase phase = Phase::connecting;
  bool answered = false;  // an HTTP status or close code was recorded
  std::uint64_t opened_ns = 0;
  std::uint64_t next_ns = 0;  // next trickle
  std::size_t offset = 0;     // request bytes sent (slowloris), or bytes of the current flood frame
  std::string in;             // the response head, or the first bytes after the upgrade (bounded)
};

struct Options {
  std::string host = "127.0.0.1", path = "/";
  int port = 0, duration = 20, slowloris = 1500, huge = 200, garbage = 100, reset = 100, flood = 100;
  int flood_size = 65536, trickle_ms = 1000, sources = 1;
  std::string json;
};

class Hostile {
 public:
  explicit Hostile(const Options& o) : o_(o), rng_(std::random_device{}()) {
    // A valid upgrade request from the codec's writer: the attacks are in how it is sent (trickled, or followed
    // by floods), not in its bytes.
    const std::string host = o.host + ":" + std::to_string(o.port);
    edgews::codec::ClientRequest request;
    request.host = host;
    request.resource = o.path;
    edgews::codec::ClientHandshake handshake;
    const edgews::codec::WebSocketKey websocket_key = edgews::codec::make_websocket_key(rng_);
    if (const edgews::codec::HeaderError e = handshake.write_request(request_, request, websocket_key)) {
      std::fprintf(stderr, "edgews_hostile: cannot write the upgrade request: %s\n", e.message.c_str());
    }
    garbage_.resize(1024);
    for (auto& b : garbage_) b = static_cast<std::uint8_t>(rng_());
    const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    flood_frame_.resize(edgews::codec::kMaxFrameHeaderSize + static_cast<std::size_t>(o.flood_size));
    const std::size_t h = edgews::codec::write_frame_header(flood_frame_.data(), edgews::codec::Opcode::binary,
                                                            static_cast<std::uint64_t>(o.flood_size), true, false, key);
    for (int i = 0; i < o.flood_size; ++i) {
      flood_frame_[h + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(rng_());
    }
    flood_frame_.resize(h + static_cast<std::size_t>(o.flood_size));
    huge_header_.resize(edgews::codec::kMaxFrameHeaderSize);
    huge_header_.resize(edgews::codec::write_frame_header(huge_header_.data(), edgews::codec::Opcode::binary, kGiB,
                                                          true, false, key));
    // Half of a masked 1000-byte frame.
    half_frame_.resize(edgews::codec::kMaxFrameHeaderSize);
    half_frame_.resize(edgews::codec::write_frame_header(half_frame_.data(), edgews::codec::Opcode::binary, 1000, true,
                                                         false, key));
    half_frame_.insert(half_frame_.end(), 500, 0x5a);
  }

  int run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    const std::uint64_t start = now_ns();
    const std::uint64_t end = start + static_cast<std::uint64_t>(o_.duration) * kSecond;
    for (int i = 0; i < o_.slowloris; ++i) open(Kind::slowloris);
    for (int i = 0; i < o_.huge; ++i) open(Kind::huge);
    for (int i = 0; i < o_.flood; ++i) open(Kind::flood);
    std::uint64_t garbage_due = start, reset_due = start;
    bool garbage_after = false;
    epoll_event events[256];
    while (true) {
      const std::uint64_t now = now_ns();
      if (now >= end) break;
      if (o_.garbage > 0) {
        for (; garbage_due <= now; garbage_due += kSecond / static_cast<std::uint64_t>(o_.garbage)) {
          open(garbage_after ? Kind::garbage_after : Kind::garbage_before);
          garbage_after = !garbage_after;
        }
      }
      if (o_.reset > 0) {
        for (; reset_due <= now; reset_due += kSecond / static_cast<std::uint64_t>(o_.reset)) open(Kind::reset);
      }
      tick(now);
      const int n = epoll_wait(ep_, events, 256, 5);
      for (int i = 0; i < n; ++i) on_event(*static_cast<Conn*>(events[i].data.ptr), events[i].events);
      reap();
    }
    for (auto& c : conns_) {
      if (c->fd >= 0) {
        ++stats_[static_cast<int>(c->kind)].open_at_end;
        finish(*c);
      }
    }
    reap();
    report();
    ::close(ep_);
    return 0;
  }

 private:
  Stats& stats(const Conn& c) { return stats_[static_cast<int>(c.kind)]; }

  void open(Kind kind) {
    auto c = std::make_unique<Conn>();
    c->kind = kind;
    c->opened_ns = now_ns();
    Stats& s = stats_[static_cast<int>(kind)];
    ++s.started;
    c->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      ++s.connect_failed;
      return;
    }
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(0x7f000002u + static_cast<std::uint32_t>(next_source_++ % o_.sources));
    sockaddr_in peer{};
    peer.sin_family = AF_INET;
    peer.sin_port = htons(static_cast<std::uint16_t>(o_.port));
    inet_pton(AF_INET, o_.host.c_str(), &peer.sin_addr);
    const int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::bind(c->fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        (::connect(c->fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0 && errno != EINPROGRESS)) {
      ++s.connect_failed;
      ::close(c->fd);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c.get();
    epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev);
    conns_.push_back(std::move(c));
  }

  // Writes what fits; false when the server is gone.
  bool write_some(Conn& c, const std::uint8_t* data, std::size_t len, std::size_t& written) {
    written = 0;
    while (written < len) {
      const ssize_t n = ::send(c.fd, data + written, len - written, MSG_NOSIGNAL);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        stats(c).bytes_sent += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
    return true;
  }
  bool write_all(Conn& c, const void* data, std::size_t len) {
    std::size_t written = 0;
    // Every one-shot write here is small (a request, 1 KiB, half a frame): a fresh socket takes it whole.
    return write_some(c, static_cast<const std::uint8_t*>(data), len, written) && written == len;
  }

  void set_events(Conn& c, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void on_connected(Conn& c) {
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      ++stats(c).connect_failed;
      finish(c);
      return;
    }
    c.phase = Phase::upgrading;
    switch (c.kind) {
      case Kind::slowloris:
        c.phase = Phase::active;
        c.next_ns = now_ns();  // the first byte goes at the next tick
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
      case Kind::garbage_before:
        c.phase = Phase::active;
        if (!write_all(c, garbage_.data(), garbage_.size())) return server_closed(c);
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
      default:
        if (!write_all(c, request_.data(), request_.size())) return server_closed(c);
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
    }
  }

  void on_upgraded(Conn& c) {
    ++stats(c).upgraded;
    c.phase = Phase::active;
    c.in.clear();
    switch (c.kind) {
      case Kind::huge:
        if (!write_all(c, huge_header_.data(), huge_header_.size())) return server_closed(c);
        c.next_ns = now_ns() + static_cast<std::uint64_t>(o_.trickle_ms) * 1000000ull;
        return;
      case Kind::garbage_after:
        if (!write_all(c, garbage_.data(), garbage_.size())) return server_closed(c);
        return;
      case Kind::reset: {
        write_all(c, half_frame_.data(), half_frame_.size());
        const linger hard{1, 0};
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
        ++stats(c).reset_sent;
        finish(c);
        return;
      }
      case Kind::flood:
        set_events(c, EPOLLOUT | EPOLLRDHUP);  // never EPOLLIN: this client does not read
        flood(c);
        return;
      default:
        return;
    }
  }

  void flood(Conn& c) {
    for (;;) {
      std::size_t written = 0;
      if (!write_some(c, flood_frame_.data() + c.offset, flood_frame_.size() - c.offset, written)) {
        return server_closed(c);
      }
      c.offset += written;
      if (c.offset < flood_frame_.size()) return;  // the socket is full: the next EPOLLOUT resumes
      c.offset = 0;
      ++stats(c).messages_sent;
    }
  }

  void on_event(Conn& c, std::uint32_t events) {
    if (c.fd < 0) return;
    if (c.phase == Phase::connecting) {
      if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
      return;
    }
    if (c.kind == Kind::flood && c.phase == Phase::active) {
      if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) return server_closed(c);
      if (events & EPOLLOUT) flood(c);
      return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_from(c);
  }

  void read_from(Conn& c) {
    std::uint8_t buffer[16384];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        if (c.in.size() < 4096) c.in.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
        if (c.phase == Phase::upgrading) {
          const std::size_t end = c.in.find("\r\n\r\n");
          if (end == std::string::npos) continue;
          if (c.in.starts_with("HTTP/1.1 101")) {
            on_upgraded(c);
            if (c.fd < 0) return;
            continue;
          }
          note_answer(c);
        } else {
          note_answer(c);
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return server_closed(c);
    }
  }

  // The first thing the server said before closing: an HTTP status, or a close frame's code.
  void note_answer(Conn& c) {
    if (c.answered || c.in.empty()) return;
    if (c.in.starts_with("HTTP/")) {
      if (c.in.size() < 12) return;
      c.answered = true;
      ++stats(c).answers["http " + c.in.substr(9, 3)];
      return;
    }
    const auto* p = reinterpret_cast<const std::uint8_t*>(c.in.data());
    if ((p[0] & 0x0f) != 0x8) return;  // a data frame or pong before the close: wait for more
    if (c.in.size() < 4) return;
    c.answered = true;
    const unsigned code = (static_cast<unsigned>(p[2]) << 8) | p[3];
    ++stats(c).answers["close " + std::to_string((p[1] & 0x7f) >= 2 ? code : 1005)];
  }

  void server_closed(Conn& c) {
    Stats& s = stats(c);
    ++s.closed_by_server;
    if (!c.answered) ++s.answers["none"];
    s.close_seconds.push_back(static_cast<double>(now_ns() - c.opened_ns) / 1e9);
    finish(c);
  }

  void finish(Conn& c) {
    if (c.fd < 0) return;
    ::close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
    ++reap_pending_;
  }

  void tick(std::uint64_t now) {
    const std::uint64_t interval = static_cast<std::uint64_t>(o_.trickle_ms) * 1000000ull;
    for (auto& cp : conns_) {
      Conn& c = *cp;
      if (c.fd < 0 || c.phase != Phase::active) continue;
      if ((c.kind == Kind::garbage_before || c.kind == Kind::garbage_after) && now - c.opened_ns > kShortLivedNs) {
        ++stats(c).survived;
        finish(c);
        continue;
      }
      if ((c.kind != Kind::slowloris && c.kind != Kind::huge) || c.next_ns > now) continue;
      c.next_ns = now + interval;
      if (c.kind == Kind::slowloris) {
        if (c.offset >= request_.size()) continue;  // the whole request went out (a very long run)
        if (!write_all(c, request_.data() + c.offset, 1)) {
          server_closed(c);
          continue;
        }
        ++c.offset;
      } else {
        const std::uint8_t byte = 0x5a;
        if (!write_all(c, &byte, 1)) server_closed(c);
      }
    }
  }

  void reap() {
    if (reap_pending_ == 0) return;
    std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->fd < 0; });
    reap_pending_ = 0;
  }

  static double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
  }

  void report() {
    std::printf("%-24s %8s %8s %8s %8s %8s %8s %10s %10s  %s\n", "kind", "started", "failed", "upgraded", "closed",
                "survived", "open@end", "close_p50", "close_max", "server's answers");
    std::string json = "{\"kinds\":{";
    bool first = true;
    for (std::size_t k = 0; k < kKindNames.size(); ++k) {
      const Stats& s = stats_[k];
      if (s.started == 0) continue;
      std::string answers;
      for (const auto& [what, n] : s.answers) answers += what + " x" + std::to_string(n) + ", ";
      if (!answers.empty()) answers.resize(answers.size() - 2);
      const double p50 = percentile(s.close_seconds, 0.5), max = percentile(s.close_seconds, 1.0);
      std::printf("%-24s %8llu %8llu %8llu %8llu %8llu %8llu %9.2fs %9.2fs  %s\n", kKindNames[k],
                  static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.connect_failed),
                  static_cast<unsigned long long>(s.upgraded), static_cast<unsigned long long>(s.closed_by_server),
                  static_cast<unsigned long long>(s.survived), static_cast<unsigned long long>(s.open_at_end), p50,
                  max, answers.c_str());
      if (s.messages_sent != 0) {
        std::printf("%-24s %llu messages, %.1f MiB sent without reading\n", "",
                    static_cast<unsigned long long>(s.messages_sent), static_cast<double>(s.bytes_sent) / (1 << 20));
      }
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "%s\"%s\":{\"started\":%llu,\"connect_failed\":%llu,\"upgraded\":%llu,\"closed_by_server\":%llu,"
                    "\"survived\":%llu,\"open_at_end\":%llu,\"messages_sent\":%llu,\"bytes_sent\":%llu,"
                    "\"close_p50_s\":%.3f,\"close_max_s\":%.3f,\"answers\":{",
                    first ? "" : ",", kKindNames[k], static_cast<unsigned long long>(s.started),
                    static_cast<unsigned long long>(s.connect_failed), static_cast<unsigned long long>(s.upgraded),
                    static_cast<unsigned long long>(s.closed_by_server), static_cast<unsigned long long>(s.survived),
                    static_cast<unsigned long long>(s.open_at_end), static_cast<unsigned long long>(s.messages_sent),
                    static_cast<unsigned long long>(s.bytes_sent), p50, max);
      json += buf;
      bool first_answer = true;
      for (const auto& [what, n] : s.answers) {
        json += (first_answer ? "\"" : ",\"") + what + "\":" + std::to_string(n);
        first_answer = false;
      }
      json += "}}";
      first = false;
    }
    json += "}}\n";
    if (!o_.json.empty()) {
      if (FILE* f = std::fopen(o_.json.c_str(), "w")) {
        std::fputs(json.c_str(), f);
        std::fclose(f);
      }
    }
  }

  Options o_;
  std::mt19937_64 rng_;
  int ep_ = -1;
  std::string request_;
  std::vector<std::uint8_t> garbage_, flood_frame_, huge_header_, half_frame_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::array<Stats, kKindNames.size()> stats_{};
  std::size_t reap_pending_ = 0;
  std::uint32_t next_source_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  OptionTable table("edgews_hostile", kUsage);
  table.text("--host", "ADDR", o.host, "server address (IPv4)")
      .number("--port", "N", o.port, {1, 65535}, "server port (required)")
      .shown_default("")
      .text("--path", "PATH", o.path, "upgrade path")
      .number("--duration", "S", o.duration, {1, 3600}, "seconds to run")
      .number("--slowloris", "N", o.slowloris, {0, 15000},
              "connections sending an upgrade request one byte per --trickle-ms")
      .number("--huge", "N", o.huge, {0, 15000},
              "upgraded connections announcing a 1 GiB frame, one byte per --trickle-ms")
      .number("--garbage", "R", o.garbage, {0, 10000}, "new connections per second sending 1 KiB of random bytes")
      .number("--reset", "R", o.reset, {0, 10000},
              "new connections per second that upgrade, send half a frame and reset")
      .number("--flood", "N", o.flood, {0, 15000}, "upgraded connections sending 64 KiB messages without reading")
      .number("--flood-size", "BYTES", o.flood_size, {1, 16 << 20}, "message size of --flood")
      .number("--trickle-ms", "MS", o.trickle_ms, {1, 60000}, "interval of the trickling kinds")
      .number("--sources", "N", o.sources, {1, 250}, "spread the connections over 127.0.0.2 .. 127.0.0.(N+1)")
      .text("--json", "FILE", o.json, "write the results as JSON to FILE");
  if (int status = 0; !table.parse(argc - 1, argv + 1, status)) return status;
  if (o.port == 0) {
    std::fprintf(stderr, "edgews_hostile: --port is required (try --help)\n");
    return 2;
  }
  in_addr check{};
  if (inet_pton(AF_INET, o.host.c_str(), &check) != 1) {
    std::fprintf(stderr, "edgews_hostile: --host takes an IPv4 address, not '%s'\n", o.host.c_str());
    return 2;
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  return Hostile(o).run();
}
