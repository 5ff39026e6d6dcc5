// The closing handshake and liveness rules both roles share (RFC 6455 5.5, 7).
#include "codec/session.hpp"

#include <gtest/gtest.h>

#include <string>

namespace edgews::codec {
namespace {

ClosePayload payload_of(const CloseStep& step) {
  const ClosePayloadParse parsed = parse_close_payload(step.payload, step.size);
  EXPECT_TRUE(parsed.ok);
  return parsed.payload;
}

TEST(ClosingHandshake, WeCloseFirstThenThePeerAnswers) {
  ClosingHandshake h;
  EXPECT_TRUE(h.may_send_data());
  const CloseStep ours = h.close(1000, "bye");
  EXPECT_TRUE(ours.send);
  EXPECT_EQ(payload_of(ours).code, 1000);
  EXPECT_EQ(payload_of(ours).reason, "bye");
  EXPECT_TRUE(ours.notify);
  EXPECT_EQ(ours.code, 1000);
  EXPECT_FALSE(ours.complete);
  EXPECT_EQ(h.state(), ClosingHandshake::State::close_sent);
  EXPECT_FALSE(h.may_send_data());  // RFC 6455 5.5.1: nothing after our close frame but control frames
  EXPECT_TRUE(h.may_send_control());
  EXPECT_FALSE(h.close(1001, "again").send);  // one close frame only

  const CloseStep answer = h.received(1000);
  EXPECT_FALSE(answer.send);
  EXPECT_FALSE(answer.notify);  // the application heard our code already
  EXPECT_TRUE(answer.complete);
  EXPECT_EQ(h.state(), ClosingHandshake::State::closed);
  EXPECT_FALSE(h.may_send_control());
}

TEST(ClosingHandshake, ThePeerClosesFirstAndIsEchoed) {
  ClosingHandshake h;
  const CloseStep step = h.received(4001);
  EXPECT_TRUE(step.send);
  EXPECT_EQ(payload_of(step).code, 4001);
  EXPECT_TRUE(payload_of(step).reason.empty());
  EXPECT_TRUE(step.notify);
  EXPECT_EQ(step.code, 4001);
  EXPECT_TRUE(step.complete);
  EXPECT_FALSE(h.close(1000, "late").send);
  EXPECT_FALSE(h.received(1000).complete);  // a second close frame changes nothing
}

TEST(ClosingHandshake, APeerCloseWithoutCodeIsAnsweredWithoutOne) {
  ClosingHandshake h;
  const CloseStep step = h.received(static_cast<std::uint16_t>(CloseCode::no_status));
  EXPECT_TRUE(step.send);
  EXPECT_EQ(step.size, 0u);  // RFC 6455 7.4.1: 1005 never appears on the wire
  EXPECT_EQ(step.code, 1005);
}

TEST(ClosingHandshake, CodesThatMayNotBeSentBecomeNormalAnd1005SendsNone) {
  for (std::uint16_t bad : {999, 1004, 1006, 1015, 2999, 5000}) {
    ClosingHandshake h;
    const CloseStep step = h.close(bad, "x");
    EXPECT_EQ(payload_of(step).code, 1000) << bad;
    EXPECT_EQ(step.code, 1000) << bad;
  }
  ClosingHandshake h;
  const CloseStep none = h.close(1005, "ignored");
  EXPECT_EQ(none.size, 0u);
  EXPECT_EQ(none.code, 1005);
}

TEST(ClosingHandshake, AFailureSendsItsCodeAndDoesNotWait) {
  ClosingHandshake h;
  const CloseStep step = h.fail(1002, "reserved bits");
  EXPECT_TRUE(step.send);
  EXPECT_EQ(payload_of(step).code, 1002);
  EXPECT_TRUE(step.notify);
  EXPECT_TRUE(step.complete);
  EXPECT_EQ(h.state(), ClosingHandshake::State::closed);

  // Failing while our close frame waits for an answer: no second frame, stop waiting.
  ClosingHandshake closing;
  closing.close(1000, {});
  const CloseStep again = closing.fail(1002, "garbage after close");
  EXPECT_FALSE(again.send);
  EXPECT_FALSE(again.notify);
  EXPECT_TRUE(again.complete);
}

TEST(ClosingHandshake, ThePeerNeverAnswersOurCloseFrame) {
  ClosingHandshake h;
  EXPECT_FALSE(h.timed_out().complete);  // open: no close timeout runs
  EXPECT_EQ(h.state(), ClosingHandshake::State::open);
  h.close(1001, "going away");
  const CloseStep step = h.timed_out();
  EXPECT_FALSE(step.send);
  EXPECT_FALSE(step.notify);  // told our code at close()
  EXPECT_TRUE(step.complete);
  EXPECT_EQ(h.state(), ClosingHandshake::State::closed);
  EXPECT_FALSE(h.timed_out().complete);  // once
  EXPECT_FALSE(h.received(1000).send);   // a late answer changes nothing
}

TEST(ClosingHandshake, RebuiltFromAStateKeptElsewhereBehavesTheSame) {
  ClosingHandshake open(ClosingHandshake::State::open);
  EXPECT_TRUE(open.received(1000).send);
  ClosingHandshake waiting(ClosingHandshake::State::close_sent);
  EXPECT_FALSE(waiting.may_send_data());
  EXPECT_FALSE(waiting.close(1000, {}).send);
  const CloseStep answer = waiting.received(1000);
  EXPECT_FALSE(answer.send);
  EXPECT_TRUE(answer.complete);
  ClosingHandshake closed(ClosingHandshake::State::closed);
  EXPECT_FALSE(closed.fail(1002, "x").send);
  EXPECT_FALSE(closed.fail(1002, "x").complete);
}

TEST(ClosingHandshake, LongReasonsAreCutAtACodePointBoundary) {
  ClosingHandshake h;
  std::string reason;
  while (reason.size() < 200) reason += "\xC3\xA9";  // U+00E9, two bytes each
  const CloseStep step = h.close(1000, reason);
  EXPECT_LE(step.size, 125u);
  EXPECT_TRUE(parse_close_payload(step.payload, step.size).ok);  // still valid UTF-8
}

TEST(Liveness, PingsAfterSilenceAndGivesUpWithoutAPong) {
  const LivenessSettings s{1000, 500, 0};
  Liveness l(0);
  EXPECT_EQ(l.next_check_in(s, 0), 1000u);
  EXPECT_EQ(l.check(s, 999), Liveness::Due::nothing);
  EXPECT_EQ(l.check(s, 1000), Liveness::Due::ping);
  EXPECT_TRUE(l.awaiting_pong());
  EXPECT_EQ(l.next_check_in(s, 1000), 500u);
  EXPECT_EQ(l.check(s, 1200), Liveness::Due::nothing);
  EXPECT_EQ(l.check(s, 1500), Liveness::Due::no_pong);
}

TEST(Liveness, AnyBytesAnswerAPing) {
  const LivenessSettings s{1000, 500, 0};
  Liveness l(0);
  EXPECT_EQ(l.check(s, 1000), Liveness::Due::ping);
  l.heard(1100);
  EXPECT_FALSE(l.awaiting_pong());
  EXPECT_EQ(l.check(s, 1600), Liveness::Due::nothing);
  EXPECT_EQ(l.next_check_in(s, 1600), 500u);  // the next ping: 1000 ms after 1100
  EXPECT_EQ(l.check(s, 2100), Liveness::Due::ping);
}

TEST(Liveness, IdleCountsMessagesNotPongs) {
  const LivenessSettings s{1000, 5000, 3000};
  Liveness l(0);
  EXPECT_EQ(l.check(s, 1000), Liveness::Due::ping);
  l.heard(1001);  // the pong
  EXPECT_EQ(l.next_check_in(s, 1001), 1000u);
  EXPECT_EQ(l.check(s, 2001), Liveness::Due::ping);
  l.heard(2002);
  EXPECT_EQ(l.next_check_in(s, 2002), 998u);  // the idle deadline comes first now
  EXPECT_EQ(l.check(s, 3000), Liveness::Due::idle);
  l.message(3000);
  EXPECT_EQ(l.check(s, 3001), Liveness::Due::nothing);
}

TEST(Liveness, NothingIsEverDueWhenBothAreOff) {
  const LivenessSettings s{0, 0, 0};
  Liveness l(0);
  EXPECT_EQ(l.next_check_in(s, 5), UINT32_MAX);
  EXPECT_EQ(l.check(s, 4000000000u), Liveness::Due::nothing);
}

TEST(Liveness, RestartForgetsTheTimeNotListening) {
  const LivenessSettings s{1000, 500, 2000};
  Liveness l(0);
  EXPECT_EQ(l.check(s, 1000), Liveness::Due::ping);
  l.restart(10000);  // paused for a long while: neither a missing pong nor idleness
  EXPECT_FALSE(l.awaiting_pong());
  EXPECT_EQ(l.check(s, 10500), Liveness::Due::nothing);
  EXPECT_EQ(l.next_check_in(s, 10500), 500u);
}

TEST(Liveness, AgesCarryTheClocksToAnotherClock) {
  const LivenessSettings s{1000, 500, 3000};
  Liveness l(100);
  l.message(400);
  EXPECT_EQ(l.check(s, 1100), Liveness::Due::ping);
  const Liveness::Ages ages = l.ages(1200);
  EXPECT_EQ(ages.since_heard_ms, 1100u);
  EXPECT_EQ(ages.since_message_ms, 800u);
  EXPECT_EQ(ages.since_ping_ms, 100u);
  EXPECT_TRUE(ages.awaiting_pong);
  Liveness moved;
  moved.set_ages(ages, 50000);  // another process's clock
  EXPECT_TRUE(moved.awaiting_pong());
  EXPECT_EQ(moved.next_check_in(s, 50000), 400u);  // the pong timeout goes on where it was
  EXPECT_EQ(moved.check(s, 50400), Liveness::Due::no_pong);
}

TEST(Liveness, TheClockMayWrap) {
  const std::uint32_t start = UINT32_MAX - 100;
  const LivenessSettings s{1000, 500, 0};
  Liveness l(start);
  EXPECT_EQ(l.check(s, start + 999), Liveness::Due::nothing);  // wraps past zero
  EXPECT_EQ(l.check(s, start + 1000), Liveness::Due::ping);
  EXPECT_EQ(l.check(s, start + 1500), Liveness::Due::no_pong);
}

}  // namespace
}  // namespace edgews::codec
