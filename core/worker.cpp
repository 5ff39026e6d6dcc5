#include "core/worker.hpp"
#include "core/connection_impl.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "codec/frame.hpp"
#include "codec/proxy_protocol.hpp"
#include "core/connection_extras.hpp"
#include "core/handoff.hpp"
#include "core/server_impl.hpp"
#include "core/transport.hpp"

namespace edgews::core {

Worker::Worker(ServerImpl& server, std::uint32_t index)
    : server_(server),
      index_(index),
      turn_hook_(&Worker::end_of_turn, this),
      cork_buffer_(new std::uint8_t[kCorkSize]),
      shutdown_timer_(&Worker::on_shutdown_timer, this),
      drain_timer_(&Worker::on_drain_timer, this),
      metrics_timer_(&Worker::on_metrics_timer, this),
      sweep_timer_(&Worker::on_quiet_sweep, this),
      memory_timer_(&Worker::on_memory_sweep, this),
      rate_timer_(&Worker::on_rate_timer, this) {
  header_storage_.resize(server.config().limits.max_request_headers);
  // zlib's own figures (core/config.hpp, DeflateConfig): a compressor unless one per thread serves all, and an
  // inflater (counted always: whether the client resets its window is known per connection only).
  const DeflateConfig& deflate = server.config().deflate;
  if (deflate.enabled) {
    if (!(deflate.server_no_context_takeover && deflate.shared_compressor)) {
      deflate_estimate_ += (std::size_t{1} << (deflate.server_max_window_bits + 2)) +
                           (std::size_t{1} << (static_cast<unsigned>(deflate.mem_level) + 9)) + 6 * 1024;
    }
    deflate_estimate_ += (std::size_t{1} << deflate.client_max_window_bits) + 7 * 1024;
  }
}

Worker::~Worker() {
  join();
  for (Slot& slot : slots_) delete slot.connection;
  for (ConnectionImpl* connection : graveyard_) delete connection;
  for (ConnectionImpl* connection : dead_) delete connection;
}

net::Error Worker::open(std::unique_ptr<net::Reactor> reactor) {
  reactor_ = std::move(reactor);
  return {};
}

net::Error Worker::listen() {
  const ServerConfig& config = server_.config();
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenConfig& listen = config.listeners[i];
    std::uint16_t port = listen.port;
    // Port 0 means "any free port": reactor 0 picks it, the others share it through SO_REUSEPORT.
    if (port == 0 && index_ != 0) port = server_.workers_[0]->listeners_[i]->port();
    const AcceptMode mode{listen.tls, listen.proxy_protocol, false};
    auto accept = [this, mode](net::Fd fd, const net::Address& peer) { on_accept(std::move(fd), peer, mode); };
    net::Error error;
    std::unique_ptr<net::Listener> listener;
    // Sockets taken over from a predecessor (Server::adopt): this worker takes every threads-th one, the first as
    // its listener, the others appended below (their accept queues hold clients too).
    const std::vector<int> inherited = i < server_.inherited_listeners_.size() ? server_.inherited_listeners_[i]
                                                                                : std::vector<int>();
    const std::size_t threads = server_.config().threads;
    if (index_ < inherited.size()) {
      listener = net::Listener::adopt(*reactor_, net::Fd(inherited[index_]), accept, error);
      for (std::size_t j = index_ + threads; listener && j < inherited.size(); j += threads) {
        auto extra = net::Listener::adopt(*reactor_, net::Fd(inherited[j]), accept, error);
        if (!extra) return error;
        extra_listeners_.push_back(std::move(extra));
      }
    } else if (listen.fd >= 0) {
      listener = adopt_listener(listen.fd, std::move(accept), error);
    } else {
      net::Address address;
      if (!net::Address::parse(listen.host, port, address, error)) return error;
      net::ListenOptions options;
      options.reuse_port = true;
      listener = net::Listener::open(*reactor_, address, options, std::move(accept), error);
    }
    if (!listener) return error;
    listeners_.push_back(std::move(listener));
  }
  if (index_ == 0 && config.admin_listener.enabled) {
    // One admin socket, on reactor 0: scrapes are rare and read every thread's counters from there.
    auto accept = [this](net::Fd fd, const net::Address& peer) {
      on_accept(std::move(fd), peer, AcceptMode{false, false, true});
    };
    net::Error error;
    if (config.admin_listener.fd >= 0) {
      admin_listener_ = adopt_listener(config.admin_listener.fd, std::move(accept), error);
    } else {
      net::Address address;
      if (!net::Address::parse(config.admin_listener.host, config.admin_listener.port, address, error)) {
        error.message = "admin_listener: " + error.message;
        return error;
      }
      net::ListenOptions options;
      options.reuse_port = false;
      admin_listener_ = net::Listener::open(*reactor_, address, options, std::move(accept), error);
    }
    if (!admin_listener_) {
      error.message = "admin_listener: " + error.message;
      return error;
    }
  }
  if (server_.metrics_enabled()) reactor_->timers().schedule(metrics_timer_, kMetricsPeriodMs);
  return {};
}

std::unique_ptr<net::Listener> Worker::adopt_listener(int fd, net::Listener::AcceptCallback accept,
                                                      net::Error& error) {
  net::Fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) {
    error = net::system_error(errno, "duplicating the inherited listener (descriptor " + std::to_string(fd) + ")");
    return nullptr;
  }
  return net::Listener::adopt(*reactor_, std::move(copy), std::move(accept), error);
}

std::uint16_t Worker::admin_port() const { return admin_listener_ ? admin_listener_->port() : 0; }

namespace {

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

void Worker::on_metrics_timer(net::Timer&, void* context) {
  auto* self = static_cast<Worker*>(context);
  if (self->shutting_down_) return;
  // Loop lag: a task posted now runs after the rest of this turn, the next epoll_wait and the next batch; the wait
  // is what any ready event waits. Cheaper and finer than a timer's lateness (the wheel ticks every 16 ms).
  const std::uint64_t posted = monotonic_ns();
  self->reactor_->post([self, posted] { self->counters_.loop_lag.observe(monotonic_ns() - posted); });
  if (++self->metrics_ticks_ % kQueueSampleEvery == 0) {
    std::uint64_t queued = 0;
    for (const Slot& slot : self->slots_) {
      if (slot.connection != nullptr) queued += slot.connection->buffered_amount();
    }
    self->counters_.queued_bytes.store(queued, std::memory_order_relaxed);
    std::uint64_t shed = 0;
    for (const auto& listener : self->listeners_) shed += listener->shed_count();
    self->counters_.listener_shed.store(shed, std::memory_order_relaxed);
  }
  self->reactor_->timers().schedule(self->metrics_timer_, kMetricsPeriodMs);
}

void Worker::start_thread() {
  thread_ = std::thread([this] { run(); });
}

void Worker::run() {
  reactor_->run();
  report_finished();
}

void Worker::report_finished() {
  if (!finish_reported_.exchange(true)) server_.worker_finished();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

std::vector<std::uint16_t> Worker::ports() const {
  std::vector<std::uint16_t> ports;
  for (const auto& listener : listeners_) ports.push_back(listener->port());
  return ports;
}

void Worker::on_accept(net::Fd fd, const net::Address& peer, AcceptMode mode) {
  const Limits& limits = server_.config().limits;
  if (shutting_down_ || server_.connection_count_.load(std::memory_order_relaxed) >= limits.max_connections) {
    counters_.bump_shed();
    server_.logger().log(LogLevel::warn, "shed", "peer=%s: over max_connections=%zu, closed at once",
                         peer.to_string().c_str(), limits.max_connections);
    return;  // fd closes here
  }
  PeerAddress address;
  std::memcpy(&address.addr, peer.data(), std::min<std::size_t>(peer.length, sizeof address.addr));
  // Per-address connections: counted here unless a PROXY header is still to name the client (counted once read).
  AddressCount count = AddressCount::exempt;
  if (!mode.admin && !mode.proxy_protocol && (count = count_address(address)) == AddressCount::refused) {
    return;  // fd closes here: no read, no timer, no TLS handshake for an address that holds its share already
  }
  ConnectionImpl* connection = take_slot(std::move(fd), address);
  if (count == AddressCount::counted) connection->admission_ = ConnectionImpl::Admission::peer;
  counters_.bump_accepted();
  connection->stage_ = ConnectionImpl::first_stage(mode.tls, mode.proxy_protocol, mode.admin);
  if (mode.proxy_protocol) {
    // The PROXY header comes first, in clear, even on a TLS listener: TLS starts once it is read.
    connection->extras().proxy = std::make_unique<codec::ProxyHeaderParser>();
  } else if (mode.tls) {
    if (net::Error error = attach_tls(*connection)) {
      server_.logger().log(LogLevel::warn, "tls", "peer=%s: %s", address.to_string().c_str(), error.message.c_str());
      connection->destroy(1006, "tls setup failed");
      return;
    }
  }
  if (net::Error error = reactor_->add(connection->fd_, connection, ConnectionImpl::kEvents)) {
    server_.logger().log(LogLevel::error, "accept", "peer=%s: %s", address.to_string().c_str(),
                         error.message.c_str());
    connection->destroy(1006, "reactor registration failed");
    return;
  }
  connection->arm_stage();
}

ConnectionImpl* Worker::take_slot(net::Fd fd, const PeerAddress& peer) {
  std::uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back({});
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  auto* connection = new ConnectionImpl(*this, fd.release(), peer, slot, slots_[slot].generation);
  slots_[slot].connection = connection;
  ++live_;
  server_.connection_count_.fetch_add(1, std::memory_order_relaxed);
  return connection;
}

Worker::AddressCount Worker::count_address(const PeerAddress& peer) {
  AddressTable& table = *server_.addresses_;
  if (!table.limits_connections()) return AddressCount::exempt;
  if (server_.trusted_proxies_.contains(peer)) return AddressCount::exempt;
  if (table.acquire_connection(AddressKey::of(peer), reactor_->now_ms())) return AddressCount::counted;
  admission_limited(AdmissionEvent::address_connections_refused, peer, "over limits.max_connections_per_address");
  return AddressCount::refused;
}

void Worker::uncount_address(const PeerAddress& address) {
  server_.addresses_->release_connection(AddressKey::of(address), reactor_->now_ms());
}

void Worker::admission_limited(AdmissionEvent event, const PeerAddress& address, const char* what) {
  counters_.bump_admission(event);
  const Logger& logger = server_.logger();
  if (!logger.enabled(LogLevel::info)) return;
  std::uint64_t suppressed = 0;
  if (!admission_log_[static_cast<std::size_t>(event)].allow(reactor_->now_ms(), suppressed)) return;
  static constexpr const char* kNames[kAdmissionEvents] = {
      "limit=address_connections action=refuse", "limit=handshake_rate action=refuse",
      "limit=message_rate action=close", "limit=byte_rate action=close",
      "limit=message_rate action=pause", "limit=byte_rate action=pause"};
  logger.log(LogLevel::info, "limited", "client=%s %s: %s (%llu more like it since the previous line)",
             address.to_string().c_str(), kNames[static_cast<std::size_t>(event)], what,
             static_cast<unsigned long long>(suppressed));
}

void Worker::hold_for_rate(ConnectionImpl& connection) {
  rate_held_.push_back({connection.slot_, connection.generation_});
  const std::uint64_t due = reactor_->now_ms() + std::max<std::uint64_t>(rate_wait_ms(connection), 1);
  if (!rate_timer_.scheduled() || due < rate_timer_due_ms_) {
    rate_timer_due_ms_ = due;
    reactor_->timers().schedule(rate_timer_, due - reactor_->now_ms());
  }
}

std::uint64_t Worker::rate_wait_ms(ConnectionImpl& connection) {
  const Limits& limits = server_.config().limits;
  ReceiveRate& rate = receive_rate(connection.slot_);
  const std::uint64_t now = reactor_->now_ms();
  std::uint64_t wait = 0;
  if (limits.message_rate != 0) wait = rate.messages.debt_ms(limits.message_rate, limits.message_burst, now);
  if (limits.byte_rate != 0) wait = std::max(wait, rate.bytes.debt_ms(limits.byte_rate, limits.byte_burst, now));
  return wait;
}

void Worker::on_rate_timer(net::Timer&, void* context) {
  auto* self = static_cast<Worker*>(context);
  constexpr auto kRate = static_cast<std::uint8_t>(ReadHold::rate);
  std::uint64_t next = UINT64_MAX;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < self->rate_held_.size(); ++i) {
    const SlotRef ref = self->rate_held_[i];
    ConnectionImpl* connection = self->find({self->index_, ref.slot, ref.generation});
    if (connection == nullptr || (connection->read_holds_ & kRate) == 0) continue;  // closed, or released by a close
    if (const std::uint64_t wait = self->rate_wait_ms(*connection); wait != 0) {
      next = std::min(next, wait);
      self->rate_held_[kept++] = ref;
      continue;
    }
    connection->release_reading(ReadHold::rate);
  }
  self->rate_held_.resize(kept);
  if (next != UINT64_MAX) {
    self->rate_timer_due_ms_ = self->reactor_->now_ms() + next;
    self->reactor_->timers().schedule(self->rate_timer_, next);
  }
}

ConnectionImpl* Worker::find(ConnectionHandle handle) const {
  if (handle.worker != index_ || handle.slot >= slots_.size()) return nullptr;
  const Slot& slot = slots_[handle.slot];
  if (slot.generation != handle.generation || slot.connection == nullptr) return nullptr;
  return slot.connection;
}

void Worker::release(ConnectionImpl& connection) {
  Slot& slot = slots_[connection.slot_];
  slot.connection = nullptr;
  ++slot.generation;  // every handle to the old connection now fails to resolve
  free_slots_.push_back(connection.slot_);
  --live_;
  server_.connection_count_.fetch_sub(1, std::memory_order_relaxed);
  graveyard_.push_back(&connection);  // freed after this turn: events of this batch may still name it
  reactor_->defer(turn_hook_);
}

void Worker::schedule_flush(ConnectionImpl& connection) {
  dirty_.push_back(&connection);
  reactor_->defer(turn_hook_);
}

void Worker::read_later(ConnectionImpl& connection) {
  read_later_.push_back({connection.slot_, connection.generation_});
  reactor_->defer(turn_hook_);
}

void Worker::count_holds(std::uint8_t before, std::uint8_t after) {
  constexpr std::uint8_t kPaused = static_cast<std::uint8_t>(ReadHold::user) |
                                   static_cast<std::uint8_t>(ReadHold::handoff);
  constexpr std::uint8_t kThrottled = static_cast<std::uint8_t>(ReadHold::backpressure) |
                                      static_cast<std::uint8_t>(ReadHold::rate) |
                                      static_cast<std::uint8_t>(ReadHold::memory);
  const auto follow = [](std::atomic<std::uint64_t>& gauge, bool was, bool is) {
    if (was != is) gauge.store(gauge.load(std::memory_order_relaxed) + (is ? 1 : -1), std::memory_order_relaxed);
  };
  follow(counters_.paused, (before & kPaused) != 0, (after & kPaused) != 0);
  follow(counters_.throttled, (before & kThrottled) != 0, (after & kThrottled) != 0);
}

// Once per turn: one flush per connection that queued data, then free the connections that died before this
// hook started. One that dies during it waits for the next turn's hook: it may sit in the next dirty list.
void Worker::end_of_turn(net::EndOfTurnHook&, void* context) {
  auto* self = static_cast<Worker*>(context);
  self->dead_.swap(self->graveyard_);
  self->flushing_.swap(self->dirty_);
  for (ConnectionImpl* connection : self->flushing_) connection->flush_due();  // nothing for a dead connection
  self->flushing_.clear();
  // Reads after the flushes: a connection released by its drain reads in the same turn. One asked for during these
  // reads (a yield, a hold released inside them) waits for the next turn, so that others are served in between.
  self->reading_.swap(self->read_later_);
  self->handshake_steps_ = 0;
  for (const SlotRef ref : self->reading_) {
    if (ConnectionImpl* connection = self->find({self->index_, ref.slot, ref.generation})) connection->read_again();
  }
  self->reading_.clear();
  self->handshake_steps_ = 0;  // the next dispatch has its own share
  // After the flushes: the 101 is out (or queued, then the connection stays busy and is listed).
  for (std::size_t i = 0; i < self->settling_.size(); ++i) self->release_settled_tls(*self->settling_[i]);
  self->settling_.clear();
  for (ConnectionImpl* connection : self->dead_) {
    self->note_freed(connection->reader_.buffered_bytes());
    delete connection;
  }
  self->dead_.clear();
  if (self->shutting_down_ && self->live_ == 0 && self->graveyard_.empty()) self->finish_shutdown();
}

// ---------------------------------------------------------------------------------------------------------------
// Corking

bool Worker::cork_append(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  const std::size_t len = header.size() + payload.size();
  if (kCorkSize - cork_used_ < len) return false;
  if (!header.empty()) std::memcpy(cork_buffer_.get() + cork_used_, header.data(), header.size());
  if (!payload.empty()) std::memcpy(cork_buffer_.get() + cork_used_ + header.size(), payload.data(), payload.size());
  cork_used_ += len;
  return true;
}

void Worker::move_cork_to(OutQueue& queue) {
  if (cork_used_ == 0) return;
  queue.append({cork_buffer_.get(), cork_used_});
  cork_used_ = 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Giving memory back. A busy connection keeps what it uses (TLS record buffers, a small receive buffer) so that
// it does not allocate per message; once it has moved no byte for a whole sweep period, the sweep takes it back.
// The sweep walks only the listed connections, and runs only while some are listed or a trim is due.

namespace {
// What TlsStream::release_buffers() frees from a busy stream, about (net/tls.hpp).
constexpr std::size_t kTlsRecordBuffersBytes = 2 * 17 * 1024;
}  // namespace

void Worker::list_for_sweep(ConnectionImpl& connection) {
  if (connection.sweep_listed_) return;
  connection.sweep_listed_ = true;
  holders_.push_back({connection.slot_, connection.generation_, kNotSampled});
  schedule_sweep();
}

void Worker::schedule_sweep() {
  if (!sweep_timer_.scheduled() && !shutting_down_) reactor_->timers().schedule(sweep_timer_, kSweepPeriodMs);
}

void Worker::on_quiet_sweep(net::Timer&, void* context) {
  auto* self = static_cast<Worker*>(context);
  std::size_t kept = 0;
  for (Holder holder : self->holders_) {
    ConnectionImpl* connection = self->find({self->index_, holder.slot, holder.generation});
    if (connection == nullptr) continue;  // closed: its memory went with it
    // Quiet since the previous sweep (so for at least one period): release. What is still needed (a TLS record
    // half received, bytes not yet sent, a message partly received) keeps it listed for the next sweep.
    const std::uint64_t activity = connection->activity();
    if (activity == holder.activity && self->release_quiet(*connection)) {
      connection->sweep_listed_ = false;
      continue;
    }
    holder.activity = activity;
    self->holders_[kept++] = holder;
  }
  self->holders_.resize(kept);
  self->trim_after_spike();
  // Nothing listed and no trim due: no timer, and an idle server does not wake up for this.
  if (kept != 0 || self->freed_untrimmed_ >= kTrimAfterFreed) self->schedule_sweep();
}

// True when the connection holds nothing more to give back.
bool Worker::release_quiet(ConnectionImpl& connection) {
  bool released = true;
  if (connection.tls_ && !connection.tls_released_) {
    released = release_tls_buffers(connection);
    if (released) note_freed(kTlsRecordBuffersBytes);
  }
  codec::MessageReader& reader = connection.reader_;
  if (reader.holds_memory()) {
    const std::size_t held = reader.buffered_bytes();
    reader.release_memory();
    note_freed(held - reader.buffered_bytes());
    released = released && !reader.holds_memory();
  }
  return released;
}

// glibc returns a freed block to the system only when it was mmapped (large, and only until its dynamic mmap
// threshold has grown past such sizes) or sits at the top of the heap; buffers freed in the middle of the heap stay
// resident. After a spike (many large messages, long queues, busy TLS connections) that is most of it, so once a
// whole sweep period passed without further frees, malloc_trim(0) gives the free pages back (madvise). Not while
// frees go on: malloc reuses that memory anyway, and each trim walks every free chunk.
void Worker::trim_after_spike() {
  if (freed_untrimmed_ < kTrimAfterFreed) return;
  if (freed_untrimmed_ != freed_at_sweep_) {
    freed_at_sweep_ = freed_untrimmed_;
    return;
  }
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  freed_untrimmed_ = freed_at_sweep_ = 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Topics and broadcast

bool Worker::subscribe(ConnectionImpl& connection, std::string_view topic) {
  auto& mine = connection.extras().topics;
  if (std::find(mine.begin(), mine.end(), topic) != mine.end()) return false;
  mine.emplace_back(topic);
  auto [it, first] = topics_.try_emplace(std::string(topic));
  it->second.push_back(&connection);
  if (first) server_.topic_interest(topic, true);
  return true;
}

void Worker::remove_subscriber(const std::string& topic, ConnectionImpl& connection) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return;
  auto& subscribers = it->second;
  auto pos = std::find(subscribers.begin(), subscribers.end(), &connection);
  if (pos != subscribers.end()) {
    *pos = subscribers.back();
    subscribers.pop_back();
  }
  if (subscribers.empty()) {
    topics_.erase(it);
    server_.topic_interest(topic, false);
  }
}

bool Worker::unsubscribe(ConnectionImpl& connection, std::string_view topic) {
  if (!connection.extras_) return false;
  auto& mine = connection.extras_->topics;
  auto it = std::find(mine.begin(), mine.end(), topic);
  if (it == mine.end()) return false;
  remove_subscriber(*it, connection);
  mine.erase(it);
  if (mine.empty()) {
    mine.shrink_to_fit();
    connection.trim_extras();
  }
  return true;
}

void Worker::unsubscribe_all(ConnectionImpl& connection) {
  if (!connection.extras_) return;
  std::vector<std::string>& mine = connection.extras_->topics;
  for (const std::string& topic : mine) remove_subscriber(topic, connection);
  std::vector<std::string>().swap(mine);
}

Chunk* Worker::build_frame(std::span<const std::uint8_t> payload, Opcode opcode) {
  std::uint8_t header[codec::kMaxFrameHeaderSize];
  const std::size_t header_len = codec::write_frame_header(header, opcode, payload.size());
  Chunk* chunk = Chunk::create(header_len + payload.size());
  chunk->append(header, header_len);
  chunk->append(payload.data(), payload.size());
  return chunk;
}

void Worker::publish_local(std::string_view topic, std::span<const std::uint8_t> payload, Opcode opcode) {
  auto it = topics_.find(std::string(topic));
  if (it == topics_.end()) return;
  // A subscriber may close while we deliver (backpressure, write error) and leave the topic: walk a copy.
  // Connections are freed only at the end of the turn, so the pointers stay valid. The copy is taken out of
  // fanout_ (keeping its capacity) because a close runs on_close, which may publish again: a nested publish
  // then fills a list of its own instead of reallocating the one this loop walks.
  std::vector<ConnectionImpl*> targets;
  targets.swap(fanout_);
  targets.assign(it->second.begin(), it->second.end());
  Chunk* frame = build_frame(payload, opcode);
  for (ConnectionImpl* connection : targets) connection->queue_shared(frame);
  frame->release();
  targets.clear();
  if (targets.capacity() > fanout_.capacity()) fanout_.swap(targets);
}

void Worker::broadcast_local(std::span<const std::uint8_t> payload, Opcode opcode) {
  if (live_ == 0) return;
  Chunk* frame = build_frame(payload, opcode);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (ConnectionImpl* connection = slots_[i].connection) connection->queue_shared(frame);
  }
  frame->release();
}

// ---------------------------------------------------------------------------------------------------------------
// Shutdown

void Worker::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  listeners_.clear();  // stop accepting
  extra_listeners_.clear();
  admin_listener_.reset();
  metrics_timer_.cancel();
  sweep_timer_.cancel();
  memory_timer_.cancel();
  rate_timer_.cancel();  // closing releases every hold
  drain_timer_.cancel();
  std::vector<DrainClose>().swap(drain_closes_);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    ConnectionImpl* connection = slots_[i].connection;
    // Offered to a successor: its socket is not ours to write until the answer (core/handoff_worker.cpp).
    if (connection == nullptr || connection->handoff_offered_) continue;
    if (connection->state_ == ConnectionImpl::State::open) {
      connection->close(static_cast<std::uint16_t>(CloseCode::going_away), "server shutting down");
    } else if (connection->state_ == ConnectionImpl::State::handshake) {
      connection->destroy(1006, "server shutting down");
    }
  }
  if (live_ == 0) {
    finish_shutdown();
  } else {
    reactor_->timers().schedule(shutdown_timer_, server_.config().limits.shutdown_timeout_ms);
  }
}

// Stratified jitter: with n connections, the i-th of a random order closes at a random moment of the i-th n-th of
// the window. The closes are as even as a fixed schedule (never two slices' worth at once), but no two instances
// or threads fall into step, and which client goes first is random.
void Worker::begin_drain(std::uint32_t window_ms) {
  if (shutting_down_ || draining_) return;
  draining_ = true;
  drain_closes_.clear();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    ConnectionImpl* connection = slots_[i].connection;
    if (connection != nullptr && connection->state_ == ConnectionImpl::State::open) {
      drain_closes_.push_back({static_cast<std::uint32_t>(i), slots_[i].generation, 0});
    }
  }
  std::mt19937_64 random(std::random_device{}() ^ (static_cast<std::uint64_t>(index_) << 32) ^ monotonic_ns());
  std::shuffle(drain_closes_.begin(), drain_closes_.end(), random);
  std::uniform_real_distribution<double> within(0.0, 1.0);
  const std::uint64_t now = reactor_->now_ms();
  const double slice = drain_closes_.empty() ? 0.0 : static_cast<double>(window_ms) / drain_closes_.size();
  for (std::size_t i = 0; i < drain_closes_.size(); ++i) {
    drain_closes_[i].due_ms = now + static_cast<std::uint64_t>((static_cast<double>(i) + within(random)) * slice);
  }
  drain_next_ = 0;
  drain_end_ms_ = now + window_ms;
  drain_due();
}

void Worker::on_drain_timer(net::Timer&, void* context) { static_cast<Worker*>(context)->drain_due(); }

void Worker::drain_due() {
  const std::uint64_t now = reactor_->now_ms();
  while (drain_next_ < drain_closes_.size() && drain_closes_[drain_next_].due_ms <= now) {
    const DrainClose& due = drain_closes_[drain_next_++];
    // Gone or already closing (the client left, the application closed it): nothing to do.
    if (ConnectionImpl* connection = find({index_, due.slot, due.generation})) {
      connection->close(static_cast<std::uint16_t>(CloseCode::service_restart), "server restarting");
    }
  }
  if (drain_next_ < drain_closes_.size()) {
    reactor_->timers().schedule(drain_timer_, drain_closes_[drain_next_].due_ms - now);
  } else if (now < drain_end_ms_) {
    reactor_->timers().schedule(drain_timer_, drain_end_ms_ - now);
  } else {
    begin_shutdown();  // the end of the window: what is left (closing handshakes) gets the shutdown deadline
  }
}

void Worker::on_shutdown_timer(net::Timer&, void* context) {
  auto* self = static_cast<Worker*>(context);
  for (std::size_t i = 0; i < self->slots_.size(); ++i) {
    if (ConnectionImpl* connection = self->slots_[i].connection) connection->destroy(1006, "shutdown deadline");
  }
}

void Worker::finish_shutdown() {
  if (shutdown_finished_) return;
  shutdown_finished_ = true;
  shutdown_timer_.cancel();
  reactor_->stop();
  report_finished();  // also in embedded mode, where nobody returns from run()
}

Worker::Totals total_counters(const std::vector<std::unique_ptr<Worker>>& workers) {
  Worker::Totals totals;
  for (const auto& worker : workers) worker->counters().add_to(totals);
  return totals;
}

}  // namespace edgews::core
