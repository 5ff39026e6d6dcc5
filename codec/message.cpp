#include "codec/message.hpp"

#include <algorithm>
#include <cstring>

#include "codec/close.hpp"
#include "codec/mask.hpp"

namespace edgews::codec {

namespace {

constexpr std::size_t kFusedMax = 256;

// Unmasks a small payload in place and reports whether it is all ASCII, in one pass over the bytes: the common
// small text message then needs no second pass for UTF-8 and no call.
inline bool unmask_small_is_ascii(std::uint8_t* data, std::size_t len, const std::uint8_t* key) {
  std::uint64_t k;
  std::uint8_t kb[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  std::memcpy(&k, kb, 8);
  std::uint64_t seen = 0;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, 8);
    w ^= k;
    seen |= w;
    std::memcpy(data + i, &w, 8);
  }
  for (; i < len; ++i) {
    data[i] = static_cast<std::uint8_t>(data[i] ^ key[i & 3]);
    seen |= data[i];
  }
  return (seen & 0x8080808080808080ull) == 0;
}

}  // namespace

MessageReader::MessageReader(Role role, ReaderLimits limits)
    : role_(role),
      rsv1_allowed_(limits.rsv1_allowed),
      max_fragments_(limits.max_fragments),
      max_message_size_(limits.max_message_size) {}
MessageReader::~MessageReader() = default;
MessageReader::MessageReader(MessageReader&&) noexcept = default;
MessageReader& MessageReader::operator=(MessageReader&&) noexcept = default;

MessageReader::Spill& MessageReader::spill() {
  if (!spill_) spill_ = std::make_unique<Spill>();
  return *spill_;
}

void MessageReader::release_memory(std::size_t keep) {
  if (!spill_) return;
  // A control frame between fragments leaves in_message_ set: the fragments so far stay.
  const bool large = !in_message_ && buffered_bytes() > keep;
  const bool needed = in_message_ || header_len_ != 0 || (in_frame_ && is_control(frame_opcode_));
  if (!needed && (keep == 0 || large)) {
    spill_.reset();  // a large buffer goes with its small block; a small one stays for the next split
  } else if (large) {
    spill_->assembly.reset();
    spill_->assembly_size = 0;
    spill_->assembly_capacity = 0;
  }
}

void MessageReader::assembly_reserve(std::size_t n) {
  Spill& sp = spill();
  if (n <= sp.assembly_capacity) return;
  // Geometric growth for fragmented messages of unknown final size; never beyond what the limit allows.
  std::size_t cap = std::max<std::size_t>({n, sp.assembly_capacity * 2, 256});
  cap = std::min<std::size_t>(cap, std::max<std::uint64_t>(n, max_message_size_));
  auto grown = std::make_unique_for_overwrite<std::uint8_t[]>(kAssemblyHeadroom + cap);
  if (sp.assembly_size != 0) std::memcpy(grown.get() + kAssemblyHeadroom, assembly_data(), sp.assembly_size);
  sp.assembly = std::move(grown);
  sp.assembly_capacity = cap;
}

std::uint8_t* MessageReader::assembly_extend(std::size_t n) {
  assembly_reserve(spill().assembly_size + n);
  std::uint8_t* out = assembly_data();
  if (out == nullptr) return nullptr;  // n == 0 and nothing allocated yet: nothing to write
  out += spill_->assembly_size;
  spill_->assembly_size += n;
  return out;
}

Event MessageReader::fail(ProtocolError e, std::size_t pos, std::size_t& consumed) {
  error_ = e;
  in_frame_ = false;
  in_message_ = false;
  header_len_ = 0;
  consumed = pos;
  Event ev;
  ev.type = EventType::error;
  ev.error = e;
  ev.close_code = static_cast<std::uint16_t>(close_code_for(e));
  return ev;
}

// Applies the rules that need the message context (RFC 6455 5.4) and the limits, before any payload byte is
// buffered.
ProtocolError MessageReader::begin_frame(const FrameHeader& h) {
  frame_opcode_ = h.opcode;
  frame_fin_ = h.fin;
  std::memcpy(frame_mask_key_, h.mask_key, sizeof frame_mask_key_);
  frame_remaining_ = h.payload_length;
  mask_phase_ = 0;
  in_frame_ = true;
  if (is_control(h.opcode)) {
    if (spill_) spill_->control_len = 0;
    return ProtocolError::none;
  }
  if (h.opcode == Opcode::continuation) {
    if (!in_message_) return ProtocolError::unexpected_continuation;
    if (max_fragments_ != 0) {
      // in_message_: the first frame was not final, so it went to the assembly buffer and the spill exists.
      std::uint32_t& fragments = spill_->fragments;
      if (fragments >= max_fragments_) return ProtocolError::too_many_fragments;
      ++fragments;
    }
  } else {
    if (in_message_) return ProtocolError::expected_continuation;
    in_message_ = true;
    message_opcode_ = h.opcode;
    message_compressed_ = h.rsv1;
    message_size_ = 0;
    utf8_.reset();
    if (spill_) {
      spill_->assembly_size = 0;
      spill_->fragments = 1;
    }
  }
  // message_size_ never exceeds the limit, so the subtraction cannot wrap.
  if (h.payload_length > max_message_size_ - message_size_) return ProtocolError::message_too_big;
  message_size_ += h.payload_length;
  return ProtocolError::none;
}

Event MessageReader::message_event(std::uint8_t* payload, std::size_t n, std::size_t headroom) {
  in_message_ = false;
  Event ev;
  ev.type = EventType::message;
  ev.opcode = message_opcode_;
  ev.compressed = message_compressed_;
  ev.payload = std::span<const std::uint8_t>(payload, n);
  ev.headroom = static_cast<std::uint8_t>(headroom);
  ev.room = headroom != 0 ? payload - headroom : nullptr;
  return ev;
}

Event MessageReader::control_event(const std::uint8_t* payload, std::size_t n, std::size_t pos,
                                   std::size_t& consumed) {
  Event ev;
  ev.opcode = frame_opcode_;
  ev.payload = std::span<const std::uint8_t>(payload, n);
  if (frame_opcode_ == Opcode::close) {
    const ClosePayloadParse cp = parse_close_payload(payload, n);
    if (!cp.ok) return fail(cp.error, pos, consumed);
    closed_ = true;
    ev.type = EventType::close;
    ev.close_code = cp.payload.code;
    ev.close_reason = cp.payload.reason;
  } else {
    ev.type = frame_opcode_ == Opcode::ping ? EventType::ping : EventType::pong;
  }
  consumed = pos;
  return ev;
}

Event MessageReader::next(std::uint8_t* input, std::size_t len, std::size_t& consumed) {
  consumed = 0;
  if (error_ != ProtocolError::none) {
    Event ev;
    ev.type = EventType::error;
    ev.error = error_;
    ev.close_code = static_cast<std::uint16_t>(close_code_for(error_));
    return ev;
  }
  if (closed_) {
    consumed = len;
    return Event{};
  }

  std::size_t pos = 0;
  for (;;) {
    if (!in_frame_) {
      if (pos == len) break;
      const std::size_t avail = len - pos;
      std::uint8_t* p = input + pos;

      // Fast path: a whole, final, uncompressed text or binary frame with a 7- or 16-bit length, masked as the
      // role requires, and no message open. Anything else (and every error) goes through the full parser below.
      if (header_len_ == 0 && avail >= 2 && !in_message_) {
        const std::uint8_t b0 = p[0];
        const std::uint8_t b1 = p[1];
        const std::uint8_t op = b0 & 0x0F;
        const bool want_mask = role_ == Role::server;
        if ((b0 & 0xF0) == 0x80 && (op == 0x1 || op == 0x2) && ((b1 & 0x80) != 0) == want_mask) {
          std::size_t plen = b1 & 0x7F;
          std::size_t hlen = 2;
          bool fast = plen <= 125;
          if (plen == 126 && avail >= 4) {
            plen = (std::size_t{p[2]} << 8) | p[3];
            hlen = 4;
            fast = plen >= 126;  // else non-minimal: the full parser reports it
          }
          if (want_mask) hlen += 4;
          if (fast && plen <= max_message_size_ && avail >= hlen + plen) {
            std::uint8_t* payload = p + hlen;
            bool valid = true;
            if (want_mask && plen <= kFusedMax) {
              // One pass: unmask and learn whether the text is pure ASCII (then it is valid UTF-8).
              if (!unmask_small_is_ascii(payload, plen, payload - 4) && op == 0x1) valid = is_valid_utf8(payload, plen);
            } else {
              if (want_mask) unmask_in_place(payload, plen, payload - 4);
              if (op == 0x1) valid = is_valid_utf8(payload, plen);
            }
            if (!valid) return fail(ProtocolError::invalid_utf8, pos, consumed);
            consumed = pos + hlen + plen;
            Event ev;
            ev.type = EventType::message;
            ev.opcode = static_cast<Opcode>(op);
            ev.payload = std::span<const std::uint8_t>(payload, plen);
            ev.headroom = static_cast<std::uint8_t>(hlen);
            ev.room = payload - hlen;
            return ev;
          }
        }
      }

      // Full header parse, possibly continuing a header that began in the previous call.
      const std::size_t frame_start = pos;  // this frame's bytes in input begin here
      HeaderParse hp;
      if (header_len_ == 0) {
        hp = parse_frame_header(p, avail, role_, rsv1_allowed_);
        if (hp.status == ParseStatus::need_more) {
          // Fewer than kMaxFrameHeaderSize bytes, or the parser would have finished.
          std::memcpy(spill().header, p, avail);
          header_len_ = static_cast<std::uint8_t>(avail);
          consumed = len;
          return Event{};
        }
        if (hp.status == ParseStatus::error) return fail(hp.error, pos, consumed);
        pos += hp.header.header_length;
      } else {
        const std::size_t take = std::min(kMaxFrameHeaderSize - header_len_, avail);
        std::uint8_t* header = spill_->header;  // header_len_ != 0: the spill holds its first bytes
        std::memcpy(header + header_len_, p, take);
        hp = parse_frame_header(header, header_len_ + take, role_, rsv1_allowed_);
        if (hp.status == ParseStatus::need_more) {
          header_len_ = static_cast<std::uint8_t>(header_len_ + take);  // take == avail here
          consumed = len;
          return Event{};
        }
        if (hp.status == ParseStatus::error) return fail(hp.error, pos, consumed);
        pos += hp.header.header_length - header_len_;
        header_len_ = 0;
      }
      if (const ProtocolError e = begin_frame(hp.header); e != ProtocolError::none) return fail(e, pos, consumed);

      // The frame is wholly in input and needs no assembly: unmask in place and return a view into input.
      const std::uint64_t plen = hp.header.payload_length;
      const bool single = is_control(frame_opcode_) || (frame_fin_ && frame_opcode_ != Opcode::continuation);
      if (single && len - pos >= plen) {
        std::uint8_t* payload = input + pos;
        const auto n = static_cast<std::size_t>(plen);
        if (frame_masked()) unmask_in_place(payload, n, frame_mask_key_);
        pos += n;
        in_frame_ = false;
        if (is_control(frame_opcode_)) return control_event(payload, n, pos, consumed);
        if (check_utf8() && !is_valid_utf8(payload, n)) return fail(ProtocolError::invalid_utf8, pos, consumed);
        consumed = pos;
        return message_event(payload, n, static_cast<std::size_t>(payload - (input + frame_start)));
      }
      if (!is_control(frame_opcode_)) {
        assembly_reserve(spill().assembly_size + static_cast<std::size_t>(plen));
      } else if (!spill_) {
        spill();  // rare: a control frame split across calls
      }
    }

    // Payload bytes of the current frame: unmasked while copied into inline control storage or the assembly
    // buffer, where the rest of the frame (or message) will join them.
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_remaining_, len - pos));
    const bool control = is_control(frame_opcode_);
    std::uint8_t* dst;
    if (control) {
      Spill& sp = *spill_;  // allocated when the frame began
      dst = sp.control + sp.control_len;
      sp.control_len = static_cast<std::uint8_t>(sp.control_len + take);  // <= 125 (RFC 6455 5.5)
    } else {
      dst = assembly_extend(take);
    }
    if (frame_masked()) {
      mask_phase_ = static_cast<std::uint8_t>(mask_copy(dst, input + pos, take, frame_mask_key_, mask_phase_));
    } else if (take != 0) {
      std::memcpy(dst, input + pos, take);
    }
    pos += take;
    frame_remaining_ -= take;
    if (!control && check_utf8() && !utf8_.feed(dst, take)) return fail(ProtocolError::invalid_utf8, pos, consumed);
    if (frame_remaining_ != 0) break;  // input used up inside the frame

    in_frame_ = false;
    if (control) return control_event(spill_->control, spill_->control_len, pos, consumed);
    if (frame_fin_) {
      if (check_utf8() && !utf8_.complete()) return fail(ProtocolError::invalid_utf8, pos, consumed);
      consumed = pos;
      // An empty fragmented message never allocated the buffer: no payload, no headroom.
      std::uint8_t* data = assembly_data();
      return message_event(data, data ? spill_->assembly_size : 0, data ? kAssemblyHeadroom : 0);
    }
  }
  consumed = len;
  return Event{};
}

}  // namespace edgews::codec
