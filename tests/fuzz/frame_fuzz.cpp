// Drives MessageReader with arbitrary bytes. Byte 0 chooses the role, RSV1 negotiation and the limits; byte 1
// seeds the chunk sizes. The rest is fed twice, whole and in chunks, to two readers that must produce the same
// events (the incremental contract), and every event is checked against the reader's promises.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "codec/message.hpp"
#include "codec/utf8.hpp"

namespace {

using namespace edgews::codec;

struct Recorded {
  EventType type;
  Opcode opcode;
  bool compressed;
  std::string payload;
  std::uint16_t close_code;
  std::string reason;
  ProtocolError error;
  bool operator==(const Recorded&) const = default;
};

void check(bool ok) {
  if (!ok) std::abort();
}

std::vector<Recorded> feed(const std::uint8_t* data, std::size_t size, Role role, const ReaderLimits& limits,
                           std::uint32_t seed, bool whole) {
  MessageReader reader(role, limits);
  std::vector<Recorded> events;
  std::size_t off = 0;
  std::uint32_t rng = seed * 2654435761u + 1;
  while (off < size) {
    std::size_t n = size - off;
    if (!whole) {
      rng = rng * 1103515245u + 12345u;
      n = std::min<std::size_t>(n, 1 + ((rng >> 16) % 24));
    }
    std::vector<std::uint8_t> chunk(data + off, data + off + n);  // own buffer so ASan catches overreads
    off += n;
    std::size_t pos = 0;
    for (;;) {
      std::size_t used = 0;
      const Event ev = reader.next(chunk.data() + pos, chunk.size() - pos, used);
      check(used <= chunk.size() - pos);
      pos += used;
      if (ev.type == EventType::need_more) {
        check(pos == chunk.size());
        break;
      }
      if (ev.type == EventType::message) {
        check(ev.payload.size() <= limits.max_message_size);
        check(ev.opcode == Opcode::text || ev.opcode == Opcode::binary);
        if (ev.opcode == Opcode::text && !ev.compressed) check(is_valid_utf8(ev.payload.data(), ev.payload.size()));
        check(!ev.compressed || limits.rsv1_allowed);
      }
      if (ev.type == EventType::ping || ev.type == EventType::pong) check(ev.payload.size() <= 125);
      if (ev.type == EventType::close) check(ev.close_code == 1005 || is_valid_wire_close_code(ev.close_code));
      events.push_back(Recorded{ev.type, ev.opcode, ev.compressed,
                                std::string(ev.payload.begin(), ev.payload.end()), ev.close_code,
                                std::string(ev.close_reason), ev.error});
      // The headroom is the caller's to overwrite (a reply's header goes there): scribbling over it must not
      // change any later event (whole and chunked runs are compared), and ASan sees a headroom that overruns.
      if (ev.type == EventType::message) {
        check(ev.headroom <= kMaxFrameHeaderSize && (ev.headroom == 0 || ev.payload.data() != nullptr));
        const bool in_chunk = ev.payload.data() >= chunk.data() && ev.payload.data() <= chunk.data() + chunk.size();
        if (in_chunk) check(ev.payload.data() - ev.headroom >= chunk.data());
        check(ev.room == (ev.headroom != 0 ? ev.payload.data() - ev.headroom : nullptr));
        if (ev.headroom != 0) std::memset(ev.room, 0xA5, ev.headroom);
      } else {
        check(ev.headroom == 0 && ev.room == nullptr);
      }
      if (ev.type == EventType::error) {
        check(ev.error != ProtocolError::none);
        std::size_t again_used = 1;
        const Event again = reader.next(chunk.data(), chunk.size(), again_used);
        check(again.type == EventType::error && again.error == ev.error && again_used == 0);
        return events;
      }
    }
    check(reader.buffered_bytes() <=
          std::max<std::uint64_t>(limits.max_message_size, 256) + MessageReader::kAssemblyHeadroom);
  }
  reader.release_memory();
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t flags = data[0];
  const std::uint32_t seed = data[1];
  const Role role = (flags & 1) ? Role::client : Role::server;
  ReaderLimits limits;
  limits.rsv1_allowed = (flags & 2) != 0;
  static constexpr std::uint64_t kSizes[4] = {16u << 20, 4096, 130, 0};
  limits.max_message_size = kSizes[(flags >> 2) & 3];
  limits.max_fragments = (flags & 0x10) ? 3 : 0;
  const auto whole = feed(data + 2, size - 2, role, limits, seed, true);
  const auto chunked = feed(data + 2, size - 2, role, limits, seed, false);
  check(whole == chunked);
  return 0;
}
