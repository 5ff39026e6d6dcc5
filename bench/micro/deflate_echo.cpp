// Echo throughput and per-connection memory of a running `edgews serve`, with and without permessage-deflate.
//
//   deflate_echo PORT SERVER_PID SIZE SECONDS MODE [IDLE_CONNECTIONS]
//     MODE: plain (no extension offered) or deflate ("permessage-deflate; client_no_context_takeover")
//
// One connection keeps 32 messages in flight (repetitive JSON of SIZE bytes) for SECONDS and prints messages/s.
// The client compresses its message once (it offers client_no_context_takeover, so every copy is the same bytes)
// and does not inflate the echoes, so that its own cost stays small beside the server's. Then IDLE_CONNECTIONS connections each echo one message and stay open: the server's
// RSS growth divided by their number is the memory per connection (zlib streams included).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "codec/deflate.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "json_sample.hpp"

namespace {

using namespace edgews::codec;

int connect_to(int port, bool deflate, std::string& leftover) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  static std::mt19937_64 random(std::random_device{}());
  std::string offer;
  if (deflate) {
    DeflateClientOffer client_offer;
    client_offer.client_no_context_takeover = true;
    append_deflate_offer(offer, client_offer);
  }
  const std::string host = "127.0.0.1:" + std::to_string(port);
  ClientRequest args;
  args.host = host;
  args.extensions = offer;
  ClientHandshake handshake;
  std::string req;
  if (handshake.write_request(req, args, make_websocket_key(random))) std::exit(1);
  (void)!::write(fd, req.data(), req.size());
  std::string head;
  char buf[4096];
  ResponseCheck check;
  while (!check.complete) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) std::exit(1);
    head.append(buf, static_cast<std::size_t>(n));
    check = handshake.check_response(head);
    if (!check.complete && !check.defects.empty()) break;  // head too large
  }
  if (const ResponseDefect* defect = check.refusal(ResponseMode::strict)) {
    std::fprintf(stderr, "the upgrade failed: %s\n", defect->message.c_str());
    std::exit(1);
  }
  const bool negotiated = !check.header("sec-websocket-extensions").empty();
  if (negotiated != deflate) {
    std::fprintf(stderr, "negotiation mismatch:\n%s", head.c_str());
    std::exit(1);
  }
  leftover = head.substr(check.head_length);
  return fd;
}

std::size_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// Reads one server frame at a time (unmasked, 7- or 16-bit length).
struct FrameReader {
  int fd;
  std::string buf;
  bool next(std::string& payload, bool& rsv1) {
    for (;;) {
      if (buf.size() >= 2) {
        const auto b1 = static_cast<std::uint8_t>(buf[1]);
        std::size_t len = b1 & 0x7F, h = 2;
        if (len == 126 && buf.size() >= 4) {
          len = (static_cast<std::uint8_t>(buf[2]) << 8) | static_cast<std::uint8_t>(buf[3]);
          h = 4;
        } else if (len == 126) {
          len = SIZE_MAX;
        }
        if (len != SIZE_MAX && buf.size() >= h + len) {
          rsv1 = (static_cast<std::uint8_t>(buf[0]) & 0x40) != 0;
          payload.assign(buf, h, len);
          buf.erase(0, h + len);
          return true;
        }
      }
      char tmp[65536];
      const ssize_t n = ::read(fd, tmp, sizeof tmp);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: deflate_echo PORT SERVER_PID SIZE SECONDS plain|deflate [IDLE_CONNECTIONS]\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const int pid = std::atoi(argv[2]);
  const std::size_t size = std::strtoull(argv[3], nullptr, 10);
  const double seconds = std::atof(argv[4]);
  const bool deflate = std::string(argv[5]) == "deflate";
  const int idle = argc > 6 ? std::atoi(argv[6]) : 0;

  // kInFlight different messages, each compressed on its own (client_no_context_takeover).
  constexpr int kInFlight = 32;
  std::vector<std::string> messages;
  std::vector<std::uint8_t> batch;
  std::vector<std::uint8_t> first_frame;  // what each idle connection sends once
  Deflater d;
  d.init(15);
  for (int i = 0; i < kInFlight; ++i) {
    messages.push_back(edgews::bench::json_sample(size, static_cast<unsigned>(i)));
    std::vector<std::uint8_t> payload(messages.back().begin(), messages.back().end());
    if (deflate) {
      ByteBuffer out;
      d.compress(payload, out, true);
      payload.assign(out.data(), out.data() + out.size());
    }
    const std::uint8_t key[4] = {1, 2, 3, static_cast<std::uint8_t>(i)};
    std::vector<std::uint8_t> frame(kMaxFrameHeaderSize + payload.size());
    const std::size_t h = write_frame_header(frame.data(), Opcode::text, payload.size(), true, deflate, key);
    mask_copy(frame.data() + h, payload.data(), payload.size(), key, 0);
    frame.resize(h + payload.size());
    batch.insert(batch.end(), frame.begin(), frame.end());
    if (i == 0) first_frame = frame;
  }

  std::string leftover;
  const int fd = connect_to(port, deflate, leftover);
  FrameReader reader{fd, leftover};
  std::size_t echoed = 0, wire_bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    (void)!::write(fd, batch.data(), batch.size());
    for (int i = 0; i < kInFlight; ++i) {
      std::string p;
      bool rsv1 = false;
      if (!reader.next(p, rsv1)) {
        std::fprintf(stderr, "connection closed\n");
        return 1;
      }
      wire_bytes += p.size();
      if (rsv1 != deflate) {
        std::fprintf(stderr, "RSV1 %d, expected %d\n", rsv1, deflate);
        return 1;
      }
      // Plain echoes are compared now and then; compressed ones are checked by tests/deflate (the server's
      // context takeover means only a stream that saw every echo could inflate one).
      if (++echoed % 1000 == 0 && !deflate && p != messages[static_cast<std::size_t>(i)]) {
        std::fprintf(stderr, "echo mismatch\n");
        return 1;
      }
    }
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::printf("mode=%s size=%zu messages/s=%.0f wire_bytes_per_echo=%.0f\n", deflate ? "deflate" : "plain", size,
              static_cast<double>(echoed) / elapsed, static_cast<double>(wire_bytes) / static_cast<double>(echoed));

  if (idle > 0) {
    const std::size_t before = rss_kib(pid);
    std::vector<int> fds;
    for (int i = 0; i < idle; ++i) {
      std::string rest;
      const int c = connect_to(port, deflate, rest);
      (void)!::write(c, first_frame.data(), first_frame.size());
      FrameReader r{c, rest};
      std::string p;
      bool rsv1 = false;
      if (!r.next(p, rsv1)) return 1;
      fds.push_back(c);
    }
    usleep(200000);
    const std::size_t after = rss_kib(pid);
    std::printf("mode=%s idle_connections=%d server_rss_growth=%zu KiB per_connection=%.1f KiB\n",
                deflate ? "deflate" : "plain", idle, after - before,
                static_cast<double>(after - before) / idle);
    for (int c : fds) ::close(c);
  }
  ::close(fd);
  return 0;
}
