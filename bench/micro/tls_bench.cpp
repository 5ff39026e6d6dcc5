// TLS handshakes per second and bulk throughput over loopback TCP. Both ends run in this one thread, so a
// handshake figure is the cost of the server AND the client side together, and a bulk figure includes
// encrypting and decrypting. The raw TCP benchmark beside them is the baseline.
#include <benchmark/benchmark.h>
#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tls_support.hpp"

namespace edgews::bench {
namespace {

using net::TlsIo;

struct Certificates {
  std::string dir = temp_dir();
  bool ok = make_cert(dir, "ecdsa", "ec") && make_cert(dir, "rsa", "rsa");
  ~Certificates() { std::filesystem::remove_all(dir); }
};

const Certificates& certificates() {
  static Certificates certs;
  return certs;
}

std::shared_ptr<net::TlsContext> server_context(const std::string& stem, bool ktls) {
  const Certificates& c = certificates();
  net::TlsOptions options;
  options.certificates = {{c.dir + "/" + stem + ".crt", c.dir + "/" + stem + ".key"}};
  options.enable_ktls = ktls;
  net::TlsError error;
  auto ctx = net::TlsContext::create(options, error);
  if (!ctx) std::fprintf(stderr, "%s\n", error.message.c_str());
  return ctx;
}

// Args: 0 = ECDSA P-256, 1 = RSA-2048; 12 or 13 = TLS version. Full handshakes (no resumption).
void BM_TlsHandshake(benchmark::State& state) {
  ::signal(SIGPIPE, SIG_IGN);
  auto server_ctx = server_context(state.range(0) == 0 ? "ecdsa" : "rsa", false);
  net::TlsError error;
  auto client_ctx = net::make_client_context(certificates().dir + "/ca.crt", error);
  if (!server_ctx || !client_ctx) return state.SkipWithError("no TLS context");
  if (state.range(1) == 12) SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
  sockaddr_in addr;
  net::Fd listener = listen_loopback(addr);
  for (auto _ : state) {
    TcpPair pair = tcp_pair(listener.get(), addr);
    auto server = net::TlsStream::accept(server_ctx, pair.server.get(), error);
    auto client = net::TlsStream::connect(client_ctx.get(), pair.client.get(), "localhost", error);
    if (!handshake_pair(*client, pair.client.get(), *server, pair.server.get())) {
      return state.SkipWithError(server->error_message().c_str());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(std::string(state.range(0) == 0 ? "ECDSA P-256" : "RSA-2048") +
                 (state.range(1) == 12 ? " TLS 1.2" : " TLS 1.3") + ", server+client CPU");
}
BENCHMARK(BM_TlsHandshake)->Args({0, 13})->Args({1, 13})->Args({0, 12})->Args({1, 12})->UseRealTime();

// Server -> client, 256 KiB per iteration in 64 KiB writes. Arg: 1 = kTLS allowed, 0 = not.
void BM_TlsBulk(benchmark::State& state) {
  ::signal(SIGPIPE, SIG_IGN);
  auto server_ctx = server_context("ecdsa", state.range(0) == 1);
  net::TlsError error;
  auto client_ctx = net::make_client_context("", error);
  if (state.range(0) == 0) SSL_CTX_clear_options(client_ctx.get(), SSL_OP_ENABLE_KTLS);
  sockaddr_in addr;
  net::Fd listener = listen_loopback(addr);
  TcpPair pair = tcp_pair(listener.get(), addr);
  auto server = net::TlsStream::accept(server_ctx, pair.server.get(), error);
  auto client = net::TlsStream::connect(client_ctx.get(), pair.client.get(), "localhost", error);
  if (!handshake_pair(*client, pair.client.get(), *server, pair.server.get())) {
    return state.SkipWithError("handshake failed");
  }
  constexpr std::size_t kChunk = 64 << 10, kPerIteration = 256 << 10;
  std::vector<char> data(kChunk, 'x'), sink(kChunk);
  for (auto _ : state) {
    std::size_t sent = 0, received = 0;
    while (received < kPerIteration) {
      if (sent < kPerIteration) {
        net::TlsResult w = server->write(data.data(), std::min(kChunk, kPerIteration - sent));
        sent += w.bytes;
        if (w.status == TlsIo::error) return state.SkipWithError(server->error_message().c_str());
      }
      for (;;) {
        net::TlsResult r = client->read(sink.data(), sink.size());
        if (r.status != TlsIo::ok) break;
        received += r.bytes;
      }
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPerIteration));
  state.SetLabel(std::string(server->version()) + " " + std::string(server->cipher()) +
                 (server->ktls_send() ? ", kTLS send ACTIVE" : ", kTLS send inactive (user-space records)"));
}
BENCHMARK(BM_TlsBulk)->Arg(1)->Arg(0)->UseRealTime();

// Baseline: the same transfer over plain loopback TCP.
void BM_TcpBulk(benchmark::State& state) {
  sockaddr_in addr;
  net::Fd listener = listen_loopback(addr);
  TcpPair pair = tcp_pair(listener.get(), addr);
  constexpr std::size_t kChunk = 64 << 10, kPerIteration = 256 << 10;
  std::vector<char> data(kChunk, 'x'), sink(kChunk);
  for (auto _ : state) {
    std::size_t sent = 0, received = 0;
    while (received < kPerIteration) {
      if (sent < kPerIteration) {
        ssize_t w = ::write(pair.server.get(), data.data(), std::min(kChunk, kPerIteration - sent));
        if (w > 0) sent += static_cast<std::size_t>(w);
      }
      for (;;) {
        ssize_t r = ::read(pair.client.get(), sink.data(), sink.size());
        if (r <= 0) break;
        received += static_cast<std::size_t>(r);
      }
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPerIteration));
}
BENCHMARK(BM_TcpBulk)->UseRealTime();

}  // namespace
}  // namespace edgews::bench

BENCHMARK_MAIN();
