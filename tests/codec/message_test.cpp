#include "codec/message.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec_test_util.hpp"

namespace edgews::codec {
namespace {

using test::append;
using test::Bytes;
using test::bytes_of;
using test::make_frame;
using test::Recorded;
using test::run;
using test::Split;

constexpr Split kSplits[] = {Split::whole, Split::bytewise, Split::random};

Recorded message(Opcode op, const Bytes& payload, bool compressed = false) {
  return Recorded{EventType::message, op, compressed, payload, 1005, "", ProtocolError::none};
}
Recorded message(Opcode op, std::string_view payload) { return message(op, bytes_of(payload)); }
Recorded control(EventType type, std::string_view payload) {
  return Recorded{type, type == EventType::ping ? Opcode::ping : Opcode::pong, false, bytes_of(payload), 1005, "",
                  ProtocolError::none};
}
Recorded close_event(std::uint16_t code, std::string_view reason, const Bytes& raw) {
  return Recorded{EventType::close, Opcode::close, false, raw, code, std::string(reason), ProtocolError::none};
}
Recorded error_event(ProtocolError e) {
  return Recorded{EventType::error, Opcode::binary, false, {}, static_cast<std::uint16_t>(close_code_for(e)), "", e};
}

// Runs the stream whole, byte by byte and in random chunks (several seeds) and expects exactly `want` each time.
void expect_events(Role role, const Bytes& stream, const std::vector<Recorded>& want, test::ReaderLimits limits = {}) {
  for (Split split : kSplits) {
    for (std::uint32_t seed = 1; seed <= (split == Split::random ? 8u : 1u); ++seed) {
      const auto got = run(role, stream, split, limits, seed);
      ASSERT_EQ(got.size(), want.size()) << test::split_name(split) << " seed " << seed;
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << "event " << i << ", " << test::split_name(split) << " seed " << seed;
    }
  }
}

TEST(MessageReader, Rfc6455Section5_7ExamplesAsClient) {
  Bytes s = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,   // unmasked "Hello"
             0x01, 0x03, 0x48, 0x65, 0x6c,               // fragmented "Hel"
             0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,   // unmasked ping between the fragments
             0x80, 0x02, 0x6c, 0x6f,                     // ... "lo"
             0x82, 0x7E, 0x01, 0x00};                    // 256 bytes binary
  Bytes b256(256);
  for (std::size_t i = 0; i < b256.size(); ++i) b256[i] = static_cast<std::uint8_t>(i);
  append(s, b256);
  Bytes b64k(65536);
  for (std::size_t i = 0; i < b64k.size(); ++i) b64k[i] = static_cast<std::uint8_t>(i * 7);
  append(s, {0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00});
  append(s, b64k);
  expect_events(Role::client, s,
                {message(Opcode::text, "Hello"), control(EventType::ping, "Hello"), message(Opcode::text, "Hello"),
                 message(Opcode::binary, b256), message(Opcode::binary, b64k)});
}

TEST(MessageReader, Rfc6455Section5_7MaskedExamplesAsServer) {
  const Bytes s = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,   // masked "Hello"
                   0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};  // masked pong "Hello"
  expect_events(Role::server, s, {message(Opcode::text, "Hello"), control(EventType::pong, "Hello")});
}

TEST(MessageReader, MixedStreamGivesTheSameEventsWholeByteByByteAndInRandomChunks) {
  Bytes s;
  std::vector<Recorded> want;
  Bytes big(5000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 13 + 1);
  const std::string greek = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";  // split mid-code-point below
  append(s, make_frame(Opcode::text, "first"));
  want.push_back(message(Opcode::text, "first"));
  append(s, make_frame(Opcode::text, greek));  // non-ASCII text on the single-frame fast path
  want.push_back(message(Opcode::text, greek));
  std::string mid;
  while (mid.size() < 200) mid += greek + "ascii ";
  append(s, make_frame(Opcode::text, mid));  // 16-bit length, still the fast path
  want.push_back(message(Opcode::text, mid));
  append(s, make_frame(Opcode::text, mid + mid));  // beyond the fused unmask-and-check size
  want.push_back(message(Opcode::text, mid + mid));
  append(s, make_frame(Opcode::binary, big));
  want.push_back(message(Opcode::binary, big));
  append(s, make_frame(Opcode::text, greek.substr(0, 4), false));
  append(s, make_frame(Opcode::ping, "p1"));
  want.push_back(control(EventType::ping, "p1"));
  append(s, make_frame(Opcode::continuation, greek.substr(4, 3), false));
  append(s, make_frame(Opcode::pong, ""));
  want.push_back(control(EventType::pong, ""));
  append(s, make_frame(Opcode::continuation, "", false));
  append(s, make_frame(Opcode::continuation, greek.substr(7), true));
  want.push_back(message(Opcode::text, greek));
  append(s, make_frame(Opcode::text, ""));
  want.push_back(message(Opcode::text, ""));
  append(s, make_frame(Opcode::binary, Bytes(300, 0xAA), false));
  append(s, make_frame(Opcode::continuation, Bytes(70000, 0xBB), true));
  Bytes joined(300, 0xAA);
  joined.insert(joined.end(), 70000, 0xBB);
  want.push_back(message(Opcode::binary, joined));
  append(s, make_frame(Opcode::ping, std::string(125, 'x')));
  want.push_back(control(EventType::ping, std::string(125, 'x')));
  const Bytes close_payload = {0x03, 0xE8, 'b', 'y', 'e'};
  append(s, make_frame(Opcode::close, close_payload));
  want.push_back(close_event(1000, "bye", close_payload));
  // Anything after the close frame is ignored (RFC 6455 5.5.1), even garbage.
  append(s, {0xFF, 0xFF, 0xFF});
  expect_events(Role::server, s, want);
}

TEST(MessageReader, RandomValidStreamsGiveTheSameEventsInEverySplit) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    const Role role = trial % 2 == 0 ? Role::server : Role::client;
    const bool masked = role == Role::server;
    Bytes s;
    std::vector<Recorded> want;
    const int messages = static_cast<int>(rng() % 12) + 1;
    for (int m = 0; m < messages; ++m) {
      const bool text = rng() % 2 == 0;
      const int frames = static_cast<int>(rng() % 4) + 1;
      Bytes whole;
      for (int f = 0; f < frames; ++f) {
        const std::size_t n = rng() % 4 == 0 ? rng() % 1000 : rng() % 40;
        Bytes part(n);
        for (auto& b : part) b = static_cast<std::uint8_t>(text ? 'a' + rng() % 26 : rng());
        whole.insert(whole.end(), part.begin(), part.end());
        const Opcode op = f == 0 ? (text ? Opcode::text : Opcode::binary) : Opcode::continuation;
        const bool last = f == frames - 1;
        append(s, make_frame(op, part, last, masked, false, static_cast<std::uint8_t>(rng())));
        if (last) want.push_back(message(text ? Opcode::text : Opcode::binary, whole));
        if (rng() % 3 == 0) {  // a ping between fragments, or between messages after the last one
          const Bytes ping(rng() % 126, 'p');
          append(s, make_frame(Opcode::ping, ping, true, masked, false, static_cast<std::uint8_t>(rng())));
          want.push_back(Recorded{EventType::ping, Opcode::ping, false, ping, 1005, "", ProtocolError::none});
        }
      }
    }
    expect_events(role, s, want);
  }
}

TEST(MessageReader, DeliversAnUnfragmentedFrameAsAViewIntoTheInput) {
  MessageReader reader(Role::server);
  Bytes s = make_frame(Opcode::text, "zero copy");
  append(s, make_frame(Opcode::binary, Bytes(1000, 7)));
  std::size_t used = 0;
  Event ev = reader.next(s.data(), s.size(), used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.data(), s.data() + 6);
  EXPECT_EQ(ev.headroom, 6u) << "the spent frame header is the caller's";
  EXPECT_EQ(used, 6u + 9);
  std::size_t used2 = 0;
  ev = reader.next(s.data() + used, s.size() - used, used2);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.data(), s.data() + used + 8);
  EXPECT_EQ(ev.headroom, 8u);
  EXPECT_EQ(ev.payload.size(), 1000u);
  EXPECT_EQ(reader.buffered_bytes(), 0u);
  ev = reader.next(s.data() + s.size(), 0, used);
  EXPECT_EQ(ev.type, EventType::need_more);
  EXPECT_FALSE(reader.in_message());
}

TEST(MessageReader, KeepsPartialHeaderAndFrameSoTheCallerNeverKeepsTails) {
  MessageReader reader(Role::server);
  Bytes s = make_frame(Opcode::text, "split across reads");
  std::size_t used = 0;
  EXPECT_EQ(reader.next(s.data(), 3, used).type, EventType::need_more);
  EXPECT_EQ(used, 3u);
  EXPECT_TRUE(reader.in_message());
  EXPECT_EQ(reader.next(s.data() + 3, 7, used).type, EventType::need_more);
  EXPECT_EQ(used, 7u);
  const Event ev = reader.next(s.data() + 10, s.size() - 10, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(std::string(ev.payload.begin(), ev.payload.end()), "split across reads");
  EXPECT_FALSE(reader.in_message());
}

// Event::headroom counts only bytes of the current input (a header begun in an earlier call is not there), and an
// assembled message has the buffer's own headroom, where a server frame header fits in front of the payload.
TEST(MessageReader, HeadroomIsTheSpentHeaderInTheInputOrTheAssemblyBuffersOwn) {
  MessageReader reader(Role::server);
  Bytes s = make_frame(Opcode::binary, Bytes(200, 9));  // header 2 + 2 + 4 bytes
  std::size_t used = 0;
  EXPECT_EQ(reader.next(s.data(), 3, used).type, EventType::need_more);
  Event ev = reader.next(s.data() + 3, s.size() - 3, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.data(), s.data() + 8);
  EXPECT_EQ(ev.headroom, 5u);

  Bytes t = make_frame(Opcode::binary, Bytes(70000, 4));
  EXPECT_EQ(reader.next(t.data(), 1000, used).type, EventType::need_more);
  ev = reader.next(t.data() + 1000, t.size() - 1000, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.size(), 70000u);
  ASSERT_EQ(ev.headroom, MessageReader::kAssemblyHeadroom);
  std::uint8_t header[kMaxFrameHeaderSize];
  const std::size_t n = write_frame_header(header, Opcode::binary, ev.payload.size());
  auto* at = const_cast<std::uint8_t*>(ev.payload.data()) - n;
  std::memcpy(at, header, n);
  const HeaderParse hp = parse_frame_header(at, n + ev.payload.size(), Role::client, false);
  ASSERT_EQ(hp.status, ParseStatus::complete);
  EXPECT_EQ(hp.header.payload_length, 70000u);
  EXPECT_EQ(ev.payload[0], 4);
  EXPECT_EQ(ev.payload[69999], 4);
}

TEST(MessageReader, AnEmptyFragmentedMessageHasNoHeadroom) {
  Bytes s = make_frame(Opcode::binary, Bytes{}, false);
  append(s, make_frame(Opcode::continuation, Bytes{}, true));
  expect_events(Role::server, s, {message(Opcode::binary, Bytes{})});
  MessageReader reader(Role::server);
  std::size_t used = 0;
  const Event ev = reader.next(s.data(), s.size(), used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_TRUE(ev.payload.empty());
  EXPECT_EQ(ev.headroom, 0u) << "no buffer was allocated, so there is no room in front";
}

TEST(MessageReader, RejectsContinuationWithoutMessage) {
  expect_events(Role::server, make_frame(Opcode::continuation, "x"),
                {error_event(ProtocolError::unexpected_continuation)});
}

TEST(MessageReader, RejectsNewDataFrameInsideFragmentedMessage) {
  Bytes s = make_frame(Opcode::text, "a", false);
  append(s, make_frame(Opcode::binary, "b"));
  expect_events(Role::server, s, {error_event(ProtocolError::expected_continuation)});
}

TEST(MessageReader, HeaderErrorsCarryTheirCloseCode) {
  expect_events(Role::server, make_frame(Opcode::text, "x", true, false), {error_event(ProtocolError::unmasked_client_frame)});
  expect_events(Role::client, make_frame(Opcode::text, "x", true, true), {error_event(ProtocolError::masked_server_frame)});
  expect_events(Role::server, {0x83, 0x80, 1, 2, 3, 4}, {error_event(ProtocolError::reserved_opcode)});
  expect_events(Role::server, {0xC1, 0x80, 1, 2, 3, 4}, {error_event(ProtocolError::reserved_bits_set)});
  expect_events(Role::server, {0x09, 0x80, 1, 2, 3, 4}, {error_event(ProtocolError::fragmented_control_frame)});
  expect_events(Role::server, {0x89, 0xFE, 0, 126, 1, 2, 3, 4}, {error_event(ProtocolError::control_frame_too_long)});
  expect_events(Role::server, {0x82, 0xFE, 0, 5, 1, 2, 3, 4}, {error_event(ProtocolError::non_minimal_length)});
  EXPECT_EQ(error_event(ProtocolError::reserved_opcode).close_code, 1002);
}

TEST(MessageReader, RejectsInvalidUtf8InTextWith1007) {
  const auto e = error_event(ProtocolError::invalid_utf8);
  EXPECT_EQ(e.close_code, 1007);
  expect_events(Role::server, make_frame(Opcode::text, "ok\xFF"), {e});
  // A message that ends inside a code point.
  Bytes s = make_frame(Opcode::text, "\xE2\x82", false);
  append(s, make_frame(Opcode::continuation, ""));
  expect_events(Role::server, s, {e});
  // A surrogate split across fragments.
  s = make_frame(Opcode::text, "\xED", false);
  append(s, make_frame(Opcode::continuation, "\xA0\x80"));
  expect_events(Role::server, s, {e});
  // Binary is not validated.
  expect_events(Role::server, make_frame(Opcode::binary, "ok\xFF"), {message(Opcode::binary, "ok\xFF")});
}

TEST(MessageReader, FailsInvalidUtf8BeforeTheRestOfTheFrameArrives) {
  std::string text = "valid start \xC0\xAF";
  text += std::string(10000, 'z');
  const Bytes s = make_frame(Opcode::text, text);
  MessageReader reader(Role::server);
  std::size_t used = 0;
  Bytes head(s.begin(), s.begin() + 8 + 20);  // header (8) + 20 payload bytes
  const Event ev = reader.next(head.data(), head.size(), used);
  ASSERT_EQ(ev.type, EventType::error);
  EXPECT_EQ(ev.error, ProtocolError::invalid_utf8);
}

TEST(MessageReader, ValidatesCloseFrames) {
  expect_events(Role::server, make_frame(Opcode::close, Bytes{0x03}),
                {error_event(ProtocolError::invalid_close_payload)});
  expect_events(Role::server, make_frame(Opcode::close, Bytes{0x03, 0xED}),  // 1005 may not be sent
                {error_event(ProtocolError::invalid_close_code)});
  expect_events(Role::server, make_frame(Opcode::close, Bytes{0x03, 0xE8, 0xC0, 0x80}),
                {error_event(ProtocolError::invalid_utf8)});
  expect_events(Role::server, make_frame(Opcode::close, Bytes{}), {close_event(1005, "", {})});
  const Bytes ok = {0x0F, 0xA0, 'x'};  // 4000, application code
  expect_events(Role::server, make_frame(Opcode::close, ok), {close_event(4000, "x", ok)});
}

TEST(MessageReader, DeliversCloseBetweenFragments) {
  Bytes s = make_frame(Opcode::text, "par", false);
  const Bytes cp = {0x03, 0xE9};
  append(s, make_frame(Opcode::close, cp));
  append(s, make_frame(Opcode::continuation, "tial"));
  expect_events(Role::server, s, {close_event(1001, "", cp)});
}

TEST(MessageReader, ErrorIsStickyAndConsumesNothingMore) {
  MessageReader reader(Role::server);
  Bytes s = make_frame(Opcode::continuation, "x");
  std::size_t used = 99;
  EXPECT_EQ(reader.next(s.data(), s.size(), used).error, ProtocolError::unexpected_continuation);
  Bytes good = make_frame(Opcode::text, "fine");
  const Event again = reader.next(good.data(), good.size(), used);
  EXPECT_EQ(again.type, EventType::error);
  EXPECT_EQ(again.error, ProtocolError::unexpected_continuation);
  EXPECT_EQ(again.close_code, 1002);
  EXPECT_EQ(used, 0u);
}

TEST(MessageReader, OversizedFrameFailsWith1009FromTheHeaderWithoutBuffering) {
  test::ReaderLimits limits;
  limits.max_message_size = 1000;
  expect_events(Role::server, make_frame(Opcode::binary, Bytes(1000, 1)), {message(Opcode::binary, Bytes(1000, 1))},
                limits);
  const Bytes s = make_frame(Opcode::binary, Bytes(1001, 1));
  expect_events(Role::server, s, {error_event(ProtocolError::message_too_big)}, limits);
  MessageReader reader(Role::server, limits);
  std::size_t used = 0;
  const Event ev = reader.next(const_cast<std::uint8_t*>(s.data()), 8, used);  // the header only
  EXPECT_EQ(ev.type, EventType::error);
  EXPECT_EQ(ev.close_code, 1009);
  EXPECT_EQ(reader.buffered_bytes(), 0u);
  // Also for small frames that would take the fast path.
  limits.max_message_size = 10;
  expect_events(Role::server, make_frame(Opcode::text, "eleven char"), {error_event(ProtocolError::message_too_big)},
                limits);
}

TEST(MessageReader, FragmentedMessageOverTheLimitFailsWith1009AtTheHeaderThatCrossesIt) {
  test::ReaderLimits limits;
  limits.max_message_size = 1000;
  Bytes s = make_frame(Opcode::binary, Bytes(600, 1), false);
  append(s, make_frame(Opcode::continuation, Bytes(600, 2), true));
  expect_events(Role::server, s, {error_event(ProtocolError::message_too_big)}, limits);
  MessageReader reader(Role::server, limits);
  std::size_t used = 0;
  const Event ev = reader.next(s.data(), s.size(), used);
  EXPECT_EQ(ev.error, ProtocolError::message_too_big);
  // The limit bounds the message bytes; the buffer adds its fixed headroom for a reply's header.
  EXPECT_LE(reader.buffered_bytes(), 1000u + MessageReader::kAssemblyHeadroom) << "buffered beyond the limit";
  EXPECT_LE(used, 608u + 8u) << "consumed payload of the oversized fragment";
}

TEST(MessageReader, TooManyFragmentsFailsWith1009) {
  test::ReaderLimits limits;
  limits.max_fragments = 3;
  Bytes three = make_frame(Opcode::text, "a", false);
  append(three, make_frame(Opcode::continuation, "b", false));
  append(three, make_frame(Opcode::continuation, "c", true));
  expect_events(Role::server, three, {message(Opcode::text, "abc")}, limits);
  Bytes four = make_frame(Opcode::text, "a", false);
  append(four, make_frame(Opcode::continuation, "b", false));
  append(four, make_frame(Opcode::continuation, "c", false));
  append(four, make_frame(Opcode::continuation, "d", true));
  const auto e = error_event(ProtocolError::too_many_fragments);
  EXPECT_EQ(e.close_code, 1009);
  expect_events(Role::server, four, {e}, limits);
}

TEST(MessageReader, TheFragmentCapCountsEachMessageAfresh) {
  test::ReaderLimits limits;
  limits.max_fragments = 3;
  Bytes s;
  for (const char* last : {"c", "f"}) {
    append(s, make_frame(Opcode::binary, "a", false));
    append(s, make_frame(Opcode::continuation, "b", false));
    append(s, make_frame(Opcode::continuation, last, true));
    append(s, make_frame(Opcode::ping, "p"));  // between messages, and short: the fast path is not taken
  }
  expect_events(Role::server, s,
                {message(Opcode::binary, "abc"), control(EventType::ping, "p"), message(Opcode::binary, "abf"),
                 control(EventType::ping, "p")},
                limits);
}

// An idle reader is small: what only a split header, control frame or message needs is allocated at the first
// split and given back by release_memory() once nothing is in progress.
TEST(MessageReader, ASplitHeaderBorrowsMemoryUntilReleased) {
  MessageReader reader(Role::server);
  EXPECT_FALSE(reader.holds_memory());
  Bytes s = make_frame(Opcode::text, "hello");
  std::size_t used = 0;
  ASSERT_EQ(reader.next(s.data(), 3, used).type, EventType::need_more);
  EXPECT_TRUE(reader.in_message());
  EXPECT_TRUE(reader.holds_memory());
  reader.release_memory();
  EXPECT_TRUE(reader.holds_memory()) << "the header's first bytes were given back";
  const Event ev = reader.next(s.data() + 3, s.size() - 3, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(std::string(ev.payload.begin(), ev.payload.end()), "hello");
  EXPECT_EQ(reader.buffered_bytes(), 0u);
  reader.release_memory(64 * 1024);
  EXPECT_TRUE(reader.holds_memory()) << "kept for the next split while busy";
  reader.release_memory();
  EXPECT_FALSE(reader.holds_memory());
  // Unsplit frames need nothing.
  Bytes t = make_frame(Opcode::binary, Bytes(300, 7));
  ASSERT_EQ(reader.next(t.data(), t.size(), used).type, EventType::message);
  EXPECT_FALSE(reader.holds_memory());
}

TEST(MessageReader, FragmentsAreUncappedByDefault) {
  // RFC 6455 sets no bound on the number of fragments: a 64 KiB message in 1-byte fragments is one message.
  constexpr std::size_t kFragments = 64 * 1024;
  Bytes payload(kFragments);
  for (std::size_t i = 0; i < kFragments; ++i) payload[i] = static_cast<std::uint8_t>(i * 31);
  Bytes s;
  for (std::size_t i = 0; i < kFragments; ++i) {
    append(s, make_frame(i == 0 ? Opcode::binary : Opcode::continuation, Bytes{payload[i]}, i + 1 == kFragments));
  }
  MessageReader reader(Role::server);
  std::size_t used = 0;
  const Event ev = reader.next(s.data(), s.size(), used);
  ASSERT_EQ(ev.type, EventType::message) << "error " << static_cast<int>(ev.error);
  EXPECT_EQ(used, s.size());
  EXPECT_EQ(Bytes(ev.payload.begin(), ev.payload.end()), payload);
}

TEST(MessageReader, EmptyContinuationFramesHoldNoMemory) {
  // Without a fragment cap, a stream of empty continuations costs parsing only: nothing is buffered for them,
  // whatever their number (the connection's read budget bounds the work per turn).
  Bytes empties;
  for (int i = 0; i < 4096; ++i) append(empties, make_frame(Opcode::continuation, Bytes{}, false));
  MessageReader reader(Role::server);
  Bytes first = make_frame(Opcode::text, "a", false);
  std::size_t used = 0;
  ASSERT_EQ(reader.next(first.data(), first.size(), used).type, EventType::need_more);
  const std::size_t buffered = reader.buffered_bytes();
  for (int round = 0; round < 256; ++round) {  // a million frames
    Bytes chunk = empties;  // unmasked in place, so each round gets a fresh copy
    ASSERT_EQ(reader.next(chunk.data(), chunk.size(), used).type, EventType::need_more);
    ASSERT_EQ(used, chunk.size());
    ASSERT_EQ(reader.buffered_bytes(), buffered) << "round " << round;
  }
  Bytes last = make_frame(Opcode::continuation, "b", true);
  const Event ev = reader.next(last.data(), last.size(), used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(std::string(ev.payload.begin(), ev.payload.end()), "ab");
}

TEST(MessageReader, CompressedMessagesAreFlaggedAndNotValidatedAsUtf8) {
  test::ReaderLimits limits;
  limits.rsv1_allowed = true;
  Bytes s = make_frame(Opcode::text, Bytes{0xFF, 0x00}, false, true, true);
  append(s, make_frame(Opcode::continuation, Bytes{0xC0}, true));
  append(s, make_frame(Opcode::text, "plain"));
  expect_events(Role::server, s, {message(Opcode::text, Bytes{0xFF, 0x00, 0xC0}, true), message(Opcode::text, "plain")},
                limits);
  // RSV1 on a continuation frame is refused.
  Bytes bad = make_frame(Opcode::text, Bytes{'a'}, false, true, true);
  append(bad, make_frame(Opcode::continuation, Bytes{'b'}, true, true, true));
  expect_events(Role::server, bad, {error_event(ProtocolError::rsv1_on_control_or_continuation)}, limits);
  // Without negotiation RSV1 is a protocol error.
  expect_events(Role::server, make_frame(Opcode::text, Bytes{'a'}, true, true, true),
                {error_event(ProtocolError::reserved_bits_set)});
}

TEST(MessageReader, ReleasesAssemblyMemoryWhenIdle) {
  MessageReader reader(Role::server);
  Bytes s = make_frame(Opcode::binary, Bytes(4000, 1), false);
  append(s, make_frame(Opcode::continuation, Bytes(4000, 2), true));
  std::size_t used = 0;
  // Stop inside the message: the buffer may not be released.
  EXPECT_EQ(reader.next(s.data(), 5000, used).type, EventType::need_more);
  EXPECT_GE(reader.buffered_bytes(), 4000u);
  reader.release_memory();
  EXPECT_GE(reader.buffered_bytes(), 4000u);
  const Event ev = reader.next(s.data() + 5000, s.size() - 5000, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.size(), 8000u);
  EXPECT_EQ(ev.payload[7999], 2);
  EXPECT_FALSE(reader.in_message());
  reader.release_memory();
  EXPECT_EQ(reader.buffered_bytes(), 0u);
}

// What a server does after each read: keep a small buffer for the next split frame, free one that a large message
// grew once that message was delivered, free everything once the connection is quiet.
TEST(MessageReader, ReleaseMemoryKeepsASmallBufferAndFreesALargeOneOnceItsMessageIsDelivered) {
  constexpr std::size_t kKeep = 64 * 1024;
  MessageReader reader(Role::server);
  std::size_t used = 0;
  // A 1 MiB message split across two reads is assembled in the reader.
  Bytes large_payload(1 << 20);
  for (std::size_t i = 0; i < large_payload.size(); ++i) large_payload[i] = static_cast<std::uint8_t>(i * 7);
  Bytes large = make_frame(Opcode::binary, large_payload);
  const std::size_t half = large.size() / 2;
  ASSERT_EQ(reader.next(large.data(), half, used).type, EventType::need_more);
  reader.release_memory(kKeep);
  EXPECT_GE(reader.buffered_bytes(), large_payload.size()) << "the partly received message must stay";
  reader.release_memory();
  EXPECT_GE(reader.buffered_bytes(), large_payload.size()) << "the partly received message must stay";
  Event ev = reader.next(large.data() + half, large.size() - half, used);
  ASSERT_EQ(ev.type, EventType::message);
  ASSERT_EQ(ev.payload.size(), large_payload.size());
  EXPECT_TRUE(std::equal(ev.payload.begin(), ev.payload.end(), large_payload.begin())) << "payload damaged";
  EXPECT_GE(reader.buffered_bytes(), large_payload.size());
  reader.release_memory(kKeep);
  EXPECT_EQ(reader.buffered_bytes(), 0u) << "a buffer over the kept size goes once its message is delivered";
  EXPECT_FALSE(reader.holds_memory());

  // A small split message: its buffer stays for the next one and is reused.
  Bytes small = make_frame(Opcode::text, std::string(4000, 's'));
  append(small, make_frame(Opcode::text, std::string(3000, 't')));
  ASSERT_EQ(reader.next(small.data(), 100, used).type, EventType::need_more);
  ev = reader.next(small.data() + 100, small.size() - 100, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(ev.payload.size(), 4000u);
  reader.release_memory(kKeep);
  const std::size_t kept = reader.buffered_bytes();
  EXPECT_GE(kept, 4000u) << "a small buffer is kept between messages";
  const std::size_t second = 100 + used;
  ASSERT_EQ(reader.next(small.data() + second, 50, used).type, EventType::need_more);
  ev = reader.next(small.data() + second + 50, small.size() - second - 50, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size()),
            std::string(3000, 't'));
  EXPECT_EQ(reader.buffered_bytes(), kept) << "the kept buffer was reused, not regrown";

  // A control frame split across reads: its storage stays until a full release.
  Bytes ping = make_frame(Opcode::ping, "are you there");
  ASSERT_EQ(reader.next(ping.data(), 8, used).type, EventType::need_more);
  ev = reader.next(ping.data() + 8, ping.size() - 8, used);
  ASSERT_EQ(ev.type, EventType::ping);
  reader.release_memory(kKeep);
  EXPECT_TRUE(reader.holds_memory());
  reader.release_memory();
  EXPECT_FALSE(reader.holds_memory());
  EXPECT_EQ(reader.buffered_bytes(), 0u);

  // And the reader works on afterwards (make_frame masked the payload; the first run unmasked it in place).
  large = make_frame(Opcode::binary, large_payload);
  ASSERT_EQ(reader.next(large.data(), large.size() - 1, used).type, EventType::need_more);
  ev = reader.next(large.data() + large.size() - 1, 1, used);
  ASSERT_EQ(ev.type, EventType::message);
  EXPECT_TRUE(std::equal(ev.payload.begin(), ev.payload.end(), large_payload.begin(), large_payload.end()));
}

}  // namespace
}  // namespace edgews::codec
