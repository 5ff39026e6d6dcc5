// A reconnecting subscriber: connects to an edgews (or any WebSocket) server, sends a subscription once each
// connection opens, prints what arrives, and keeps coming back with capped exponential backoff when the server
// goes away. Stops after SECONDS (default: run until killed; 0 too). For wss://, CA_FILE is the CA to trust
// instead of the system store (a development CA from tools/make-dev-cert.sh).
//
//   client ws://127.0.0.1:8080/feed [SECONDS]
//   client wss://localhost:8443/feed 0 certs/ca.crt
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/edgews.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: client ws[s]://HOST:PORT/PATH [SECONDS [CA_FILE]]\n");
    return 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0;
  edgews::ClientOptions options;
  options.url = argv[1];  // the host may be a name: it is resolved, and IPv6 and IPv4 addresses tried in turn
  if (argc > 3) options.tls.ca_file = argv[3];  // verification stays on; only the trusted CA changes
  ::signal(SIGPIPE, SIG_IGN);                   // OpenSSL writes with write(2)
  options.reconnect.initial = std::chrono::milliseconds(200);
  options.reconnect.max = std::chrono::milliseconds(10000);
  if (auto e = options.headers.add("User-Agent", "edgews-example-client")) {
    std::fprintf(stderr, "%s\n", e.message.c_str());
  }

  edgews::Client* self = nullptr;
  edgews::ClientCallbacks callbacks;
  callbacks.on_open = [&self](std::string_view) {
    std::printf("open\n");
    self->send_text("{\"subscribe\":\"ticks\"}");
  };
  callbacks.on_message = [](std::span<const std::uint8_t> data, bool) {
    std::printf("message: %.*s\n", static_cast<int>(data.size()), reinterpret_cast<const char*>(data.data()));
  };
  callbacks.on_close = [](std::uint16_t code, std::string_view reason, const edgews::Error& error) {
    std::printf("closed %u %.*s%s%s\n", code, static_cast<int>(reason.size()), reason.data(), error ? ": " : "",
                error.message.c_str());
  };
  callbacks.on_reconnecting = [](unsigned attempt, std::chrono::milliseconds delay, const edgews::Error&) {
    std::printf("reconnecting (attempt %u) in %lld ms\n", attempt, static_cast<long long>(delay.count()));
  };
  edgews::Client client(std::move(options), std::move(callbacks));
  self = &client;
  if (const edgews::Error e = client.start()) {
    std::fprintf(stderr, "client: %s\n", e.message.c_str());
    return 2;
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (seconds <= 0 || std::chrono::steady_clock::now() < end) {
    client.poll(std::chrono::milliseconds(100));
    std::fflush(stdout);
  }
  client.close();
  for (int i = 0; i < 50 && client.state() != edgews::ClientState::stopped; ++i) {
    client.poll(std::chrono::milliseconds(20));
  }
  return 0;
}
