// A small edgews server for the integration tests that need behaviour `edgews serve` does not have: it echoes,
// and obeys a few text commands from its clients.
//
//   "close CODE REASON"   closes this connection with CODE and REASON (server-initiated closing handshake)
//   "burst-all N SIZE"    sends N binary messages of SIZE bytes (the first 8 bytes: the sequence number, big
//                         endian) to every open connection, then raises SIGTERM in this process: the messages are
//                         queued before the signal, so a client must read all of them before the 1001 close
//
// Usage: integration_server [--port N] [--tls-port N --tls-cert FILE --tls-key FILE] [--log-level LEVEL]
// Prints "edgews: listening on port(s) N [M]" like `edgews serve`; SIGTERM/SIGINT shut it down gracefully.
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/edgews.hpp"
#include "net/signals.hpp"
#include "tools/announce.hpp"

namespace {

bool parse_number(std::string_view text, unsigned long& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Splits "a b c" at the first `count - 1` spaces.
std::vector<std::string_view> split(std::string_view text, std::size_t count) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < count) {
    const std::size_t space = text.find(' ');
    if (space == std::string_view::npos) break;
    parts.push_back(text.substr(0, space));
    text.remove_prefix(space + 1);
  }
  parts.push_back(text);
  return parts;
}

int usage(const char* problem) {
  std::fprintf(stderr, "integration_server: %s\n", problem);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  edgews::ServerConfig config;
  long port = 0, tls_port = -1;
  std::string tls_cert, tls_key;
  edgews::LogLevel level = edgews::LogLevel::warn;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return usage("every option takes a value");
    const char* value = argv[++i];
    if (arg == "--port") port = std::atol(value);
    else if (arg == "--tls-port") tls_port = std::atol(value);
    else if (arg == "--tls-cert") tls_cert = value;
    else if (arg == "--tls-key") tls_key = value;
    else if (arg == "--log-level") {
      if (!edgews::core::parse_log_level(value, level)) return usage("--log-level takes debug, info, warn, error, off");
    } else return usage("unknown option");
  }
  config.listeners = {edgews::ListenConfig{"127.0.0.1", static_cast<std::uint16_t>(port), false}};
  if (tls_port >= 0) {
    config.listeners.push_back(edgews::ListenConfig{"127.0.0.1", static_cast<std::uint16_t>(tls_port), true});
    config.tls.certificates.push_back({tls_cert, tls_key});
  }

  if (edgews::net::Error error = edgews::net::block_signals({SIGTERM, SIGINT})) {
    std::fprintf(stderr, "integration_server: %s\n", error.message.c_str());
    return 1;
  }

  // One reactor thread: every callback runs on it, so the set needs no lock, and a Connection* stays valid
  // from on_open to on_close.
  std::unordered_set<edgews::Connection*> open;
  edgews::Callbacks callbacks;
  callbacks.on_open = [&open](edgews::Connection& c) { open.insert(&c); };
  callbacks.on_close = [&open](edgews::Connection& c, std::uint16_t, std::string_view) { open.erase(&c); };
  callbacks.on_message = [&open](edgews::Connection& c, const edgews::Message& m) {
    const std::string_view text = m.text();
    if (m.opcode == edgews::Opcode::text && text.starts_with("close ")) {
      const auto parts = split(text, 3);
      unsigned long code = 0;
      if (parts.size() >= 2 && parse_number(parts[1], code)) {
        c.close(static_cast<std::uint16_t>(code), parts.size() == 3 ? parts[2] : std::string_view());
        return;
      }
    }
    if (m.opcode == edgews::Opcode::text && text.starts_with("burst-all ")) {
      const auto parts = split(text, 3);
      unsigned long count = 0, size = 0;
      if (parts.size() == 3 && parse_number(parts[1], count) && parse_number(parts[2], size) && size >= 8) {
        std::vector<std::uint8_t> payload(size, 0x5a);
        for (unsigned long i = 0; i < count; ++i) {
          for (int b = 0; b < 8; ++b) payload[b] = static_cast<std::uint8_t>(i >> (56 - 8 * b));
          for (edgews::Connection* connection : open) connection->send(payload, edgews::Opcode::binary);
        }
        ::kill(::getpid(), SIGTERM);
        return;
      }
    }
    c.send(m.data, m.opcode);
  };

  auto [server, error] = edgews::Server::create(std::move(config), std::move(callbacks),
                                                edgews::Logger(level, edgews::LogFormat::text));
  if (!server || (error = server->start())) {
    std::fprintf(stderr, "integration_server: %s\n", error.message.c_str());
    return 1;
  }
  edgews::net::Error signal_error;
  auto signals = edgews::net::SignalSet::create(
      *server->reactor(0), {SIGTERM, SIGINT}, [s = server.get()](int) { s->shutdown(); }, signal_error);
  if (!signals) {
    std::fprintf(stderr, "integration_server: %s\n", signal_error.message.c_str());
    return 1;
  }
  edgews::tools::announce_ports(*server);
  std::fflush(stdout);
  server->run();
  signals.reset();
  return 0;
}
