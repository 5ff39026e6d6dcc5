// permessage-deflate (RFC 7692): negotiation of the extension parameters and the zlib compressor/decompressor
// pair that one connection uses.
//
//   Negotiation (server): negotiate_deflate(upgrade.extensions_offered, options) walks the client's offers in
//   its order of preference, declines any permessage-deflate offer with an unknown, duplicated or ill-valued
//   parameter (RFC 7692 7: "decline"; the next offer is tried) and accepts the first it can honour. The
//   response string names only what was accepted and is never empty when an offer was accepted.
//
//   Negotiation (client, for tests and tools): parse_deflate_response() checks a server's accepted parameters
//   against what was offered (RFC 7692 7.1) and yields the parameters the client must then use.
//
//   Data: Deflater compresses one message (RFC 7692 7.2.1: a raw DEFLATE stream flushed with Z_SYNC_FLUSH, the
//   trailing 00 00 ff ff removed); Inflater inflates one (7.2.2: the tail appended again) into a caller-owned
//   ByteBuffer, in chunks, and stops as soon as the output would exceed the caller's limit, so that a small
//   message that inflates to gigabytes (a decompression bomb) costs at most `limit` bytes of buffer.
//
// Memory (zlib's own figures, zconf.h): a Deflater holds 2^(window_bits+2) + 2^(mem_level+9) bytes plus ~6 KiB
// of state (256 KiB + 6 KiB at 15/8, 8 KiB + 6 KiB at 9/1); an Inflater holds 2^window_bits bytes plus ~7 KiB
// (39 KiB at 15). Both are allocated at init(); the output ByteBuffers belong to the caller (share them per
// thread: a message view only lives until the next call).
//
// Nothing here throws. Compression and inflation allocate only when a ByteBuffer must grow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "codec/deflate_params.hpp"
#include "codec/extensions.hpp"
#include "codec/protocol.hpp"

namespace edgews::codec {

inline constexpr std::string_view kPerMessageDeflate = "permessage-deflate";
inline constexpr unsigned kMinWindowBits = 8;   // RFC 7692 7.1.2: values 8 to 15
inline constexpr unsigned kMaxWindowBits = 15;

// zlib refuses a raw DEFLATE window of 8 bits (since 1.2.9 deflateInit2 rejects windowBits -8). 9 is a safe
// stand-in in both directions: zlib's deflater never emits a distance longer than the window minus
// MIN_LOOKAHEAD (262 bytes), so a 9-bit deflater's distances stay under 512 - 262 = 250 bytes and fit the
// 256-byte window a peer announced with "8"; and an inflater with a larger window accepts anything a smaller
// one would.
constexpr int zlib_window_bits(unsigned bits) { return bits < 9 ? 9 : static_cast<int>(bits); }

// What the server is willing to do.
struct DeflateServerOptions {
  // The window the server compresses with (8..15). A client offer of server_max_window_bits=N is honoured with
  // min(N, this) and announced; without such an offer the smaller window is used silently (always decodable by
  // the client's 15-bit inflater; Firefox has been reported to close on an unasked server_max_window_bits).
  unsigned server_max_window_bits = 15;
  // The largest window the server lets a client compress with; asked for only when the client offered
  // client_max_window_bits (RFC 7692 7.1.2.1 forbids it otherwise; then the inflater needs the full 15 bits).
  unsigned client_max_window_bits = 15;
  bool server_no_context_takeover = false;  // the server never uses context takeover (announced)
  bool client_no_context_takeover = false;  // ask the client not to use context takeover
};

// The response's Sec-WebSocket-Extensions value, without allocation.
struct DeflateResponse {
  char text[128] = {};
  std::size_t size = 0;
  std::string_view view() const { return {text, size}; }
};

struct DeflateNegotiation {
  bool accepted = false;
  std::size_t offer_index = 0;  // which offer of the list (counting every extension) was accepted
  DeflateParams params;
  DeflateResponse response;     // "permessage-deflate[; param...]" when accepted
  std::size_t declined = 0;     // permessage-deflate offers declined for invalid or unsupported parameters
};

// The server side of RFC 7692 7.1: see the header comment. An extension list that does not parse accepts
// nothing.
DeflateNegotiation negotiate_deflate(std::string_view offered_list, const DeflateServerOptions& options);

// What a client offered in one permessage-deflate offer, for checking the response.
struct DeflateClientOffer {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  unsigned server_max_window_bits = 0;  // 0: not offered
  bool client_max_window_bits = false;  // offered (with or without a value)
  unsigned client_max_window_bits_value = 0;  // 0: offered without a value
};

struct DeflateResponseParse {
  bool ok = false;
  DeflateParams params;
  std::string_view error;  // when !ok: which RFC 7692 7.1 rule the response breaks
};

// The client side of RFC 7692 7.1: `accepted` is the parameter list of the permessage-deflate element of the
// server's response (from parse_extension_offers), checked against the offer it answers.
DeflateResponseParse parse_deflate_response(std::span<const ExtensionParam> accepted, const DeflateClientOffer& offer);

// Reads one permessage-deflate offer's parameters as the server does: false when the offer must be declined
// (an unknown or duplicated parameter, a value where none belongs, a window size outside 8..15).
bool parse_deflate_offer(std::span<const ExtensionParam> params, DeflateClientOffer& offer);

// Safari 15.0-15.3 and every browser on iOS/iPadOS 15.0-15.3 (all use the system WebKit, whose WebSocket
// moved to NSURLSession in 15.0) offer permessage-deflate, and then fail on compressed traffic: the
// connection dies (close 1006) after the first messages. Collected reports: uNetworking/uWebSockets#1347
// (user agents tested one by one: Version/15.0, 15.2 and 15.3 broken, 14.1 and 15.4 fine; the 15.4 beta
// fixed it), gorilla/websocket#731 and nats-io/nats.ws#113 (iOS 15: works once the "NSURLSession WebSocket"
// experimental feature is turned off, or compression is). True for those user agents.
bool is_deflate_broken_user_agent(std::string_view user_agent);

// A growable byte buffer that keeps its capacity between messages (no per-message allocation once warm).
class ByteBuffer {
 public:
  std::uint8_t* data() { return data_.get(); }
  const std::uint8_t* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  std::span<const std::uint8_t> view() const { return {data_.get(), size_}; }
  void clear() { size_ = 0; }
  void resize(std::size_t n) { size_ = n; }  // n <= capacity()
  // Grows the capacity to at least n, keeping the contents. False when memory is exhausted.
  bool reserve(std::size_t n);
  void release() {
    data_.reset();
    size_ = capacity_ = 0;
  }

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

struct ZStream;  // zlib's z_stream, kept out of this header

class Deflater {
 public:
  Deflater();
  ~Deflater();
  Deflater(Deflater&&) noexcept;
  Deflater& operator=(Deflater&&) noexcept;

  // window_bits 8..15 (8 runs as 9, see zlib_window_bits), mem_level 1..9, level 0..9 (0: stored blocks only).
  // False when zlib cannot allocate or the values are out of range.
  bool init(unsigned window_bits, int mem_level = 8, int level = 6);
  bool initialized() const { return stream_ != nullptr; }

  // Compresses one whole message into `out` (replacing its contents): the RFC 7692 7.2.1 payload. With
  // reset_after (no context takeover) the next message starts from an empty window. False on a zlib failure
  // (out of memory); the stream is then reset.
  bool compress(std::span<const std::uint8_t> message, ByteBuffer& out, bool reset_after);
  void reset();

  // The sliding window (the last up to 2^window_bits bytes of uncompressed input), for moving a context-takeover
  // stream to another process: a fresh Deflater of the same parameters given it with set_window() compresses the
  // next message as this one would have been able to (its back-references resolve in the peer's inflater, which
  // holds the same window). Between messages only. False when not initialized or zlib fails.
  bool window(ByteBuffer& out) const;
  // Right after init(), before the first message. False when zlib refuses (not initialized, or too late).
  bool set_window(std::span<const std::uint8_t> window);

  static std::size_t memory_estimate(unsigned window_bits, int mem_level);

 private:
  std::unique_ptr<ZStream> stream_;
};

enum class InflateStatus : std::uint8_t {
  ok,
  too_big,   // the output would exceed the limit: close with 1009 (ProtocolError::message_too_big)
  corrupt,   // not a valid DEFLATE stream: close with 1007 (ProtocolError::compressed_payload_invalid)
  no_memory, // the output buffer could not grow: close with 1011
};

class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(Inflater&&) noexcept;
  Inflater& operator=(Inflater&&) noexcept;

  bool init(unsigned window_bits);
  bool initialized() const { return stream_ != nullptr; }

  // Inflates one whole compressed message (the payload without the 00 00 ff ff tail) into `out`, replacing its
  // contents. Stops with too_big as soon as more than `limit` bytes would come out; `out` then holds at most
  // limit + 1 bytes and never grew beyond that. After any failure the stream is reset (the connection is being
  // failed anyway). With reset_after (the peer uses no context takeover) the window is dropped after the message.
  InflateStatus inflate(std::span<const std::uint8_t> message, std::size_t limit, ByteBuffer& out, bool reset_after);
  void reset();

  // The window of decompressed history, and its restoration into another Inflater of the same window size: the
  // counterpart of Deflater::window() for the receiving direction (the peer's compressor keeps referring to it).
  bool window(ByteBuffer& out) const;
  bool set_window(std::span<const std::uint8_t> window);

  static std::size_t memory_estimate(unsigned window_bits);

 private:
  std::unique_ptr<ZStream> stream_;
};

// The protocol error for an inflate failure (none for ok).
constexpr ProtocolError protocol_error_for(InflateStatus status) {
  switch (status) {
    case InflateStatus::ok: return ProtocolError::none;
    case InflateStatus::too_big: return ProtocolError::message_too_big;
    case InflateStatus::corrupt: return ProtocolError::compressed_payload_invalid;
    case InflateStatus::no_memory: return ProtocolError::compressed_payload_invalid;
  }
  return ProtocolError::compressed_payload_invalid;
}

}  // namespace edgews::codec
