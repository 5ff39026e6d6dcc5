#include "tests/core/test_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "codec/close.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/http_token.hpp"
#include "codec/mask.hpp"

namespace edgews::test {

namespace {

std::mt19937_64& rng() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int remaining(std::int64_t deadline) {
  const std::int64_t left = deadline - now_ms();
  return left > 0 ? static_cast<int>(left) : 0;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

std::string random_key() { return std::string(codec::key_view(codec::make_websocket_key(rng()))); }

std::string UpgradeResult::header(std::string_view name) const {
  std::size_t at = head.find("\r\n");
  while (at != std::string::npos && at + 2 < head.size()) {
    const std::size_t start = at + 2;
    const std::size_t end = head.find("\r\n", start);
    if (end == std::string::npos || end == start) break;
    const std::string_view line(head.data() + start, end - start);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      return std::string(value);
    }
    at = end;
  }
  return {};
}

bool TestClient::connect(std::uint16_t port, int receive_buffer) { return connect(port, receive_buffer, nullptr); }

bool TestClient::connect_from(const char* source, std::uint16_t port) { return connect(port, 0, source); }

bool TestClient::connect(std::uint16_t port, int receive_buffer, const char* source) {
  fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd_) return false;
  if (source != nullptr) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source, &local.sin_addr) != 1 ||
        ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
      fd_.reset();
      return false;
    }
  }
  if (receive_buffer > 0) ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  const int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    fd_.reset();
    return false;
  }
  // Bounded writes: a server that stops reading fails a test instead of hanging it.
  timeval send_timeout{10, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  return true;
}

UpgradeResult TestClient::upgrade(std::string_view path, std::string_view protocols, std::string_view extra_headers,
                                  int timeout_ms) {
  UpgradeResult result;
  // The request comes from the codec's writer: protocols is a comma-separated list, extra_headers whole lines.
  std::vector<std::string_view> offered;
  codec::ListCursor cursor{protocols};
  for (std::string_view name; cursor.next(name);) offered.push_back(name);
  codec::RequestHeaders headers;
  std::string_view extensions;
  for (std::string_view rest = extra_headers; !rest.empty();) {
    const std::size_t end = rest.find("\r\n");
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      std::fprintf(stderr, "TestClient::upgrade: the extra header line \"%s\" has no colon\n", std::string(line).c_str());
      return result;
    }
    const std::string_view name = line.substr(0, colon);
    if (name.size() == 24 && strncasecmp(name.data(), "Sec-WebSocket-Extensions", 24) == 0) {
      extensions = codec::trim_ows(line.substr(colon + 1));  // the writer's own field, not an extra header
      continue;
    }
    if (const codec::HeaderError e = headers.add(name, codec::trim_ows(line.substr(colon + 1)))) {
      std::fprintf(stderr, "TestClient::upgrade: %s\n", e.message.c_str());
      return result;
    }
  }
  codec::ClientRequest args;
  args.host = "127.0.0.1";
  args.resource = path;
  args.subprotocols = offered;
  args.headers = &headers;
  args.extensions = extensions;
  codec::ClientHandshake handshake;
  std::string request;
  if (const codec::HeaderError e = handshake.write_request(request, args, codec::make_websocket_key(rng()))) {
    std::fprintf(stderr, "TestClient::upgrade: %s\n", e.message.c_str());
    return result;
  }
  if (!write_all(request.data(), request.size())) return result;

  const std::int64_t deadline = now_ms() + timeout_ms;
  std::string received;
  std::size_t head_end = std::string::npos;
  while ((head_end = received.find("\r\n\r\n")) == std::string::npos) {
    pending_.clear();
    if (!fill(remaining(deadline))) return result;
    received.append(pending_.begin(), pending_.end());
  }
  pending_.clear();
  result.head = received.substr(0, head_end + 4);
  std::string rest = received.substr(head_end + 4);
  result.status = std::atoi(result.head.c_str() + std::min<std::size_t>(9, result.head.size()));
  if (result.status == 101) {
    result.check = handshake.check_response(result.head);
    pending_.assign(rest.begin(), rest.end());  // frames sent right behind the 101 (on_open sends)
    result.complete = true;
    return result;
  }
  const std::size_t length = static_cast<std::size_t>(std::atoll(result.header("Content-Length").c_str()));
  while (rest.size() < length) {
    pending_.clear();
    if (!fill(remaining(deadline))) return result;
    rest.append(pending_.begin(), pending_.end());
  }
  pending_.clear();
  result.body = rest.substr(0, length);
  result.complete = true;
  return result;
}

bool TestClient::open(std::uint16_t port, std::string_view path, int receive_buffer) {
  if (!connect(port, receive_buffer)) return false;
  const UpgradeResult result = upgrade(path);
  return result.complete && result.status == 101 && result.check.ok();
}

bool TestClient::write_all(const void* data, std::size_t len) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (len != 0) {
    const ssize_t n = ::send(fd_.get(), p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

void TestClient::allow_compressed() {
  codec::ReaderLimits limits = reader_.limits();
  limits.rsv1_allowed = true;
  reader_ = codec::MessageReader(codec::Role::client, limits);
}

bool TestClient::send_frame(Opcode opcode, std::span<const std::uint8_t> payload, bool fin, bool rsv1) {
  std::uint8_t key[4];
  const std::uint64_t random = rng()();
  std::memcpy(key, &random, sizeof key);
  std::vector<std::uint8_t> frame(codec::kMaxFrameHeaderSize + payload.size());
  const std::size_t header = codec::write_frame_header(frame.data(), opcode, payload.size(), fin, rsv1, key);
  codec::mask_copy(frame.data() + header, payload.data(), payload.size(), key);
  return write_all(frame.data(), header + payload.size());
}

bool TestClient::send_close(std::uint16_t code, std::string_view reason) {
  std::uint8_t payload[125];
  const std::size_t n = codec::write_close_payload(payload, code, reason);
  return send_frame(Opcode::close, {payload, n});
}

bool TestClient::send_raw(std::string_view data) { return write_all(data.data(), data.size()); }

bool TestClient::fill(int timeout_ms) {
  if (!fd_ || eof_) return false;
  pollfd p{fd_.get(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&p, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return false;
  std::uint8_t buffer[256 * 1024];
  const ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  pending_.insert(pending_.end(), buffer, buffer + n);
  return true;
}

std::optional<Frame> TestClient::read_frame(int timeout_ms) {
  const std::int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    if (pending_off_ < pending_.size()) {
      std::size_t used = 0;
      const codec::Event event = reader_.next(pending_.data() + pending_off_, pending_.size() - pending_off_, used);
      std::optional<Frame> frame;
      if (event.type != codec::EventType::need_more && event.type != codec::EventType::error) {
        frame.emplace();
        frame->opcode = event.type == codec::EventType::message ? event.opcode
                        : event.type == codec::EventType::ping   ? Opcode::ping
                        : event.type == codec::EventType::pong   ? Opcode::pong
                                                                 : Opcode::close;
        frame->payload.assign(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
        frame->compressed = event.compressed;
        if (event.type == codec::EventType::close) {
          frame->close_code = event.close_code;
          frame->close_reason = std::string(event.close_reason);
        }
      }
      if (event.type == codec::EventType::error) return std::nullopt;
      pending_off_ += used;
      if (pending_off_ == pending_.size()) {
        pending_.clear();
        pending_off_ = 0;
      }
      if (frame) return frame;
    }
    if (!fill(remaining(deadline))) return std::nullopt;
  }
}

bool TestClient::wait_eof(int timeout_ms) {
  const std::int64_t deadline = now_ms() + timeout_ms;
  while (!eof_) {
    pending_.clear();
    pending_off_ = 0;
    if (!fill(remaining(deadline)) && !eof_) return false;
  }
  return true;
}

std::vector<Frame> TestClient::read_until_close(int timeout_ms) {
  const std::int64_t deadline = now_ms() + timeout_ms;
  std::vector<Frame> frames;
  while (auto frame = read_frame(remaining(deadline))) {
    frames.push_back(std::move(*frame));
    if (frames.back().opcode == Opcode::close) break;
  }
  return frames;
}

void TestClient::reset() {
  if (!fd_) return;
  const linger hard{1, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  fd_.reset();
}

}  // namespace edgews::test
