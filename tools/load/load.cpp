// `edgews load`: an epoll WebSocket load generator that verifies every echoed message.
//
// Two engines run the same schedule and the same checks:
//   - raw (the default): lean on purpose. On a 2-core machine the client costs about as much per message as the
//     server, so per readiness a connection does one read into a large shared buffer and one write of everything
//     it has to send, and a message costs no allocation (send slots and the output buffer are sized once per
//     connection). Epoll is level-triggered, so a read that filled the buffer is simply reported again instead of
//     being drained. It speaks through the codec (request writer, response check, frame reader).
//   - client: one edgews::Client per connection, all on one net::Reactor: what an application on the client API
//     gets, measured against the raw engine (bench/load/client_engine.sh).
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"
#include "codec/response_validator.hpp"
#include "codec/ws_url.hpp"
#include "core/client.hpp"
#include "net/reactor.hpp"
#include "net/socket.hpp"
#include "net/tls.hpp"
#include "tools/load/histogram.hpp"
#include "tools/load/payload.hpp"
#include "tools/load/proc_stats.hpp"
#include "tools/options.hpp"

namespace edgews::tools {

namespace {

constexpr const char* kLoadUsage = R"(usage: edgews load URL [options]

Opens N WebSocket connections to an echo server (ws:// or wss://), sends messages and checks every echo:
XXH3 of the payload plus a sequence number count corrupted, lost, duplicated and reordered messages; the
101 response is checked by the strict validator. Exit status 0 when no error was counted, 1 otherwise.

  URL                       ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (HOST numeric or localhost)
)";

enum class Engine : std::uint8_t { raw, client };

constexpr std::size_t kReadBuffer = 256 * 1024;
constexpr int kMaxConnecting = 256;  // connects in progress at once (the listen backlog is finite)
constexpr double kDrainSeconds = 2.0;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// A wait in whole milliseconds, rounded up: one rounded down to 0 would spin.
int ceil_ms(const timespec& wait) {
  return static_cast<int>((wait.tv_sec * 1000000000L + wait.tv_nsec + 999999) / 1000000);
}

struct Options {
  Engine engine = Engine::raw;
  std::string url;
  bool tls = false;
  std::string host, path = "/", host_header;
  std::uint16_t port = 0;
  int connections = 100;
  int inflight = 1;
  std::size_t size = 16;
  bool text = false;
  double duration = 5, warmup = 1, connect_timeout = 10;
  double rate = 0;
  bool connect_only = false;
  pid_t server_pid = 0;
  long settle_ms = 500;
  std::string ca_file, json;
  bool quiet = false;
};

bool parse_url(const std::string& text, Options& o, std::string& error) {
  codec::WsUrl url;
  if (const codec::UrlError e = codec::parse_ws_url(text, url)) {
    error = e.message;
    return false;
  }
  o.url = text;
  o.tls = url.secure;
  o.host = url.host;
  o.port = url.port;
  o.path = url.resource;
  o.host_header = url.host_header();
  return true;
}

struct Counters {
  std::uint64_t corrupted = 0, lost = 0, duplicated = 0, reordered = 0, protocol = 0, closed_by_server = 0;
  std::uint64_t connect_failed = 0, handshake_failed = 0, duplicate_header = 0, accept_mismatch = 0;
  std::uint64_t skipped = 0;  // open loop: a send was due while the window was full
  std::uint64_t total() const {
    return corrupted + lost + duplicated + reordered + protocol + closed_by_server + connect_failed + handshake_failed;
  }
};

enum class State : std::uint8_t { idle, connecting, tls_handshake, upgrading, open, closed };

struct Slot {
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;
  bool outstanding = false;
};

struct Conn {
  int fd = -1;
  State state = State::idle;
  bool epollout = false;
  std::unique_ptr<net::TlsStream> tls;
  codec::MessageReader reader{codec::Role::client};
  std::string head;  // the handshake: the request, then the response as it arrives
  std::unique_ptr<codec::ClientHandshake> handshake;  // only while upgrading: an open connection keeps 8 bytes
  std::unique_ptr<std::uint8_t[]> out;  // frames not yet taken by the kernel: [out_off, out_len)
  std::size_t out_cap = 0, out_off = 0, out_len = 0;
  std::unique_ptr<Slot[]> slots;
  std::uint64_t slot_mask = 0;
  std::uint64_t next_seq = 0;  // next sequence number to send
  std::uint64_t expected = 0;  // one past the highest sequence number received in order
  std::uint64_t rng = 0;
  std::uint64_t scheduled = 0;  // open loop: send times of the schedule used (sent or skipped)
  std::unique_ptr<core::Client> client;  // the client engine: the connection
};

class LoadGenerator {
 public:
  explicit LoadGenerator(Options o)
      : o_(std::move(o)), pattern_(o_.size, o_.text), rbuf_(new std::uint8_t[kReadBuffer]) {}

  int run();

 private:
  // Connection life.
  void start_connect(std::size_t i);
  void on_event(std::size_t i, std::uint32_t events, std::uint64_t now);
  void begin_upgrade(Conn& c);
  void handle_bytes(Conn& c, std::uint8_t* data, std::size_t n, std::uint64_t now);
  void handle_frames(Conn& c, std::uint8_t* data, std::size_t n, std::uint64_t now);
  void on_message(Conn& c, const std::uint8_t* p, std::size_t n, std::uint64_t now);
  void fail(Conn& c);
  void mark_closed(Conn& c);
  void opened(Conn& c);  // either engine: counted open, its send slots allocated
  bool flush(Conn& c);
  void set_epollout(Conn& c, bool on);
  std::size_t index_of(const Conn& c) const { return static_cast<std::size_t>(&c - conns_.data()); }

  // Sending.
  void fill_closed_loop(Conn& c, std::uint64_t now);
  void fill_open_loop(Conn& c, std::uint64_t now);
  bool append_message(Conn& c, std::uint64_t sent_ns);
  void append_frame(Conn& c, codec::Opcode op, const std::uint8_t* p, std::size_t n);
  void ensure_out(Conn& c, std::size_t more);

  // The client engine.
  void start_client(std::size_t i);
  void client_opened(Conn& c);
  void client_message(Conn& c, std::span<const std::uint8_t> data);
  void client_closed(Conn& c, const core::Error& error);

  // One wait for readiness (at most `wait`) and what it brought; then, open loop, what is due.
  void turn(std::vector<epoll_event>& events, const timespec& wait);
  void fill(Conn& c, std::uint64_t now);

  void progress(std::uint64_t now);
  void report(double measured_s, double server_cpu, double client_cpu, long rss_before, long rss_after);

  Options o_;
  PayloadPattern pattern_;
  std::unique_ptr<std::uint8_t[]> rbuf_;
  std::unique_ptr<net::Reactor> reactor_;  // the client engine's
  std::vector<std::uint8_t> message_;      // the client engine: kPayloadHeader bytes, then the pattern
  std::vector<Conn> conns_;
  int epfd_ = -1;
  net::Address address_;
  net::ClientContextPtr tls_ctx_;
  Counters errors_;
  bool measuring_ = false, sending_ = false;
  std::uint64_t measured_messages_ = 0;
  std::uint64_t all_messages_ = 0, last_progress_messages_ = 0;
  int open_ = 0, connecting_ = 0;
  int open_at_end_ = 0;  // connections open when the measured window closed
  std::size_t next_to_connect_ = 0;
  std::uint64_t schedule_start_ns_ = 0;
  double per_conn_rate_ = 0;
  LatencyHistogram window_, interval_;
  bool defect_printed_ = false;
};

void LoadGenerator::set_epollout(Conn& c, bool on) {
  if (c.epollout == on || c.fd < 0) return;
  c.epollout = on;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u64 = index_of(c);
  epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void LoadGenerator::start_connect(std::size_t i) {
  Conn& c = conns_[i];
  net::Error error;
  net::Fd fd = net::connect_tcp(address_, true, error);
  if (!fd) {
    ++errors_.connect_failed;
    if (errors_.connect_failed == 1) std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
    c.state = State::closed;
    return;
  }
  c.fd = fd.release();
  c.state = State::connecting;
  c.epollout = true;
  c.rng = 0x9E3779B97F4A7C15ull * (i + 1) ^ now_ns();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = i;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
  ++connecting_;
}

void LoadGenerator::mark_closed(Conn& c) {
  if (c.state == State::closed) return;
  if (c.state != State::open) --connecting_;
  else --open_;
  c.state = State::closed;
}

void LoadGenerator::fail(Conn& c) {
  if (c.state == State::closed) return;
  mark_closed(c);
  c.client.reset();  // never from the client's own callbacks: those mark the connection closed only
  c.tls.reset();
  c.handshake.reset();
  if (c.fd >= 0) ::close(c.fd);  // also removes it from the epoll set
  c.fd = -1;
}

void LoadGenerator::ensure_out(Conn& c, std::size_t more) {
  if (c.out_off > 0 && c.out_off == c.out_len) c.out_off = c.out_len = 0;
  if (c.out_len + more <= c.out_cap) return;
  if (c.out_off > 0) {  // move the unsent rest to the front before growing
    std::memmove(c.out.get(), c.out.get() + c.out_off, c.out_len - c.out_off);
    c.out_len -= c.out_off;
    c.out_off = 0;
    if (c.out_len + more <= c.out_cap) return;
  }
  const std::size_t cap = std::max(c.out_cap * 2, c.out_len + more);
  std::unique_ptr<std::uint8_t[]> grown(new std::uint8_t[cap]);
  if (c.out_len) std::memcpy(grown.get(), c.out.get(), c.out_len);
  c.out = std::move(grown);
  c.out_cap = cap;
}

void LoadGenerator::append_frame(Conn& c, codec::Opcode op, const std::uint8_t* p, std::size_t n) {
  ensure_out(c, n + codec::kMaxFrameHeaderSize);
  std::uint8_t key[4];
  c.rng ^= c.rng << 13, c.rng ^= c.rng >> 7, c.rng ^= c.rng << 17;
  std::memcpy(key, &c.rng, 4);
  std::uint8_t* w = c.out.get() + c.out_len;
  const std::size_t h = codec::write_frame_header(w, op, n, true, false, key);
  codec::mask_copy(w + h, p, n, key, 0);
  c.out_len += h + n;
}

bool LoadGenerator::append_message(Conn& c, std::uint64_t sent_ns) {
  const std::uint64_t seq = c.next_seq;
  Slot& s = c.slots[seq & c.slot_mask];
  // The slot's previous message was sent `slots` messages ago and later ones came back: it is lost.
  if (s.outstanding) ++errors_.lost;
  s = Slot{seq, sent_ns, true};
  ++c.next_seq;

  const std::size_t n = o_.size;
  if (c.client) {
    // message_ is the pattern behind room for a head: the head goes right in front of this message's body (over
    // bytes other bodies use, put back after the send, which copies), so no body is copied here.
    const std::size_t at = PayloadPattern::offset_for(seq);
    std::uint8_t* head = message_.data() + at;
    std::uint8_t saved[kPayloadHeader];
    std::memcpy(saved, head, kPayloadHeader);
    write_payload_head(head, seq, head + kPayloadHeader, n - kPayloadHeader);
    const core::SendStatus sent = o_.text ? c.client->send_text({reinterpret_cast<const char*>(head), n})
                                          : c.client->send_binary({head, n});
    std::memcpy(head, saved, kPayloadHeader);
    return sent == core::SendStatus::ok;  // closed: on_close counts the end; dropped: no limit is set
  }
  ensure_out(c, n + codec::kMaxFrameHeaderSize);
  std::uint8_t key[4];
  c.rng ^= c.rng << 13, c.rng ^= c.rng >> 7, c.rng ^= c.rng << 17;
  std::memcpy(key, &c.rng, 4);
  std::uint8_t* w = c.out.get() + c.out_len;
  const std::size_t h =
      codec::write_frame_header(w, o_.text ? codec::Opcode::text : codec::Opcode::binary, n, true, false, key);
  const std::uint8_t* body = pattern_.body_for(seq);
  std::uint8_t head[kPayloadHeader];
  write_payload_head(head, seq, body, n - kPayloadHeader);
  const std::size_t phase = codec::mask_copy(w + h, head, kPayloadHeader, key, 0);
  codec::mask_copy(w + h + kPayloadHeader, body, n - kPayloadHeader, key, phase);
  c.out_len += h + n;
  return true;
}

void LoadGenerator::fill_closed_loop(Conn& c, std::uint64_t now) {
  while (c.next_seq - c.expected < static_cast<std::uint64_t>(o_.inflight)) append_message(c, now);
}

void LoadGenerator::fill_open_loop(Conn& c, std::uint64_t now) {
  const double elapsed = static_cast<double>(now - schedule_start_ns_) / 1e9;
  // Connection i runs i/N of a period behind the first, so the sends of all connections spread evenly.
  const double offset = static_cast<double>(index_of(c)) / static_cast<double>(conns_.size());
  const double slots = elapsed * per_conn_rate_ - offset;
  const std::uint64_t due = slots < 0 ? 0 : static_cast<std::uint64_t>(slots) + 1;
  while (c.scheduled < due) {
    if (c.next_seq - c.expected >= static_cast<std::uint64_t>(o_.inflight)) {
      // The window is full: these sends are skipped (counted), not queued, so the schedule stays honest.
      errors_.skipped += due - c.scheduled;
      c.scheduled = due;
      break;
    }
    // Latency counts from the time the message was due, not from when it could be sent (no coordinated omission).
    append_message(c, schedule_start_ns_ + static_cast<std::uint64_t>(
                             (static_cast<double>(c.scheduled) + offset) / per_conn_rate_ * 1e9));
    ++c.scheduled;
  }
}

bool LoadGenerator::flush(Conn& c) {
  while (c.out_off < c.out_len) {
    const std::size_t len = c.out_len - c.out_off;
    std::size_t taken = 0;
    bool blocked = false;
    if (c.tls) {
      const net::TlsResult r = c.tls->write(c.out.get() + c.out_off, len);
      taken = r.bytes;
      if (r.status == net::TlsIo::want_write || r.status == net::TlsIo::want_read) blocked = true;
      else if (r.status != net::TlsIo::ok) return false;
    } else {
      const iovec iov{c.out.get() + c.out_off, len};
      const net::IoResult r = net::write_vec(c.fd, &iov, 1);
      if (r.status == net::IoStatus::would_block) blocked = true;
      else if (r.status != net::IoStatus::ok) return false;
      taken = r.bytes;
    }
    c.out_off += taken;
    if (blocked || taken < len) break;  // a short write means the socket buffer is full
  }
  set_epollout(c, c.out_off < c.out_len);
  return true;
}

void LoadGenerator::begin_upgrade(Conn& c) {
  auto next_byte = [&c] {
    c.rng ^= c.rng << 13, c.rng ^= c.rng >> 7, c.rng ^= c.rng << 17;
    return static_cast<std::uint8_t>(c.rng >> 32);
  };
  codec::ClientRequest request;
  request.host = o_.host_header;
  request.resource = o_.path;
  c.head.clear();
  c.handshake = std::make_unique<codec::ClientHandshake>();
  if (const codec::HeaderError e = c.handshake->write_request(c.head, request, codec::make_websocket_key(next_byte))) {
    std::fprintf(stderr, "edgews load: %s\n", e.message.c_str());
    ++errors_.handshake_failed;
    fail(c);
    return;
  }
  ensure_out(c, c.head.size());
  std::memcpy(c.out.get() + c.out_len, c.head.data(), c.head.size());
  c.out_len += c.head.size();
  c.head.clear();
  c.state = State::upgrading;
  if (!flush(c)) {
    ++errors_.handshake_failed;
    fail(c);
  }
}

void LoadGenerator::on_message(Conn& c, const std::uint8_t* p, std::size_t n, std::uint64_t now) {
  std::uint64_t seq = 0;
  if (n != o_.size || !verify_payload(p, n, seq) || seq >= c.next_seq) {
    // An echo server answers in order, so the damaged message stands for the next one expected.
    ++errors_.corrupted;
    Slot& s = c.slots[c.expected & c.slot_mask];
    if (s.outstanding && s.seq == c.expected) s.outstanding = false;
    if (c.expected < c.next_seq) ++c.expected;
    return;
  }
  Slot& s = c.slots[seq & c.slot_mask];
  if (!s.outstanding || s.seq != seq) {
    ++errors_.duplicated;
    return;
  }
  s.outstanding = false;
  if (seq < c.expected) ++errors_.reordered;  // it was overtaken by a later one
  else c.expected = seq + 1;                  // seq > expected leaves earlier ones missing (late or lost)
  ++all_messages_;
  const std::uint64_t rtt = now > s.sent_ns ? now - s.sent_ns : 0;
  interval_.record(rtt);
  if (measuring_) {
    ++measured_messages_;
    window_.record(rtt);
  }
}

void LoadGenerator::handle_frames(Conn& c, std::uint8_t* data, std::size_t n, std::uint64_t now) {
  std::size_t used = 0;
  for (std::size_t off = 0; c.state == State::open; off += used) {
    const codec::Event ev = c.reader.next(data + off, n - off, used);
    switch (ev.type) {
      case codec::EventType::need_more:
        return;
      case codec::EventType::message:
        on_message(c, ev.payload.data(), ev.payload.size(), now);
        break;
      case codec::EventType::ping:
        append_frame(c, codec::Opcode::pong, ev.payload.data(), ev.payload.size());
        break;
      case codec::EventType::pong:
        break;
      case codec::EventType::close:
        if (sending_ || o_.connect_only) ++errors_.closed_by_server;
        fail(c);
        return;
      case codec::EventType::error:
        ++errors_.protocol;
        if (errors_.protocol == 1)
          std::fprintf(stderr, "edgews load: protocol error from the server: %s\n",
                       std::string(codec::describe(ev.error)).c_str());
        fail(c);
        return;
    }
  }
}

void LoadGenerator::handle_bytes(Conn& c, std::uint8_t* data, std::size_t n, std::uint64_t now) {
  if (c.state == State::open) {
    handle_frames(c, data, n, now);
    return;
  }
  if (c.state != State::upgrading) return;
  c.head.append(reinterpret_cast<const char*>(data), n);
  const codec::ResponseCheck check = c.handshake->check_response(c.head);
  if (!check.complete) {
    if (c.head.size() > 64 * 1024) {
      ++errors_.handshake_failed;
      fail(c);
    }
    return;
  }
  if (check.has(codec::ResponseDefect::Kind::duplicate_header)) ++errors_.duplicate_header;
  if (check.has(codec::ResponseDefect::Kind::accept_mismatch)) ++errors_.accept_mismatch;
  if (!check.ok()) {
    ++errors_.handshake_failed;
    if (!defect_printed_ && !check.defects.empty()) {
      defect_printed_ = true;
      std::fprintf(stderr, "edgews load: bad 101 response: %s\n", check.defects.front().message.c_str());
    }
    fail(c);
    return;
  }
  // Open: the send window and the slots are allocated once here; no message allocates afterwards.
  c.handshake.reset();
  opened(c);
  if (!o_.connect_only) {
    ensure_out(c, static_cast<std::size_t>(o_.inflight) * (o_.size + codec::kMaxFrameHeaderSize) + 256);
  }
  const std::size_t head_len = check.head_length;
  const std::size_t rest = c.head.size() - head_len;
  if (rest > 0) {
    std::memcpy(rbuf_.get(), c.head.data() + head_len, rest);  // frames right behind the 101
    std::string().swap(c.head);
    handle_frames(c, rbuf_.get(), rest, now);
  } else {
    std::string().swap(c.head);
  }
}

void LoadGenerator::on_event(std::size_t i, std::uint32_t events, std::uint64_t now) {
  Conn& c = conns_[i];
  if (c.state == State::connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      ++errors_.connect_failed;
      if (errors_.connect_failed == 1) std::fprintf(stderr, "edgews load: connect: %s\n", std::strerror(err));
      fail(c);
      return;
    }
    if (o_.tls) {
      net::TlsError terr;
      c.tls = net::TlsStream::connect(tls_ctx_.get(), c.fd, o_.host, terr);
      if (!c.tls) {
        ++errors_.handshake_failed;
        std::fprintf(stderr, "edgews load: %s\n", terr.message.c_str());
        fail(c);
        return;
      }
      c.state = State::tls_handshake;
    } else {
      begin_upgrade(c);
      return;
    }
  }
  if (c.state == State::tls_handshake) {
    const net::TlsResult r = c.tls->handshake();
    if (r.status == net::TlsIo::ok) {
      begin_upgrade(c);
    } else if (r.status == net::TlsIo::want_read || r.status == net::TlsIo::want_write) {
      set_epollout(c, r.status == net::TlsIo::want_write);
    } else {
      ++errors_.handshake_failed;
      if (errors_.handshake_failed == 1) std::fprintf(stderr, "edgews load: TLS: %s\n", c.tls->error_message().c_str());
      fail(c);
    }
    return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c.state != State::closed) {
    bool eof = false;
    if (c.tls) {
      // OpenSSL holds whole records: read until it wants the socket again (see net/tls.hpp).
      for (int rounds = 0; rounds < 64 && c.state != State::closed; ++rounds) {
        const net::TlsResult r = c.tls->read(rbuf_.get(), kReadBuffer);
        if (r.status == net::TlsIo::ok) handle_bytes(c, rbuf_.get(), r.bytes, now);
        else if (r.status == net::TlsIo::want_read || r.status == net::TlsIo::want_write) break;
        else {
          eof = true;
          break;
        }
      }
    } else {
      const net::IoResult r = net::read_some(c.fd, rbuf_.get(), kReadBuffer);
      if (r.status == net::IoStatus::ok) handle_bytes(c, rbuf_.get(), r.bytes, now);
      else if (r.status != net::IoStatus::would_block) eof = true;
    }
    if (eof && c.state != State::closed) {
      if (c.state == State::open && (sending_ || o_.connect_only)) ++errors_.closed_by_server;
      else if (c.state != State::open) ++errors_.handshake_failed;
      fail(c);
      return;
    }
  }
  if (c.state == State::open && sending_) {
    if (o_.rate > 0) fill_open_loop(c, now);
    else fill_closed_loop(c, now);
  }
  if (c.state == State::open || c.state == State::upgrading) {
    if (c.out_off < c.out_len && !flush(c)) {
      if (c.state == State::open && sending_) ++errors_.closed_by_server;
      fail(c);
    }
  }
}

void LoadGenerator::fill(Conn& c, std::uint64_t now) {
  if (o_.rate > 0) fill_open_loop(c, now);
  else fill_closed_loop(c, now);
}

void LoadGenerator::start_client(std::size_t i) {
  Conn& c = conns_[i];
  core::ClientOptions options;
  options.url = o_.url;
  options.tls.verify = !o_.ca_file.empty();  // as the raw engine: verified against --ca only
  options.tls.ca_file = o_.ca_file;
  const auto timeout = std::chrono::milliseconds(static_cast<long>(o_.connect_timeout * 1000));
  options.connect_timeout = options.handshake_timeout = timeout;
  options.ping_interval = std::chrono::milliseconds(0);  // the raw engine sends none: the same work on the wire
  options.max_message_size = std::max<std::uint64_t>(o_.size, options.max_message_size);
  options.max_backpressure = SIZE_MAX;  // --inflight bounds what waits
  options.reconnect.enabled = false;    // a connection that ends is counted, not replaced
  options.reactor = reactor_.get();
  core::ClientCallbacks callbacks;
  callbacks.on_open = [this, i](std::string_view) { client_opened(conns_[i]); };
  callbacks.on_message = [this, i](std::span<const std::uint8_t> data, bool) { client_message(conns_[i], data); };
  callbacks.on_close = [this, i](std::uint16_t, std::string_view, const core::Error& error) {
    client_closed(conns_[i], error);
  };
  c.client = std::make_unique<core::Client>(std::move(options), std::move(callbacks));
  c.state = State::connecting;
  ++connecting_;
  if (const core::Error error = c.client->start()) {
    ++errors_.connect_failed;
    if (errors_.connect_failed == 1) std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
    fail(c);
  }
}

void LoadGenerator::opened(Conn& c) {
  c.state = State::open;
  --connecting_;
  ++open_;
  std::uint64_t slots = 4;
  while (slots < 2 * static_cast<std::uint64_t>(o_.inflight)) slots *= 2;
  c.slots.reset(new Slot[slots]);
  c.slot_mask = slots - 1;
}

void LoadGenerator::client_opened(Conn& c) {
  opened(c);
  if (sending_) fill(c, now_ns());
}

void LoadGenerator::client_message(Conn& c, std::span<const std::uint8_t> data) {
  const std::uint64_t now = reactor_->now_ns();  // read after epoll_wait, as the raw engine reads it
  on_message(c, data.data(), data.size(), now);
  if (sending_ && c.state == State::open) fill(c, now);  // written once the client has delivered the read
}

void LoadGenerator::client_closed(Conn& c, const core::Error& error) {
  if (c.state == State::closed) return;
  if (c.state == State::open) {
    if (error.code == core::Errc::protocol_error) {
      if (++errors_.protocol == 1) std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
    } else if (sending_ || o_.connect_only) {
      ++errors_.closed_by_server;
    }
  } else if (error.code == core::Errc::refused || error.code == core::Errc::unreachable ||
             error.code == core::Errc::resolve_failed || error.code == core::Errc::timeout) {
    // As the raw engine, which gives up on every connection not open after --connect-timeout.
    if (++errors_.connect_failed == 1) std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
  } else {
    ++errors_.handshake_failed;
    // The client names the defect it refused the 101 for.
    using Kind = codec::ResponseDefect::Kind;
    if (error.message.find(codec::defect_name(Kind::duplicate_header)) != std::string::npos) ++errors_.duplicate_header;
    if (error.message.find(codec::defect_name(Kind::accept_mismatch)) != std::string::npos) ++errors_.accept_mismatch;
    if (!defect_printed_) {
      defect_printed_ = true;
      std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
    }
  }
  mark_closed(c);  // the client itself goes at the end: this runs inside its callback
}

void LoadGenerator::turn(std::vector<epoll_event>& events, const timespec& wait) {
  if (reactor_) {
    if (o_.rate > 0 && sending_) {
      // Open loop: a wait finer than the reactor's milliseconds; then the sends due go into the clients' corks and
      // the reactor's turn delivers what arrived: at its end each connection writes its sends once.
      pollfd p{reactor_->fd(), POLLIN, 0};
      (void)ppoll(&p, 1, &wait, nullptr);
      const std::uint64_t t = now_ns();
      for (Conn& c : conns_) {
        if (c.state == State::open) fill(c, t);
      }
      reactor_->run_once(0);
      return;
    }
    reactor_->run_once(ceil_ms(wait));
  } else {
    // epoll_pwait2 (Linux 5.11) waits in nanoseconds; before it (or under valgrind), milliseconds must do.
    static bool fine_wait = true;
    int n = -1;
    if (fine_wait) {
      n = epoll_pwait2(epfd_, events.data(), static_cast<int>(events.size()), &wait, nullptr);
      if (n < 0 && errno == ENOSYS) fine_wait = false;
    }
    if (!fine_wait) {
      n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), ceil_ms(wait));
    }
    const std::uint64_t t = now_ns();
    for (int k = 0; k < n; ++k) {
      const epoll_event& e = events[static_cast<std::size_t>(k)];
      on_event(e.data.u64, e.events, t);
    }
    if (o_.rate > 0 && sending_) {
      // Open loop: each open connection sends what is due by now.
      const std::uint64_t due = now_ns();
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        if (conns_[i].state == State::open) on_event(i, 0, due);
      }
    }
  }
}

void LoadGenerator::progress(std::uint64_t) {
  const std::uint64_t n = all_messages_ - last_progress_messages_;
  last_progress_messages_ = all_messages_;
  if (!o_.quiet) {
    std::fprintf(stderr,
                 "edgews load: %s open %d  msgs/s %llu  MB/s %.2f  p50 %.1f us  p99 %.1f us  max %.1f us  "
                 "errors %llu\n",
                 measuring_ ? "measuring" : sending_ ? "warm-up  " : "idle     ", open_,
                 static_cast<unsigned long long>(n), static_cast<double>(n * o_.size) / 1e6,
                 static_cast<double>(interval_.percentile(0.5)) / 1e3,
                 static_cast<double>(interval_.percentile(0.99)) / 1e3,
                 static_cast<double>(interval_.max()) / 1e3, static_cast<unsigned long long>(errors_.total()));
  }
  interval_.reset();
}

int LoadGenerator::run() {
  net::Error error;
  if (!net::Address::parse(o_.host, o_.port, address_, error)) {
    std::fprintf(stderr, "edgews load: %s\n", error.message.c_str());
    return 2;
  }
  if (o_.tls) {
    net::TlsError terr;
    tls_ctx_ = net::make_client_context(o_.ca_file, terr);
    if (!tls_ctx_) {
      std::fprintf(stderr, "edgews load: %s\n", terr.message.c_str());
      return 2;
    }
  }
  // Each connection is a descriptor: raise the soft limit up to the hard one.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t need = static_cast<rlim_t>(o_.connections) + 32;
  if (rl.rlim_cur < need) {
    rl.rlim_cur = std::min(need, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < need) {
    std::fprintf(stderr,
                 "edgews load: %d connections need %llu descriptors but this process may open only %llu "
                 "(hard limit); lower --connections or raise the limit (ulimit -Hn)\n",
                 o_.connections, static_cast<unsigned long long>(need), static_cast<unsigned long long>(rl.rlim_max));
    return 2;
  }
  if (o_.engine == Engine::client) {
    net::Error reactor_error;
    reactor_ = net::Reactor::create(reactor_error);
    if (!reactor_) {
      std::fprintf(stderr, "edgews load: %s\n", reactor_error.message.c_str());
      return 2;
    }
    message_.assign(kPayloadHeader, 0);
    message_.insert(message_.end(), pattern_.bytes().begin(), pattern_.bytes().end());
  } else {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
  }
  conns_.resize(static_cast<std::size_t>(o_.connections));
  per_conn_rate_ = o_.rate / o_.connections;

  const long rss_before = o_.server_pid ? process_rss_kib(o_.server_pid) : -1;
  std::vector<epoll_event> events(1024);
  const std::uint64_t t_start = now_ns();
  const auto timeout_ns = static_cast<std::uint64_t>(o_.connect_timeout * 1e9);
  std::uint64_t next_progress = t_start + 1000000000ull;

  // Phase 1: open every connection (at most kMaxConnecting in progress at once).
  while (true) {
    while (connecting_ < kMaxConnecting && next_to_connect_ < conns_.size()) {
      if (reactor_) start_client(next_to_connect_++);
      else start_connect(next_to_connect_++);
    }
    if (connecting_ == 0 && next_to_connect_ == conns_.size()) break;
    const std::uint64_t now = now_ns();
    if (now - t_start > timeout_ns) {
      for (Conn& c : conns_) {
        if (c.state != State::open && c.state != State::closed) {
          ++errors_.connect_failed;
          fail(c);
        }
      }
      for (std::size_t i = next_to_connect_; i < conns_.size(); ++i) ++errors_.connect_failed;
      std::fprintf(stderr, "edgews load: connections not open after %.0f s were given up\n", o_.connect_timeout);
      break;
    }
    turn(events, timespec{0, 100000000});
  }
  const double connect_s = static_cast<double>(now_ns() - t_start) / 1e9;
  if (!o_.quiet) {
    std::fprintf(stderr, "edgews load: %d of %d connections open in %.2f s\n", open_, o_.connections, connect_s);
  }

  // Phase 2: warm-up, then the measured window; then stop sending and drain what is in flight.
  const std::uint64_t t0 = now_ns();
  const std::uint64_t warm_end = o_.connect_only ? t0 : t0 + static_cast<std::uint64_t>(o_.warmup * 1e9);
  const std::uint64_t measure_end = warm_end + static_cast<std::uint64_t>(o_.duration * 1e9);
  sending_ = !o_.connect_only;
  schedule_start_ns_ = t0;
  double server_cpu0 = 0, client_cpu0 = 0, server_cpu = -1, client_cpu = 0;
  long rss_after = -1;
  std::uint64_t measure_start_ns = 0, measure_stop_ns = 0, drain_end = 0;
  next_progress = t0 + 1000000000ull;
  if (sending_) {
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      if (conns_[i].state != State::open) continue;  // the first window
      if (reactor_) fill(conns_[i], t0);
      else on_event(i, 0, t0);
    }
  }
  while (true) {
    const std::uint64_t now = now_ns();
    if (!measuring_ && measure_start_ns == 0 && now >= warm_end) {
      measuring_ = true;
      measure_start_ns = now;
      window_.reset();
      if (o_.server_pid) server_cpu0 = process_cpu_seconds(o_.server_pid);
      client_cpu0 = self_cpu_seconds();
      if (o_.connect_only && o_.server_pid) {
        usleep(static_cast<useconds_t>(o_.settle_ms) * 1000);  // the server's bookkeeping for the last accepts
        rss_after = process_rss_kib(o_.server_pid);
      }
    }
    if (measuring_ && now >= measure_end) {
      measuring_ = false;
      sending_ = false;
      measure_stop_ns = now;
      open_at_end_ = open_;
      if (o_.server_pid) {
        const double s = process_cpu_seconds(o_.server_pid);
        if (s >= 0 && server_cpu0 >= 0) server_cpu = s - server_cpu0;
        if (!o_.connect_only) rss_after = process_rss_kib(o_.server_pid);
      }
      client_cpu = self_cpu_seconds() - client_cpu0;
      drain_end = now + static_cast<std::uint64_t>(kDrainSeconds * 1e9);
    }
    if (drain_end != 0) {
      bool in_flight = false;
      for (const Conn& c : conns_) in_flight |= c.state == State::open && c.next_seq != c.expected;
      if (!in_flight || now >= drain_end || open_ == 0) break;
    }
    if (now >= next_progress) {
      progress(now);
      next_progress += 1000000000ull;
    }
    // Open loop wakes up at least once per send interval (at most every 20 us): a send is late by up to that.
    timespec wait{0, 50000000};
    if (o_.rate > 0 && sending_) wait.tv_nsec = std::clamp(static_cast<long>(1e9 / o_.rate), 20000L, 1000000L);
    turn(events, wait);
    if (open_ == 0 && !o_.connect_only && drain_end == 0 && measure_start_ns != 0) {
      // Every connection is gone: stop early, the report says so.
      measure_stop_ns = now_ns();
      open_at_end_ = 0;
      client_cpu = self_cpu_seconds() - client_cpu0;
      if (o_.server_pid) server_cpu = process_cpu_seconds(o_.server_pid) - server_cpu0;
      break;
    }
  }
  // What never came back is lost.
  for (Conn& c : conns_) {
    if (!c.slots) continue;
    for (std::uint64_t k = 0; k <= c.slot_mask; ++k) errors_.lost += c.slots[k].outstanding ? 1 : 0;
  }
  for (Conn& c : conns_) {
    if (c.client) {
      if (c.state == State::open) c.client->close(1000);  // written at once; nobody waits for the answer
      fail(c);
      c.client.reset();
    } else if (c.fd >= 0) {
      if (c.state == State::open) {
        static const std::uint8_t kNormal[2] = {0x03, 0xE8};  // 1000: RFC 6455 7.4.1
        c.out_off = c.out_len = 0;
        append_frame(c, codec::Opcode::close, kNormal, 2);
        (void)flush(c);
      }
      fail(c);
    }
  }
  if (epfd_ >= 0) ::close(epfd_);
  reactor_.reset();
  const double measured_s =
      measure_stop_ns > measure_start_ns ? static_cast<double>(measure_stop_ns - measure_start_ns) / 1e9 : 0;
  report(measured_s, server_cpu, client_cpu, rss_before, rss_after);
  return errors_.total() == 0 ? 0 : 1;
}

void LoadGenerator::report(double measured_s, double server_cpu, double client_cpu, long rss_before, long rss_after) {
  const double msgs = static_cast<double>(measured_messages_);
  const double rate = measured_s > 0 ? msgs / measured_s : 0;
  const double mbps = rate * static_cast<double>(o_.size) / 1e6;
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  const double server_us = server_cpu >= 0 && msgs > 0 ? server_cpu * 1e6 / msgs : -1;
  const double client_us = msgs > 0 ? client_cpu * 1e6 / msgs : -1;
  const double per_conn = rss_before >= 0 && rss_after >= 0 && o_.connections > 0
                              ? static_cast<double>(rss_after - rss_before) * 1024.0 / o_.connections
                              : -1;
  const char* mode = o_.connect_only ? "connect-only" : o_.rate > 0 ? "open-loop" : "closed-loop";
  const char* engine = o_.engine == Engine::client ? "client" : "raw";
  std::fprintf(stderr,
               "edgews load: %s %s://%s:%u  %d connections (%d open)  %zu B %s  inflight %d  engine %s\n"
               "  messages %.0f in %.2f s: %.0f msgs/s, %.2f MB/s\n"
               "  latency p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n"
               "  errors %llu: corrupted %llu lost %llu duplicated %llu reordered %llu protocol %llu closed %llu "
               "connect %llu handshake %llu (duplicate header %llu, wrong accept %llu)\n",
               mode, o_.tls ? "wss" : "ws", o_.host.c_str(), o_.port, o_.connections, open_at_end_, o_.size,
               o_.text ? "text" : "binary", o_.inflight, engine, msgs, measured_s, rate, mbps,
               us(window_.percentile(0.5)),
               us(window_.percentile(0.99)), us(window_.percentile(0.999)), us(window_.max()),
               static_cast<unsigned long long>(errors_.total()), static_cast<unsigned long long>(errors_.corrupted),
               static_cast<unsigned long long>(errors_.lost), static_cast<unsigned long long>(errors_.duplicated),
               static_cast<unsigned long long>(errors_.reordered), static_cast<unsigned long long>(errors_.protocol),
               static_cast<unsigned long long>(errors_.closed_by_server),
               static_cast<unsigned long long>(errors_.connect_failed),
               static_cast<unsigned long long>(errors_.handshake_failed),
               static_cast<unsigned long long>(errors_.duplicate_header),
               static_cast<unsigned long long>(errors_.accept_mismatch));
  if (o_.rate > 0)
    std::fprintf(stderr, "  open loop at %.0f msgs/s: %llu sends skipped (window full)\n", o_.rate,
                 static_cast<unsigned long long>(errors_.skipped));
  std::fprintf(stderr, "  client CPU %.2f s (%.2f us/msg)", client_cpu, client_us);
  if (o_.server_pid)
    std::fprintf(stderr, "  server CPU %.2f s (%.2f us/msg)  server RSS %ld KiB (before %ld KiB, %.0f B/connection)",
                 server_cpu, server_us, rss_after, rss_before, per_conn);
  std::fputc('\n', stderr);

  if (o_.json.empty()) return;
  std::FILE* f = o_.json == "-" ? stdout : std::fopen(o_.json.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "edgews load: cannot write %s: %s\n", o_.json.c_str(), std::strerror(errno));
    return;
  }
  auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(f,
               "{\"mode\":\"%s\",\"engine\":\"%s\",\"tls\":%s,\"host\":\"%s\",\"port\":%u,\"connections\":%d,"
               "\"open\":%d,"
               "\"inflight\":%d,\"size\":%zu,\"opcode\":\"%s\",\"rate\":%.0f,\"duration_s\":%.3f,"
               "\"messages\":%.0f,\"messages_per_s\":%.1f,\"mb_per_s\":%.3f,"
               "\"latency_us\":{\"p50\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f},"
               "\"errors_total\":%llu,\"errors\":{\"corrupted\":%llu,\"lost\":%llu,\"duplicated\":%llu,"
               "\"reordered\":%llu,\"protocol\":%llu,\"closed_by_server\":%llu,\"connect_failed\":%llu,"
               "\"handshake_failed\":%llu,\"duplicate_header\":%llu,\"accept_mismatch\":%llu},\"skipped\":%llu,"
               "\"client\":{\"cpu_s\":%.3f,\"cpu_us_per_msg\":%.3f}",
               mode, engine, o_.tls ? "true" : "false", o_.host.c_str(), o_.port, o_.connections, open_at_end_,
               o_.inflight, o_.size,
               o_.text ? "text" : "binary", o_.rate, measured_s, msgs, rate, mbps, us(window_.percentile(0.5)),
               us(window_.percentile(0.99)), us(window_.percentile(0.999)), us(window_.max()), u(errors_.total()),
               u(errors_.corrupted), u(errors_.lost), u(errors_.duplicated), u(errors_.reordered), u(errors_.protocol),
               u(errors_.closed_by_server), u(errors_.connect_failed), u(errors_.handshake_failed),
               u(errors_.duplicate_header), u(errors_.accept_mismatch), u(errors_.skipped), client_cpu, client_us);
  if (o_.server_pid)
    std::fprintf(f,
                 ",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_us_per_msg\":%.3f,\"rss_kib_before\":%ld,"
                 "\"rss_kib\":%ld,\"rss_bytes_per_connection\":%.1f}",
                 static_cast<int>(o_.server_pid), server_cpu, server_us, rss_before, rss_after, per_conn);
  std::fputs("}\n", f);
  if (f != stdout) std::fclose(f);
}

}  // namespace

int load_main(int argc, char** argv) {
  Options o;
  std::string url;
  OptionTable table("edgews load", kLoadUsage);
  table.number("--connections", "N", o.connections, {1, 1000000}, "connections")
      .number("--inflight", "N", o.inflight, {1, 65536}, "messages in flight per connection")
      .number("--size", "BYTES", o.size, {16, 64LL << 20}, "payload size")
      .flag("--text", o.text, true, "send text messages (default binary)")
      .flag("--binary", o.text, false, "send binary messages")
      .number("--duration", "S", o.duration, {1, 3600}, "measured seconds")
      .number("--warmup", "S", o.warmup, {0, 600}, "seconds before measuring")
      .number("--rate", "N", o.rate, {1, 100000000},
              "open loop: N messages/s in total at fixed times; latency counts from the scheduled send time (the "
              "generator wakes up once per send interval, at most every 20 us, so a send may be that late). Off: "
              "closed loop")
      .or_off()
      .flag("--connect-only", o.connect_only, true,
            "open N connections and hold them idle for --duration seconds (memory per connection: use with "
            "--server-pid)")
      .number("--server-pid", "PID", o.server_pid, {1, 1 << 30},
              "report this process's CPU time per message and its RSS over the measured window")
      .shown_default("")
      .number("--settle-ms", "MS", o.settle_ms, {0, 600000},
              "--connect-only: read the server's RSS MS milliseconds after the connections are open (what a server "
              "gives back a few seconds after a burst of TLS handshakes needs a few thousand)")
      .text("--ca", "FILE", o.ca_file, "wss://: verify the server against this CA (default: no verification)")
      .number("--connect-timeout", "S", o.connect_timeout, {1, 600}, "give up on connections not open after S seconds")
      .text("--json", "FILE", o.json, "write the results as JSON to FILE ('-' for stdout)")
      .flag("--quiet", o.quiet, true, "no progress line")
      .choice("--engine", "E", o.engine,
              {{"raw", Engine::raw, "lean connections on the codec"},
               {"client", Engine::client, "one edgews::Client per connection, on one reactor"}},
              "how connections are driven (the same schedule and checks)");
  const auto take_url = [&url](std::string_view argument) {
    if (!url.empty()) return std::string("one URL only");
    url = std::string(argument);
    return std::string();
  };
  if (int status = 0; !table.parse(argc, argv, status, take_url)) return status;
  std::string url_error = "no URL given";
  if (url.empty() || !parse_url(url, o, url_error)) {
    std::fprintf(stderr,
                 "edgews load: %s; give the server as ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (try --help)\n",
                 url_error.c_str());
    return 2;
  }
  if (o.rate > 0 && o.rate < o.connections) {
    std::fprintf(stderr, "edgews load: --rate %.0f is below one message per second per connection; raise it or "
                         "lower --connections\n", o.rate);
    return 2;
  }
  LoadGenerator generator(std::move(o));
  return generator.run();
}

}  // namespace edgews::tools
