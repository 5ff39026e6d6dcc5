// permessage-deflate for one connection: the server's negotiation policy (configuration, built-in user-agent
// list, the application's hook) and the compressor/decompressor pair of either role, with per-thread shared
// streams and buffers.
//
// A Connection (or a Client) holds a DeflateSession only when compression was negotiated; everything else pays
// one pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "codec/deflate.hpp"
#include "codec/handshake_request.hpp"
#include "codec/protocol.hpp"
#include "core/config.hpp"

namespace edgews::core {

enum class DeflateDecision : std::uint8_t {
  accepted,
  not_offered,          // no permessage-deflate offer (or compression is disabled)
  broken_user_agent,    // DeflateConfig::decline_broken_user_agents matched
  declined_by_hook,     // Callbacks::on_deflate_offer said no
  no_acceptable_offer,  // every offer had invalid parameters
};

// Decides for one upgrade request. On `accepted`, `out` holds the parameters and the response header value.
DeflateDecision decide_deflate(const DeflateConfig& config, const codec::UpgradeRequest& upgrade,
                               const std::function<bool(const codec::UpgradeRequest&)>& hook,
                               codec::DeflateNegotiation& out);

class DeflateSession {
 public:
  // The role decides which half of the negotiated parameters is ours: a server compresses with the server_*
  // window and context takeover and inflates with the client_* ones, a client the other way round. `config`
  // gives the compressor's effort (mem_level, compression_level), min_size and shared_compressor.
  DeflateSession(const DeflateConfig& config, const codec::DeflateParams& params,
                 codec::Role role = codec::Role::server);
  ~DeflateSession();
  DeflateSession(const DeflateSession&) = delete;
  DeflateSession& operator=(const DeflateSession&) = delete;

  // Inflates a received compressed message of at most `limit` bytes; `text` messages are then checked as UTF-8.
  // On none, `out` views a per-thread buffer valid until the next inflate on this thread.
  codec::ProtocolError inflate(std::span<const std::uint8_t> message, bool text, std::size_t limit,
                               std::span<const std::uint8_t>& out);
  // Compresses an outgoing message into a per-thread buffer (valid until the next compress on this thread).
  // False: send it uncompressed (below min_size, or zlib could not allocate).
  bool compress(std::span<const std::uint8_t> message, std::span<const std::uint8_t>& out);

  std::size_t min_size() const { return min_size_; }

  // Live hand-off: both sliding windows (empty in a direction without context takeover, or before its first
  // message), and their restoration into a fresh session of the same parameters. Between messages only.
  bool save_windows(std::vector<std::uint8_t>& compressor, std::vector<std::uint8_t>& decompressor) const;
  bool restore_windows(std::span<const std::uint8_t> compressor, std::span<const std::uint8_t> decompressor);
  const codec::DeflateParams& params() const { return params_; }

  // Free the per-thread buffer when a very large message grew it; call once its view is no longer used. Return
  // the bytes freed.
  static std::size_t trim_inflated_buffer();
  static std::size_t trim_compressed_buffer();

 private:
  codec::DeflateParams params_;
  // Our compressor's and the peer's (our inflater's) window and context takeover, from params_ and the role.
  unsigned send_bits_;
  bool send_no_takeover_;
  unsigned receive_bits_;
  bool receive_no_takeover_;
  int mem_level_;
  int level_;
  std::size_t min_size_;
  bool shared_;
  std::unique_ptr<codec::Deflater> deflater_;  // own streams, created at first use (not when shared)
  std::unique_ptr<codec::Inflater> inflater_;
};

}  // namespace edgews::core
