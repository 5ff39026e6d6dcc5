// A WebSocket connection as the application sees it.
//
// A Connection& is handed to callbacks and is valid only during the callback. To keep a connection, keep its
// ConnectionHandle: a plain value that stays safe to use after the connection closed (operations on it then
// fail cleanly with SendStatus::closed), from any thread (Server::send posts to the owning reactor).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/protocol.hpp"

namespace edgews::core {

using codec::CloseCode;
using codec::Opcode;

struct ConnectionHandle {
  std::uint32_t worker = UINT32_MAX;
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;

  bool valid() const { return worker != UINT32_MAX; }
  friend bool operator==(const ConnectionHandle&, const ConnectionHandle&) = default;
};

enum class SendStatus : std::uint8_t {
  ok,       // queued (and possibly already written)
  dropped,  // the backpressure limit was reached and the policy is drop: the message was not queued
  closed,   // the connection is closing or closed (or the backpressure policy just closed it)
  invalid_opcode,  // not a data opcode (text or binary): nothing was sent; ping() and close() send control frames
};

// Why a connection is not being read. Each reason is held and released on its own, and the connection is read
// again once none is left. A hold set while the connection's input is being processed (on_message pauses, or a
// reply pushes the send queue past Limits::read_high_water) takes effect at the next frame boundary: no further
// on_message until it is released; what was read but not yet processed waits in the connection (at most one
// receive buffer) and is processed first when reading resumes.
enum class ReadHold : std::uint8_t {
  user = 1,          // Connection::pause_reading, Server::pause_reading
  backpressure = 2,  // the send queue passed Limits::read_high_water; released at Limits::read_low_water
  rate = 4,          // a per-connection rate limit
  memory = 8,        // the server's memory budget (Limits::max_memory)
  handoff = 16,      // the connection is being handed over at a message boundary
};

// The client's address: IPv4 or IPv6, compact.
struct PeerAddress {
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } addr{};
  std::string to_string() const;  // "127.0.0.1:5000" or "[::1]:5000"; without a port when it is 0 ("::1")
};

class Connection {
 public:
  // Sends one message as a single frame. The payload is copied (or written at once); the caller's buffer may be
  // reused when this returns.
  SendStatus send(std::span<const std::uint8_t> payload, Opcode opcode = Opcode::binary);
  SendStatus send_text(std::string_view text) {
    return send({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, Opcode::text);
  }
  SendStatus send_binary(std::span<const std::uint8_t> data) { return send(data, Opcode::binary); }
  SendStatus ping(std::span<const std::uint8_t> payload = {});  // at most 125 bytes
  // Starts the closing handshake (RFC 6455 7): queued messages go first, then the close frame; the descriptor is
  // closed when the peer answers or after Limits::close_timeout_ms. The reason is cut to 123 bytes.
  void close(std::uint16_t code = 1000, std::string_view reason = {});
  // Drops the connection without a closing handshake (the peer sees 1006).
  void terminate();

  // Flow control for the application (say, while a worker thread handles the last message): no on_message
  // arrives between pause_reading() and resume_reading(), including the rest of what was already read (see
  // ReadHold). The peer is pushed back by TCP. Pings and the idle timeout do not close a paused connection; a close
  // started by the server (close(), shutdown) resumes reading, since the peer's close frame must be read.
  void pause_reading();
  void resume_reading();
  bool reading_paused() const;

  bool is_open() const;
  std::size_t buffered_amount() const;
  ConnectionHandle handle() const;
  // The peer of the TCP connection, or on a proxy_protocol listener the source address of the PROXY header.
  const PeerAddress& remote_address() const;
  // The client: the address trusted proxies named in Forwarded / X-Forwarded-For / X-Real-IP
  // (ServerConfig::trusted_proxies), else remote_address(). Forwarding headers carry no port: it is then 0.
  const PeerAddress& client_address() const;
  std::string_view subprotocol() const;

  void* user_data() const;
  void set_user_data(void* data);

  // Topic publish/subscribe within the process (Server::publish reaches every subscriber on every thread).
  bool subscribe(std::string_view topic);
  bool unsubscribe(std::string_view topic);

 protected:
  // The state is core::ConnectionImpl's (core/connection_impl.hpp), the only class that derives from
  // this one: the methods above reach it with a static_cast, so the API costs no allocation and no
  // pointer per connection, and an embedder's build sees none of the machinery.
  Connection() = default;
  ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
};

}  // namespace edgews::core
