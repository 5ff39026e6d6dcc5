// permessage-deflate data path (RFC 7692 7.2) over zlib raw DEFLATE streams; see codec/deflate.hpp.
#include "codec/deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace edgews::codec {

struct ZStream {
  z_stream z{};
  bool deflating = false;
  ~ZStream() {
    if (deflating) {
      deflateEnd(&z);
    } else {
      inflateEnd(&z);
    }
  }
};

namespace {

// RFC 7692 7.2.1: the empty stored block that Z_SYNC_FLUSH ends with, removed by the sender and appended again
// by the receiver (7.2.2).
constexpr std::uint8_t kTail[4] = {0x00, 0x00, 0xff, 0xff};

// Inflate output grows by at least this much at a time (and never past the caller's limit + 1).
constexpr std::size_t kInflateChunk = 16 * 1024;

}  // namespace

bool ByteBuffer::reserve(std::size_t n) {
  if (n <= capacity_) return true;
  std::unique_ptr<std::uint8_t[]> grown(new (std::nothrow) std::uint8_t[n]);
  if (!grown) return false;
  if (size_ != 0) std::memcpy(grown.get(), data_.get(), size_);
  data_ = std::move(grown);
  capacity_ = n;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Deflater

Deflater::Deflater() = default;
Deflater::~Deflater() = default;
Deflater::Deflater(Deflater&&) noexcept = default;
Deflater& Deflater::operator=(Deflater&&) noexcept = default;

bool Deflater::init(unsigned window_bits, int mem_level, int level) {
  stream_.reset();
  if (window_bits < kMinWindowBits || window_bits > kMaxWindowBits || mem_level < 1 || mem_level > 9 || level < 0 ||
      level > 9) {
    return false;
  }
  auto s = std::unique_ptr<ZStream>(new (std::nothrow) ZStream);
  if (!s) return false;
  // Negative window bits: a raw DEFLATE stream, no zlib header or checksum (RFC 7692 7.2.1).
  if (deflateInit2(&s->z, level, Z_DEFLATED, -zlib_window_bits(window_bits), mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
    return false;
  }
  s->deflating = true;
  stream_ = std::move(s);
  return true;
}

void Deflater::reset() {
  if (stream_) deflateReset(&stream_->z);
}

bool Deflater::compress(std::span<const std::uint8_t> message, ByteBuffer& out, bool reset_after) {
  out.clear();
  if (!stream_) return false;
  z_stream& z = stream_->z;
  // deflateBound covers a finished stream; a sync flush adds at most the 5-byte empty block and a partial byte.
  const std::size_t first = deflateBound(&z, static_cast<uLong>(message.size())) + 16;
  if (!out.reserve(first)) return false;
  z.next_in = const_cast<Bytef*>(message.data());
  z.avail_in = static_cast<uInt>(message.size());
  for (;;) {
    if (out.size() == out.capacity() && !out.reserve(out.capacity() * 2)) {
      deflateReset(&z);
      return false;
    }
    z.next_out = out.data() + out.size();
    z.avail_out = static_cast<uInt>(std::min<std::size_t>(out.capacity() - out.size(), UINT32_MAX));
    const uInt before = z.avail_out;
    const int rc = deflate(&z, Z_SYNC_FLUSH);
    out.resize(out.size() + (before - z.avail_out));
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      deflateReset(&z);
      return false;
    }
    // Done when all input is taken and the flush completed (output space left over).
    if (z.avail_in == 0 && z.avail_out != 0) break;
  }
  // RFC 7692 7.2.1: remove the 4 octets 00 00 ff ff at the tail end.
  if (out.size() >= 4 && std::memcmp(out.data() + out.size() - 4, kTail, 4) == 0) out.resize(out.size() - 4);
  // A flush right after a flush (an empty message with context takeover) produces nothing, and an empty payload
  // plus the tail is not a valid block. RFC 7692 7.2.3.6: an empty message may be sent as a single 0x00 (an empty
  // stored block's first byte).
  if (out.size() == 0) {
    out.data()[0] = 0x00;
    out.resize(1);
  }
  if (reset_after) deflateReset(&z);
  return true;
}

namespace {

// zlib's sliding windows are at most 32 KiB (2^15): one buffer of that size takes any of them.
constexpr std::size_t kMaxWindow = std::size_t{1} << kMaxWindowBits;

template <class GetDictionary>
bool copy_window(ZStream* stream, ByteBuffer& out, GetDictionary get) {
  out.clear();
  if (stream == nullptr || !out.reserve(kMaxWindow)) return false;
  uInt length = 0;
  if (get(&stream->z, out.data(), &length) != Z_OK) return false;
  out.resize(length);
  return true;
}

}  // namespace

bool Deflater::window(ByteBuffer& out) const { return copy_window(stream_.get(), out, deflateGetDictionary); }

bool Deflater::set_window(std::span<const std::uint8_t> window) {
  if (!stream_) return false;
  // RFC 7692 7.2.1 streams are raw DEFLATE: zlib takes a dictionary before the first deflate() call.
  return window.empty() ||
         deflateSetDictionary(&stream_->z, window.data(), static_cast<uInt>(window.size())) == Z_OK;
}

std::size_t Deflater::memory_estimate(unsigned window_bits, int mem_level) {
  // zconf.h: deflate memory = (1 << (windowBits + 2)) + (1 << (memLevel + 9)), plus the deflate_state.
  const int w = zlib_window_bits(window_bits);
  return (std::size_t{1} << (w + 2)) + (std::size_t{1} << (mem_level + 9)) + 6 * 1024;
}

// ---------------------------------------------------------------------------------------------------------------
// Inflater

Inflater::Inflater() = default;
Inflater::~Inflater() = default;
Inflater::Inflater(Inflater&&) noexcept = default;
Inflater& Inflater::operator=(Inflater&&) noexcept = default;

bool Inflater::init(unsigned window_bits) {
  stream_.reset();
  if (window_bits < kMinWindowBits || window_bits > kMaxWindowBits) return false;
  auto s = std::unique_ptr<ZStream>(new (std::nothrow) ZStream);
  if (!s) return false;
  if (inflateInit2(&s->z, -zlib_window_bits(window_bits)) != Z_OK) return false;
  stream_ = std::move(s);
  return true;
}

void Inflater::reset() {
  if (stream_) inflateReset(&stream_->z);
}

bool Inflater::window(ByteBuffer& out) const { return copy_window(stream_.get(), out, inflateGetDictionary); }

bool Inflater::set_window(std::span<const std::uint8_t> window) {
  if (!stream_) return false;
  // A raw inflate stream takes a dictionary at any time (zlib.h, inflateSetDictionary).
  return window.empty() ||
         inflateSetDictionary(&stream_->z, window.data(), static_cast<uInt>(window.size())) == Z_OK;
}

InflateStatus Inflater::inflate(std::span<const std::uint8_t> message, std::size_t limit, ByteBuffer& out,
                                bool reset_after) {
  out.clear();
  if (!stream_) return InflateStatus::corrupt;
  z_stream& z = stream_->z;
  const auto failed = [&z](InflateStatus status) {
    inflateReset(&z);
    return status;
  };
  // The buffer may hold limit + 1 bytes: one byte beyond the limit proves the message too big.
  const std::size_t cap_limit = limit == SIZE_MAX ? limit : limit + 1;
  z.next_in = const_cast<Bytef*>(message.data());
  z.avail_in = static_cast<uInt>(message.size());
  bool tail_fed = false;
  for (;;) {
    if (z.avail_in == 0 && !tail_fed) {
      // RFC 7692 7.2.2: append 00 00 ff ff to the payload, then inflate.
      z.next_in = const_cast<Bytef*>(kTail);
      z.avail_in = sizeof kTail;
      tail_fed = true;
    }
    // The buffer may be larger than this limit (kept from an earlier, larger message): zlib is never given room
    // beyond limit + 1 either way.
    const std::size_t room_limit = std::min(out.capacity(), cap_limit);
    if (out.size() == room_limit) {
      if (room_limit == cap_limit) return failed(InflateStatus::too_big);
      const std::size_t want = std::max({out.capacity() * 2, kInflateChunk, message.size() * 4});
      if (!out.reserve(std::min(want, cap_limit))) return failed(InflateStatus::no_memory);
    }
    z.next_out = out.data() + out.size();
    z.avail_out = static_cast<uInt>(
        std::min<std::size_t>(std::min(out.capacity(), cap_limit) - out.size(), UINT32_MAX));
    const uInt before = z.avail_out;
    const int rc = ::inflate(&z, Z_SYNC_FLUSH);
    out.resize(out.size() + (before - z.avail_out));
    if (out.size() > limit) return failed(InflateStatus::too_big);
    if (rc == Z_STREAM_END) {
      // A block with BFINAL set ended the DEFLATE stream (RFC 7692 7.2.3.4); what follows, if anything, starts a
      // new one, without the old window.
      inflateReset(&z);
    } else if (rc == Z_BUF_ERROR) {
      // No progress possible: either the output is full (grow and go on) or the input is used up.
      if (z.avail_out != 0 && z.avail_in != 0) return failed(InflateStatus::corrupt);
    } else if (rc != Z_OK) {
      return failed(rc == Z_MEM_ERROR ? InflateStatus::no_memory : InflateStatus::corrupt);
    }
    if (tail_fed && z.avail_in == 0 && z.avail_out != 0) break;
  }
  if (reset_after) inflateReset(&z);
  return InflateStatus::ok;
}

std::size_t Inflater::memory_estimate(unsigned window_bits) {
  // zconf.h: inflate memory = 1 << windowBits, plus the inflate_state (about 7 KiB).
  return (std::size_t{1} << zlib_window_bits(window_bits)) + 7 * 1024;
}

}  // namespace edgews::codec
