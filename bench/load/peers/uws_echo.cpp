// uWebSockets echo server for bench/load/peers.sh, built from the upstream sources kept in ../shared/peers (see
// bench/load/peers/CMakeLists.txt: uSockets and this file compiled with the flags of upstream's own build).
// Settings chosen to race edgews on the same work: per-message deflate off, a 16 MiB maxPayloadLength, no
// automatic pings and no idle timeout (edgews serve runs with --ping-interval 0 and has no idle timeout by
// default), and a 1 GiB maxBackpressure without closing, so that no echo is ever dropped. One thread, one loop.
//
// TLS mode (scenario (e)): uWS::SSLApp with the same settings as edgews' TLS: TLS 1.3 only, OpenSSL's default
// key exchange groups (the client's first choice, X25519 with OpenSSL 3), no server-side session cache and
// OpenSSL's stateless session tickets, renegotiation and compression off.
//
// Standalone, e.g. as the target of another benchmark:
//
//   build/release/bench/load/peers/uws_echo 9001                 (ws://127.0.0.1:9001/, any path)
//   build/release/bench/load/peers/uws_echo_tls 9443 --tls CERT KEY   (wss://; tools/make-dev-cert.sh makes both)
//
// Built with cmake -DEDGEWS_BUILD_PEERS=ON, target uws_echo (plain) or uws_echo_tls (TLS). It listens on
// 127.0.0.1 only; port 0 takes any free port. Prints "uws_echo: listening on port N" once listening; stops on
// SIGTERM/SIGINT (the default action). Exits 1 with a message when it cannot listen or load the certificate.
//
// usage: uws_echo [PORT]    uws_echo_tls [PORT] --tls CERT KEY
#include <App.h>

#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct PerSocket {};

template <bool kTls>
int run(int port, uWS::TemplatedApp<kTls>&& app) {
  if constexpr (kTls) {
    if (app.constructorFailed()) {
      std::fprintf(stderr, "uws_echo_tls: the certificate or key could not be loaded (PEM files expected)\n");
      return 1;
    }
    auto* ctx = static_cast<SSL_CTX*>(app.getNativeHandle());
    // uSockets sets TLS 1.2 as the minimum and keeps OpenSSL's server session cache; edgews runs TLS 1.3 here
    // with the cache off and stateless tickets, so this server does the same.
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  }
  typename uWS::TemplatedApp<kTls>::template WebSocketBehavior<PerSocket> behavior;
  behavior.compression = uWS::DISABLED;
  behavior.maxPayloadLength = 16 * 1024 * 1024;
  behavior.idleTimeout = 0;
  behavior.maxBackpressure = 1u << 30;
  behavior.closeOnBackpressureLimit = false;
  behavior.sendPingsAutomatically = false;
  behavior.message = [](uWS::WebSocket<kTls, true, PerSocket>* ws, std::string_view message, uWS::OpCode op) {
    ws->send(message, op);
  };
  bool listening = false;
  app.ws("/*", std::move(behavior)).listen("127.0.0.1", port, [&](us_listen_socket_t* socket) {
    if (!socket) return;
    listening = true;
    std::printf("uws_echo%s: listening on port %d\n", kTls ? "_tls" : "",
                us_socket_local_port(kTls, reinterpret_cast<us_socket_t*>(socket)));
    std::fflush(stdout);
  });
  if (!listening) {
    std::fprintf(stderr, "uws_echo: cannot listen on 127.0.0.1:%d (in use? try another port or 0)\n", port);
    return 1;
  }
  app.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int port = argc > 1 ? std::atoi(argv[1]) : 0;
#ifdef LIBUS_NO_SSL
  if (argc > 2) {
    std::fprintf(stderr, "usage: uws_echo [PORT]   (for wss:// use uws_echo_tls PORT --tls CERT KEY)\n");
    return 2;
  }
  return run<false>(port, uWS::App());
#else
  if (argc != 5 || std::strcmp(argv[2], "--tls") != 0) {
    std::fprintf(stderr, "usage: uws_echo_tls PORT --tls CERT KEY\n");
    return 2;
  }
  uWS::SocketContextOptions options{};
  options.cert_file_name = argv[3];
  options.key_file_name = argv[4];
  return run<true>(port, uWS::SSLApp(options));
#endif
}
