#include "core/handoff_record.hpp"

#include <netinet/in.h>

#include <cstring>

namespace edgews::core::handoff {

namespace {

class Writer {
 public:
  explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void bytes(std::span<const std::uint8_t> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void text(std::string_view s) { bytes({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}); }
  void header(RecordType type) {
    u32(kMagic);
    u16(kFormatVersion);
    u8(static_cast<std::uint8_t>(type));
  }
  void address(const PeerAddress& a) {
    const sa_family_t family = a.addr.sa.sa_family;
    u16(family);
    if (family == AF_INET) {
      out_.insert(out_.end(), reinterpret_cast<const std::uint8_t*>(&a.addr.v4.sin_addr),
                  reinterpret_cast<const std::uint8_t*>(&a.addr.v4.sin_addr) + 4);
      u16(a.addr.v4.sin_port);
    } else if (family == AF_INET6) {
      out_.insert(out_.end(), reinterpret_cast<const std::uint8_t*>(&a.addr.v6.sin6_addr),
                  reinterpret_cast<const std::uint8_t*>(&a.addr.v6.sin6_addr) + 16);
      u16(a.addr.v6.sin6_port);
      u32(a.addr.v6.sin6_scope_id);
    }
  }

 private:
  void put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t>& out_;
};

class Reader {
 public:
  Reader(std::span<const std::uint8_t> in, std::string& error) : in_(in), error_(error) {}
  bool ok() const { return ok_; }
  bool at_end() const { return at_ == in_.size(); }
  bool fail(std::string_view why) {
    if (ok_) error_.assign(why);
    ok_ = false;
    return false;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(get(1, "a byte")); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(get(2, "a 16-bit field")); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(get(4, "a 32-bit field")); }
  std::uint64_t u64() { return get(8, "a 64-bit field"); }
  bool flag() {
    const std::uint8_t v = u8();
    if (v > 1) fail("a flag is neither 0 nor 1");
    return v == 1;
  }
  std::span<const std::uint8_t> bytes(std::size_t max, std::string_view what) {
    const std::uint32_t n = u32();
    if (!ok_) return {};
    if (n > max) {
      fail(std::string(what) + " is longer than its bound");
      return {};
    }
    if (in_.size() - at_ < n) {
      fail(std::string(what) + " runs past the end of the record");
      return {};
    }
    const auto out = in_.subspan(at_, n);
    at_ += n;
    return out;
  }
  std::string text(std::size_t max, std::string_view what) {
    const auto b = bytes(max, what);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  void raw(void* out, std::size_t n) {
    if (!ok_) return;
    if (in_.size() - at_ < n) {
      fail("an address runs past the end of the record");
      return;
    }
    std::memcpy(out, in_.data() + at_, n);
    at_ += n;
  }
  bool address(PeerAddress& a) {
    a = PeerAddress{};
    const std::uint16_t family = u16();
    if (family == AF_INET) {
      a.addr.v4.sin_family = AF_INET;
      raw(&a.addr.v4.sin_addr, 4);
      a.addr.v4.sin_port = u16();
    } else if (family == AF_INET6) {
      a.addr.v6.sin6_family = AF_INET6;
      raw(&a.addr.v6.sin6_addr, 16);
      a.addr.v6.sin6_port = u16();
      a.addr.v6.sin6_scope_id = u32();
    } else if (family != AF_UNSPEC) {
      return fail("an address of an unknown family");
    }
    return ok_;
  }
  bool header(RecordType expected) {
    std::string error;
    const std::optional<RecordType> type = peek_type(in_, error);
    if (!type) return fail(error);
    if (*type != expected) return fail("a record of another type");
    at_ = 7;
    return true;
  }

 private:
  std::uint64_t get(std::size_t n, std::string_view what) {
    if (!ok_) return 0;
    if (in_.size() - at_ < n) {
      fail(std::string(what) + " runs past the end of the record");
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(in_[at_ + i]) << (8 * i);
    at_ += n;
    return v;
  }
  std::span<const std::uint8_t> in_;
  std::string& error_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

bool valid_window_bits(unsigned bits) { return bits >= codec::kMinWindowBits && bits <= codec::kMaxWindowBits; }

}  // namespace

bool encode(const ConnectionState& s, std::vector<std::uint8_t>& out) {
  if (s.user_state.size() > kMaxUserState || s.topics.size() > kMaxTopics || s.unread.size() > kMaxUnread ||
      s.compressor_window.size() > (std::size_t{1} << codec::kMaxWindowBits) ||
      s.decompressor_window.size() > (std::size_t{1} << codec::kMaxWindowBits)) {
    return false;
  }
  const std::size_t start = out.size();
  Writer w(out);
  w.header(RecordType::connection);
  w.u64(s.id);
  w.address(s.peer);
  w.u8(s.forwarded ? 1 : 0);
  if (s.forwarded) w.address(*s.forwarded);
  w.text(s.subprotocol);
  w.u8(s.deflate ? 1 : 0);
  if (s.deflate) {
    w.u8(s.deflate_params.server_no_context_takeover ? 1 : 0);
    w.u8(s.deflate_params.client_no_context_takeover ? 1 : 0);
    w.u8(static_cast<std::uint8_t>(s.deflate_params.server_max_window_bits));
    w.u8(static_cast<std::uint8_t>(s.deflate_params.client_max_window_bits));
    w.bytes(s.compressor_window);
    w.bytes(s.decompressor_window);
  }
  w.u32(static_cast<std::uint32_t>(s.topics.size()));
  for (const std::string& topic : s.topics) w.text(topic);
  w.u32(s.since_heard_ms);
  w.u32(s.since_message_ms);
  w.u32(s.since_ping_ms);
  w.u8(s.awaiting_pong ? 1 : 0);
  w.bytes(s.user_state);
  w.bytes(s.unread);
  if (out.size() - start > kMaxRecord) {
    out.resize(start);
    return false;
  }
  return true;
}

bool encode(const Control& c, std::vector<std::uint8_t>& out) {
  if (c.type == RecordType::connection || c.names.size() > 16 || c.reason.size() > 1024) return false;
  Writer w(out);
  w.header(c.type);
  w.u64(c.id);
  w.u32(static_cast<std::uint32_t>(c.names.size()));
  for (const std::string& name : c.names) w.text(name);
  w.text(c.reason);
  return true;
}

std::optional<RecordType> peek_type(std::span<const std::uint8_t> record, std::string& error) {
  if (record.size() < 7) {
    error = "a record shorter than its header";
    return std::nullopt;
  }
  std::uint32_t magic = 0;
  for (int i = 0; i < 4; ++i) magic |= static_cast<std::uint32_t>(record[static_cast<std::size_t>(i)]) << (8 * i);
  if (magic != kMagic) {
    error = "not a hand-off record (wrong magic number)";
    return std::nullopt;
  }
  const std::uint16_t version = static_cast<std::uint16_t>(record[4] | (record[5] << 8));
  if (version != kFormatVersion) {
    error = "hand-off format version " + std::to_string(version) + ", this build reads version " +
            std::to_string(kFormatVersion);
    return std::nullopt;
  }
  const std::uint8_t type = record[6];
  if (type < static_cast<std::uint8_t>(RecordType::hello) || type > static_cast<std::uint8_t>(RecordType::done)) {
    error = "a record of an unknown type";
    return std::nullopt;
  }
  return static_cast<RecordType>(type);
}

bool decode(std::span<const std::uint8_t> record, ConnectionState& s, std::string& error) {
  s = ConnectionState{};
  Reader r(record, error);
  if (!r.header(RecordType::connection)) return false;
  s.id = r.u64();
  r.address(s.peer);
  if (r.flag()) {
    s.forwarded.emplace();
    r.address(*s.forwarded);
  }
  s.subprotocol = r.text(255, "the subprotocol");
  s.deflate = r.flag();
  if (s.deflate) {
    s.deflate_params.server_no_context_takeover = r.flag();
    s.deflate_params.client_no_context_takeover = r.flag();
    s.deflate_params.server_max_window_bits = r.u8();
    s.deflate_params.client_max_window_bits = r.u8();
    if (r.ok() && (!valid_window_bits(s.deflate_params.server_max_window_bits) ||
                   !valid_window_bits(s.deflate_params.client_max_window_bits))) {
      return r.fail("a deflate window size outside 8..15");
    }
    const auto out_window = r.bytes(std::size_t{1} << codec::kMaxWindowBits, "the compressor's window");
    s.compressor_window.assign(out_window.begin(), out_window.end());
    const auto in_window = r.bytes(std::size_t{1} << codec::kMaxWindowBits, "the decompressor's window");
    s.decompressor_window.assign(in_window.begin(), in_window.end());
  }
  const std::uint32_t topics = r.u32();
  if (r.ok() && topics > kMaxTopics) return r.fail("more topics than a connection may hold here");
  for (std::uint32_t i = 0; r.ok() && i < topics; ++i) s.topics.push_back(r.text(kMaxRecord, "a topic"));
  s.since_heard_ms = r.u32();
  s.since_message_ms = r.u32();
  s.since_ping_ms = r.u32();
  s.awaiting_pong = r.flag();
  const auto user = r.bytes(kMaxUserState, "the application's state");
  s.user_state.assign(user.begin(), user.end());
  const auto unread = r.bytes(kMaxUnread, "the unread input");
  s.unread.assign(unread.begin(), unread.end());
  if (r.ok() && !r.at_end()) return r.fail("bytes after the end of the record");
  return r.ok();
}

bool decode(std::span<const std::uint8_t> record, Control& c, std::string& error) {
  c = Control{};
  std::string type_error;
  const std::optional<RecordType> type = peek_type(record, type_error);
  if (!type || *type == RecordType::connection) {
    error = type ? "a connection record where a control record belongs" : type_error;
    return false;
  }
  Reader r(record, error);
  r.header(*type);
  c.type = *type;
  c.id = r.u64();
  const std::uint32_t names = r.u32();
  if (r.ok() && names > 16) return r.fail("more listener names than a server has listeners");
  for (std::uint32_t i = 0; r.ok() && i < names; ++i) c.names.push_back(r.text(64, "a listener name"));
  c.reason = r.text(1024, "the reason");
  if (r.ok() && !r.at_end()) return r.fail("bytes after the end of the record");
  return r.ok();
}

}  // namespace edgews::core::handoff
