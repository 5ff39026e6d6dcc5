// Runs examples/client.cpp as a child process against an echo server: it must open, send its subscription (the
// echo comes back as a message), and exit 0 by itself at its deadline.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "server_harness.hpp"

namespace edgews::test {
namespace {

TEST(ClientExample, SubscribesAndExitsByItself) {
  RunningServer server;
  Callbacks echo;
  echo.on_message = [](Connection& c, const Message& m) { c.send(m.data, m.opcode); };
  ASSERT_TRUE(server.start(test_config(), echo));
  const std::string url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/feed";
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    ::execl(EDGEWS_CLIENT_EXAMPLE, EDGEWS_CLIENT_EXAMPLE, url.c_str(), "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (;;) {
    pollfd p{out[0], POLLIN, 0};
    if (std::chrono::steady_clock::now() > deadline || ::poll(&p, 1, 100) < 0) break;
    if ((p.revents & (POLLIN | POLLHUP)) == 0) continue;
    char buf[512];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_NE(output.find("open\n"), std::string::npos) << output;
  EXPECT_NE(output.find("message: {\"subscribe\":\"ticks\"}\n"), std::string::npos) << output;
  EXPECT_NE(output.find("closed 1000"), std::string::npos) << output;
}

}  // namespace
}  // namespace edgews::test
