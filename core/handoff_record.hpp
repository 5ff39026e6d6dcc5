// The records of a live hand-off: what an old server process tells its successor about each connection it passes
// over (with the socket itself, net/fd_passing.hpp), and the control records around them. Pure encoding: no I/O.
//
// Every record starts with a magic number, the format version and its type. A reader meets another version only
// when two different builds hand off; it refuses the record, and the old process then drains that connection
// (1012) instead of moving it: a connection whose state cannot be read exactly is never adopted.
//
// A connection moves only at a message boundary with nothing queued (the old process stops reading at the end of
// a message and writes out what it holds first), so its codec state is empty but for permessage-deflate: the
// negotiated parameters and, with context takeover, both sliding windows (codec::Deflater::window).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/deflate.hpp"
#include "core/connection.hpp"

namespace edgews::core::handoff {

inline constexpr std::uint32_t kMagic = 0x46485745;  // "EWHF" little-endian
// 2: ConnectionState::unread.
inline constexpr std::uint16_t kFormatVersion = 2;
// Two 32 KiB windows, the topics and the application's state fit; net::receive_record buffers are this size.
inline constexpr std::size_t kMaxRecord = 200 * 1024;
inline constexpr std::size_t kMaxUserState = 64 * 1024;
inline constexpr std::size_t kMaxTopics = 4096;
inline constexpr std::size_t kMaxUnread = 64 * 1024;  // one receive buffer

enum class RecordType : std::uint8_t {
  hello = 1,   // new -> old: "give me your connections" (carries nothing else)
  listeners,   // old -> new: the listening sockets, named in order (ws, wss, metrics), as descriptors
  connection,  // old -> new: one connection's state, its socket as the descriptor
  adopted,     // new -> old: the connection `id` is served here now; the old process closes its copy
  refused,     // new -> old: `id` could not be adopted (why); the old process keeps it and drains it
  done,        // old -> new: every connection that could move was offered
};

struct ConnectionState {
  std::uint64_t id = 0;  // the old process's name for it, echoed by adopted / refused
  PeerAddress peer;
  std::optional<PeerAddress> forwarded;
  std::string subprotocol;
  bool deflate = false;
  codec::DeflateParams deflate_params;
  std::vector<std::uint8_t> compressor_window, decompressor_window;  // empty without context takeover
  std::vector<std::string> topics;
  // Liveness, as ages at the moment of the hand-off (the two processes' clocks are not compared).
  std::uint32_t since_heard_ms = 0, since_message_ms = 0, since_ping_ms = 0;
  bool awaiting_pong = false;
  std::vector<std::uint8_t> user_state;  // Callbacks' own per-connection state, at most kMaxUserState
  // Read from the socket but not yet processed (a read hold stopped at a message boundary before it): whole
  // frames or the start of one, processed by the new process before anything it reads itself.
  std::vector<std::uint8_t> unread;
};

struct Control {
  RecordType type = RecordType::hello;
  std::uint64_t id = 0;            // adopted, refused
  std::vector<std::string> names;  // listeners: one name per descriptor
  std::string reason;              // refused
};

// Appends one record to `out`. False when a field is over its bound (the caller drains that connection).
bool encode(const ConnectionState& state, std::vector<std::uint8_t>& out);
bool encode(const Control& control, std::vector<std::uint8_t>& out);

// The type of a record, or nullopt when it is not a record of this format version (`error` says why).
std::optional<RecordType> peek_type(std::span<const std::uint8_t> record, std::string& error);
// Reads a record whole. False with `error` naming the defect: a reader never trusts a length it was sent.
bool decode(std::span<const std::uint8_t> record, ConnectionState& state, std::string& error);
bool decode(std::span<const std::uint8_t> record, Control& control, std::string& error);

}  // namespace edgews::core::handoff
