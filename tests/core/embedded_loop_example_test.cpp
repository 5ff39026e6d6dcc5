// Runs examples/embedded_loop as a child process: it must print its port, echo a client's message, close the
// client with 1001 at its deadline and exit 0 by itself.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/core/test_client.hpp"

namespace edgews::test {
namespace {

TEST(EmbeddedLoopExample, EchoesAndExitsByItself) {
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    ::execl(EDGEWS_EMBEDDED_LOOP, EDGEWS_EMBEDDED_LOOP, "--port", "0", "--seconds", "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  // The first line names the port.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buffer[256];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;
    line.append(buffer, static_cast<std::size_t>(n));
  }
  const std::size_t at = line.find("listening on port ");
  std::uint16_t port = 0;
  if (at != std::string::npos) port = static_cast<std::uint16_t>(std::atoi(line.c_str() + at + 18));
  EXPECT_NE(port, 0) << "output: " << line;

  if (port != 0) {
    TestClient client;
    ASSERT_TRUE(client.open(port));
    ASSERT_TRUE(client.send_text("hello, embedder"));
    auto echo = client.read_frame();
    ASSERT_TRUE(echo);
    EXPECT_EQ(echo->payload, "hello, embedder");
    // At its deadline the example shuts down: 1001 to us.
    auto close = client.read_frame(5000);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->opcode, Opcode::close);
    EXPECT_EQ(close->close_code, 1001);
    client.send_close(1001);
  }

  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);  // only the child this test started
    ::waitpid(pid, &status, 0);
    ADD_FAILURE() << "the example did not exit by itself";
  } else {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  ::close(out[0]);
}

}  // namespace
}  // namespace edgews::test
