#include "codec/session.hpp"

#include <algorithm>

namespace edgews::codec {

CloseStep ClosingHandshake::send_close(std::uint16_t code, std::string_view reason, bool complete) {
  CloseStep step;
  if (code != static_cast<std::uint16_t>(CloseCode::no_status) && !is_valid_wire_close_code(code)) {
    code = static_cast<std::uint16_t>(CloseCode::normal);
  }
  step.send = true;
  step.size = write_close_payload(step.payload, code, reason);
  step.notify = true;
  step.code = code;
  step.complete = complete;
  state_ = complete ? State::closed : State::close_sent;
  return step;
}

CloseStep ClosingHandshake::close(std::uint16_t code, std::string_view reason) {
  if (state_ != State::open) return {};
  return send_close(code, reason, false);
}

CloseStep ClosingHandshake::fail(std::uint16_t code, std::string_view reason) {
  if (state_ == State::open) return send_close(code, reason, true);
  // Already closing: no second close frame; the caller stops waiting for the peer's.
  CloseStep step;
  step.complete = state_ != State::closed;
  state_ = State::closed;
  return step;
}

CloseStep ClosingHandshake::received(std::uint16_t code) {
  CloseStep step;
  if (state_ == State::open) {
    // RFC 6455 5.5.1: answer with a close frame, echoing the status code (none when the peer sent none).
    step.send = true;
    step.size = write_close_payload(step.payload, code, {});
    step.notify = true;
    step.code = code;
  }
  step.complete = state_ != State::closed;
  state_ = State::closed;
  return step;
}

CloseStep ClosingHandshake::timed_out() {
  CloseStep step;
  step.complete = state_ == State::close_sent;
  if (step.complete) state_ = State::closed;
  return step;
}

namespace {

std::uint32_t remaining(std::uint32_t since, std::uint32_t limit, std::uint32_t now) {
  const std::uint32_t gone = now - since;
  return gone >= limit ? 0 : limit - gone;
}

}  // namespace

Liveness::Due Liveness::check(const LivenessSettings& settings, std::uint32_t now) {
  if (settings.idle_timeout_ms != 0 && now - message_ms_ >= settings.idle_timeout_ms) return Due::idle;
  if (settings.ping_interval_ms == 0) return Due::nothing;
  if (awaiting_pong_) return now - ping_sent_ms_ >= settings.pong_timeout_ms ? Due::no_pong : Due::nothing;
  if (now - heard_ms_ < settings.ping_interval_ms) return Due::nothing;
  awaiting_pong_ = true;
  ping_sent_ms_ = now;
  return Due::ping;
}

std::uint32_t Liveness::next_check_in(const LivenessSettings& settings, std::uint32_t now) const {
  std::uint32_t wait = UINT32_MAX;
  if (settings.ping_interval_ms != 0) {
    wait = awaiting_pong_ ? remaining(ping_sent_ms_, settings.pong_timeout_ms, now)
                          : remaining(heard_ms_, settings.ping_interval_ms, now);
  }
  if (settings.idle_timeout_ms != 0) wait = std::min(wait, remaining(message_ms_, settings.idle_timeout_ms, now));
  return wait;
}

}  // namespace edgews::codec
