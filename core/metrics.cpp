#include "core/metrics.hpp"

#include <cinttypes>
#include <cstdio>
#include <string>

#include "core/server_impl.hpp"
#include "core/worker.hpp"

namespace edgews::core {

namespace {

constexpr std::string_view kRefusalLabels[kRefusalReasons] = {
    "bad_request",       "forbidden",   "unsupported_version", "headers_too_large", "no_common_subprotocol",
    "application", "application_header", "internal_error",     "rate_limited",      "address_connections",
    "draining",      "other"};

constexpr std::string_view kAdmissionLabels[kAdmissionEvents] = {
    "limit=\"address_connections\",action=\"refuse\"", "limit=\"handshake_rate\",action=\"refuse\"",
    "limit=\"message_rate\",action=\"close\"", "limit=\"byte_rate\",action=\"close\"",
    "limit=\"message_rate\",action=\"pause\"", "limit=\"byte_rate\",action=\"pause\""};

constexpr std::string_view kCloseCodeLabels[kCloseCodeSlots] = {
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009",
    "1010", "1011", "1012", "1013", "1014", "1015", "3xxx", "4xxx", "other"};

std::uint64_t get(const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); }

}  // namespace

void append_metric_family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void append_metric_sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  char number[32];
  std::snprintf(number, sizeof number, " %" PRIu64 "\n", value);
  out += number;
}

std::string_view label(RefusalReason reason) { return kRefusalLabels[static_cast<std::size_t>(reason)]; }

RefusalReason refusal_reason_for_status(int status) {
  switch (status) {
    case 400: return RefusalReason::bad_request;
    case 403: return RefusalReason::forbidden;
    case 426: return RefusalReason::unsupported_version;
    case 431: return RefusalReason::headers_too_large;
    case 429: return RefusalReason::rate_limited;
    default: return status >= 500 ? RefusalReason::internal_error : RefusalReason::other;
  }
}

std::string_view admission_labels(AdmissionEvent event) {
  return kAdmissionLabels[static_cast<std::size_t>(event)];
}

std::string_view close_code_label(std::size_t slot) {
  return slot < kCloseCodeSlots ? kCloseCodeLabels[slot] : std::string_view("other");
}

void LagHistogram::observe(std::uint64_t nanoseconds) {
  const double seconds = static_cast<double>(nanoseconds) / 1e9;
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  // Only the owning reactor writes: a relaxed load and store, no locked instruction.
  buckets[i].store(buckets[i].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  sum_ns.store(sum_ns.load(std::memory_order_relaxed) + nanoseconds, std::memory_order_relaxed);
  count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

std::string ServerImpl::metrics_text() const {
  // Sums of per-thread counters, each read with a relaxed load: every value is exact for its thread at some
  // instant of the scrape, which is all Prometheus counters need (they only ever grow).
  const Worker::Totals t = total_counters(workers_);
  const std::uint64_t accepted = t.accepted, messages_in = t.messages_in, messages_out = t.messages_out,
                      bytes_in = t.bytes_in, bytes_out = t.bytes_out, dropped = t.dropped,
                      bp_closes = t.backpressure_closes, shed = t.shed + t.listener_shed, tls_failures = t.tls_failures,
                      tls_released = t.tls_buffers_released, proxy_errors = t.proxy_errors, queued = t.queued_bytes,
                      paused = t.paused, throttled = t.throttled, memory = t.memory_in_use,
                      memory_closes = t.memory_closes, memory_pauses = t.memory_pauses;
  const auto& refused = t.refused_by;
  const auto& closed = t.closed_by;
  const auto& admission = t.admission;

  std::string out;
  out.reserve(4096 + workers_.size() * 1024);
  append_metric_family(out, "edgews_connections_open", "gauge", "WebSocket and HTTP connections currently open.");
  append_metric_sample(out, "edgews_connections_open", {}, connection_count_.load(std::memory_order_relaxed));
  append_metric_family(out, "edgews_connections_accepted_total", "counter", "TCP connections accepted.");
  append_metric_sample(out, "edgews_connections_accepted_total", {}, accepted);
  append_metric_family(out, "edgews_connections_closed_total", "counter",
         "Opened WebSocket connections closed, by close code (1006: dropped without a closing handshake).");
  for (std::size_t i = 0; i < kCloseCodeSlots; ++i) {
    if (closed[i] == 0 && i != 0) continue;
    append_metric_sample(out, "edgews_connections_closed_total", "code=\"" + std::string(close_code_label(i)) + "\"",
                         closed[i]);
  }
  append_metric_family(out, "edgews_handshakes_refused_total", "counter",
         "Upgrade requests refused, by reason; application_header counts headers refused by the checked API.");
  for (std::size_t i = 0; i < kRefusalReasons; ++i) {
    append_metric_sample(out, "edgews_handshakes_refused_total",
           "reason=\"" + std::string(label(static_cast<RefusalReason>(i))) + "\"", refused[i]);
  }
  append_metric_family(out, "edgews_messages_received_total", "counter", "WebSocket data messages received.");
  append_metric_sample(out, "edgews_messages_received_total", {}, messages_in);
  append_metric_family(out, "edgews_messages_sent_total", "counter", "WebSocket data messages queued for sending.");
  append_metric_sample(out, "edgews_messages_sent_total", {}, messages_out);
  append_metric_family(out, "edgews_bytes_received_total", "counter", "Bytes read from sockets (after TLS).");
  append_metric_sample(out, "edgews_bytes_received_total", {}, bytes_in);
  append_metric_family(out, "edgews_bytes_sent_total", "counter", "Bytes written to sockets (before TLS).");
  append_metric_sample(out, "edgews_bytes_sent_total", {}, bytes_out);
  append_metric_family(out, "edgews_send_queue_bytes", "gauge",
         "Bytes queued in connections' send queues, sampled once a second per reactor.");
  append_metric_sample(out, "edgews_send_queue_bytes", {}, queued);
  append_metric_family(out, "edgews_connections_paused", "gauge",
         "Connections whose reading the application paused (pause_reading).");
  append_metric_sample(out, "edgews_connections_paused", {}, paused);
  append_metric_family(out, "edgews_connections_throttled", "gauge",
         "Connections the server does not read for now: send queue over limits.read_high_water, a rate limit, "
         "or the memory budget.");
  append_metric_sample(out, "edgews_connections_throttled", {}, throttled);
  append_metric_family(out, "edgews_memory_bytes", "gauge",
         "Bytes connections hold in user space (queued output, assembly, unread input, zlib, TLS records), sampled "
         "every 100 ms per reactor while any holds some.");
  append_metric_sample(out, "edgews_memory_bytes", {}, memory);
  append_metric_family(out, "edgews_memory_budget_bytes", "gauge", "The memory budget in force (limits.max_memory).");
  append_metric_sample(out, "edgews_memory_budget_bytes", {}, memory_budget_);
  append_metric_family(out, "edgews_memory_budget_actions_total", "counter",
         "Actions on the connections holding the most memory: pause (not read, over 3/4 of the budget), close "
         "(1013, over the budget).");
  append_metric_sample(out, "edgews_memory_budget_actions_total", "action=\"pause\"", memory_pauses);
  append_metric_sample(out, "edgews_memory_budget_actions_total", "action=\"close\"", memory_closes);
  append_metric_family(out, "edgews_backpressure_actions_total", "counter",
         "Sends over limits.max_backpressure, by the policy applied (drop: message dropped; close: closed 1008).");
  append_metric_sample(out, "edgews_backpressure_actions_total", "policy=\"drop\"", dropped);
  append_metric_sample(out, "edgews_backpressure_actions_total", "policy=\"close\"", bp_closes);
  append_metric_family(out, "edgews_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
  append_metric_sample(out, "edgews_tls_handshake_failures_total", {}, tls_failures);
  append_metric_family(out, "edgews_tls_buffers_released_total", "counter",
         "TLS record buffers released by quiet connections, once per release: after the upgrade, then after each "
         "quiet spell of about a second.");
  append_metric_sample(out, "edgews_tls_buffers_released_total", {}, tls_released);
  append_metric_family(out, "edgews_proxy_protocol_errors_total", "counter",
         "Connections closed for a missing, malformed, truncated, oversized or late PROXY protocol header.");
  append_metric_sample(out, "edgews_proxy_protocol_errors_total", {}, proxy_errors);
  append_metric_family(out, "edgews_accepts_shed_total", "counter",
         "Connections closed at accept: over limits.max_connections, shutting down, or out of descriptors.");
  append_metric_sample(out, "edgews_accepts_shed_total", {}, shed);
  append_metric_family(out, "edgews_admission_limited_total", "counter",
         "Admission control actions, by limit and action: connections per address (closed at accept, or 503 "
         "behind a trusted proxy), handshakes per address (429), messages and bytes per connection (1008, or "
         "reading paused).");
  for (std::size_t i = 0; i < kAdmissionEvents; ++i) {
    append_metric_sample(out, "edgews_admission_limited_total", admission_labels(static_cast<AdmissionEvent>(i)),
                         admission[i]);
  }
  append_metric_family(out, "edgews_address_table_entries", "gauge",
         "Client addresses tracked by admission control (with connections, or a handshake bucket not yet full).");
  append_metric_sample(out, "edgews_address_table_entries", {}, addresses_->entries());
  append_metric_family(out, "edgews_address_table_evictions_total", "counter",
         "Addresses without connections forgotten because limits.address_table_idle_entries was reached.");
  append_metric_sample(out, "edgews_address_table_evictions_total", {}, addresses_->evictions());

  append_metric_family(out, "edgews_reactor_loop_lag_seconds", "histogram",
         "Delay before a reactor runs work that is ready, sampled every 100 ms per reactor.");
  for (const auto& worker : workers_) {
    const LagHistogram& lag = worker->counters().loop_lag;
    const std::string reactor = "reactor=\"" + std::to_string(worker->index()) + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= LagHistogram::kBounds.size(); ++i) {
      cumulative += get(lag.buckets[i]);
      char le[32];
      if (i < LagHistogram::kBounds.size()) {
        std::snprintf(le, sizeof le, "%g", LagHistogram::kBounds[i]);
      } else {
        std::snprintf(le, sizeof le, "+Inf");
      }
      append_metric_sample(out, "edgews_reactor_loop_lag_seconds_bucket", reactor + ",le=\"" + le + "\"", cumulative);
    }
    char sum[64];
    std::snprintf(sum, sizeof sum, "edgews_reactor_loop_lag_seconds_sum{%s} %.9f\n", reactor.c_str(),
                  static_cast<double>(get(lag.sum_ns)) / 1e9);
    out += sum;
    // _count equals the +Inf bucket: both come from the same bucket reads, so they agree within one scrape.
    append_metric_sample(out, "edgews_reactor_loop_lag_seconds_count", reactor, cumulative);
  }
  {
    // Under the mutex that set_pubsub_relay() takes: a relay being removed is not called once it returns.
    std::lock_guard lock(interest_mutex_);
    if (PubSubRelay* relay = relay_.load(std::memory_order_relaxed)) relay->append_metrics(out);
  }
  return out;
}

}  // namespace edgews::core
