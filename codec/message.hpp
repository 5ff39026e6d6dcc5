// The sans-I/O receive side of a WebSocket connection: bytes in, events out (RFC 6455 5.4-5.6).
//
// One MessageReader per connection. The caller hands it whatever bytes it has read; the reader walks frames,
// unmasks payloads, validates text as UTF-8 as it arrives, enforces the limits and the fragmentation rules,
// and returns one event at a time:
//
//   std::size_t used = 0;
//   for (std::size_t off = 0;; off += used) {
//     Event ev = reader.next(buf + off, len - off, used);
//     if (ev.type == EventType::need_more) break;     // every byte of buf is used; read more
//     ...handle ev (views valid until the next call)...
//     if (ev.type == EventType::error) { send close close_code_for(ev.error); break; }
//   }
//
// The caller never keeps unparsed tails: an incomplete header, control frame or data frame is taken over by
// the reader (header and control bytes in a small side block allocated at the first split, data bytes in an
// assembly buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "codec/frame.hpp"
#include "codec/protocol.hpp"
#include "codec/utf8.hpp"

namespace edgews::codec {

struct ReaderLimits {
  // Largest message accepted, in payload bytes as received (compressed size for permessage-deflate: the
  // inflater enforces its own output limit). Checked against each frame header before any byte is buffered.
  std::uint64_t max_message_size = 16u << 20;
  // Most frames one data message may have (the first frame counts); 0 = no cap. RFC 6455 sets no bound, and
  // max_message_size already bounds the bytes: a frame without payload costs parsing only, like a ping.
  std::uint32_t max_fragments = 0;
  // RSV1 was negotiated (permessage-deflate, RFC 7692).
  bool rsv1_allowed = false;
};

enum class EventType : std::uint8_t { need_more, message, ping, pong, close, error };

struct Event {
  EventType type = EventType::need_more;
  Opcode opcode = Opcode::binary;            // text or binary for message; ping, pong, close for those
  bool compressed = false;                   // RSV1 on the message's first frame (permessage-deflate)
  std::span<const std::uint8_t> payload;     // message/ping/pong payload (the raw payload for close)
  // message: how many bytes right in front of payload the caller may overwrite (the frame's spent header in
  // the input, or spare room the assembly buffer keeps): a reply can put its own frame header there and leave
  // as one contiguous buffer. 0 for other events.
  std::uint8_t headroom = 0;
  // message: those bytes themselves (payload.data() - headroom), writable; nullptr when headroom is 0. The
  // payload view is const for whoever reads the message; this is the grant to whoever owns the input to write there.
  std::uint8_t* room = nullptr;
  std::uint16_t close_code = 1005;           // close: the peer's code; error: close_code_for(error)
  std::string_view close_reason;             // close: the peer's reason (UTF-8, checked)
  ProtocolError error = ProtocolError::none;  // error: what the peer did wrong
};

class MessageReader {
 public:
  explicit MessageReader(Role role, ReaderLimits limits = {});
  ~MessageReader();
  MessageReader(MessageReader&&) noexcept;
  MessageReader& operator=(MessageReader&&) noexcept;
  MessageReader(const MessageReader&) = delete;
  MessageReader& operator=(const MessageReader&) = delete;

  // Consumes bytes from input and returns at the first event, or need_more once input is used up (then
  // consumed == len). `consumed` is the number of input bytes used (always <= len); call again with the rest.
  //
  // Payloads are unmasked in place when a frame lies wholly inside input; payload views then point into input
  // (zero copy, the common case). A fragmented message, or a frame split across calls, is unmasked while being
  // copied into the reader's assembly buffer and the view points there. Views stay valid until the next call
  // to any non-const member.
  //
  // Text is validated as it arrives, across fragments and calls, so an invalid byte fails the connection
  // before the rest of the message arrives; except compressed messages (the caller validates after inflating).
  // Control frames between fragments are delivered at once; the message continues afterwards.
  //
  // After an error event every call returns the same error (consumed = 0). After a close event the closing
  // handshake has begun and further input is consumed and ignored (RFC 6455 5.5.1: nothing may follow).
  Event next(std::uint8_t* input, std::size_t len, std::size_t& consumed);

  // A frame or a message is partly received (the reader holds state that more input completes).
  bool in_message() const { return in_message_ || in_frame_ || header_len_ != 0; }
  // Heap bytes held by the assembly buffer (its capacity; kept between messages to avoid reallocation).
  std::size_t buffered_bytes() const {
    return !spill_ || spill_->assembly_capacity == 0 ? 0 : kAssemblyHeadroom + spill_->assembly_capacity;
  }
  // Any heap memory held: the assembly buffer, or the small block that a header or control frame split across
  // calls needs.
  bool holds_memory() const { return spill_ != nullptr; }

  // Spare bytes the assembly buffer keeps in front of the message (Event::headroom): room for the largest
  // header a server or client frame can have.
  static constexpr std::size_t kAssemblyHeadroom = kMaxFrameHeaderSize;
  // Frees the assembly buffer if it holds more than `keep` bytes (buffered_bytes()), and with keep == 0 also the
  // block kept for split headers and control frames, except what a partly received message, header or control
  // frame still needs. Invalidates
  // views into the buffer: call it once the payload of the last event is no longer used. A caller keeps a small
  // buffer for the next split frame (busy connections then allocate nothing per message) and frees a large one
  // right after its message, and everything once the connection is quiet.
  void release_memory(std::size_t keep = 0);

  bool closed() const { return closed_; }
  ProtocolError error() const { return error_; }
  Role role() const { return role_; }
  ReaderLimits limits() const { return {max_message_size_, max_fragments_, rsv1_allowed_}; }

 private:
  // What only a frame or message split across calls needs; allocated at the first split and kept, like the
  // assembly buffer, until release_memory(0).
  struct Spill {
    std::uint8_t header[kMaxFrameHeaderSize];
    std::uint8_t control_len = 0;
    std::uint8_t control[kMaxControlPayload];  // a control frame split across calls (RFC 6455 5.5: <= 125 bytes)
    std::unique_ptr<std::uint8_t[]> assembly;  // kAssemblyHeadroom spare bytes, then the message
    std::size_t assembly_size = 0;
    std::size_t assembly_capacity = 0;  // message bytes it holds room for (after the headroom)
    std::uint32_t fragments = 1;        // frames of the data message so far (counted when limited)
  };

  Event fail(ProtocolError e, std::size_t pos, std::size_t& consumed);
  ProtocolError begin_frame(const FrameHeader& h);
  Event control_event(const std::uint8_t* payload, std::size_t n, std::size_t pos, std::size_t& consumed);
  Event message_event(std::uint8_t* payload, std::size_t n, std::size_t headroom);
  Spill& spill();
  // Where the message starts in the assembly buffer; nullptr while none is allocated (an empty message).
  std::uint8_t* assembly_data() const {
    return spill_ && spill_->assembly ? spill_->assembly.get() + kAssemblyHeadroom : nullptr;
  }
  std::uint8_t* assembly_extend(std::size_t n);
  void assembly_reserve(std::size_t n);
  // RFC 6455 5.1: parse_frame_header() fails a frame masked the wrong way for the role.
  bool frame_masked() const { return role_ == Role::server; }
  // Text is checked as it arrives unless compressed (the caller checks it after inflating).
  bool check_utf8() const { return message_opcode_ == Opcode::text && !message_compressed_; }

  // One per connection, so laid out to stay small (an idle connection holds one, 56 bytes): the byte-sized state
  // first, then the counters; what only a split frame or message needs is in the Spill.
  Role role_;
  ProtocolError error_ = ProtocolError::none;
  bool closed_ = false;

  // The frame whose payload is being received: the parts of its header still needed.
  bool in_frame_ = false;
  Opcode frame_opcode_ = Opcode::continuation;
  bool frame_fin_ = false;
  std::uint8_t mask_phase_ = 0;  // 0-3: where in the mask key the next payload byte falls
  std::uint8_t frame_mask_key_[4] = {};

  // Bytes of an incomplete frame header carried over from the previous call (in spill_->header); here, not in
  // the Spill, because the fast path tests it.
  std::uint8_t header_len_ = 0;

  // The data message being received.
  bool in_message_ = false;
  Opcode message_opcode_ = Opcode::binary;
  bool message_compressed_ = false;
  bool rsv1_allowed_;  // ReaderLimits, unpacked so that they fill the gaps
  Utf8Validator utf8_;
  std::uint32_t max_fragments_;
  std::uint64_t max_message_size_;
  std::uint64_t frame_remaining_ = 0;
  std::uint64_t message_size_ = 0;
  std::unique_ptr<Spill> spill_;
};
static_assert(sizeof(MessageReader) == 56, "a MessageReader is in every connection: keep it at 56 bytes");

}  // namespace edgews::codec
