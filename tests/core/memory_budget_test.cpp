// The server-wide memory budget: where the automatic budget comes from (an injected cgroup directory), and that
// over the budget the connections holding the most are closed with 1013 while others are served, with the counters
// and gauges moving, through the server's own accounting.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codec/frame.hpp"
#include "tests/core/server_harness.hpp"
#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

std::string masked_frame(std::string_view payload) {
  std::string out;
  std::uint8_t header[codec::kMaxFrameHeaderSize];
  const std::uint8_t mask[4] = {1, 2, 3, 4};
  const std::size_t n = codec::write_frame_header(header, Opcode::binary, payload.size(), true, false, mask);
  out.append(reinterpret_cast<const char*>(header), n);
  for (std::size_t i = 0; i < payload.size(); ++i) out.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return out;
}

// Writes what the socket takes within timeout_ms (never blocks longer); returns the bytes written.
std::size_t push(int fd, const std::string& bytes, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::size_t off = 0;
  while (off < bytes.size() && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return off;
}

class CgroupDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/edgews-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& file, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(dir_ + file).parent_path());
    std::ofstream(dir_ + file) << text << "\n";
  }
  std::uint64_t budget_with(ServerConfig config) {
    config.cgroup_dir = dir_;
    auto [server, error] = Server::create(config, Callbacks{}, Logger(LogLevel::off, LogFormat::text));
    EXPECT_TRUE(server) << error.message;
    return server ? server->memory_budget() : 0;
  }
  std::string dir_;
};

TEST_F(CgroupDir, AutomaticBudgetIsAQuarterOfTheContainerLimit) {
  EXPECT_EQ(budget_with(test_config()), 256u << 20) << "no limit file: the default";
  write("/memory.max", "max");
  EXPECT_EQ(budget_with(test_config()), 256u << 20) << "cgroup v2 without a limit";
  write("/memory.max", std::to_string(1ull << 30));
  EXPECT_EQ(budget_with(test_config()), 256u << 20) << "a 1 GiB container";
  write("/memory.max", std::to_string(8ull << 30));
  EXPECT_EQ(budget_with(test_config()), 2ull << 30);
  write("/memory.max", std::to_string(100ull << 20));
  EXPECT_EQ(budget_with(test_config()), 64u << 20) << "never below 64 MiB";
  std::filesystem::remove(dir_ + "/memory.max");
  write("/memory/memory.limit_in_bytes", "9223372036854771712");
  EXPECT_EQ(budget_with(test_config()), 256u << 20) << "cgroup v1 without a limit";
  write("/memory/memory.limit_in_bytes", std::to_string(2ull << 30));
  EXPECT_EQ(budget_with(test_config()), 512u << 20) << "cgroup v1";
  ServerConfig config = test_config();
  config.limits.max_memory = 12345678;
  EXPECT_EQ(budget_with(config), 12345678u) << "the setting wins";
}

TEST(MemoryBudget, OverTheBudgetTheLargestHoldersAreClosedWith1013) {
  constexpr std::size_t kSize = 256 * 1024;
  ServerConfig config = test_config();
  config.limits.max_memory = 3u << 20;
  config.limits.read_high_water = 2u << 20;  // each flooder holds about 2 MiB before it is throttled
  config.limits.read_low_water = 1u << 20;
  config.admin_listener.enabled = true;
  config.admin_listener.port = 0;
  std::mutex mutex;
  std::vector<std::uint16_t> codes;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  callbacks.on_close = [&](Connection&, std::uint16_t code, std::string_view) {
    std::lock_guard lock(mutex);
    codes.push_back(code);
  };
  LogCapture log;
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks, log.logger(LogLevel::warn)));
  EXPECT_EQ(server->memory_budget(), 3u << 20);
  TestClient honest;
  ASSERT_TRUE(honest.open(server.port()));
  // Three clients that ask for large echoes and never read: together about 6 MiB, twice the budget.
  std::vector<TestClient> flooders(3);
  const std::string request = masked_frame(std::string(kSize, 'f'));
  for (TestClient& flooder : flooders) {
    ASSERT_TRUE(flooder.open(server.port(), "/", 4096));
    for (int i = 0; i < 16; ++i) {
      if (push(flooder.fd(), request, 500) < request.size()) break;  // pushed back: throttled
    }
  }
  ASSERT_TRUE(eventually([&] { return server->stats().memory_closes >= 1; }, 10000))
      << "memory in use " << server->stats().memory_in_use;
  {
    std::lock_guard lock(mutex);
    for (std::uint16_t code : codes) EXPECT_EQ(code, 1013);
  }
  EXPECT_TRUE(log.contains("closing with 1013"));
  // The honest client, holding nothing, is served throughout.
  ASSERT_TRUE(honest.send_text("still here"));
  auto frame = honest.read_frame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, "still here");
  const std::string metrics = server->metrics_text();
  EXPECT_NE(metrics.find("\nedgews_memory_budget_bytes 3145728\n"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("\nedgews_memory_budget_actions_total{action=\"close\"} 0\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("# TYPE edgews_memory_bytes gauge\n"), std::string::npos) << metrics;
  // Once every flooder is gone, the accounting comes back to nothing: no byte is lost track of.
  flooders.clear();
  EXPECT_TRUE(eventually([&] { return server->stats().connections_open == 1; }, 10000));
  EXPECT_TRUE(eventually([&] { return server->stats().memory_in_use == 0; }, 5000))
      << "memory in use " << server->stats().memory_in_use;
  EXPECT_LT(server->stats().memory_closes, 3u) << "every flooder was closed: the budget held with fewer closes";
}

// Between three quarters of the budget and the budget, the largest holder is not read (ReadHold::memory) instead
// of closed; it is read again once it holds nothing, and loses nothing.
TEST(MemoryBudget, NearTheBudgetTheLargestHolderIsPausedThenReadAgain) {
  constexpr std::size_t kMessage = 64 * 1024;
  constexpr std::size_t kMessages = 56 * 16;  // 56 MiB queued at once: far more than the kernel's buffers take
  ServerConfig config = test_config();
  config.limits.max_memory = 64u << 20;    // pause over 48 MiB, close over 64 MiB
  config.limits.max_backpressure = 128u << 20;
  Callbacks callbacks;
  callbacks.on_message = [](Connection& c, const Message& m) {
    if (m.text() != "burst") {
      c.send(m.data, m.opcode);
      return;
    }
    for (std::size_t i = 0; i < kMessages; ++i) c.send_binary(TestClient::bytes(std::string(kMessage, 'a' + i % 26)));
  };
  RunningServer server;
  ASSERT_TRUE(server.start(config, callbacks));
  TestClient client;
  ASSERT_TRUE(client.open(server.port(), "/", 4096));
  ASSERT_TRUE(client.send_text("burst"));
  ASSERT_TRUE(eventually([&] { return server->stats().memory_pauses == 1; }, 5000))
      << "memory in use " << server->stats().memory_in_use;
  EXPECT_EQ(server->stats().connections_throttled, 1u);
  EXPECT_EQ(server->stats().memory_closes, 0u);
  ASSERT_TRUE(client.send_text("after the burst"));  // waits: the connection is not read
  for (std::size_t i = 0; i < kMessages; ++i) {
    auto frame = client.read_frame(10000);
    ASSERT_TRUE(frame) << "message " << i;
    ASSERT_EQ(frame->payload, std::string(kMessage, 'a' + i % 26)) << "message " << i;
  }
  auto frame = client.read_frame(10000);
  ASSERT_TRUE(frame) << "the paused connection was never read again";
  EXPECT_EQ(frame->payload, "after the burst");
  EXPECT_EQ(server->stats().connections_throttled, 0u);
  EXPECT_EQ(server->stats().memory_closes, 0u);
}

}  // namespace
}  // namespace edgews::test
