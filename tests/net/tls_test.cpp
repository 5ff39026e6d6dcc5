#include "net/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "net/fd.hpp"

#if defined(__SANITIZE_ADDRESS__)
// From <sanitizer/allocator_interface.h>, which not every toolchain installs.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace edgews::net {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------ certificates

class Tls : public ::testing::Test {
 public:  // the helpers below the fixture use its contexts too
  static void SetUpTestSuite() {
    // Where the kernel has kernel TLS, OpenSSL's socket write raises SIGPIPE for a peer that has gone; a server
    // ignores it.
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/edgews-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    make_cert("");
    make_cert("--name wild --san 'DNS:*.example.test'");
    make_cert("--name expired --expired");
    make_cert("--name future --not-yet-valid");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static void make_cert(const std::string& args) {
    std::string cmd = "'" EDGEWS_SOURCE_DIR "/tools/make-dev-cert.sh' " + args + " '" + dir_ + "' >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static std::string path(const std::string& name) { return dir_ + "/" + name; }
  static TlsCertificate cert(const std::string& stem) { return {path(stem + ".crt"), path(stem + ".key")}; }

  static std::shared_ptr<TlsContext> server_context(TlsOptions options = {}) {
    if (options.certificates.empty()) options.certificates = {cert("localhost")};
    TlsError error;
    auto ctx = TlsContext::create(options, error);
    EXPECT_TRUE(error.ok) << error.message;
    return ctx;
  }
  static ClientContextPtr client_context(bool verify = true) {
    TlsError error;
    auto ctx = make_client_context(verify ? path("ca.crt") : "", error);
    EXPECT_TRUE(error.ok) << error.message;
    return ctx;
  }
  static std::string error_of(const TlsOptions& options) {
    TlsError error;
    auto ctx = TlsContext::create(options, error);
    EXPECT_FALSE(error.ok);
    EXPECT_EQ(ctx, nullptr);
    return error.message;
  }

  static inline std::string dir_;
};

// --------------------------------------------------------------------------------------------- sockets

void set_nonblocking(int fd) { ASSERT_EQ(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }

struct Pair {
  Fd client;
  Fd server;
};

// A connected loopback TCP pair (kTLS needs TCP), both ends non-blocking.
Pair tcp_pair() {
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(listener.get(), 4), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Pair pair{Fd(::socket(AF_INET, SOCK_STREAM, 0)), Fd()};
  EXPECT_EQ(::connect(pair.client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  pair.server = Fd(::accept(listener.get(), nullptr, nullptr));
  int one = 1;
  for (int fd : {pair.client.get(), pair.server.get()}) {
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblocking(fd);
  }
  return pair;
}

Pair unix_pair() {
  int raw[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, raw), 0);
  set_nonblocking(raw[0]);
  set_nonblocking(raw[1]);
  return {Fd(raw[0]), Fd(raw[1])};
}

short events_for(TlsIo status) { return status == TlsIo::want_write ? POLLOUT : POLLIN; }

// Drives both handshakes to completion with poll(); returns the first non-want status of each side.
struct HandshakeOutcome {
  TlsIo client;
  TlsIo server;
};
HandshakeOutcome handshake_pair(TlsStream& client, int client_fd, TlsStream& server, int server_fd,
                                std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  TlsIo c = TlsIo::want_write, s = TlsIo::want_read;
  auto deadline = Clock::now() + limit;
  auto waiting = [](TlsIo st) { return st == TlsIo::want_read || st == TlsIo::want_write; };
  while ((waiting(c) || waiting(s)) && Clock::now() < deadline) {
    if (waiting(c)) c = client.handshake().status;
    if (waiting(s)) s = server.handshake().status;
    pollfd fds[2] = {{client_fd, events_for(c), 0}, {server_fd, events_for(s), 0}};
    if (waiting(c) || waiting(s)) ::poll(fds, 2, 50);
  }
  return {c, s};
}

// One end of a connection in a test: sends `out`, collects what it reads into `in`.
struct Peer {
  Peer(TlsStream* t, int f, std::string data) : tls(t), fd(f), out(std::move(data)) {}
  TlsStream* tls;
  int fd;
  std::string out;
  std::size_t sent = 0;
  std::string in;
  bool closed = false;
  bool failed = false;
  TlsIo read_blocked = TlsIo::want_read;
  TlsIo write_blocked = TlsIo::want_write;
  std::mt19937 rng{7};

  void pump() {
    char buf[16384];
    for (;;) {
      // A random buffer size exercises records larger than the buffer (pending bytes).
      std::size_t want = 1 + rng() % sizeof buf;
      TlsResult r = tls->read(buf, want);
      if (r.status == TlsIo::ok) {
        in.append(buf, r.bytes);
        continue;
      }
      read_blocked = r.status;
      if (r.status == TlsIo::closed) closed = true;
      if (r.status == TlsIo::error) failed = true;
      break;
    }
    while (!failed && sent < out.size()) {
      // Offer everything left, split into a small piece, a medium one and the rest: gathering, in-place
      // writes, and a retry after want_write with the same bytes split differently.
      std::size_t left = out.size() - sent;
      std::size_t a = std::min<std::size_t>(left, rng() % 8);
      std::size_t b = std::min<std::size_t>(left - a, rng() % 600);
      std::size_t c = left - a - b;
      iovec iov[3] = {{out.data() + sent, a}, {out.data() + sent + a, b}, {out.data() + sent + a + b, c}};
      TlsResult r = tls->write(iov, 3);
      EXPECT_LE(r.bytes, a + b + c);
      sent += r.bytes;
      if (r.status == TlsIo::ok) continue;
      write_blocked = r.status;
      if (r.status == TlsIo::error || r.status == TlsIo::closed) failed = true;
      break;
    }
  }
  short events() const {
    short ev = events_for(read_blocked);
    if (sent < out.size()) ev |= events_for(write_blocked);
    return ev;
  }
};

std::string random_bytes(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

struct Connected {
  Pair fds;
  std::unique_ptr<TlsStream> client;
  std::unique_ptr<TlsStream> server;
};

Connected connect_pair(const std::shared_ptr<TlsContext>& server_ctx, SSL_CTX* client_ctx, std::string_view sni,
                       bool tcp = true) {
  Connected c{tcp ? tcp_pair() : unix_pair(), nullptr, nullptr};
  TlsError error;
  c.server = TlsStream::accept(server_ctx, c.fds.server.get(), error);
  EXPECT_TRUE(error.ok) << error.message;
  c.client = TlsStream::connect(client_ctx, c.fds.client.get(), sni, error);
  EXPECT_TRUE(error.ok) << error.message;
  return c;
}

// Client and server streams on two separate socket pairs, for tests that carry the bytes between them themselves
// (a relay that cuts, delays or splits): the client's bytes come out of left.server, the server's go into
// right.client.
struct Relayed {
  Pair left, right;
  std::unique_ptr<TlsStream> client, server;
};

Relayed relayed_streams(SSL_CTX* client_ctx) {
  Relayed r{unix_pair(), unix_pair(), nullptr, nullptr};
  TlsError error;
  r.client = TlsStream::connect(client_ctx, r.left.client.get(), "localhost", error);
  EXPECT_TRUE(error.ok) << error.message;
  r.server = TlsStream::accept(Tls::server_context(), r.right.server.get(), error);
  EXPECT_TRUE(error.ok) << error.message;
  return r;
}

// The start of the data-path tests: the default contexts (each stream keeps its own reference), connected over
// TCP, handshake done.
Connected established_pair() {
  Connected c = connect_pair(Tls::server_context(), Tls::client_context().get(), "localhost");
  if (c.client && c.server) {
    EXPECT_EQ(handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get()).server, TlsIo::ok);
  }
  return c;
}

// Client sends `size` bytes, server echoes everything back; both directions run at once.
void echo(Connected& c, std::size_t size, std::chrono::seconds limit = std::chrono::seconds(60)) {
  Peer client{c.client.get(), c.fds.client.get(), random_bytes(size, 42)};
  Peer server{c.server.get(), c.fds.server.get(), ""};
  auto deadline = Clock::now() + limit;
  while (client.in.size() < size && !client.failed && !server.failed && Clock::now() < deadline) {
    client.pump();
    server.pump();
    server.out.append(server.in);  // echo: what the server read goes back
    server.in.clear();
    server.pump();
    pollfd fds[2] = {{client.fd, client.events(), 0}, {server.fd, server.events(), 0}};
    ::poll(fds, 2, 50);
  }
  ASSERT_FALSE(client.failed) << c.client->error_message();
  ASSERT_FALSE(server.failed) << c.server->error_message();
  ASSERT_EQ(client.in.size(), size) << "timed out";
  EXPECT_TRUE(client.in == client.out) << "echoed bytes differ";
}

std::string peer_subject(TlsStream& client) {
  X509* peer = SSL_get1_peer_certificate(client.native());
  if (!peer) return "";
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
  X509_free(peer);
  return buf;
}

// ------------------------------------------------------------------------------------------- handshakes

TEST_F(Tls, HandshakesTls13WithAlpnHttp11) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.client, TlsIo::ok) << c.client->error_message();
  ASSERT_EQ(outcome.server, TlsIo::ok) << c.server->error_message();
  EXPECT_TRUE(c.server->handshake_done());
  EXPECT_EQ(c.server->version(), "TLSv1.3");
  EXPECT_EQ(c.server->alpn(), "http/1.1");
  EXPECT_EQ(c.client->alpn(), "http/1.1");
  EXPECT_EQ(c.server->sni(), "localhost");
  EXPECT_FALSE(c.server->cipher().empty());
  echo(c, 1000);
}

TEST_F(Tls, ClientVerifiesAgainstTheSystemStoreByDefaultAndSaysWhy) {
  TlsError error;
  auto ctx = make_client_context(ClientTlsOptions{}, error);
  ASSERT_TRUE(error.ok) << error.message;
  Connected c = connect_pair(server_context(), ctx.get(), "localhost");
  ASSERT_TRUE(c.client && c.server);
  // The development CA is in no system store: the chain cannot be verified.
  EXPECT_EQ(handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get()).client, TlsIo::error);
  EXPECT_THAT(c.client->error_message(), HasSubstr("certificate verify failed"));
  EXPECT_THAT(c.client->error_message(), HasSubstr("unable to get local issuer certificate"));
}

TEST_F(Tls, ClientRefusesACertificateForAnotherHostAndSaysWhy) {
  TlsError error;
  ClientTlsOptions options;
  options.ca_file = path("ca.crt");
  auto ctx = make_client_context(options, error);
  ASSERT_TRUE(error.ok) << error.message;
  Connected c = connect_pair(server_context(), ctx.get(), "other.example");
  ASSERT_TRUE(c.client && c.server);
  EXPECT_EQ(handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get()).client, TlsIo::error);
  EXPECT_THAT(c.client->error_message(), HasSubstr("hostname mismatch"));
  // The same CA and the right name: accepted.
  Connected right = connect_pair(server_context(), ctx.get(), "localhost");
  EXPECT_EQ(handshake_pair(*right.client, right.fds.client.get(), *right.server, right.fds.server.get()).client,
            TlsIo::ok);
}

TEST_F(Tls, ClientOptionsAreCheckedWithAReason) {
  TlsError error;
  ClientTlsOptions options;
  options.ca_file = path("missing.crt");
  EXPECT_FALSE(make_client_context(options, error));
  EXPECT_THAT(error.message, HasSubstr("missing.crt"));
  options.ca_file.clear();
  options.alpn = {""};
  EXPECT_FALSE(make_client_context(options, error));
  EXPECT_THAT(error.message, HasSubstr("ALPN"));
}

TEST_F(Tls, ASessionOfOneConnectionResumesTheNext) {
  auto server_ctx = server_context();
  TlsError error;
  ClientTlsOptions options;
  options.ca_file = path("ca.crt");
  auto ctx = make_client_context(options, error);
  ASSERT_TRUE(error.ok) << error.message;
  Connected first = connect_pair(server_ctx, ctx.get(), "localhost");
  ASSERT_EQ(handshake_pair(*first.client, first.fds.client.get(), *first.server, first.fds.server.get()).client,
            TlsIo::ok);
  EXPECT_FALSE(first.client->resumed());
  echo(first, 100);  // TLS 1.3 tickets reach the client with the first records it reads
  TlsSession session(first.client->session());
  ASSERT_TRUE(session);

  Connected second{tcp_pair(), nullptr, nullptr};
  second.server = TlsStream::accept(server_ctx, second.fds.server.get(), error);
  second.client = TlsStream::connect(ctx.get(), second.fds.client.get(), "localhost", session.get(), error);
  ASSERT_TRUE(second.client && second.server) << error.message;
  ASSERT_EQ(handshake_pair(*second.client, second.fds.client.get(), *second.server, second.fds.server.get()).client,
            TlsIo::ok);
  EXPECT_TRUE(second.client->resumed());
  EXPECT_TRUE(second.server->resumed());
  echo(second, 100);

  // Another server (other ticket keys) cannot resume it: a full handshake, no failure.
  Connected third{tcp_pair(), nullptr, nullptr};
  third.server = TlsStream::accept(server_context(), third.fds.server.get(), error);
  third.client = TlsStream::connect(ctx.get(), third.fds.client.get(), "localhost", session.get(), error);
  ASSERT_EQ(handshake_pair(*third.client, third.fds.client.get(), *third.server, third.fds.server.get()).client,
            TlsIo::ok);
  EXPECT_FALSE(third.client->resumed());
}

TEST_F(Tls, HandshakesTls12WithEcdheAeadCipher) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.server, TlsIo::ok) << c.server->error_message();
  ASSERT_EQ(outcome.client, TlsIo::ok) << c.client->error_message();
  EXPECT_EQ(c.server->version(), "TLSv1.2");
  EXPECT_EQ(c.server->alpn(), "http/1.1");
  EXPECT_THAT(std::string(c.server->cipher()), HasSubstr("ECDHE"));
  EXPECT_THAT(std::string(c.server->cipher()), ::testing::AnyOf(HasSubstr("GCM"), HasSubstr("CHACHA20")));
  echo(c, 1000);
}

TEST_F(Tls, MinVersion13RefusesTls12Client) {
  TlsOptions options;
  options.min_version = "1.3";
  auto server_ctx = server_context(options);
  auto client_ctx = client_context();
  SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  EXPECT_EQ(outcome.server, TlsIo::error);
  EXPECT_THAT(c.server->error_message(), HasSubstr("protocol"));
}

TEST_F(Tls, ClientWithoutAlpnStillConnectsWithoutProtocol) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  SSL_CTX_set_alpn_protos(client_ctx.get(), nullptr, 0);
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.server, TlsIo::ok) << c.server->error_message();
  EXPECT_EQ(c.server->alpn(), "");
}

TEST_F(Tls, SniPicksTheMatchingCertificate) {
  TlsOptions options;
  options.certificates = {cert("localhost"), cert("wild")};
  auto server_ctx = server_context(options);
  auto verifying = client_context(true);
  struct Case {
    const char* sni;
    const char* expected_cn;
  };
  for (Case k : {Case{"api.example.test", "CN=*.example.test"}, Case{"localhost", "CN=localhost"}}) {
    auto c = connect_pair(server_ctx, verifying.get(), k.sni);
    auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
    ASSERT_EQ(outcome.client, TlsIo::ok) << k.sni << ": " << c.client->error_message();
    ASSERT_EQ(outcome.server, TlsIo::ok) << k.sni << ": " << c.server->error_message();
    EXPECT_THAT(peer_subject(*c.client), HasSubstr(k.expected_cn)) << k.sni;
    EXPECT_EQ(c.server->sni(), k.sni);
    EXPECT_EQ(c.server->alpn(), "http/1.1");  // the switched context negotiates ALPN too
    echo(c, 100);
  }
  // A name no certificate covers gets the default one, which a verifying client refuses.
  auto lax = client_context(false);
  auto c = connect_pair(server_ctx, lax.get(), "other.test");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.client, TlsIo::ok);
  EXPECT_THAT(peer_subject(*c.client), HasSubstr("CN=localhost"));
  auto strict = connect_pair(server_ctx, verifying.get(), "other.test");
  outcome = handshake_pair(*strict.client, strict.fds.client.get(), *strict.server, strict.fds.server.get());
  EXPECT_EQ(outcome.client, TlsIo::error);
  EXPECT_THAT(strict.client->error_message(), HasSubstr("certificate verify failed"));
}

// ---------------------------------------------------------------------------------------------- bulk data

TEST_F(Tls, Echoes16MiBBothWaysTls13) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.server, TlsIo::ok) << c.server->error_message();
  echo(c, 16u << 20);
}

TEST_F(Tls, Echoes16MiBBothWaysTls12OverUnixSocket) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
  auto c = connect_pair(server_ctx, client_ctx.get(), "localhost", /*tcp=*/false);
  auto outcome = handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get());
  ASSERT_EQ(outcome.server, TlsIo::ok) << c.server->error_message();
  echo(c, 16u << 20);
}

TEST_F(Tls, GathersSmallPiecesIntoFullRecords) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  // Let the server's session tickets arrive so the byte count below is only application records.
  char scratch[64];
  ::usleep(20000);
  EXPECT_EQ(c.client->read(scratch, sizeof scratch).status, TlsIo::want_read);
  // 1000 pieces of 2 bytes (a frame header's size) in one write: without gathering, 1000 records.
  std::string data = random_bytes(2000, 3);
  std::vector<iovec> iov;
  for (std::size_t i = 0; i < data.size(); i += 2) iov.push_back({data.data() + i, 2});
  TlsResult r = c.server->write(iov.data(), static_cast<int>(iov.size()));
  ASSERT_EQ(r.status, TlsIo::ok);
  ASSERT_EQ(r.bytes, data.size());
  ::usleep(20000);
  int queued = 0;
  ASSERT_EQ(::ioctl(c.fds.client.get(), FIONREAD, &queued), 0);
  // One TLS 1.3 record: 5 header + 2000 data + 1 content type + 16 tag.
  EXPECT_EQ(queued, 5 + 2000 + 1 + 16);
  std::string got(2000, '\0');
  std::size_t have = 0;
  while (have < got.size()) {
    TlsResult rr = c.client->read(got.data() + have, got.size() - have);
    ASSERT_EQ(rr.status, TlsIo::ok);
    have += rr.bytes;
  }
  EXPECT_EQ(got, data);
}

// The edge-triggered trap: one EPOLLIN edge, many records. OpenSSL's read-ahead takes them all from the kernel
// in one read(), so the kernel queue is empty and no further edge comes; only "read until want_read" gets
// every byte out.
TEST_F(Tls, ReadUntilWantReadDrainsRecordsBufferedByOneKernelRead) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());

  Fd ep(::epoll_create1(0));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, c.fds.server.get(), &ev), 0);
  epoll_event out[4];
  ::epoll_wait(ep.get(), out, 4, 0);  // consume any edge left by the handshake

  constexpr int kRecords = 300;
  std::string sent;
  for (int i = 0; i < kRecords; ++i) {
    std::string piece = "record" + std::to_string(1000 + i);  // 10 bytes, one record each
    ASSERT_EQ(c.client->write(piece.data(), piece.size()).status, TlsIo::ok);
    sent += piece;
  }
  ::usleep(50000);
  ASSERT_EQ(::epoll_wait(ep.get(), out, 4, 1000), 1);

  char small[4];
  TlsResult first = c.server->read(small, sizeof small);
  ASSERT_EQ(first.status, TlsIo::ok);
  std::string got(small, first.bytes);
  int queued = -1;
  ASSERT_EQ(::ioctl(c.fds.server.get(), FIONREAD, &queued), 0);
  EXPECT_EQ(queued, 0) << "read-ahead took every record from the kernel";
  EXPECT_EQ(c.server->pending(), 10 - first.bytes) << "the rest of the first record is decrypted and held";
  EXPECT_TRUE(c.server->has_buffered_input());
  EXPECT_EQ(::epoll_wait(ep.get(), out, 4, 0), 0) << "no new edge will announce the held records";

  // The rule: read until want_read (then pending() is 0), without waiting for another edge.
  char buf[7];
  for (int guard = 0; guard < 10 * kRecords; ++guard) {
    TlsResult r = c.server->read(buf, sizeof buf);
    if (r.status != TlsIo::ok) {
      EXPECT_EQ(r.status, TlsIo::want_read);
      break;
    }
    got.append(buf, r.bytes);
  }
  EXPECT_EQ(c.server->pending(), 0u);
  EXPECT_FALSE(c.server->has_buffered_input());
  EXPECT_EQ(got, sent);
}

// socket_drained() may end an edge's reading early only when the kernel queue is really empty and OpenSSL holds
// nothing: whatever the records and the reader's buffer size, reading until it says so gets every byte sent.
TEST_F(Tls, SocketDrainedOnlyWhenKernelQueueAndOpensslAreEmpty) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());

  // One small record, read whole: one short kernel read, nothing held.
  ASSERT_EQ(c.client->write("hello", 5).status, TlsIo::ok);
  ::usleep(20000);
  char buf[64 * 1024];
  TlsResult r = c.server->read(buf, sizeof buf);
  ASSERT_EQ(r.status, TlsIo::ok);
  EXPECT_EQ(std::string(buf, r.bytes), "hello");
  EXPECT_TRUE(c.server->socket_drained());
  EXPECT_EQ(c.server->read(buf, sizeof buf).status, TlsIo::want_read) << "drained means the next read finds nothing";

  // Many records and more bytes than one kernel read takes (OpenSSL's read-ahead buffer is about 16 KiB), read
  // through buffers of several sizes: not drained while anything is held or the last kernel read was full.
  const std::string sent = random_bytes(48 * 1024 + 77, 7);
  for (std::size_t size : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, sizeof buf}) {
    std::size_t offset = 0;
    while (offset < sent.size()) {
      const std::size_t piece = std::min<std::size_t>(3000, sent.size() - offset);  // several records
      TlsResult w = c.client->write(sent.data() + offset, piece);
      ASSERT_EQ(w.status, TlsIo::ok);
      offset += w.bytes;
    }
    ::usleep(20000);
    std::string got;
    bool held_once = false;
    for (int guard = 0; guard < 1000000; ++guard) {
      TlsResult rr = c.server->read(buf, size);
      ASSERT_EQ(rr.status, TlsIo::ok) << "reader of " << size << " B: drained was not reported before want_read";
      got.append(buf, rr.bytes);
      if (c.server->socket_drained()) break;
      held_once = true;
    }
    EXPECT_TRUE(held_once) << "reader of " << size << " B: 48 KiB cannot come in one read";
    int queued = -1;
    ASSERT_EQ(::ioctl(c.fds.server.get(), FIONREAD, &queued), 0);
    EXPECT_EQ(queued, 0) << "reader of " << size << " B";
    EXPECT_FALSE(c.server->has_buffered_input());
    EXPECT_TRUE(got == sent) << "reader of " << size << " B got " << got.size() << " of " << sent.size() << " bytes";
  }
}

// ------------------------------------------------------------------------------------ hostile transports

// Forwards bytes between two socket pairs, one byte per write() and per turn, so each side's OpenSSL sees
// the handshake and every record arrive a byte at a time.
struct ByteRelay {
  ByteRelay(int client_side, int server_side) : a(client_side), b(server_side) {}
  int a;  // faces the client
  int b;  // faces the server
  std::string a_to_b, b_to_a;
  bool a_eof = false, b_eof = false;
  std::size_t forwarded = 0;
  std::size_t limit = SIZE_MAX;  // client->server bytes to forward before cutting the server off

  void turn() {
    char ch;
    if (!a_eof && a_to_b.empty()) {
      ssize_t n = ::read(a, &ch, 1);
      if (n == 1) a_to_b.push_back(ch);
      else if (n == 0) a_eof = true;
    }
    if (!b_eof && b_to_a.empty()) {
      ssize_t n = ::read(b, &ch, 1);
      if (n == 1) b_to_a.push_back(ch);
      else if (n == 0) b_eof = true;
    }
    if (!a_to_b.empty() && forwarded < limit && ::write(b, a_to_b.data(), 1) == 1) {
      a_to_b.erase(0, 1);
      ++forwarded;
    }
    if (!b_to_a.empty() && ::write(a, b_to_a.data(), 1) == 1) b_to_a.erase(0, 1);
  }
};

TEST_F(Tls, SurvivesHandshakeAndRecordsArrivingOneByteAtATime) {
  for (bool tls12 : {false, true}) {
    auto client_ctx = client_context();
    if (tls12) SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
    auto [left, right, client, server] = relayed_streams(client_ctx.get());
    ByteRelay relay{left.server.get(), right.client.get()};
    Peer cp{client.get(), left.client.get(), "hello over a byte-wise link"};
    Peer sp{server.get(), right.server.get(), "and back, one byte at a time"};
    auto deadline = Clock::now() + std::chrono::seconds(30);
    TlsIo cs = TlsIo::want_write, ss = TlsIo::want_read;
    std::size_t turns = 0;
    while ((cp.in.size() < sp.out.size() || sp.in.size() < cp.out.size()) && Clock::now() < deadline) {
      if (cs != TlsIo::ok) cs = client->handshake().status;
      if (ss != TlsIo::ok) ss = server->handshake().status;
      ASSERT_NE(cs, TlsIo::error) << client->error_message();
      ASSERT_NE(ss, TlsIo::error) << server->error_message();
      if (cs == TlsIo::ok) cp.pump();
      if (ss == TlsIo::ok) sp.pump();
      relay.turn();
      ++turns;
    }
    EXPECT_EQ(cp.in, sp.out) << (tls12 ? "TLS 1.2" : "TLS 1.3");
    EXPECT_EQ(sp.in, cp.out) << (tls12 ? "TLS 1.2" : "TLS 1.3");
    EXPECT_GT(turns, 1000u) << "the relay really went byte by byte";
  }
}

TEST_F(Tls, ClientVanishingMidHandshakeEndsTheServerHandshake) {
  // Cut after 1, 100 and all bytes of the ClientHello (then the server writes to a closed peer).
  for (std::size_t cut : {std::size_t{1}, std::size_t{100}, SIZE_MAX}) {
    auto [left, right, client, server] = relayed_streams(client_context().get());
    ASSERT_EQ(client->handshake().status, TlsIo::want_read);  // ClientHello is out
    ByteRelay relay{left.server.get(), right.client.get()};
    relay.limit = cut;
    for (int i = 0; i < 4000; ++i) relay.turn();
    if (cut != SIZE_MAX) {
      EXPECT_EQ(relay.forwarded, cut);
    }
    right.client.reset();  // the client side goes away
    TlsIo status = TlsIo::want_read;
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while ((status == TlsIo::want_read || status == TlsIo::want_write) && Clock::now() < deadline) {
      status = server->handshake().status;
      pollfd p{right.server.get(), events_for(status), 0};
      if (status == TlsIo::want_read || status == TlsIo::want_write) ::poll(&p, 1, 50);
    }
    EXPECT_TRUE(status == TlsIo::closed || status == TlsIo::error) << "cut at " << cut;
    EXPECT_FALSE(server->handshake_done());
    server->shutdown();  // harmless after a failed handshake
  }
}

TEST_F(Tls, PlainHttpOrGarbageFailsTheHandshakeQuickly) {
  auto server_ctx = server_context();
  for (std::string input : {std::string("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n"),
                            random_bytes(64, 9), std::string(1, '\x16') + random_bytes(300, 11)}) {
    Pair p = tcp_pair();
    TlsError error;
    auto server = TlsStream::accept(server_ctx, p.server.get(), error);
    ASSERT_EQ(::write(p.client.get(), input.data(), input.size()), static_cast<ssize_t>(input.size()));
    auto start = Clock::now();
    TlsIo status = TlsIo::want_read;
    while ((status == TlsIo::want_read || status == TlsIo::want_write) &&
           Clock::now() - start < std::chrono::seconds(5)) {
      status = server->handshake().status;
      pollfd pf{p.server.get(), events_for(status), 0};
      if (status == TlsIo::want_read || status == TlsIo::want_write) {
        // A garbage "record header" can announce a body that never comes; the peer closing ends it.
        if (::poll(&pf, 1, 200) == 0) p.client.reset();
      }
    }
    EXPECT_TRUE(status == TlsIo::error || status == TlsIo::closed);
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
    if (input.starts_with("GET")) {
      EXPECT_EQ(status, TlsIo::error);
      EXPECT_THAT(server->error_message(), HasSubstr("http request"));
    }
  }
}

TEST_F(Tls, PeerCloseNotifyReadsAsClosed) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  c.client->shutdown();
  char buf[64];
  TlsResult r{TlsIo::want_read, 0};
  for (int i = 0; i < 100 && r.status == TlsIo::want_read; ++i) {
    r = c.server->read(buf, sizeof buf);
    pollfd pf{c.fds.server.get(), POLLIN, 0};
    if (r.status == TlsIo::want_read) ::poll(&pf, 1, 20);
  }
  EXPECT_EQ(r.status, TlsIo::closed);
}

TEST_F(Tls, WritingToAPeerThatIsGoneIsAnErrorNotASignal) {
  if (kernel_tls_available()) GTEST_SKIP() << "with kernel TLS, OpenSSL writes with write(2) itself";
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  const int fd = c.fds.client.get();
  c.server.reset();
  c.fds.server.reset();
  // With SIGPIPE at its default action the process would die in the second write if the socket BIO wrote without
  // MSG_NOSIGNAL.
  auto previous = ::signal(SIGPIPE, SIG_DFL);
  const std::string record(100, 'x');
  const TlsResult first = c.client->write(record.data(), record.size());  // reaches the closed socket: RST
  pollfd pf{fd, POLLIN, 0};
  ::poll(&pf, 1, 5000);
  // The RST's error, taken here as a read would have taken it: the socket is closed, the next send(2) meets EPIPE.
  int pending = 0;
  socklen_t len = sizeof pending;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &len);
  const TlsResult second = c.client->write(record.data(), record.size());
  ::signal(SIGPIPE, previous);
  EXPECT_EQ(first.status, TlsIo::ok);
  EXPECT_TRUE(pending == ECONNRESET || pending == EPIPE) << pending;  // the RST, after the peer's FIN or before
  EXPECT_EQ(second.status, TlsIo::error);
  EXPECT_NE(c.client->error_message().find("Broken pipe"), std::string::npos) << c.client->error_message();
}

// ------------------------------------------------------------------------------------- record buffers

// Heap bytes in use (the sanitizer's count under ASan, whose allocator mallinfo2 does not see).
long heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return static_cast<long>(__sanitizer_get_current_allocated_bytes());
#else
  return static_cast<long>(mallinfo2().uordblks);
#endif
}

// Reads on the server until `want` bytes arrived (bounded).
std::string read_exactly(TlsStream& tls, int fd, std::size_t want, std::size_t chunk = 4096) {
  std::string got;
  char buf[16384];
  for (int turns = 0; got.size() < want && turns < 200; ++turns) {
    TlsResult r = tls.read(buf, std::min(chunk, sizeof buf));
    if (r.status == TlsIo::ok) {
      got.append(buf, r.bytes);
      continue;
    }
    if (r.status != TlsIo::want_read && r.status != TlsIo::want_write) break;
    pollfd p{fd, events_for(r.status), 0};
    ::poll(&p, 1, 20);
  }
  return got;
}

TEST_F(Tls, ReleaseBuffersFreesRecordBuffersOfQuietStreamAndStreamKeepsWorking) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  ASSERT_TRUE(c.server->release_buffers()) << "after the handshake, as the server does after the upgrade";
  for (int round = 0; round < 3; ++round) {
    c.server->keep_buffers();  // busy, as the server makes a stream that moves data
    // A message each way: the server's read and write record buffers are allocated and, without
    // SSL_MODE_RELEASE_BUFFERS, stay allocated once the stream is quiet.
    const std::string ping = "ping " + std::to_string(round);
    ASSERT_EQ(c.client->write(ping.data(), ping.size()).status, TlsIo::ok);
    ASSERT_EQ(read_exactly(*c.server, c.fds.server.get(), ping.size()), ping);
    ASSERT_EQ(c.server->write("pong", 4).status, TlsIo::ok);
    ASSERT_EQ(read_exactly(*c.client, c.fds.client.get(), 4), "pong");
    char buf[64];
    ASSERT_EQ(c.server->read(buf, sizeof buf).status, TlsIo::want_read);  // the quiet state a server sees
    const long before = heap_in_use();
    EXPECT_TRUE(c.server->release_buffers());
    const long freed = before - heap_in_use();
    EXPECT_GE(freed, 2 * 16 * 1024) << "round " << round << ": the read and the write record buffers";
    const long again = heap_in_use();
    EXPECT_TRUE(c.server->release_buffers()) << "nothing held: nothing to refuse";
    EXPECT_EQ(heap_in_use(), again);
  }
}

TEST_F(Tls, AnErrorLeftOnTheThreadsQueueFailsNoStream) {
  // Another library on the server's thread leaves an error on OpenSSL's queue, as an application's callback may.
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  char buf[64];
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  EXPECT_EQ(c.server->read(buf, sizeof buf).status, TlsIo::want_read) << "nothing sent yet: it would block";
  // The server writes until the socket is full; the client reads nothing meanwhile.
  const std::string record(16384, 'x');
  TlsResult w{TlsIo::ok, 0};
  std::size_t written = 0;
  for (int i = 0; i < 4096 && w.status == TlsIo::ok; ++i) {
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    w = c.server->write(record.data(), record.size());
    written += w.bytes;
  }
  EXPECT_EQ(w.status, TlsIo::want_write) << c.server->error_message();
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  // Both ends work on: what was written arrives, and a message the other way is read.
  EXPECT_EQ(read_exactly(*c.client, c.fds.client.get(), 1024, 1024), std::string(1024, 'x'));
  ASSERT_EQ(c.client->write("ping", 4).status, TlsIo::ok);
  EXPECT_EQ(read_exactly(*c.server, c.fds.server.get(), 4), "ping");
  EXPECT_GT(written, 0u);
  ERR_clear_error();
}

TEST_F(Tls, ServerHoldsNoRecordBuffersBetweenHandshakeSteps) {
  // Within a step the server keeps its buffers (its flight is several records); between steps, while it waits for
  // the peer, a handshake must hold none: a server has many connections in their handshakes at once.
  Connected c = connect_pair(Tls::server_context(), Tls::client_context().get(), "localhost");
  ASSERT_TRUE(c.client && c.server);
  auto waiting = [](TlsIo st) { return st == TlsIo::want_read || st == TlsIo::want_write; };
  TlsIo cs = TlsIo::want_write, ss = TlsIo::want_read;
  int server_steps = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while ((waiting(cs) || waiting(ss)) && Clock::now() < deadline) {
    if (waiting(cs)) cs = c.client->handshake().status;
    pollfd p{c.fds.server.get(), POLLIN, 0};
    if (waiting(ss) && ::poll(&p, 1, 50) == 1) {
      ss = c.server->handshake().status;
      ++server_steps;
      const long before = heap_in_use();
      ASSERT_EQ(SSL_free_buffers(c.server->native()), 1) << "step " << server_steps;
      EXPECT_EQ(heap_in_use(), before) << "step " << server_steps << " left record buffers behind";
    }
  }
  ASSERT_EQ(ss, TlsIo::ok);
  ASSERT_EQ(cs, TlsIo::ok);
  EXPECT_GE(server_steps, 2) << "the ClientHello and the client's Finished";
  // And the stream works on from there.
  ASSERT_EQ(c.client->write("after", 5).status, TlsIo::ok);
  EXPECT_EQ(read_exactly(*c.server, c.fds.server.get(), 5), "after");
}

TEST_F(Tls, ReleaseBuffersRefusedWhileDecryptedOrBufferedInputIsPending) {
  auto c = established_pair();
  ASSERT_TRUE(c.server && c.server->handshake_done());
  // Two records in one kernel read: after the first byte of the first, decrypted bytes are pending; after the
  // whole first record, the second record still sits undecrypted in OpenSSL's read buffer.
  ASSERT_EQ(c.client->write("first record", 12).status, TlsIo::ok);
  ASSERT_EQ(c.client->write("second", 6).status, TlsIo::ok);
  ::usleep(20000);
  EXPECT_EQ(read_exactly(*c.server, c.fds.server.get(), 1, 1), "f");
  ASSERT_GT(c.server->pending(), 0u);
  EXPECT_FALSE(c.server->release_buffers()) << "decrypted bytes not yet read";
  EXPECT_EQ(read_exactly(*c.server, c.fds.server.get(), 11, 64), "irst record");
  if (c.server->has_buffered_input()) {
    EXPECT_FALSE(c.server->release_buffers()) << "a record not yet decrypted";
  }
  EXPECT_EQ(read_exactly(*c.server, c.fds.server.get(), 6, 64), "second") << "a refusal loses nothing";
  char buf[64];
  ASSERT_EQ(c.server->read(buf, sizeof buf).status, TlsIo::want_read);
  EXPECT_TRUE(c.server->release_buffers()) << "everything read: quiet again";
}

TEST_F(Tls, ReleaseBuffersRefusedWhileARecordIsHalfReceived) {
  auto [left, right, client, server] = relayed_streams(client_context().get());
  // Handshake through a relay that forwards everything at once.
  auto forward = [](int from, int to, std::size_t limit = SIZE_MAX) {
    char buf[65536];
    ssize_t n = ::read(from, buf, std::min(limit, sizeof buf));
    if (n > 0) {
      EXPECT_EQ(::write(to, buf, static_cast<std::size_t>(n)), n);
    }
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  };
  TlsIo cs = TlsIo::want_write, ss = TlsIo::want_read;
  for (int turn = 0; turn < 200 && (cs != TlsIo::ok || ss != TlsIo::ok); ++turn) {
    if (cs != TlsIo::ok) cs = client->handshake().status;
    if (ss != TlsIo::ok) ss = server->handshake().status;
    forward(left.server.get(), right.client.get());
    forward(right.client.get(), left.server.get());
  }
  ASSERT_EQ(ss, TlsIo::ok);
  ASSERT_EQ(cs, TlsIo::ok);
  char buf[64];
  ASSERT_EQ(server->read(buf, sizeof buf).status, TlsIo::want_read);
  ASSERT_TRUE(server->release_buffers());

  // The record's 5-byte header and 3 bytes of its body reach the server; the rest waits in the relay.
  ASSERT_EQ(client->write("half a record", 13).status, TlsIo::ok);
  ASSERT_EQ(forward(left.server.get(), right.client.get(), 8), 8u);
  EXPECT_EQ(server->read(buf, sizeof buf).status, TlsIo::want_read);
  EXPECT_FALSE(server->release_buffers()) << "the header was read, the body is on its way";
  forward(left.server.get(), right.client.get());
  TlsResult r = server->read(buf, sizeof buf);
  ASSERT_EQ(r.status, TlsIo::ok);
  EXPECT_EQ(std::string(buf, r.bytes), "half a record");
  EXPECT_TRUE(server->release_buffers());
}

// ------------------------------------------------------------------------------------- start-up errors

TEST_F(Tls, StartupErrorNamesMissingFile) {
  TlsOptions o;
  o.certificates = {{path("nope.crt"), path("localhost.key")}};
  std::string message = error_of(o);
  EXPECT_THAT(message, HasSubstr(path("nope.crt")));
  EXPECT_THAT(message, HasSubstr("No such file"));
}

TEST_F(Tls, StartupErrorNamesFileThatIsNotPem) {
  std::ofstream(path("junk.crt")) << "this is not a certificate\n";
  TlsOptions o;
  o.certificates = {{path("junk.crt"), path("localhost.key")}};
  std::string message = error_of(o);
  EXPECT_THAT(message, HasSubstr(path("junk.crt")));
  EXPECT_THAT(message, HasSubstr("not PEM"));
  std::ofstream(path("empty.crt")).flush();
  o.certificates = {{path("empty.crt"), path("localhost.key")}};
  EXPECT_THAT(error_of(o), HasSubstr("is empty"));
  o.certificates = {{path("localhost.key"), path("localhost.crt")}};
  EXPECT_THAT(error_of(o), HasSubstr("swapped"));
  o.certificates = {{path("localhost.crt"), path("junk.crt")}};
  message = error_of(o);
  EXPECT_THAT(message, HasSubstr("key_file '" + path("junk.crt")));
  EXPECT_THAT(message, HasSubstr("not PEM"));
}

TEST_F(Tls, StartupErrorGivesDatesOfExpiredCertificate) {
  TlsOptions o;
  o.certificates = {cert("expired")};
  std::string message = error_of(o);
  EXPECT_THAT(message, HasSubstr(path("expired.crt")));
  EXPECT_THAT(message, HasSubstr("expired"));
  EXPECT_THAT(message, HasSubstr("2020-01-01 00:00:00 UTC"));
  EXPECT_THAT(message, HasSubstr("2021-01-01 00:00:00 UTC"));
  o.certificates = {cert("future")};
  message = error_of(o);
  EXPECT_THAT(message, HasSubstr("not valid yet"));
  EXPECT_THAT(message, HasSubstr("2099-01-01"));
}

TEST_F(Tls, StartupErrorNamesKeyThatDoesNotMatchCertificate) {
  TlsOptions o;
  o.certificates = {{path("localhost.crt"), path("wild.key")}};
  std::string message = error_of(o);
  EXPECT_THAT(message, HasSubstr(path("wild.key")));
  EXPECT_THAT(message, HasSubstr(path("localhost.crt")));
  EXPECT_THAT(message, HasSubstr("does not match"));
}

TEST_F(Tls, StartupErrorForEncryptedKeyDoesNotPrompt) {
  std::string cmd = "openssl pkey -in '" + path("localhost.key") + "' -aes256 -passout pass:secret -out '" +
                    path("encrypted.key") + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  TlsOptions o;
  o.certificates = {{path("localhost.crt"), path("encrypted.key")}};
  EXPECT_THAT(error_of(o), HasSubstr("is encrypted"));
}

TEST_F(Tls, StartupErrorNamesBadSettings) {
  TlsOptions o;
  EXPECT_THAT(error_of(o), HasSubstr("at least one certificate"));
  o.certificates = {cert("localhost")};
  o.min_version = "1.1";
  EXPECT_THAT(error_of(o), HasSubstr("min_version '1.1'"));
  o.min_version = "1.2";
  o.ciphers = "NOT-A-CIPHER";
  EXPECT_THAT(error_of(o), HasSubstr("ciphers 'NOT-A-CIPHER'"));
  o.ciphers.clear();
  o.alpn = {""};
  EXPECT_THAT(error_of(o), HasSubstr("alpn"));
}

// ---------------------------------------------------------------------------------------------- reload

TEST_F(Tls, ReloadServesNewCertificateWhileOldConnectionKeepsWorking) {
  make_cert("--name reload");
  TlsOptions options;
  options.certificates = {cert("reload")};
  auto current = server_context(options);
  auto client_ctx = client_context();
  auto old_conn = connect_pair(current, client_ctx.get(), "localhost");
  ASSERT_EQ(handshake_pair(*old_conn.client, old_conn.fds.client.get(), *old_conn.server,
                           old_conn.fds.server.get()).server, TlsIo::ok);
  X509* old_cert = SSL_get1_peer_certificate(old_conn.client->native());

  make_cert("--name reload --force");  // the operator renews the certificate, then sends SIGHUP
  TlsError error;
  auto before = current;
  current = TlsContext::reload(current, error);
  ASSERT_TRUE(error.ok) << error.message;
  EXPECT_NE(current, before);
  before.reset();  // the server drops the old context; the old connection still holds it

  auto new_conn = connect_pair(current, client_ctx.get(), "localhost");
  ASSERT_EQ(handshake_pair(*new_conn.client, new_conn.fds.client.get(), *new_conn.server,
                           new_conn.fds.server.get()).server, TlsIo::ok);
  X509* new_cert = SSL_get1_peer_certificate(new_conn.client->native());
  EXPECT_NE(X509_cmp(old_cert, new_cert), 0) << "new connections get the renewed certificate";
  X509_free(old_cert);
  X509_free(new_cert);
  echo(old_conn, 100000);
  echo(new_conn, 100000);

  fs::remove(path("reload.key"));  // a broken renewal: the server keeps the working context
  auto kept = TlsContext::reload(current, error);
  EXPECT_FALSE(error.ok);
  EXPECT_EQ(kept, current);
  EXPECT_THAT(error.message, HasSubstr("reload failed"));
  EXPECT_THAT(error.message, HasSubstr(path("reload.key")));
}

// ------------------------------------------------------------------------------------------------ kTLS

// The probe must say what the kernel says: the "tls" ULP listed among the available ones (listed once loaded, and
// the probe itself loads it where the kernel may), and a connected TCP socket taking it.
TEST(KernelTls, ProbeAgreesWithTheKernel) {
  const bool available = kernel_tls_available();
  std::ifstream list("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string ulp;
  bool listed = false;
  bool readable = static_cast<bool>(list);
  while (list >> ulp) listed = listed || ulp == "tls";
  if (readable) {
    EXPECT_EQ(available, listed) << "tcp_available_ulp lists 'tls': " << listed;
  }

  Pair pair = tcp_pair();
  const bool attached = ::setsockopt(pair.client.get(), SOL_TCP, TCP_ULP, "tls", sizeof "tls") == 0;
  const int err = errno;
  EXPECT_EQ(available, attached) << "a connected socket's setsockopt(TCP_ULP, \"tls\"): "
                                 << (attached ? "attached" : std::strerror(err));
  std::printf("[ kTLS ] kernel_tls_available=%d\n", available);
}

// Without kernel TLS OpenSSL's attempt on each connection can only fail: the contexts do not ask for it then.
TEST_F(Tls, ContextsAskForKernelTlsOnlyWhenTheKernelHasIt) {
  const bool available = kernel_tls_available();
  auto server = server_context();
  auto client = client_context();
  ASSERT_TRUE(server && client);
  EXPECT_EQ((SSL_CTX_get_options(server->native_default()) & SSL_OP_ENABLE_KTLS) != 0, available);
  EXPECT_EQ((SSL_CTX_get_options(client.get()) & SSL_OP_ENABLE_KTLS) != 0, available);

  TlsOptions off;
  off.enable_ktls = false;
  auto without = server_context(off);
  ASSERT_TRUE(without);
  EXPECT_EQ(SSL_CTX_get_options(without->native_default()) & SSL_OP_ENABLE_KTLS, 0u);

  // Either way a connection works, and it uses kernel TLS only where the kernel has it.
  auto c = connect_pair(server, client.get(), "localhost");
  ASSERT_EQ(handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get()).server, TlsIo::ok);
  if (!available) {
    EXPECT_FALSE(c.server->ktls_send());
    EXPECT_FALSE(c.client->ktls_send());
  }
  echo(c, 64 * 1024);
}

TEST_F(Tls, KernelTlsIsUsedWhenAvailableAndNotNeeded) {
  for (bool tls12 : {true, false}) {
    auto server_ctx = server_context();
    auto client_ctx = client_context();
    if (tls12) SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
    auto c = connect_pair(server_ctx, client_ctx.get(), "localhost");
    ASSERT_EQ(handshake_pair(*c.client, c.fds.client.get(), *c.server, c.fds.server.get()).server, TlsIo::ok);
    std::printf("[ kTLS ] %s %s: server ktls_send=%d ktls_recv=%d\n", std::string(c.server->version()).c_str(),
                std::string(c.server->cipher()).c_str(), c.server->ktls_send(), c.server->ktls_recv());
    RecordProperty(tls12 ? "ktls_send_tls12" : "ktls_send_tls13", c.server->ktls_send() ? "yes" : "no");
    echo(c, 1u << 20);
  }
}

}  // namespace
}  // namespace edgews::net
