// An application with its own poll() loop that runs edgews' reactor 0 inside it, beside a descriptor of its own
// (a timerfd ticking every 100 ms). No server thread: the WebSocket echo and the application's timer share one
// thread and one loop.
//
//   embedded_loop [--port N] [--seconds S]
//
// Prints "listening on port N" once ready, echoes every message, and after S seconds (default 5) shuts the
// server down gracefully (1001 to every client), waits for that to finish, and exits 0.
#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/edgews.hpp"

int main(int argc, char** argv) {
  unsigned port = 0;
  unsigned seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }

  edgews::ServerConfig config;
  config.listeners = {{"127.0.0.1", static_cast<std::uint16_t>(port), false}};
  config.threads = 1;  // reactor 0 only, and it runs in our loop
  config.limits.shutdown_timeout_ms = 2000;
  edgews::Callbacks callbacks;
  callbacks.on_message = [](edgews::Connection& c, const edgews::Message& m) { c.send(m.data, m.opcode); };
  auto [server, error] = edgews::Server::create(config, callbacks);
  if (!server || (error = server->start())) {
    std::fprintf(stderr, "embedded_loop: %s\n", error.message.c_str());
    return 1;
  }

  // The application's own descriptor: a 100 ms periodic timer.
  const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer < 0) {
    std::perror("embedded_loop: timerfd_create");
    return 1;
  }
  const itimerspec period{{0, 100 * 1000 * 1000}, {0, 100 * 1000 * 1000}};
  ::timerfd_settime(timer, 0, &period, nullptr);

  std::printf("listening on port %u\n", static_cast<unsigned>(server->ports().at(0)));
  std::fflush(stdout);

  std::uint64_t ticks = 0;
  bool shutting_down = false;
  while (!server->stopped()) {
    pollfd fds[2] = {{server->event_fd(), POLLIN, 0}, {timer, POLLIN, 0}};
    // edgews' own timers (handshake, ping, close) tell how long we may sleep; -1 means none is due.
    const int timeout = server->next_timeout_ms();
    if (::poll(fds, 2, timeout) < 0) continue;  // EINTR
    if (fds[1].revents & POLLIN) {
      std::uint64_t expirations = 0;
      if (::read(timer, &expirations, sizeof expirations) == sizeof expirations) ticks += expirations;
      if (!shutting_down && ticks >= seconds * 10u) {
        shutting_down = true;
        server->shutdown();  // 1001 to every client after what is queued; stopped() turns true when done
      }
    }
    server->run_ready();  // runs what is ready in edgews, never blocks
  }
  ::close(timer);
  std::printf("stopped after %llu ticks\n", static_cast<unsigned long long>(ticks));
  return 0;
}
