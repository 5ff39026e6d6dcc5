// Helpers shared by the frame codec tests: frame builders and the whole / byte-by-byte / random-chunk feeder.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "codec/frame.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"

namespace edgews::codec::test {

using edgews::codec::ReaderLimits;

using Bytes = std::vector<std::uint8_t>;

inline Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// One frame as a peer of `sender` would send it: clients mask (with `key`), servers do not.
inline Bytes make_frame(Opcode op, const Bytes& payload, bool fin = true, bool masked = true, bool rsv1 = false,
                        std::uint8_t key_seed = 0x5A) {
  Bytes out(kMaxFrameHeaderSize);
  const std::uint8_t key[4] = {key_seed, static_cast<std::uint8_t>(key_seed * 7 + 1),
                               static_cast<std::uint8_t>(key_seed * 13 + 2), static_cast<std::uint8_t>(0xC3)};
  const std::size_t h = write_frame_header(out.data(), op, payload.size(), fin, rsv1, masked ? key : nullptr);
  out.resize(h + payload.size());
  if (masked) {
    mask_copy(out.data() + h, payload.data(), payload.size(), key);
  } else if (!payload.empty()) {
    std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(h));
  }
  return out;
}

inline Bytes make_frame(Opcode op, std::string_view payload, bool fin = true, bool masked = true) {
  return make_frame(op, bytes_of(payload), fin, masked);
}

inline void append(Bytes& to, const Bytes& more) { to.insert(to.end(), more.begin(), more.end()); }

// An event with its contents copied out, so that events from different feeds compare by value.
struct Recorded {
  EventType type;
  Opcode opcode;
  bool compressed;
  Bytes payload;
  std::uint16_t close_code;
  std::string close_reason;
  ProtocolError error;
  bool operator==(const Recorded&) const = default;
};

inline void PrintTo(const Recorded& r, std::ostream* os) {
  *os << "{type " << static_cast<int>(r.type) << ", opcode " << static_cast<int>(r.opcode) << ", compressed "
      << r.compressed << ", " << r.payload.size() << " payload bytes, close " << r.close_code << " '" << r.close_reason
      << "', error " << describe(r.error) << "}";
}

inline Recorded record(const Event& ev) {
  return Recorded{ev.type,
                  ev.opcode,
                  ev.compressed,
                  Bytes(ev.payload.begin(), ev.payload.end()),
                  ev.close_code,
                  std::string(ev.close_reason),
                  ev.error};
}

enum class Split { whole, bytewise, random };

inline const char* split_name(Split s) {
  return s == Split::whole ? "whole" : s == Split::bytewise ? "byte by byte" : "random chunks";
}

inline std::vector<std::size_t> chunk_sizes(std::size_t total, Split split, std::uint32_t seed) {
  std::vector<std::size_t> sizes;
  if (split == Split::whole) {
    sizes.push_back(total);
    return sizes;
  }
  std::mt19937 rng(seed);
  std::size_t left = total;
  while (left > 0) {
    std::size_t n = 1;
    if (split == Split::random) n = std::uniform_int_distribution<std::size_t>(1, 40)(rng);
    n = std::min(n, left);
    sizes.push_back(n);
    left -= n;
  }
  return sizes;
}

// Feeds data in the given chunk sizes. Each chunk lives in its own heap buffer that is overwritten after use,
// so a reader that kept a pointer into old input would show it (and ASan sees reads past a chunk).
inline std::vector<Recorded> feed(MessageReader& reader, const Bytes& data, const std::vector<std::size_t>& sizes) {
  std::vector<Recorded> events;
  std::size_t off = 0;
  for (std::size_t size : sizes) {
    Bytes chunk(data.begin() + static_cast<std::ptrdiff_t>(off), data.begin() + static_cast<std::ptrdiff_t>(off + size));
    off += size;
    std::size_t pos = 0;
    for (;;) {
      std::size_t used = 0;
      const Event ev = reader.next(chunk.data() + pos, chunk.size() - pos, used);
      if (used > chunk.size() - pos) {
        ADD_FAILURE() << "consumed more than given";
        return events;
      }
      pos += used;
      if (ev.type == EventType::need_more) {
        if (pos != chunk.size()) ADD_FAILURE() << "need_more before the input was used up";
        break;
      }
      events.push_back(record(ev));
      if (ev.type == EventType::error) return events;
      // The headroom is the caller's to overwrite (a reply's header goes there): scribble over it, so that a
      // reader that still needed those bytes gives different events in some split.
      if (ev.type == EventType::message) {
        const bool in_chunk = ev.payload.data() >= chunk.data() && ev.payload.data() <= chunk.data() + chunk.size();
        if (in_chunk && ev.payload.data() - ev.headroom < chunk.data()) ADD_FAILURE() << "headroom before the input";
        if (ev.room != (ev.headroom != 0 ? ev.payload.data() - ev.headroom : nullptr))
          ADD_FAILURE() << "room is not the headroom in front of the payload";
        if (ev.headroom != 0) std::memset(ev.room, 0xA5, ev.headroom);
      } else if (ev.headroom != 0 || ev.room != nullptr) {
        ADD_FAILURE() << "headroom on a non-message event";
      }
    }
    std::fill(chunk.begin(), chunk.end(), 0xEE);
  }
  return events;
}

inline std::vector<Recorded> run(Role role, const Bytes& data, Split split, ReaderLimits limits = {},
                                 std::uint32_t seed = 1) {
  MessageReader reader(role, limits);
  return feed(reader, data, chunk_sizes(data.size(), split, seed));
}

}  // namespace edgews::codec::test
