// Host names to addresses without blocking a reactor. getaddrinfo(3) blocks (DNS, /etc/hosts, nsswitch), so it
// runs on the resolver's own thread and each answer is posted back to the reactor that asked. Numeric literals and
// "localhost" are answered without the thread.
//
// Answers come in the order RFC 8305 4 asks of a client that connects: the first family getaddrinfo prefers,
// then the families alternating, so that a connector trying them in turn reaches an IPv4 address early even when
// a name has many IPv6 ones.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/error.hpp"
#include "net/socket.hpp"

namespace edgews::net {

class Reactor;

struct Resolution {
  std::vector<Address> addresses;  // never empty when error is not set
  Error error;                     // the name does not exist, no address, the resolver failed
};

// RFC 8305 4: alternate address families, starting with the family of the first address.
std::vector<Address> interleave_families(std::vector<Address> addresses);

class Resolver {
 public:
  using Callback = std::function<void(Resolution)>;
  using Ticket = std::uint64_t;

  Resolver();
  // Answers not yet delivered are dropped (their callbacks never run). Does not wait for a lookup in progress.
  // The reactors it answers to must outlive it.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Resolves `host` (a name, a numeric IPv4/IPv6 literal with or without brackets, or "localhost", which is
  // both ::1 and 127.0.0.1) for TCP `port`. `callback` runs later on `reactor`'s thread, never inside this call.
  // Any thread may call this.
  Ticket resolve(Reactor& reactor, std::string host, std::uint16_t port, Callback callback);
  // Reactor thread of the ticket: the callback will not run (a lookup in progress still finishes on the thread).
  void cancel(Ticket ticket);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace edgews::net
