// What an idle connection holds after it received messages: no receive buffer, whatever their size. A buffer
// grown by a large message is freed once the message was delivered, a small one kept for split frames is freed by
// the quiet-connection sweep. Seen through the allocator's count of heap bytes in use (RSS means little under
// ASan; bench/memory/idle_after_message.py prints the RSS figures).
#include <gtest/gtest.h>
#include <malloc.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
// From <sanitizer/allocator_interface.h>, which not every toolchain installs.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

#include "server_harness.hpp"
#include "test_client.hpp"

namespace edgews::test {
namespace {

// Heap bytes in use in this process, the server's and the test's (the sanitizer's count under ASan, whose
// allocator mallinfo2 does not see).
long heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return static_cast<long>(__sanitizer_get_current_allocated_bytes());
#else
  return static_cast<long>(mallinfo2().uordblks);
#endif
}

// Reads and discards n bytes from fd within timeout_ms, into static storage: the test allocates nothing while the
// server's memory is measured. The first two bytes read are returned in head.
bool discard(int fd, std::size_t n, std::uint8_t head[2], int timeout_ms = 10000) {
  static std::uint8_t buffer[64 * 1024];
  std::size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t r = ::recv(fd, buffer, std::min(sizeof buffer, n - got), 0);
    if (r <= 0) return false;
    for (std::size_t i = got; i < 2 && i < got + static_cast<std::size_t>(r); ++i) head[i] = buffer[i - got];
    got += static_cast<std::size_t>(r);
  }
  return true;
}

Callbacks echo() {
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  return callbacks;
}

// Opens n clients that each echo one small message, so that everything a connection keeps for its life exists.
std::vector<TestClient> open_idle_clients(std::uint16_t port, int n) {
  std::vector<TestClient> clients(static_cast<std::size_t>(n));
  for (TestClient& client : clients) {
    if (!client.open(port)) {
      ADD_FAILURE() << "upgrade failed";
      return {};
    }
    if (!client.send_text("sixteen bytes ok")) ADD_FAILURE() << "send failed";
    auto frame = client.read_frame();
    if (!frame || frame->payload != "sixteen bytes ok") ADD_FAILURE() << "small echo missing";
  }
  return clients;
}

// 1 MiB echoed on every connection at once (a spike: every connection assembles its message and queues the reply
// the kernel does not take), then idle: the heap returns to what the idle connections held before.
TEST(IdleMemory, AConnectionHoldsNoReceiveBufferAfterALargeMessage) {
  constexpr int kConnections = 64;
  constexpr std::size_t kLarge = 1u << 20;
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), echo()));
  std::vector<TestClient> clients = open_idle_clients(server.port(), kConnections);
  ASSERT_EQ(clients.size(), static_cast<std::size_t>(kConnections));
  const std::string payload(kLarge, 'L');
  const long idle = heap_in_use();

  for (TestClient& client : clients) ASSERT_TRUE(client.send_binary(payload));
  for (TestClient& client : clients) {
    std::uint8_t head[2] = {};
    ASSERT_TRUE(discard(client.fd(), 10 + kLarge, head)) << "echo of the 1 MiB message missing";
    ASSERT_EQ(head[0], 0x82) << "a binary frame";
    ASSERT_EQ(head[1], 127) << "with a 64-bit length";
  }
  long held = 0;
  const bool back = eventually(
      [&] {
        held = heap_in_use() - idle;
        return held <= kConnections * 512L;
      },
      10000);
  EXPECT_TRUE(back) << "idle connections still hold " << held / kConnections
                    << " bytes each more than before the 1 MiB message (at most 512 expected)";
  for (TestClient& client : clients) {
    ASSERT_TRUE(client.send_text("still there"));
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << "a connection stopped working after its buffer was freed";
    EXPECT_EQ(frame->payload, "still there");
  }
}

// Messages split across reads keep a small assembly buffer while the connection is busy; the quiet-connection
// sweep frees it once the connection has been quiet for a sweep period (about a second).
TEST(IdleMemory, TheSweepFreesTheBufferKeptForSplitFramesOnceTheConnectionIsQuiet) {
  constexpr int kConnections = 32;
  constexpr std::size_t kSize = 8 * 1024;
  RunningServer server;
  ASSERT_TRUE(server.start(test_config(), echo()));
  std::vector<TestClient> clients = open_idle_clients(server.port(), kConnections);
  ASSERT_EQ(clients.size(), static_cast<std::size_t>(kConnections));
  const std::string half(kSize / 2, 'h');
  const long idle = heap_in_use();

  // Two fragments: the message is assembled in the reader, whose buffer then stays for the next one.
  for (TestClient& client : clients) {
    ASSERT_TRUE(client.send_frame(Opcode::binary, TestClient::bytes(half), false));
    ASSERT_TRUE(client.send_frame(Opcode::continuation, TestClient::bytes(half), true));
  }
  for (TestClient& client : clients) {
    std::uint8_t head[2] = {};
    ASSERT_TRUE(discard(client.fd(), 4 + kSize, head)) << "echo missing";
    ASSERT_EQ(head[1], 126) << "a 16-bit length";
  }
  long held = 0;
  const bool back = eventually(
      [&] {
        held = heap_in_use() - idle;
        return held <= kConnections * 512L;
      },
      10000);
  EXPECT_TRUE(back) << "quiet connections still hold " << held / kConnections << " bytes each more than before";
  for (TestClient& client : clients) {
    ASSERT_TRUE(client.send_text("still there"));
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << "a connection stopped working after its buffer was freed";
    EXPECT_EQ(frame->payload, "still there");
  }
}

}  // namespace
}  // namespace edgews::test
