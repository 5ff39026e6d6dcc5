// The records of a live hand-off: every field survives the trip, and a record that is cut, altered or of another
// format version is refused with a reason, never read past its end.
#include "core/handoff_record.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>

namespace edgews::core::handoff {
namespace {

PeerAddress v4(const char* ip, std::uint16_t port) {
  PeerAddress a;
  a.addr.v4.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.addr.v4.sin_addr);
  a.addr.v4.sin_port = htons(port);
  return a;
}

PeerAddress v6(const char* ip, std::uint16_t port) {
  PeerAddress a;
  a.addr.v6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a.addr.v6.sin6_addr);
  a.addr.v6.sin6_port = htons(port);
  return a;
}

ConnectionState full_state() {
  ConnectionState s;
  s.id = 0x0102030405060708ull;
  s.peer = v4("127.0.0.7", 50123);
  s.forwarded = v6("2001:db8::42", 0);
  s.subprotocol = "chat.v2";
  s.deflate = true;
  s.deflate_params = {false, true, 12, 10};
  std::mt19937 rng(5);
  s.compressor_window.resize(4096);
  for (auto& b : s.compressor_window) b = static_cast<std::uint8_t>(rng());
  s.decompressor_window.resize(1024);
  for (auto& b : s.decompressor_window) b = static_cast<std::uint8_t>(rng());
  s.topics = {"prices", "news", ""};
  s.since_heard_ms = 1200;
  s.since_message_ms = 3400;
  s.since_ping_ms = 560;
  s.awaiting_pong = true;
  s.user_state = {1, 2, 3, 4, 5};
  return s;
}

void expect_equal(const ConnectionState& a, const ConnectionState& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.peer.to_string(), b.peer.to_string());
  ASSERT_EQ(a.forwarded.has_value(), b.forwarded.has_value());
  if (a.forwarded) {
    EXPECT_EQ(a.forwarded->to_string(), b.forwarded->to_string());
  }
  EXPECT_EQ(a.subprotocol, b.subprotocol);
  EXPECT_EQ(a.deflate, b.deflate);
  EXPECT_EQ(a.deflate_params, b.deflate_params);
  EXPECT_EQ(a.compressor_window, b.compressor_window);
  EXPECT_EQ(a.decompressor_window, b.decompressor_window);
  EXPECT_EQ(a.topics, b.topics);
  EXPECT_EQ(a.since_heard_ms, b.since_heard_ms);
  EXPECT_EQ(a.since_message_ms, b.since_message_ms);
  EXPECT_EQ(a.since_ping_ms, b.since_ping_ms);
  EXPECT_EQ(a.awaiting_pong, b.awaiting_pong);
  EXPECT_EQ(a.user_state, b.user_state);
}

TEST(HandoffRecord, AConnectionSurvivesTheTripWithEveryField) {
  const ConnectionState state = full_state();
  std::vector<std::uint8_t> record;
  ASSERT_TRUE(encode(state, record));
  std::string error;
  EXPECT_EQ(peek_type(record, error), RecordType::connection);
  ConnectionState back;
  ASSERT_TRUE(decode(record, back, error)) << error;
  expect_equal(state, back);
  EXPECT_EQ(back.peer.to_string(), "127.0.0.7:50123");
  EXPECT_EQ(back.forwarded->to_string(), "2001:db8::42");
}

TEST(HandoffRecord, APlainConnectionIsSmall) {
  ConnectionState state;
  state.peer = v6("::1", 8080);
  std::vector<std::uint8_t> record;
  ASSERT_TRUE(encode(state, record));
  EXPECT_LT(record.size(), 80u);  // 10,000 plain connections move in under 1 MB of records
  ConnectionState back;
  std::string error;
  ASSERT_TRUE(decode(record, back, error)) << error;
  expect_equal(state, back);
}

TEST(HandoffRecord, EveryCutOfARecordIsRefused) {
  std::vector<std::uint8_t> record;
  ASSERT_TRUE(encode(full_state(), record));
  for (std::size_t n = 0; n < record.size(); ++n) {
    ConnectionState back;
    std::string error;
    EXPECT_FALSE(decode({record.data(), n}, back, error)) << n;
    EXPECT_FALSE(error.empty()) << n;
  }
  record.push_back(0);
  ConnectionState back;
  std::string error;
  EXPECT_FALSE(decode(record, back, error));
  EXPECT_EQ(error, "bytes after the end of the record");
}

TEST(HandoffRecord, AnotherFormatVersionIsRefusedByName) {
  std::vector<std::uint8_t> record;
  ASSERT_TRUE(encode(full_state(), record));
  record[4] = kFormatVersion + 1;
  std::string error;
  EXPECT_FALSE(peek_type(record, error));
  EXPECT_NE(error.find("format version " + std::to_string(kFormatVersion + 1)), std::string::npos) << error;
  ConnectionState back;
  EXPECT_FALSE(decode(record, back, error));
}

TEST(HandoffRecord, RandomCorruptionNeverReadsPastTheRecord) {
  // Under ASan a read past the end would fail the test; here every mutation either decodes or names a defect.
  std::vector<std::uint8_t> original;
  ASSERT_TRUE(encode(full_state(), original));
  std::mt19937 rng(9);
  for (int round = 0; round < 5000; ++round) {
    std::vector<std::uint8_t> record = original;
    for (int k = 0; k < 3; ++k) record[7 + rng() % (record.size() - 7)] = static_cast<std::uint8_t>(rng());
    ConnectionState back;
    std::string error;
    if (!decode(record, back, error)) {
      EXPECT_FALSE(error.empty());
    }
  }
}

TEST(HandoffRecord, OversizedFieldsAreNotEncoded) {
  ConnectionState state;
  state.user_state.resize(kMaxUserState + 1);
  std::vector<std::uint8_t> record;
  EXPECT_FALSE(encode(state, record));
  state.user_state.clear();
  state.compressor_window.resize((1u << 15) + 1);
  EXPECT_FALSE(encode(state, record));
  EXPECT_TRUE(record.empty());
}

TEST(HandoffRecord, ControlRecordsRoundTripAndAreNotConnections) {
  Control listeners{RecordType::listeners, 0, {"ws", "wss", "metrics"}, {}};
  Control refused{RecordType::refused, 77, {}, "mid-message past the deadline"};
  for (const Control& c : {listeners, refused}) {
    std::vector<std::uint8_t> record;
    ASSERT_TRUE(encode(c, record));
    Control back;
    std::string error;
    ASSERT_TRUE(decode(record, back, error)) << error;
    EXPECT_EQ(back.type, c.type);
    EXPECT_EQ(back.id, c.id);
    EXPECT_EQ(back.names, c.names);
    EXPECT_EQ(back.reason, c.reason);
    ConnectionState not_a_connection;
    EXPECT_FALSE(decode(record, not_a_connection, error));
  }
  std::vector<std::uint8_t> record;
  ASSERT_TRUE(encode(full_state(), record));
  Control back;
  std::string error;
  EXPECT_FALSE(decode(record, back, error));
}

}  // namespace
}  // namespace edgews::core::handoff
