// Metrics vocabulary: the label values of the per-thread counters (refusal reasons, close codes) and the loop-lag
// histogram. Counting is per reactor thread with relaxed atomics that only their thread writes; a scrape reads
// them from any thread and sums (Server::metrics_text(), Prometheus text exposition format 0.0.4).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgews::core {

// Pieces of the text exposition format, for families added to /metrics by a PubSubRelay or an embedder.
void append_metric_family(std::string& out, std::string_view name, std::string_view type, std::string_view help);
void append_metric_sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value);

enum class RefusalReason : std::uint8_t {
  bad_request,            // 400 from the HTTP parser or the upgrade validator
  forbidden,              // 403: Origin not allowed
  unsupported_version,    // 426: Sec-WebSocket-Version other than 13
  headers_too_large,      // 431
  no_common_subprotocol,  // 400: offered subprotocols, none supported
  application,            // on_upgrade called refuse()
  application_header,     // on_upgrade's add_header was refused by the checked API (the upgrade goes on)
  internal_error,         // 5xx
  rate_limited,           // 429: over Limits::handshake_rate for the client's address
  address_connections,    // 503: over Limits::max_connections_per_address for a client behind a trusted proxy
  draining,               // 503: the server is draining before a restart (Server::begin_drain)
  other,
};
inline constexpr std::size_t kRefusalReasons = 12;
std::string_view label(RefusalReason reason);
RefusalReason refusal_reason_for_status(int status);

// What admission control did, as the labels limit and action of edgews_admission_limited_total.
enum class AdmissionEvent : std::uint8_t {
  address_connections_refused,  // closed at accept, or 503 at the upgrade behind a trusted proxy
  handshake_rate_refused,       // 429
  message_rate_closed,          // 1008
  byte_rate_closed,             // 1008
  message_rate_paused,          // reading held until the bucket is out of debt
  byte_rate_paused,
};
inline constexpr std::size_t kAdmissionEvents = 6;
std::string_view admission_labels(AdmissionEvent event);  // limit="...",action="..."

// Close codes as labels: 1000-1015 each, then 3xxx (registered) and 4xxx (private) as two buckets, so that an
// application using many private codes cannot blow up the series count.
inline constexpr std::size_t kCloseCodeSlots = 19;
constexpr std::size_t close_code_slot(std::uint16_t code) {
  if (code >= 1000 && code <= 1015) return code - 1000u;
  if (code >= 3000 && code <= 3999) return 16;
  if (code >= 4000 && code <= 4999) return 17;
  return 18;
}
std::string_view close_code_label(std::size_t slot);

// How late the reactor runs work that is ready: every sampling period a task is posted to the reactor and the
// time until it runs is observed (the rest of the turn, epoll_wait, the next batch). Written by its reactor only.
class LagHistogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
  void observe(std::uint64_t nanoseconds);

  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets{};  // not cumulative; last = +Inf
  std::atomic<std::uint64_t> sum_ns{0};
  std::atomic<std::uint64_t> count{0};
};

}  // namespace edgews::core
