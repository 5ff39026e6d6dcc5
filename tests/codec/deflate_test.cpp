// permessage-deflate: RFC 7692 7.2.3 examples byte for byte, negotiation, bounded inflation, user agents.
#include "codec/deflate.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <random>
#include <string>
#include <vector>

#include "codec/extensions.hpp"
#include "codec/response_validator.hpp"
#include "codec_test_util.hpp"

namespace edgews::codec {
namespace {

using test::Bytes;

Bytes bytes(std::initializer_list<int> values) {
  Bytes out;
  for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

std::span<const std::uint8_t> span_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text_of(const ByteBuffer& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

Bytes compress(Deflater& d, std::string_view text, bool reset_after) {
  ByteBuffer out;
  EXPECT_TRUE(d.compress(span_of(text), out, reset_after));
  return Bytes(out.view().begin(), out.view().end());
}

std::string inflate_ok(Inflater& inf, const Bytes& payload, bool reset_after = false) {
  ByteBuffer out;
  EXPECT_EQ(inf.inflate(payload, 1 << 20, out, reset_after), InflateStatus::ok);
  return text_of(out);
}

// --- RFC 7692 7.2.3 examples -------------------------------------------------------------------------------

TEST(Deflate, CompressesHelloAsInRfc7692Section7_2_3_1) {
  Deflater d;
  ASSERT_TRUE(d.init(15));
  EXPECT_EQ(compress(d, "Hello", true), bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
  // Without context takeover the second message compresses to the same bytes.
  EXPECT_EQ(compress(d, "Hello", true), bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
}

TEST(Deflate, SharesTheSlidingWindowAsInRfc7692Section7_2_3_2) {
  Deflater d;
  ASSERT_TRUE(d.init(15));
  EXPECT_EQ(compress(d, "Hello", false), bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
  EXPECT_EQ(compress(d, "Hello", false), bytes({0xf2, 0x00, 0x11, 0x00, 0x00}));

  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})), "Hello");
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
}

TEST(Deflate, SecondMessageNeedsTheWindowWithoutContextTakeoverItFails) {
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), /*reset_after=*/true), "Hello");
  ByteBuffer out;
  // The back-reference of 7.2.3.2's second message points before the (now empty) window.
  EXPECT_EQ(inf.inflate(bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), 1 << 20, out, true), InflateStatus::corrupt);
}

TEST(Deflate, WritesTheUncompressedBlockOfRfc7692Section7_2_3_3) {
  Deflater d;
  ASSERT_TRUE(d.init(15, 8, /*level=*/0));  // level 0: stored blocks only
  const Bytes expected = bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00});
  EXPECT_EQ(compress(d, "Hello", true), expected);
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, expected), "Hello");
}

TEST(Deflate, InflatesABlockWithBfinalAsInRfc7692Section7_2_3_4) {
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00})), "Hello");
  // The stream is usable for the next message.
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})), "Hello");
}

TEST(Deflate, InflatesTwoBlocksInOneMessageAsInRfc7692Section7_2_3_5) {
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00})),
            "Hello");
}

TEST(Deflate, EmptyMessageIsOneZeroByteAndInflatesToNothing) {
  Deflater d;
  ASSERT_TRUE(d.init(15));
  EXPECT_EQ(compress(d, "", false), bytes({0x00}));  // RFC 7692 7.2.3.6
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  EXPECT_EQ(inflate_ok(inf, bytes({0x00})), "");
  EXPECT_EQ(inflate_ok(inf, Bytes{}), "");
}

TEST(Deflate, EmptyMessageAfterAnotherWithContextTakeoverRoundTrips) {
  // A sync flush right after a sync flush yields no bytes at all; the payload must still be a valid block.
  Deflater d;
  Inflater inf;
  ASSERT_TRUE(d.init(15));
  ASSERT_TRUE(inf.init(15));
  for (std::string_view m : {"Hello", "", "", "Hello", ""}) {
    const Bytes packed = compress(d, m, false);
    EXPECT_FALSE(packed.empty());
    EXPECT_EQ(inflate_ok(inf, packed), m);
  }
}

// --- round trips ---------------------------------------------------------------------------------------------

std::string json_message(std::mt19937& rng, std::size_t size) {
  std::string s = "{\"type\":\"update\",\"items\":[";
  while (s.size() < size) {
    s += "{\"id\":" + std::to_string(rng() % 1000) + ",\"name\":\"item\",\"price\":" + std::to_string(rng() % 100) + "},";
  }
  s.resize(size);
  return s;
}

TEST(Deflate, RoundTripsAtEveryWindowSizeWithAndWithoutContextTakeover) {
  std::mt19937 rng(7);
  for (unsigned bits = kMinWindowBits; bits <= kMaxWindowBits; ++bits) {
    for (bool takeover : {true, false}) {
      Deflater d;
      Inflater inf;
      ASSERT_TRUE(d.init(bits, 1 + static_cast<int>(bits % 9)));
      ASSERT_TRUE(inf.init(bits));
      for (std::size_t size : {0u, 1u, 200u, 4096u, 70000u}) {
        const std::string message = json_message(rng, size);
        const Bytes packed = compress(d, message, !takeover);
        ByteBuffer out;
        ASSERT_EQ(inf.inflate(packed, message.size(), out, !takeover), InflateStatus::ok) << bits << " " << size;
        EXPECT_EQ(text_of(out), message);
        if (size >= 4096) {
          EXPECT_LT(packed.size(), message.size() / 2);
        }
      }
    }
  }
}

// Moving a context-takeover stream to another process: the windows of both directions are exported between
// messages and restored into fresh streams, and the conversation goes on as if nothing had moved.
TEST(Deflate, WindowsMoveToFreshStreamsBetweenMessagesAtEveryWindowSize) {
  std::mt19937 rng(11);
  for (unsigned bits = kMinWindowBits; bits <= kMaxWindowBits; ++bits) {
    Deflater ours;    // the server's compressor, moved below
    Inflater peers;   // the client's inflater, which stays
    Deflater theirs;  // the client's compressor, which stays
    Inflater mine;    // the server's inflater, moved below
    ASSERT_TRUE(ours.init(bits));
    ASSERT_TRUE(peers.init(bits));
    ASSERT_TRUE(theirs.init(bits));
    ASSERT_TRUE(mine.init(bits));
    const std::string first = json_message(rng, 3000), second = json_message(rng, 3000);
    for (const std::string& m : {first, second}) {
      EXPECT_EQ(inflate_ok(peers, compress(ours, m, false)), m);
      EXPECT_EQ(inflate_ok(mine, compress(theirs, m, false)), m);
    }
    ByteBuffer out_window, in_window;
    ASSERT_TRUE(ours.window(out_window));
    ASSERT_TRUE(mine.window(in_window));
    // The inflater keeps the whole window; the compressor what it can still refer to (zlib slides its window in
    // steps, so after a slide it holds less than the window size: it then never refers further back either).
    const std::size_t window_size = std::size_t{1} << zlib_window_bits(bits);
    EXPECT_EQ(in_window.size(), std::min<std::size_t>(6000, window_size)) << bits;
    EXPECT_GT(out_window.size(), 0u) << bits;
    EXPECT_LE(out_window.size(), window_size) << bits;

    Deflater moved_out;
    Inflater moved_in;
    ASSERT_TRUE(moved_out.init(bits));
    ASSERT_TRUE(moved_in.init(bits));
    ASSERT_TRUE(moved_out.set_window(out_window.view()));
    ASSERT_TRUE(moved_in.set_window(in_window.view()));
    // The last bytes of the history again: with the window they compress to back-references.
    const std::string repeat = second.substr(second.size() - 200);
    const Bytes packed = compress(moved_out, repeat, false);
    EXPECT_EQ(inflate_ok(peers, packed), repeat) << bits;
    Deflater fresh;
    ASSERT_TRUE(fresh.init(bits));
    EXPECT_LT(packed.size(), compress(fresh, repeat, false).size()) << "the moved window was not used, bits " << bits;
    const Bytes from_peer = compress(theirs, repeat, false);
    EXPECT_EQ(inflate_ok(moved_in, from_peer), repeat) << bits;
    // Without the window the same payload does not inflate: the restoration above is what made it work.
    Inflater without;
    ASSERT_TRUE(without.init(bits));
    ByteBuffer lost;
    EXPECT_EQ(without.inflate(from_peer, 1 << 20, lost, false), InflateStatus::corrupt) << bits;
  }
}

TEST(Deflate, WindowIsRefusedWhenNotInitializedAndIsTheHistoryOtherwise) {
  Deflater d;
  ByteBuffer w;
  EXPECT_FALSE(d.window(w));
  const std::uint8_t history[3] = {'a', 'b', 'c'};
  EXPECT_FALSE(d.set_window(history));
  ASSERT_TRUE(d.init(15));
  compress(d, "some message", false);
  EXPECT_TRUE(d.window(w));
  EXPECT_EQ(text_of(w), "some message");
  Inflater inf;
  EXPECT_FALSE(inf.window(w));
  EXPECT_FALSE(inf.set_window(history));
}

TEST(Deflate, CompressedFramesInflateAfterAssemblyFedWholeBytewiseAndInChunks) {
  Deflater d;
  ASSERT_TRUE(d.init(15));
  std::mt19937 rng(3);
  const std::string message = json_message(rng, 3000);
  const Bytes packed = compress(d, message, false);
  // Split the compressed payload over three frames: RSV1 on the first only (RFC 7692 6.1).
  const std::size_t third = packed.size() / 3;
  Bytes wire = test::make_frame(Opcode::text, Bytes(packed.begin(), packed.begin() + third), false, true, true);
  test::append(wire, test::make_frame(Opcode::continuation, Bytes(packed.begin() + third, packed.begin() + 2 * third),
                                      false, true, false));
  test::append(wire, test::make_frame(Opcode::continuation, Bytes(packed.begin() + 2 * third, packed.end()), true,
                                      true, false));
  for (test::Split split : {test::Split::whole, test::Split::bytewise, test::Split::random}) {
    ReaderLimits limits;
    limits.rsv1_allowed = true;
    const auto events = test::run(Role::server, wire, split, limits, 11);
    ASSERT_EQ(events.size(), 1u) << test::split_name(split);
    EXPECT_TRUE(events[0].compressed);
    Inflater inf;
    ASSERT_TRUE(inf.init(15));
    ByteBuffer out;
    ASSERT_EQ(inf.inflate(events[0].payload, 1 << 20, out, false), InflateStatus::ok);
    EXPECT_EQ(text_of(out), message);
  }
}

// --- bounded inflation -----------------------------------------------------------------------------------------

TEST(Deflate, StopsADecompressionBombAtTheLimitWithoutAllocatingItsSize) {
  // 64 MiB of zeros compress to about 64 KiB; the receiver allows 1 MiB.
  Deflater d;
  ASSERT_TRUE(d.init(15, 9, 9));
  const std::size_t bomb_size = 64u << 20;
  std::vector<std::uint8_t> zeros(bomb_size, 0);
  ByteBuffer packed;
  ASSERT_TRUE(d.compress(zeros, packed, true));
  zeros.clear();
  zeros.shrink_to_fit();
  ASSERT_LT(packed.size(), bomb_size / 500);

  const std::size_t limit = 1u << 20;
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  ByteBuffer out;
  EXPECT_EQ(inf.inflate(packed.view(), limit, out, false), InflateStatus::too_big);
  EXPECT_LE(out.capacity(), limit + 1);  // never grew past the limit
  EXPECT_EQ(protocol_error_for(InflateStatus::too_big), ProtocolError::message_too_big);
  EXPECT_EQ(close_code_for(protocol_error_for(InflateStatus::too_big)), CloseCode::message_too_big);

  // Exactly at the limit passes; one byte over fails.
  Deflater d2;
  ASSERT_TRUE(d2.init(15));
  std::vector<std::uint8_t> exact(limit, 'a');
  ByteBuffer p2;
  ASSERT_TRUE(d2.compress(exact, p2, true));
  Inflater inf2;
  ASSERT_TRUE(inf2.init(15));
  EXPECT_EQ(inf2.inflate(p2.view(), limit, out, true), InflateStatus::ok);
  EXPECT_EQ(out.size(), limit);
  EXPECT_EQ(inf2.inflate(p2.view(), limit - 1, out, true), InflateStatus::too_big);
  // A buffer kept from a larger message does not let a smaller limit be overrun.
  ASSERT_GT(out.capacity(), 1000u);
  EXPECT_EQ(inf2.inflate(p2.view(), 1000, out, true), InflateStatus::too_big);
  EXPECT_LE(out.size(), 1001u);
}

TEST(Deflate, ReportsCorruptDataAsInvalidPayload) {
  Inflater inf;
  ASSERT_TRUE(inf.init(15));
  ByteBuffer out;
  // BTYPE 11 is reserved (RFC 1951 3.2.3).
  EXPECT_EQ(inf.inflate(bytes({0xff, 0xff, 0xff}), 1 << 20, out, false), InflateStatus::corrupt);
  EXPECT_EQ(close_code_for(protocol_error_for(InflateStatus::corrupt)), CloseCode::invalid_payload);
  // The stream was reset: a valid message inflates afterwards.
  EXPECT_EQ(inflate_ok(inf, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})), "Hello");
}

TEST(Deflate, RejectsOutOfRangeInitValues) {
  Deflater d;
  EXPECT_FALSE(d.init(7));
  EXPECT_FALSE(d.init(16));
  EXPECT_FALSE(d.init(15, 0));
  EXPECT_FALSE(d.init(15, 8, 10));
  EXPECT_TRUE(d.init(8));  // runs as 9 (see zlib_window_bits)
  Inflater inf;
  EXPECT_FALSE(inf.init(16));
  EXPECT_TRUE(inf.init(8));
}

TEST(Deflate, WindowOfEightRunsAsNineAndStaysInflatableWithAnEightBitWindow) {
  // zlib refuses a raw deflate window of 8, so a compressor limited to 8 runs at 9 bits; its distances stay
  // below 512 - 262 bytes, so a peer inflating with a 256-byte window (zlib's inflater accepts 8) decodes it.
  Deflater d;
  ASSERT_TRUE(d.init(8));
  std::mt19937 rng(5);
  std::string message;
  for (int i = 0; i < 4000; ++i) message += static_cast<char>('a' + rng() % 4);
  for (int round = 0; round < 3; ++round) {
    const Bytes packed = compress(d, message, /*reset_after=*/true);
    z_stream z{};
    ASSERT_EQ(inflateInit2(&z, -8), Z_OK);
    Bytes input = packed;
    input.insert(input.end(), {0x00, 0x00, 0xff, 0xff});
    std::string out(message.size() + 16, '\0');
    z.next_in = input.data();
    z.avail_in = static_cast<uInt>(input.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = ::inflate(&z, Z_SYNC_FLUSH);
    EXPECT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR) << rc;
    out.resize(out.size() - z.avail_out);
    inflateEnd(&z);
    EXPECT_EQ(out, message);
    message += message.substr(0, 700);  // longer, with repeats further back than the window
  }
}

// --- negotiation -----------------------------------------------------------------------------------------------

DeflateNegotiation negotiate(std::string_view list, DeflateServerOptions options = {}) {
  return negotiate_deflate(list, options);
}

TEST(DeflateNegotiation, AcceptsAPlainOfferWithABareResponse) {
  const auto n = negotiate("permessage-deflate");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate");
  EXPECT_EQ(n.params, DeflateParams{});
}

TEST(DeflateNegotiation, NoOfferNoDeflate) {
  EXPECT_FALSE(negotiate("").accepted);
  EXPECT_FALSE(negotiate("x-webkit-deflate-frame").accepted);
  EXPECT_TRUE(negotiate("").response.view().empty());
}

TEST(DeflateNegotiation, AcceptsServerNoContextTakeoverByNamingIt) {
  const auto n = negotiate("permessage-deflate; server_no_context_takeover");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_no_context_takeover");
  EXPECT_TRUE(n.params.server_no_context_takeover);
  EXPECT_FALSE(n.params.client_no_context_takeover);
}

TEST(DeflateNegotiation, EchoesClientNoContextTakeover) {
  const auto n = negotiate("permessage-deflate; client_no_context_takeover");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate; client_no_context_takeover");
  EXPECT_TRUE(n.params.client_no_context_takeover);
}

TEST(DeflateNegotiation, ServerOptionsAddNoContextTakeoverUnasked) {
  DeflateServerOptions o;
  o.server_no_context_takeover = true;
  o.client_no_context_takeover = true;
  const auto n = negotiate("permessage-deflate", o);
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
}

TEST(DeflateNegotiation, AcceptsServerMaxWindowBitsWithTheSameOrSmallerValue) {
  auto n = negotiate("permessage-deflate; server_max_window_bits=10");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_max_window_bits=10");
  EXPECT_EQ(n.params.server_max_window_bits, 10u);
  DeflateServerOptions o;
  o.server_max_window_bits = 9;
  n = negotiate("permessage-deflate; server_max_window_bits=12", o);
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_max_window_bits=9");
  // Unasked, a smaller server window is used but not announced.
  n = negotiate("permessage-deflate", o);
  EXPECT_EQ(n.response.view(), "permessage-deflate");
  EXPECT_EQ(n.params.server_max_window_bits, 9u);
  n = negotiate("permessage-deflate; server_max_window_bits=8");
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_max_window_bits=8");
}

TEST(DeflateNegotiation, HandlesClientMaxWindowBitsWithAndWithoutValue) {
  auto n = negotiate("permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.response.view(), "permessage-deflate");  // 15 is the default: nothing to say
  EXPECT_EQ(n.params.client_max_window_bits, 15u);
  DeflateServerOptions o;
  o.client_max_window_bits = 11;
  n = negotiate("permessage-deflate; client_max_window_bits", o);
  EXPECT_EQ(n.response.view(), "permessage-deflate; client_max_window_bits=11");
  EXPECT_EQ(n.params.client_max_window_bits, 11u);
  n = negotiate("permessage-deflate; client_max_window_bits=9", o);
  EXPECT_EQ(n.response.view(), "permessage-deflate; client_max_window_bits=9");
  EXPECT_EQ(n.params.client_max_window_bits, 9u);
  // Not offered: never in the response (RFC 7692 7.1.2.1), and the inflater needs 15.
  n = negotiate("permessage-deflate", o);
  EXPECT_EQ(n.response.view(), "permessage-deflate");
  EXPECT_EQ(n.params.client_max_window_bits, 15u);
  n = negotiate("permessage-deflate; client_max_window_bits=\"10\"");
  EXPECT_EQ(n.response.view(), "permessage-deflate; client_max_window_bits=10");
}

TEST(DeflateNegotiation, DeclinesInvalidOrDuplicatedParametersAndTriesTheNextOffer) {
  const char* invalid[] = {
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
      "permessage-deflate; server_no_context_takeover=1",
      "permessage-deflate; client_no_context_takeover=true",
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; client_max_window_bits=abc",
      "permessage-deflate; unknown_parameter",
      "permessage-deflate; mux",
  };
  for (const char* offer : invalid) {
    EXPECT_FALSE(negotiate(offer).accepted) << offer;
    const std::string list = std::string(offer) + ", permessage-deflate; client_no_context_takeover";
    const auto n = negotiate(list);
    ASSERT_TRUE(n.accepted) << list;
    EXPECT_EQ(n.offer_index, 1u);
    EXPECT_EQ(n.declined, 1u);
    EXPECT_EQ(n.response.view(), "permessage-deflate; client_no_context_takeover") << list;
  }
}

TEST(DeflateNegotiation, TakesTheFirstAcceptableOfSeveralOffersInOrder) {
  auto n = negotiate(
      "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
      "permessage-deflate");
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.offer_index, 1u);
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_max_window_bits=10");
  n = negotiate("permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=12");
  EXPECT_EQ(n.response.view(), "permessage-deflate; server_max_window_bits=12");
}

TEST(DeflateNegotiation, AnUnparsableListAcceptsNothing) {
  EXPECT_FALSE(negotiate("permessage-deflate; =").accepted);
  EXPECT_FALSE(negotiate("permessage-deflate;;").accepted);
}

TEST(DeflateNegotiation, EveryAcceptedResponsePassesTheClientSideCheckAndTheValidator) {
  // All combinations of parameters a client may offer, against several server options: the response is never
  // empty, names only what was accepted and is what the client's check expects.
  const char* params[] = {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits=10",
                          "server_max_window_bits=8", "client_max_window_bits", "client_max_window_bits=12"};
  for (unsigned mask = 0; mask < 64; ++mask) {
    if ((mask & 0x0C) == 0x0C || (mask & 0x30) == 0x30) continue;  // would be duplicates
    std::string offer = "permessage-deflate";
    for (unsigned i = 0; i < 6; ++i) {
      if (mask & (1u << i)) offer += std::string("; ") + params[i];
    }
    for (unsigned server_bits : {9u, 15u}) {
      for (unsigned client_bits : {9u, 15u}) {
        DeflateServerOptions o;
        o.server_max_window_bits = server_bits;
        o.client_max_window_bits = client_bits;
        o.server_no_context_takeover = server_bits == 9;
        const auto n = negotiate(offer, o);
        ASSERT_TRUE(n.accepted) << offer;
        ASSERT_FALSE(n.response.view().empty());
        std::array<ExtensionOffer, 4> offers;
        std::array<ExtensionParam, 16> ps;
        ASSERT_TRUE(parse_extension_offers(offer, offers, ps).ok);
        DeflateClientOffer client;
        ASSERT_TRUE(parse_deflate_offer(offers[0].params, client));
        std::array<ExtensionOffer, 4> resp;
        std::array<ExtensionParam, 16> rps;
        const auto pr = parse_extension_offers(n.response.view(), resp, rps);
        ASSERT_TRUE(pr.ok);
        ASSERT_EQ(pr.offer_count, 1u);
        const DeflateResponseParse check = parse_deflate_response(resp[0].params, client);
        ASSERT_TRUE(check.ok) << offer << " -> " << n.response.view() << ": " << check.error;
        // What the client concludes is what the server uses (the server may use a smaller window unannounced).
        EXPECT_EQ(check.params.server_no_context_takeover, n.params.server_no_context_takeover);
        EXPECT_EQ(check.params.client_no_context_takeover, n.params.client_no_context_takeover);
        EXPECT_EQ(check.params.client_max_window_bits, n.params.client_max_window_bits) << offer << " -> "
                                                                                          << n.response.view();
        EXPECT_GE(check.params.server_max_window_bits, n.params.server_max_window_bits);
      }
    }
  }
}

TEST(DeflateResponse, RejectsResponsesThatBreakRfc7692) {
  struct Case {
    const char* offer;
    const char* response;
  } cases[] = {
      {"permessage-deflate", "permessage-deflate; client_max_window_bits=10"},          // not offered
      {"permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits"},  // no value
      {"permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=12"},
      {"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=11"},
      {"permessage-deflate", "permessage-deflate; server_max_window_bits"},
      {"permessage-deflate", "permessage-deflate; server_max_window_bits=16"},
      {"permessage-deflate", "permessage-deflate; server_no_context_takeover; server_no_context_takeover"},
      {"permessage-deflate", "permessage-deflate; client_no_context_takeover=1"},
      {"permessage-deflate", "permessage-deflate; foo"},
      {"permessage-deflate; server_no_context_takeover", "permessage-deflate"},
  };
  for (const Case& c : cases) {
    std::array<ExtensionOffer, 4> offers;
    std::array<ExtensionParam, 16> ps;
    ASSERT_TRUE(parse_extension_offers(c.offer, offers, ps).ok);
    DeflateClientOffer client;
    ASSERT_TRUE(parse_deflate_offer(offers[0].params, client));
    std::array<ExtensionOffer, 4> resp;
    std::array<ExtensionParam, 16> rps;
    ASSERT_TRUE(parse_extension_offers(c.response, resp, rps).ok);
    const DeflateResponseParse r = parse_deflate_response(resp[0].params, client);
    EXPECT_FALSE(r.ok) << c.offer << " -> " << c.response;
    EXPECT_FALSE(r.error.empty());

    // The strict response validator reports the same.
    const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
    const std::string head = std::string("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n") +
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
                             "Sec-WebSocket-Extensions: " + c.response + "\r\n\r\n";
    const ResponseCheck check = validate_upgrade_response(head, key, "", c.offer);
    EXPECT_TRUE(check.has(ResponseDefect::Kind::invalid_extension_params)) << c.offer << " -> " << c.response;
    EXPECT_FALSE(check.ok());
  }
}

TEST(DeflateResponse, ValidatorAcceptsAResponseThatMatchesAnyOfSeveralOffers) {
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n";
  // The first offer has no client_max_window_bits, the second does: the response answers the second.
  const ResponseCheck check = validate_upgrade_response(
      head, "dGhlIHNhbXBsZSBub25jZQ==", "", "permessage-deflate, permessage-deflate; client_max_window_bits");
  EXPECT_TRUE(check.ok()) << (check.defects.empty() ? "" : check.defects[0].message);
}

// --- user agents -----------------------------------------------------------------------------------------------

TEST(DeflateUserAgents, DeclinesSafariAndIos15Point0To15Point3) {
  const char* broken[] = {
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.0 "
      "Safari/605.1.15",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 12_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.3 "
      "Safari/605.1.15",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/15.0 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 15_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "CriOS/97.0.4692.84 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (iPad; CPU OS 15_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.3 "
      "Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 15_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Mobile/15E148",  // an in-app web view: no Version/
  };
  for (const char* ua : broken) EXPECT_TRUE(is_deflate_broken_user_agent(ua)) << ua;
}

TEST(DeflateUserAgents, AcceptsEveryoneElse) {
  const char* fine[] = {
      "",
      "Python/3.11 websockets/10.4",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 12_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.4 "
      "Safari/605.1.15",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 "
      "Safari/605.1.15",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 "
      "Safari/605.1.15",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 15_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/15.4 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      "Version/14.1.2 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/97.0.4692.99 "
      "Safari/537.36",
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.0 Safari/605.1.15 "
      "Chromium/97.0",
      "Mozilla/5.0 (X11; Linux x86_64; rv:96.0) Gecko/20100101 Firefox/96.0",
      "Version/15.2",  // no Safari/
  };
  for (const char* ua : fine) EXPECT_FALSE(is_deflate_broken_user_agent(ua)) << ua;
}

}  // namespace
}  // namespace edgews::codec
