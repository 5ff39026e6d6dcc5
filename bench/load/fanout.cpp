// Fan-out benchmark: one topic, N subscribers on loopback, deliveries per second.
//
//   fanout_bench [--subscribers 10000] [--messages 100] [--size 16] [--rounds 5] [--threads 1]
//
// Two processes, because one process may hold at most RLIMIT_NOFILE descriptors (hard limit 20,000 on the
// measuring machine) and a connection costs one descriptor on each side: the server runs in a forked child, the
// subscribers in the parent. A control connection sends "go M S"; the server's on_message publishes M messages
// of S bytes to the topic from inside that callback (each frame built once per reactor, queued by reference on
// every subscriber). A round ends when the parent has read all N x M frames; deliveries/s = N x M / round time.
// The subscribers are read by one epoll thread in the parent, which shares the machine's cores with the server:
// read the figures as a lower bound of the server's fan-out rate.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/mask.hpp"
#include "core/edgews.hpp"

namespace {

struct Options {
  int subscribers = 10000;
  int messages = 100;
  int size = 16;
  int rounds = 5;
  unsigned threads = 1;
};

void raise_fd_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fanout_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// The server child: subscribes every connection on "/sub" to the topic; "go M S" publishes, "quit" shuts down.
int run_server(const Options& options, int port_pipe) {
  raise_fd_limit();
  edgews::ServerConfig config;
  config.listeners = {{"127.0.0.1", 0, false}};
  config.threads = options.threads;
  config.limits.max_connections = 1000000;
  config.limits.ping_interval_ms = 0;
  config.limits.handshake_timeout_ms = 60000;
  config.limits.shutdown_timeout_ms = 2000;
  edgews::Server* server_ptr = nullptr;
  edgews::Callbacks callbacks;
  callbacks.on_upgrade = [](edgews::UpgradeContext& context) {
    context.set_user_data(context.path() == "/sub" ? reinterpret_cast<void*>(1) : nullptr);
  };
  callbacks.on_open = [](edgews::Connection& c) {
    if (c.user_data() != nullptr) c.subscribe("bench");
  };
  callbacks.on_message = [&server_ptr](edgews::Connection& c, const edgews::Message& m) {
    const std::string text(m.text());
    if (text == "quit") {
      server_ptr->shutdown();
      return;
    }
    int count = 0, size = 0;
    if (std::sscanf(text.c_str(), "go %d %d", &count, &size) != 2) return;
    std::vector<std::uint8_t> payload(static_cast<std::size_t>(size), 'f');
    for (int i = 0; i < count; ++i) server_ptr->publish("bench", payload, edgews::Opcode::binary);
    c.send_text("published");
  };
  auto [server, error] = edgews::Server::create(config, callbacks,
                                                edgews::Logger(edgews::LogLevel::warn, edgews::LogFormat::text));
  if (!server || (error = server->start())) {
    std::fprintf(stderr, "fanout_bench server: %s\n", error.message.c_str());
    return 1;
  }
  server_ptr = server.get();
  const std::uint16_t port = server->ports().at(0);
  if (::write(port_pipe, &port, sizeof port) != sizeof port) return 1;
  ::close(port_pipe);
  server->run();
  return 0;
}

int connect_upgrade(std::uint16_t port, const char* path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) die("connect");
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  edgews::codec::ClientHandshake handshake;
  std::string request;
  edgews::codec::ClientRequest args;
  const std::string host = "127.0.0.1:" + std::to_string(port);
  args.host = host;
  args.resource = path;
  static std::mt19937_64 random(std::random_device{}());
  if (const auto e = handshake.write_request(request, args, edgews::codec::make_websocket_key(random))) {
    std::fprintf(stderr, "fanout_bench: %s\n", e.message.c_str());
    std::exit(1);
  }
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) die("write");
  std::string response;
  char buffer[1024];
  edgews::codec::ResponseCheck check;
  // Nothing follows the 101 until the first publish, so reading up to the blank line takes only the head.
  while (!check.complete) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) die("read 101");
    response.append(buffer, static_cast<std::size_t>(n));
    check = handshake.check_response(response);
    if (!check.complete && !check.defects.empty()) break;  // head too large
  }
  if (const edgews::codec::ResponseDefect* defect = check.refusal(edgews::codec::ResponseMode::strict)) {
    std::fprintf(stderr, "fanout_bench: the upgrade failed: %s\n", defect->message.c_str());
    std::exit(1);
  }
  return fd;
}

void send_text(int fd, const std::string& text) {
  std::uint8_t frame[256];
  const std::uint8_t key[4] = {1, 2, 3, 4};
  const std::size_t header =
      edgews::codec::write_frame_header(frame, edgews::Opcode::text, text.size(), true, false, key);
  edgews::codec::mask_copy(frame + header, reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), key);
  if (::write(fd, frame, header + text.size()) != static_cast<ssize_t>(header + text.size())) die("write control");
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--subscribers") options.subscribers = value;
    else if (flag == "--messages") options.messages = value;
    else if (flag == "--size") options.size = value;
    else if (flag == "--rounds") options.rounds = value;
    else if (flag == "--threads") options.threads = static_cast<unsigned>(value);
    else {
      std::fprintf(stderr, "usage: fanout_bench [--subscribers N] [--messages M] [--size S<=125] [--rounds R] "
                           "[--threads T]\n");
      return 2;
    }
  }
  if (options.size < 1 || options.size > 125) {
    std::fprintf(stderr, "fanout_bench: --size must be 1..125 (frames are counted by their 2-byte header size)\n");
    return 2;
  }
  raise_fd_limit();
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (static_cast<rlim_t>(options.subscribers) + 64 > limit.rlim_cur) {
    std::fprintf(stderr, "fanout_bench: %d subscribers need more descriptors than RLIMIT_NOFILE=%llu allows\n",
                 options.subscribers, static_cast<unsigned long long>(limit.rlim_cur));
    return 1;
  }

  int port_pipe[2];
  if (::pipe(port_pipe) != 0) die("pipe");
  const pid_t child = ::fork();
  if (child < 0) die("fork");
  if (child == 0) {
    ::close(port_pipe[0]);
    ::_exit(run_server(options, port_pipe[1]));
  }
  ::close(port_pipe[1]);
  std::uint16_t port = 0;
  if (::read(port_pipe[0], &port, sizeof port) != sizeof port) die("read port");
  ::close(port_pipe[0]);

  const auto connect_start = std::chrono::steady_clock::now();
  std::vector<int> subscribers;
  subscribers.reserve(static_cast<std::size_t>(options.subscribers));
  for (int i = 0; i < options.subscribers; ++i) subscribers.push_back(connect_upgrade(port, "/sub"));
  const int control = connect_upgrade(port, "/control");
  const double connect_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - connect_start).count();

  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  for (int fd : subscribers) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) die("epoll_ctl");
  }
  // Subscriptions happen in on_open, before the 101 leaves: they are all in place now.

  std::printf("fan-out: %d subscribers, %d messages of %d bytes per round, %u server thread(s), connect %.2f s\n",
              options.subscribers, options.messages, options.size, options.threads, connect_s);
  const std::uint64_t frame_bytes = 2 + static_cast<std::uint64_t>(options.size);
  const std::uint64_t round_bytes =
      static_cast<std::uint64_t>(options.subscribers) * static_cast<std::uint64_t>(options.messages) * frame_bytes;
  std::vector<double> rates;
  std::vector<epoll_event> events(1024);
  std::vector<char> buffer(256 * 1024);
  std::uint64_t total_bytes = 0;
  for (int round = 0; round < options.rounds; ++round) {
    const auto start = std::chrono::steady_clock::now();
    send_text(control, "go " + std::to_string(options.messages) + " " + std::to_string(options.size));
    std::uint64_t received = 0;
    while (received < round_bytes) {
      const int n = ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 10000);
      if (n <= 0) {
        std::fprintf(stderr, "fanout_bench: stalled at %llu of %llu bytes\n",
                     static_cast<unsigned long long>(received), static_cast<unsigned long long>(round_bytes));
        ::kill(child, SIGKILL);
        return 1;
      }
      for (int i = 0; i < n; ++i) {
        for (;;) {
          const ssize_t got = ::read(events[static_cast<std::size_t>(i)].data.fd, buffer.data(), buffer.size());
          if (got <= 0) break;
          received += static_cast<std::uint64_t>(got);
          if (static_cast<std::size_t>(got) < buffer.size()) break;
        }
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total_bytes += received;
    const double deliveries = static_cast<double>(options.subscribers) * options.messages;
    rates.push_back(deliveries / seconds);
    std::printf("round %d: %.0f deliveries in %.3f s = %.2f M deliveries/s\n", round + 1, deliveries, seconds,
                deliveries / seconds / 1e6);
    std::fflush(stdout);
    // Drain the control connection's "published" acknowledgement.
    char ack[64];
    (void)!::read(control, ack, sizeof ack);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("median %.2f M deliveries/s, best %.2f M deliveries/s (%llu bytes checked: none lost)\n",
              rates[rates.size() / 2] / 1e6, rates.back() / 1e6, static_cast<unsigned long long>(total_bytes));

  send_text(control, "quit");
  for (int fd : subscribers) ::close(fd);
  ::close(control);
  int status = 0;
  for (int i = 0; i < 500 && ::waitpid(child, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (::waitpid(child, &status, WNOHANG) == 0) {
    ::kill(child, SIGKILL);  // only the server child this program started
    ::waitpid(child, &status, 0);
  }
  return 0;
}
