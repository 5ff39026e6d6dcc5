// Memory per idle TLS connection on the server side.
//
//   tls_idle_memory [connections=2000] [ec|rsa]
//
// A child process opens the client ends (so their memory is not counted); this process accepts them,
// completes each handshake, exchanges one small message, and then measures the growth of its resident set
// (RSS) and of malloc's in-use bytes, divided by the number of connections. Three runs: the buffers released
// with TlsStream::release_buffers() once the connection is quiet (what the server does), with
// SSL_MODE_RELEASE_BUFFERS (released after every record, the former setting), and kept. Kernel socket
// buffers are not in the RSS.
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "tls_support.hpp"

namespace edgews::bench {
namespace {

long rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

long heap_in_use() { return static_cast<long>(mallinfo2().uordblks); }

// The client side, in a child process: connect n times, handshake, read the server's message, answer
// with one, then wait (idle) until the parent closes the pipe.
[[noreturn]] void run_clients(const sockaddr_in& addr, int n, int wait_fd) {
  net::TlsError error;
  auto ctx = net::make_client_context("", error);
  std::vector<net::Fd> fds;
  std::vector<std::unique_ptr<net::TlsStream>> streams;
  for (int i = 0; i < n; ++i) {
    net::Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) ::_exit(2);
    int one = 1;  // without it Nagle and delayed ACKs add 40 ms per connection
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto tls = net::TlsStream::connect(ctx.get(), fd.get(), "localhost", error);  // blocking socket
    if (tls->handshake().status != net::TlsIo::ok) ::_exit(3);
    char buf[16];
    if (tls->read(buf, 5).status != net::TlsIo::ok) ::_exit(4);
    if (tls->write("pong!", 5).status != net::TlsIo::ok) ::_exit(5);
    fds.push_back(std::move(fd));
    streams.push_back(std::move(tls));
  }
  char ch;
  while (::read(wait_fd, &ch, 1) > 0) {
  }
  ::_exit(0);
}

struct Figures {
  double rss_per_connection;
  double heap_per_connection;
};

enum class Release { when_quiet, mode_per_record, never };

bool run(const std::shared_ptr<net::TlsContext>& ctx, int n, Release release, Figures& out) {
  sockaddr_in addr;
  net::Fd listener = listen_loopback(addr);
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return false;
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[1]);
    run_clients(addr, n, pipe_fds[0]);
  }
  ::close(pipe_fds[0]);
  std::vector<net::Fd> fds;
  std::vector<std::unique_ptr<net::TlsStream>> streams;
  fds.reserve(n);
  streams.reserve(n);
  long rss_before = rss_bytes(), heap_before = heap_in_use();
  bool ok = true;
  for (int i = 0; i < n && ok; ++i) {
    net::Fd fd(::accept(listener.get(), nullptr, nullptr));
    set_nonblocking(fd.get());
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    net::TlsError error;
    auto tls = net::TlsStream::accept(ctx, fd.get(), error);
    // Server streams start quiet (SSL_MODE_RELEASE_BUFFERS); a busy one keeps its buffers (net/tls.hpp).
    if (release != Release::mode_per_record) tls->keep_buffers();
    net::TlsIo st = net::TlsIo::want_read;
    while (st == net::TlsIo::want_read || st == net::TlsIo::want_write) {
      st = tls->handshake().status;
      pollfd p{fd.get(), events_for(st), 0};
      if (st != net::TlsIo::ok) ::poll(&p, 1, 1000);
    }
    ok = st == net::TlsIo::ok;
    // One message each way, as a real connection would have before going idle.
    net::TlsResult w = tls->write("ping!", 5);
    ok = ok && w.status == net::TlsIo::ok;
    char buf[16];
    net::TlsResult r{net::TlsIo::want_read, 0};
    for (int turns = 0; ok && r.status == net::TlsIo::want_read && turns < 100; ++turns) {
      pollfd p{fd.get(), POLLIN, 0};
      ::poll(&p, 1, 1000);
      r = tls->read(buf, sizeof buf);
    }
    ok = ok && r.status == net::TlsIo::ok;
    if (release == Release::when_quiet) ok = ok && tls->release_buffers();
    fds.push_back(std::move(fd));
    streams.push_back(std::move(tls));
  }
  long rss_after = rss_bytes(), heap_after = heap_in_use();
  ::close(pipe_fds[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  out.rss_per_connection = static_cast<double>(rss_after - rss_before) / n;
  out.heap_per_connection = static_cast<double>(heap_after - heap_before) / n;
  return ok;
}

}  // namespace
}  // namespace edgews::bench

int main(int argc, char** argv) {
  using namespace edgews::bench;
  ::signal(SIGPIPE, SIG_IGN);
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  std::string key_type = argc > 2 ? argv[2] : "ec";
  std::string dir = temp_dir();
  if (!make_cert(dir, "server", key_type)) {
    std::fprintf(stderr, "tools/make-dev-cert.sh failed\n");
    return 1;
  }
  edgews::net::TlsOptions options;
  options.certificates = {{dir + "/server.crt", dir + "/server.key"}};
  edgews::net::TlsError error;
  auto ctx = edgews::net::TlsContext::create(options, error);
  std::filesystem::remove_all(dir);
  if (!ctx) {
    std::fprintf(stderr, "%s\n", error.message.c_str());
    return 1;
  }
  // Warm-up: OpenSSL's lazily loaded tables and the allocator's first arenas are not per-connection costs.
  Figures warm{};
  run(ctx, 50, Release::when_quiet, warm);
  for (Release release : {Release::when_quiet, Release::mode_per_record, Release::never}) {
    Figures f{};
    if (!run(ctx, n, release, f)) {
      std::fprintf(stderr, "a connection failed\n");
      return 1;
    }
    const char* how = release == Release::when_quiet        ? "release_buffers() when quiet"
                      : release == Release::mode_per_record ? "SSL_MODE_RELEASE_BUFFERS    "
                                                            : "buffers kept                ";
    std::printf("%d idle TLS 1.3 server connections (%s key), %s: "
                "RSS %.0f B/connection, malloc in use %.0f B/connection\n",
                n, key_type.c_str(), how, f.rss_per_connection, f.heap_per_connection);
  }
  return 0;
}
