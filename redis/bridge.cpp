#include "redis/bridge.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/random.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/metrics.hpp"
#include "net/reactor.hpp"
#include "redis/link.hpp"

namespace edgews::redis {

namespace {

// What travels through Redis: version, opcode, the publishing instance's id, then the payload as it was.
constexpr std::uint8_t kWireVersion = 1;
constexpr std::size_t kIdSize = 8;
constexpr std::size_t kWireHeaderSize = 2 + kIdSize;

using InstanceId = std::array<std::uint8_t, kIdSize>;

std::string_view reply_string(const redisReply* reply) {
  if (reply == nullptr || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)) return {};
  return {reply->str, reply->len};
}

core::Error address_error(std::string_view text, std::string_view why) {
  return core::Error{core::Errc::invalid_config, "redis address '" + std::string(text) + "': " + std::string(why)};
}

core::Result<std::unique_ptr<Bridge>> not_created(core::Errc code, std::string message) {
  return {nullptr, core::Error{code, std::move(message)}};
}

}  // namespace

core::Error parse_endpoint(std::string_view text, BridgeConfig& config) {
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return address_error(text, "missing ']' after the IPv6 address");
    }
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') {
        return address_error(text, "expected ':PORT' after ']'");
      }
      port = text.substr(close + 2);
      has_port = true;
    }
  } else if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      return address_error(text, "write an IPv6 address as [ADDR]:PORT");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    has_port = true;
  }
  if (host.empty()) {
    return address_error(text, "the host is empty; use HOST:PORT");
  }
  unsigned long value = 6379;
  if (has_port) {
    value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535) {
        value = 0;
        break;
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
      return address_error(text, "the port must be a number from 1 to 65535");
    }
  }
  config.host = std::string(host);
  config.port = static_cast<std::uint16_t>(value);
  return {};
}

// ---------------------------------------------------------------------------------------------------------------

class Bridge::Impl final : public core::PubSubRelay, public std::enable_shared_from_this<Bridge::Impl> {
 public:
  Impl(core::Server& server, BridgeConfig config, std::string ip)
      : server_(server),
        reactor_(*server.reactor(0)),
        config_(std::move(config)),
        ip_(std::move(ip)),
        pub_(reactor_, Link::Role::publish, config_, ip_, &Impl::on_link, this),
        sub_(reactor_, Link::Role::subscribe, config_, ip_, &Impl::on_link, this) {
    if (getrandom(id_.data(), id_.size(), 0) != static_cast<ssize_t>(id_.size())) {
      // Without getrandom, the address of this object and the time still tell instances apart on one host.
      const std::uint64_t fallback = reinterpret_cast<std::uintptr_t>(this) ^ net::monotonic_ms();
      std::memcpy(id_.data(), &fallback, id_.size());
    }
    channel_.reserve(64);
  }

  ~Impl() {
    server_.set_pubsub_relay(nullptr);
    pub_.close();
    sub_.close();
  }

  void start() {
    for (std::string& topic : server_.set_pubsub_relay(this)) channels_[topic].wanted = true;
    outage_started_ms_ = net::monotonic_ms();
    pub_.connect();
    sub_.connect();
  }

  BridgeStats stats() const {
    BridgeStats s;
    s.link_up = pub_up_.load(std::memory_order_relaxed) && sub_up_.load(std::memory_order_relaxed);
    s.published = published_.load(std::memory_order_relaxed);
    s.publish_failed = failed_.load(std::memory_order_relaxed);
    s.received = received_.load(std::memory_order_relaxed);
    s.echoes_ignored = echoes_.load(std::memory_order_relaxed);
    s.outages = outages_.load(std::memory_order_relaxed);
    s.connects = connects_.load(std::memory_order_relaxed);
    s.channels = confirmed_.load(std::memory_order_relaxed);
    s.ping_timeouts = ping_timeouts_.load(std::memory_order_relaxed);
    return s;
  }

  void append_metrics(std::string& out) const override {
    const BridgeStats s = stats();
    const auto family = [&out](std::string_view name, std::string_view type, std::string_view help,
                               std::uint64_t value) {
      core::append_metric_family(out, name, type, help);
      core::append_metric_sample(out, name, {}, value);
    };
    family("edgews_redis_link_up", "gauge", "1 while both Redis connections are up and answering, else 0.",
           s.link_up ? 1 : 0);
    family("edgews_redis_link_outages_total", "counter",
           "Times the Redis link went down (or could not be made at start).", s.outages);
    family("edgews_redis_ping_timeouts_total", "counter",
           "Redis connections dropped because nothing answered the keepalive PING for two intervals.",
           s.ping_timeouts);
    family("edgews_redis_publishes_total", "counter", "Publishes handed to Redis and acknowledged.", s.published);
    family("edgews_redis_publishes_failed_total", "counter",
           "Publishes meant for other instances that did not reach Redis.", s.publish_failed);
    family("edgews_redis_messages_received_total", "counter",
           "Messages from other instances delivered locally.", s.received);
    family("edgews_redis_channels", "gauge", "Redis channels this instance is subscribed to.", s.channels);
  }

  // core::PubSubRelay: any reactor thread.
  void topic_interest(std::string_view topic, bool interested) override {
    std::lock_guard lock(inbox_mutex_);
    interest_changes_.emplace_back(std::string(topic), interested);
    post_flush_locked();
  }

  void published(std::string_view topic, std::span<const std::uint8_t> payload, codec::Opcode opcode) override {
    if (!pub_up_.load(std::memory_order_relaxed)) {
      failed_.fetch_add(1, std::memory_order_relaxed);  // the outage was logged once, when it began
      return;
    }
    if (reactor_.in_reactor_thread()) {
      flush_inbox();  // earlier messages of other threads first (not needed for order, but keeps it plain)
      send_publish(topic, payload, opcode);
      return;
    }
    std::lock_guard lock(inbox_mutex_);
    Outgoing& out = outbox_.emplace_back();
    out.topic.assign(topic);
    out.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
    out.opcode = opcode;
    post_flush_locked();
  }

 private:
  struct Outgoing {
    std::string topic;
    std::string payload;
    codec::Opcode opcode;
  };
  enum class ChannelState : std::uint8_t { none, subscribing, subscribed, unsubscribing };
  struct Channel {
    bool wanted = false;
    ChannelState state = ChannelState::none;
  };

  void post_flush_locked() {
    if (flush_posted_) return;
    flush_posted_ = true;
    reactor_.post([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->flush_inbox();
    });
  }

  // Reactor 0: what other threads handed over, in their order.
  void flush_inbox() {
    {
      std::lock_guard lock(inbox_mutex_);
      flush_posted_ = false;
      outbox_running_.swap(outbox_);
      interest_running_.swap(interest_changes_);
    }
    for (auto& [topic, interested] : interest_running_) {
      channels_[topic].wanted = interested;
      reconcile(topic);
    }
    interest_running_.clear();
    for (Outgoing& out : outbox_running_) {
      send_publish(out.topic, {reinterpret_cast<const std::uint8_t*>(out.payload.data()), out.payload.size()},
                   out.opcode);
    }
    outbox_running_.clear();
  }

  void send_publish(std::string_view topic, std::span<const std::uint8_t> payload, codec::Opcode opcode) {
    redisAsyncContext* context = pub_.context();
    const std::size_t size = kWireHeaderSize + payload.size();
    if (context == nullptr || pending_bytes_ + size > config_.max_pending_bytes) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      if (context != nullptr && !overflow_logged_) {
        overflow_logged_ = true;
        server_.logger().log(core::LogLevel::warn, "redis",
                             "more than %zu bytes of publishes wait for Redis at %s:%u: further publishes to other "
                             "instances are dropped and counted as failed until it catches up",
                             config_.max_pending_bytes, config_.host.c_str(), config_.port);
      }
      return;
    }
    channel_.assign(config_.channel_prefix).append(topic);
    message_.resize(size);
    message_[0] = static_cast<char>(kWireVersion);
    message_[1] = static_cast<char>(opcode);
    std::memcpy(message_.data() + 2, id_.data(), kIdSize);
    if (!payload.empty()) std::memcpy(message_.data() + kWireHeaderSize, payload.data(), payload.size());
    const char* argv[3] = {"PUBLISH", channel_.data(), message_.data()};
    const std::size_t lengths[3] = {7, channel_.size(), message_.size()};
    if (redisAsyncCommandArgv(context, &Impl::on_publish_reply, reinterpret_cast<void*>(size), 3, argv, lengths) !=
        REDIS_OK) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    pending_bytes_ += size;
  }

  static void on_publish_reply(redisAsyncContext* context, void* r, void* privdata) {
    auto& self = *static_cast<Impl*>(static_cast<Link*>(context->data)->owner());
    const auto* reply = static_cast<const redisReply*>(r);
    self.pending_bytes_ -= reinterpret_cast<std::size_t>(privdata);
    if (self.pending_bytes_ < self.config_.max_pending_bytes / 2) self.overflow_logged_ = false;
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      self.failed_.fetch_add(1, std::memory_order_relaxed);
    } else {
      self.published_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Brings Redis' subscription to a channel in line with local interest, one command in flight per channel: old
  // hiredis keys its subscription callbacks by channel, so overlapping SUBSCRIBE/UNSUBSCRIBE of one channel
  // could lose the callback.
  void reconcile(const std::string& topic) {
    auto it = channels_.find(topic);
    if (it == channels_.end()) return;
    Channel& channel = it->second;
    redisAsyncContext* context = sub_.context();
    if (channel.state == ChannelState::subscribing || channel.state == ChannelState::unsubscribing) return;
    if (channel.wanted && channel.state == ChannelState::none) {
      if (context == nullptr) return;  // restored on reconnection
      channel_.assign(config_.channel_prefix).append(topic);
      if (redisAsyncCommand(context, &Impl::on_subscription, nullptr, "SUBSCRIBE %b", channel_.data(),
                            channel_.size()) == REDIS_OK) {
        channel.state = ChannelState::subscribing;
      }
    } else if (!channel.wanted && channel.state == ChannelState::subscribed) {
      if (context == nullptr) return;
      channel_.assign(config_.channel_prefix).append(topic);
      if (redisAsyncCommand(context, nullptr, nullptr, "UNSUBSCRIBE %b", channel_.data(), channel_.size()) ==
          REDIS_OK) {
        channel.state = ChannelState::unsubscribing;
      }
    } else if (!channel.wanted && channel.state == ChannelState::none) {
      channels_.erase(it);
    }
  }

  // Every reply of the subscribe connection: confirmations and messages ([kind, channel, payload or count]).
  static void on_subscription(redisAsyncContext* context, void* r, void*) {
    const auto* reply = static_cast<const redisReply*>(r);
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    auto& self = *static_cast<Impl*>(static_cast<Link*>(context->data)->owner());
    const std::string_view kind = reply_string(reply->element[0]);
    const std::string_view channel = reply_string(reply->element[1]);
    if (!channel.starts_with(self.config_.channel_prefix)) return;
    const std::string_view topic = channel.substr(self.config_.channel_prefix.size());
    if (kind == "message") {
      self.on_message(topic, reply_string(reply->element[2]));
    } else if (kind == "subscribe" || kind == "unsubscribe") {
      const bool subscribed = kind == "subscribe";
      auto it = self.channels_.find(std::string(topic));
      if (it == self.channels_.end()) return;
      it->second.state = subscribed ? ChannelState::subscribed : ChannelState::none;
      self.confirmed_.fetch_add(subscribed ? 1 : std::uint64_t(-1), std::memory_order_relaxed);
      self.reconcile(it->first);
    }
  }

  void on_message(std::string_view topic, std::string_view message) {
    if (message.size() < kWireHeaderSize || static_cast<std::uint8_t>(message[0]) != kWireVersion) return;
    const auto opcode = static_cast<codec::Opcode>(static_cast<std::uint8_t>(message[1]));
    if (opcode != codec::Opcode::text && opcode != codec::Opcode::binary) return;
    if (std::memcmp(message.data() + 2, id_.data(), kIdSize) == 0) {
      echoes_.fetch_add(1, std::memory_order_relaxed);  // delivered locally when it was published
      return;
    }
    received_.fetch_add(1, std::memory_order_relaxed);
    const auto* data = reinterpret_cast<const std::uint8_t*>(message.data()) + kWireHeaderSize;
    server_.publish_local(topic, {data, message.size() - kWireHeaderSize}, opcode);
  }

  static void on_link(void* owner, Link& link, bool up, const char* why) {
    static_cast<Impl*>(owner)->link_changed(link, up, why);
  }

  void link_changed(Link& link, bool up, const char* why) {
    const bool was_up = pub_up_.load(std::memory_order_relaxed) && sub_up_.load(std::memory_order_relaxed);
    if (link.role() == Link::Role::publish) {
      pub_up_.store(up, std::memory_order_relaxed);
      if (!up) pending_bytes_ = 0;  // every pending reply has been called back by now
    } else {
      sub_up_.store(up, std::memory_order_relaxed);
      if (up) {
        for (auto& entry : channels_) reconcile_later_.push_back(entry.first);
        for (const std::string& topic : reconcile_later_) reconcile(topic);
        reconcile_later_.clear();
      } else {
        // Redis forgets a connection's subscriptions with the connection: all of them are restored later.
        confirmed_.store(0, std::memory_order_relaxed);
        for (auto it = channels_.begin(); it != channels_.end();) {
          it->second.state = ChannelState::none;
          it = it->second.wanted ? std::next(it) : channels_.erase(it);
        }
      }
    }
    if (up) connects_.fetch_add(1, std::memory_order_relaxed);
    ping_timeouts_.store(pub_.ping_timeouts() + sub_.ping_timeouts(), std::memory_order_relaxed);
    const bool now_up = pub_up_.load(std::memory_order_relaxed) && sub_up_.load(std::memory_order_relaxed);
    const core::Logger& log = server_.logger();
    if (was_up && !now_up) {
      begin_outage(why);
    } else if (!was_up && !now_up && !up && !in_outage_) {
      begin_outage(why);  // never connected yet: the first failure starts an outage too
    } else if (now_up) {
      const std::uint64_t failed = failed_.load(std::memory_order_relaxed) - failed_at_outage_start_;
      if (in_outage_ && outages_.load(std::memory_order_relaxed) > 0) {
        log.log(core::LogLevel::warn, "redis",
                "link to %s:%u restored after %.1f s; %llu publishes to other instances failed meanwhile; "
                "restoring %zu channel subscriptions",
                config_.host.c_str(), config_.port, double(net::monotonic_ms() - outage_started_ms_) / 1000.0,
                static_cast<unsigned long long>(failed), channels_.size());
      } else {
        log.log(core::LogLevel::info, "redis", "connected to %s:%u (instance id %s, channel prefix '%s')",
                config_.host.c_str(), config_.port, id_hex().c_str(), config_.channel_prefix.c_str());
      }
      in_outage_ = false;
    }
  }

  void begin_outage(const char* why) {
    in_outage_ = true;
    outages_.fetch_add(1, std::memory_order_relaxed);
    outage_started_ms_ = net::monotonic_ms();
    failed_at_outage_start_ = failed_.load(std::memory_order_relaxed);
    server_.logger().log(core::LogLevel::warn, "redis",
                         "link to %s:%u down (%s): local delivery continues; publishes to other instances are "
                         "counted as failed until it is back; retrying every %u..%u ms",
                         config_.host.c_str(), config_.port, why, config_.reconnect_min_ms,
                         config_.reconnect_max_ms);
  }

  std::string id_hex() const {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (std::uint8_t b : id_) {
      hex += kHex[b >> 4];
      hex += kHex[b & 15];
    }
    return hex;
  }

  core::Server& server_;
  net::Reactor& reactor_;
  BridgeConfig config_;
  std::string ip_;
  InstanceId id_{};
  Link pub_;
  Link sub_;

  std::atomic<bool> pub_up_{false};
  std::atomic<bool> sub_up_{false};
  std::atomic<std::uint64_t> published_{0}, failed_{0}, received_{0}, echoes_{0}, outages_{0}, connects_{0},
      confirmed_{0}, ping_timeouts_{0};

  // Handed over by other reactor threads.
  std::mutex inbox_mutex_;
  std::vector<Outgoing> outbox_;
  std::vector<std::pair<std::string, bool>> interest_changes_;
  bool flush_posted_ = false;

  // Reactor 0 only.
  std::vector<Outgoing> outbox_running_;
  std::vector<std::pair<std::string, bool>> interest_running_;
  std::vector<std::string> reconcile_later_;
  std::unordered_map<std::string, Channel> channels_;  // by topic
  std::string channel_;
  std::string message_;
  std::size_t pending_bytes_ = 0;
  bool overflow_logged_ = false;
  bool in_outage_ = false;
  std::uint64_t outage_started_ms_ = 0;
  std::uint64_t failed_at_outage_start_ = 0;
};

// ---------------------------------------------------------------------------------------------------------------

core::Result<std::unique_ptr<Bridge>> Bridge::create(core::Server& server, BridgeConfig config) {
  if (server.reactor(0) == nullptr) {
    return not_created(core::Errc::wrong_state,
                       "redis bridge: the server is not started; call Server::start() before Bridge::create()");
  }
  if (config.reconnect_min_ms == 0 || config.reconnect_max_ms < config.reconnect_min_ms) {
    return not_created(core::Errc::invalid_config,
                       "redis bridge: reconnect_min_ms must be at least 1 and at most reconnect_max_ms");
  }
  if (config.connect_timeout_ms < kMinConnectTimeoutMs) {
    return not_created(core::Errc::invalid_config,
                       "redis bridge: connect_timeout_ms " + std::to_string(config.connect_timeout_ms) +
                           " is below the timer resolution; use at least " + std::to_string(kMinConnectTimeoutMs));
  }
  if (config.keepalive_interval_ms != 0 && config.keepalive_interval_ms < kMinKeepaliveMs) {
    return not_created(core::Errc::invalid_config,
                       "redis bridge: keepalive_interval_ms " + std::to_string(config.keepalive_interval_ms) +
                           " is below the timer resolution; use 0 (off) or at least " +
                           std::to_string(kMinKeepaliveMs));
  }
  // Resolved once, here: hiredis would call getaddrinfo() on every connection attempt, on the loop.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (const int rc = getaddrinfo(config.host.c_str(), nullptr, &hints, &result); rc != 0 || result == nullptr) {
    return not_created(core::Errc::resolve_failed,
                       "redis address '" + config.host + "' does not resolve (" + gai_strerror(rc) +
                           "); give an IP address or a name this host can resolve");
  }
  char ip[NI_MAXHOST];
  const int rc = getnameinfo(result->ai_addr, result->ai_addrlen, ip, sizeof ip, nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(result);
  if (rc != 0) {
    return not_created(core::Errc::resolve_failed, "redis address '" + config.host + "': " + gai_strerror(rc));
  }
  auto impl = std::make_shared<Impl>(server, std::move(config), ip);
  impl->start();
  return {std::unique_ptr<Bridge>(new Bridge(std::move(impl))), {}};
}

Bridge::Bridge(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bridge::~Bridge() = default;
BridgeStats Bridge::stats() const { return impl_->stats(); }

}  // namespace edgews::redis
