#include "core/deflate_session.hpp"

#include <array>

#include "codec/utf8.hpp"

namespace edgews::core {

namespace {

// Per-thread state: a connection lives on one reactor thread, and a message view only lives during its
// callback, so buffers and no-context-takeover streams can be shared by every connection of the thread.
struct ThreadDeflate {
  codec::ByteBuffer inflated;
  codec::ByteBuffer compressed;
  // Shared streams, keyed by what makes their output differ: window bits 8..15 (x mem level x level for the
  // compressor). Created at first use.
  std::array<std::unique_ptr<codec::Inflater>, 16> inflaters;
  std::array<std::unique_ptr<codec::Deflater>, 16 * 10 * 10> deflaters;
};

ThreadDeflate& thread_deflate() {
  thread_local ThreadDeflate state;
  return state;
}

// Buffers above this are released after the message that grew them.
constexpr std::size_t kKeepBuffer = 1u << 20;

}  // namespace

DeflateDecision decide_deflate(const DeflateConfig& config, const codec::UpgradeRequest& upgrade,
                               const std::function<bool(const codec::UpgradeRequest&)>& hook,
                               codec::DeflateNegotiation& out) {
  out = codec::DeflateNegotiation{};
  if (!config.enabled || upgrade.extensions_offered.find(codec::kPerMessageDeflate) == std::string_view::npos) {
    return DeflateDecision::not_offered;
  }
  if (config.decline_broken_user_agents && codec::is_deflate_broken_user_agent(upgrade.user_agent)) {
    return DeflateDecision::broken_user_agent;
  }
  if (hook && !hook(upgrade)) return DeflateDecision::declined_by_hook;
  codec::DeflateServerOptions options;
  options.server_max_window_bits = config.server_max_window_bits;
  options.client_max_window_bits = config.client_max_window_bits;
  options.server_no_context_takeover = config.server_no_context_takeover;
  options.client_no_context_takeover = config.client_no_context_takeover;
  out = codec::negotiate_deflate(upgrade.extensions_offered, options);
  return out.accepted ? DeflateDecision::accepted : DeflateDecision::no_acceptable_offer;
}

DeflateSession::DeflateSession(const DeflateConfig& config, const codec::DeflateParams& params, codec::Role role)
    : params_(params),
      send_bits_(role == codec::Role::server ? params.server_max_window_bits : params.client_max_window_bits),
      send_no_takeover_(role == codec::Role::server ? params.server_no_context_takeover
                                                    : params.client_no_context_takeover),
      receive_bits_(role == codec::Role::server ? params.client_max_window_bits : params.server_max_window_bits),
      receive_no_takeover_(role == codec::Role::server ? params.client_no_context_takeover
                                                       : params.server_no_context_takeover),
      mem_level_(config.mem_level),
      level_(config.compression_level),
      min_size_(config.min_size),
      shared_(config.shared_compressor) {}

DeflateSession::~DeflateSession() = default;

codec::ProtocolError DeflateSession::inflate(std::span<const std::uint8_t> message, bool text, std::size_t limit,
                                             std::span<const std::uint8_t>& out) {
  ThreadDeflate& t = thread_deflate();
  const unsigned bits = receive_bits_;
  // Without the peer's context takeover each message starts from an empty window: a shared stream will do.
  const bool shared = shared_ && receive_no_takeover_;
  std::unique_ptr<codec::Inflater>& slot = shared ? t.inflaters[bits] : inflater_;
  if (!slot) {
    slot = std::make_unique<codec::Inflater>();
    if (!slot->init(bits)) {
      slot.reset();
      return codec::ProtocolError::compressed_payload_invalid;
    }
  }
  const codec::InflateStatus status = slot->inflate(message, limit, t.inflated, receive_no_takeover_);
  if (status != codec::InflateStatus::ok) {
    t.inflated.release();  // a bomb may have grown it to the limit
    return codec::protocol_error_for(status);
  }
  out = t.inflated.view();
  // RFC 7692 8 / RFC 6455 8.1: text is UTF-8 once inflated (the frame reader left it to us).
  if (text && !codec::is_valid_utf8(out.data(), out.size())) return codec::ProtocolError::invalid_utf8;
  return codec::ProtocolError::none;
}

bool DeflateSession::compress(std::span<const std::uint8_t> message, std::span<const std::uint8_t>& out) {
  if (message.size() < min_size_) return false;
  ThreadDeflate& t = thread_deflate();
  const unsigned bits = send_bits_;
  const bool shared = shared_ && send_no_takeover_;
  std::unique_ptr<codec::Deflater>& slot =
      shared ? t.deflaters[bits * 100 + static_cast<unsigned>(mem_level_) * 10 + static_cast<unsigned>(level_)]
             : deflater_;
  if (!slot) {
    slot = std::make_unique<codec::Deflater>();
    if (!slot->init(bits, mem_level_, level_)) {
      slot.reset();
      return false;
    }
  }
  if (!slot->compress(message, t.compressed, send_no_takeover_)) {
    // Out of memory. The peer never sees this message; a fresh stream starts from an empty window and so never
    // refers to data the peer's inflater lacks, with or without context takeover.
    slot.reset();
    return false;
  }
  out = t.compressed.view();
  return true;
}

bool DeflateSession::save_windows(std::vector<std::uint8_t>& compressor,
                                  std::vector<std::uint8_t>& decompressor) const {
  compressor.clear();
  decompressor.clear();
  codec::ByteBuffer window;
  if (deflater_ && !send_no_takeover_) {
    if (!deflater_->window(window)) return false;
    compressor.assign(window.view().begin(), window.view().end());
  }
  if (inflater_ && !receive_no_takeover_) {
    codec::ByteBuffer in;
    if (!inflater_->window(in)) return false;
    decompressor.assign(in.view().begin(), in.view().end());
  }
  return true;
}

bool DeflateSession::restore_windows(std::span<const std::uint8_t> compressor,
                                     std::span<const std::uint8_t> decompressor) {
  if (!compressor.empty()) {
    deflater_ = std::make_unique<codec::Deflater>();
    if (!deflater_->init(send_bits_, mem_level_, level_) || !deflater_->set_window(compressor)) {
      deflater_.reset();
      return false;
    }
  }
  if (!decompressor.empty()) {
    inflater_ = std::make_unique<codec::Inflater>();
    if (!inflater_->init(receive_bits_) || !inflater_->set_window(decompressor)) {
      inflater_.reset();
      return false;
    }
  }
  return true;
}

std::size_t DeflateSession::trim_inflated_buffer() {
  ThreadDeflate& t = thread_deflate();
  const std::size_t held = t.inflated.capacity();
  if (held <= kKeepBuffer) return 0;
  t.inflated.release();
  return held;
}

std::size_t DeflateSession::trim_compressed_buffer() {
  ThreadDeflate& t = thread_deflate();
  const std::size_t held = t.compressed.capacity();
  if (held <= kKeepBuffer) return 0;
  t.compressed.release();
  return held;
}

}  // namespace edgews::core
