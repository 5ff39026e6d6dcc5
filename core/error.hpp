// The one error type of the public API: a code to compare (Errc, with a stable name from errc_name) and a message
// for people (what was wrong and what to do). Success is Errc::none with an empty message: no allocation.
//
//   if (edgews::Error error = server->start()) {
//     if (error.code == edgews::Errc::listen_failed) ...;   // callers compare codes
//     log(error.message);                                    // users read messages
//   }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgews::core {

enum class Errc : std::uint8_t {
  none,
  // Server: configuration, start-up and operations.
  invalid_config,   // a setting is wrong (the message names it and says what to do)
  tls_config,       // a TLS certificate, key or setting (the message names the file or setting)
  header_refused,   // the checked header API refused a header (edgews writes it, ill-formed, or a duplicate)
  wrong_state,      // the call does not fit the server's state (start() twice, adopt() after start())
  system,           // a system call failed: sys_errno holds the errno
  listen_failed,    // a listener could not be bound (sys_errno: EADDRINUSE when another process holds the port)
  no_predecessor,   // adopt(): nobody listens at the hand-off path (the first start of a service)
  handoff_failed,   // the hand-off exchange with the other process failed (the message says at which step)
  // Client.
  bad_url,          // the URL is not a ws:// or wss:// URL (the message says what is wrong with it)
  unsupported,      // a valid URL this client cannot serve yet
  resolve_failed,   // the host name does not resolve (the message names the host and the resolver's answer)
  bad_request,      // the request writer refused an option (a subprotocol, the origin)
  refused,          // every address refused the connection (nothing listens on the port)
  unreachable,      // any other failure to connect (the errno is in the message)
  timeout,          // connecting, or the upgrade, took longer than its timeout
  http_status,      // the server answered the upgrade with another status (see http_status and the message)
  invalid_101,      // the 101 has a defect the response mode refuses (the message names it)
  protocol_error,   // the server broke RFC 6455 after the upgrade
  connection_lost,  // the TCP connection ended without a closing handshake
  tls_failed,            // wss://: the TLS setup (options.tls) or handshake failed (the message says why)
  certificate_rejected,  // wss://: the server's certificate did not verify (OpenSSL's reason in the message)
};

// A short stable name for a code ("listen_failed"), for logs, metrics labels and tests.
std::string_view errc_name(Errc code);

struct Error {
  Errc code = Errc::none;
  std::string message;  // says what happened and, where it can, what to do
  int http_status = 0;  // Errc::http_status: the status code; the message ends with the body's first line
  int sys_errno = 0;    // Errc::system, listen_failed: the errno when one caused the error

  explicit operator bool() const { return code != Errc::none; }
};

// What a call that makes something returns: the thing, or an empty one and the error. Read it with a structured
// binding:  auto [server, error] = edgews::Server::create(config, callbacks);
template <class T>
struct [[nodiscard]] Result {
  T value{};
  Error error;
};

}  // namespace edgews::core
