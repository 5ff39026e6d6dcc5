// A small blocking WebSocket client for the core tests: TCP connect to loopback, the upgrade with a random key
// (the 101 checked by codec::validate_upgrade_response), masked frames out, frames in through a client-role
// codec::MessageReader. Every wait is bounded by a timeout; nothing here throws.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/message.hpp"
#include "codec/protocol.hpp"
#include "codec/response_validator.hpp"
#include "net/fd.hpp"

namespace edgews::test {

using codec::Opcode;

struct Frame {
  Opcode opcode = Opcode::binary;  // text, binary, ping, pong or close
  std::string payload;             // message or control payload (for close: the raw payload)
  std::uint16_t close_code = 0;    // close frames only
  std::string close_reason;
  bool compressed = false;         // RSV1 (permessage-deflate), only after allow_compressed()
};

struct UpgradeResult {
  bool complete = false;  // a whole response head (and the body of a refusal) arrived
  int status = 0;
  std::string head;       // the response head, up to and including the blank line
  std::string body;       // refusals: the body announced by Content-Length
  codec::ResponseCheck check;  // the strict validation of a 101 (views into head)
  std::string header(std::string_view name) const;  // a response header's value, or ""
};

class TestClient {
 public:
  TestClient() = default;
  TestClient(TestClient&&) = default;
  TestClient& operator=(TestClient&&) = default;

  // Blocking TCP connect to 127.0.0.1:port. receive_buffer > 0 sets SO_RCVBUF before connecting (a small
  // window makes a non-reading client push back sooner).
  bool connect(std::uint16_t port, int receive_buffer = 0);
  // The same from a chosen loopback source address (bind() before connect: "127.0.0.2", ...), for limits that
  // count per client address.
  bool connect_from(const char* source, std::uint16_t port);
  // Sends the upgrade request (random Sec-WebSocket-Key) and reads the response. extra_headers: whole lines,
  // each ending in \r\n; a Sec-WebSocket-Extensions line becomes the writer's extension offer.
  UpgradeResult upgrade(std::string_view path = "/", std::string_view protocols = {},
                        std::string_view extra_headers = {}, int timeout_ms = 5000);
  // connect + upgrade, true when the 101 passed the strict validator.
  bool open(std::uint16_t port, std::string_view path = "/", int receive_buffer = 0);

  // One masked frame with a random key.
  bool send_frame(Opcode opcode, std::span<const std::uint8_t> payload, bool fin = true, bool rsv1 = false);
  // After a permessage-deflate upgrade: frames with RSV1 are read (Frame::compressed), not refused.
  void allow_compressed();
  bool send_text(std::string_view text) { return send_frame(Opcode::text, bytes(text)); }
  bool send_binary(std::string_view data) { return send_frame(Opcode::binary, bytes(data)); }
  bool send_close(std::uint16_t code, std::string_view reason = {});
  bool send_raw(std::string_view data);

  // The next frame (data message, ping, pong or close) within timeout_ms; nullopt on timeout, EOF or error.
  std::optional<Frame> read_frame(int timeout_ms = 5000);
  // Reads (and discards frames) until the server closes the TCP connection; false on timeout.
  bool wait_eof(int timeout_ms = 5000);
  // Reads and collects frames until a close frame (included) or EOF; stops at timeout.
  std::vector<Frame> read_until_close(int timeout_ms = 5000);

  bool eof() const { return eof_; }
  int fd() const { return fd_.get(); }
  // Closes with RST (SO_LINGER 0): the server sees ECONNRESET, not a clean EOF.
  void reset();
  void close() { fd_.reset(); }

  static std::span<const std::uint8_t> bytes(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
  }

 private:
  bool connect(std::uint16_t port, int receive_buffer, const char* source);
  bool write_all(const void* data, std::size_t len);
  // Reads what is available within timeout_ms into pending_; false on timeout, EOF or error.
  bool fill(int timeout_ms);

  net::Fd fd_;
  std::vector<std::uint8_t> pending_;  // bytes read; those from pending_off_ on are not yet given to the reader
  std::size_t pending_off_ = 0;
  codec::MessageReader reader_{codec::Role::client, codec::ReaderLimits{1ull << 30, 1u << 20, false}};
  bool eof_ = false;
};

// A random Sec-WebSocket-Key: the base64 of 16 random bytes.
std::string random_key();

}  // namespace edgews::test
