#include "net/resolver.hpp"

#include <netdb.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "net/reactor.hpp"

namespace edgews::net {

std::vector<Address> interleave_families(std::vector<Address> addresses) {
  if (addresses.empty()) return addresses;
  const int first = addresses.front().family();
  std::vector<Address> preferred, other;
  for (Address& a : addresses) (a.family() == first ? preferred : other).push_back(a);
  std::vector<Address> out;
  out.reserve(addresses.size());
  for (std::size_t i = 0; i < preferred.size() || i < other.size(); ++i) {
    if (i < preferred.size()) out.push_back(preferred[i]);
    if (i < other.size()) out.push_back(other[i]);
  }
  return out;
}

namespace {

Resolution lookup(const std::string& host, std::uint16_t port) {
  Resolution r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    r.error = {rc == EAI_SYSTEM ? errno : EHOSTUNREACH,
               "resolve " + host + ": " + (rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc))};
    return r;
  }
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    bool seen = false;  // getaddrinfo may list an address once per protocol or per hosts line
    for (const Address& b : r.addresses)
      seen = seen || (b.length == a.length && std::memcmp(&b.storage, &a.storage, a.length) == 0);
    if (!seen) r.addresses.push_back(a);
  }
  ::freeaddrinfo(list);
  if (r.addresses.empty()) r.error = {EHOSTUNREACH, "resolve " + host + ": no IPv4 or IPv6 address"};
  r.addresses = interleave_families(std::move(r.addresses));
  return r;
}

// Literals and localhost need no lookup (RFC 6761 6.3: localhost is the loopback, whatever DNS says).
bool answer_at_once(const std::string& host, std::uint16_t port, Resolution& r) {
  if (host == "localhost") {
    Address v6, v4;
    Error ignored;
    Address::parse("::1", port, v6, ignored);
    Address::parse("127.0.0.1", port, v4, ignored);
    r.addresses = {v6, v4};
    return true;
  }
  Address a;
  Error not_literal;
  if (host.empty() || !Address::parse(host, port, a, not_literal)) return false;
  r.addresses = {a};
  return true;
}

}  // namespace

struct Resolver::State {
  struct Request {
    Ticket ticket;
    Reactor* reactor;
    std::string host;
    std::uint16_t port;
    Callback callback;
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Request> queue;           // guarded by mutex
  std::unordered_set<Ticket> pending;  // asked, neither answered nor cancelled; guarded by mutex
  Ticket next_ticket = 1;
  bool stopping = false;
  std::thread thread;  // started by the first lookup that needs it

  // On the asking reactor's thread.
  static void deliver(const std::shared_ptr<State>& self, Ticket ticket, Callback& callback, Resolution result) {
    {
      std::lock_guard lock(self->mutex);
      if (self->stopping || self->pending.erase(ticket) == 0) return;  // cancelled, or the resolver is gone
    }
    callback(std::move(result));
  }

  void run(const std::shared_ptr<State>& self) {
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait(lock, [this] { return stopping || !queue.empty(); });
      if (stopping) return;
      Request request = std::move(queue.front());
      queue.pop_front();
      if (!pending.contains(request.ticket)) continue;  // cancelled while queued
      lock.unlock();
      Resolution result = lookup(request.host, request.port);
      lock.lock();
      // Posted under the lock: while the resolver is not stopping, the reactors it answers to exist.
      if (stopping) return;
      request.reactor->post(
          [self, ticket = request.ticket, callback = std::move(request.callback),
           result = std::move(result)]() mutable { deliver(self, ticket, callback, std::move(result)); });
    }
  }
};

Resolver::Resolver() : state_(std::make_shared<State>()) {}

Resolver::~Resolver() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  // A lookup may block for the system resolver's whole timeout: the thread is not waited for. It holds the state
  // alive, and once it sees `stopping` it touches nothing else.
  if (state_->thread.joinable()) state_->thread.detach();
}

Resolver::Ticket Resolver::resolve(Reactor& reactor, std::string host, std::uint16_t port, Callback callback) {
  Resolution immediate;
  const bool at_once = answer_at_once(host, port, immediate);
  std::lock_guard lock(state_->mutex);
  const Ticket ticket = state_->next_ticket++;
  state_->pending.insert(ticket);
  if (at_once) {
    reactor.post([self = state_, ticket, callback = std::move(callback), result = std::move(immediate)]() mutable {
      State::deliver(self, ticket, callback, std::move(result));
    });
    return ticket;
  }
  state_->queue.push_back({ticket, &reactor, std::move(host), port, std::move(callback)});
  if (!state_->thread.joinable()) {
    state_->thread = std::thread([self = state_.get(), keep = std::weak_ptr<State>(state_)] {
      if (auto alive = keep.lock()) self->run(alive);
    });
  }
  state_->wake.notify_one();
  return ticket;
}

void Resolver::cancel(Ticket ticket) {
  std::lock_guard lock(state_->mutex);
  state_->pending.erase(ticket);
}

}  // namespace edgews::net
