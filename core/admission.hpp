// Admission control: who may connect, how often they may upgrade and how fast a connection may send.
//
// Per client address (IPv4 one by one, IPv6 by /64): a cap on concurrent connections and a token bucket of
// upgrade requests, kept in one table that every reactor thread shares (accepts and upgrades are rare next to
// messages, so a mutex per shard costs nothing that shows). Per connection: token buckets of data messages and
// of their bytes, owned by the connection's thread and touched only when a limit is set. Internal to core/.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>

#include "core/connection.hpp"

namespace edgews::core {

// A token bucket counted in thousandths of a token, refilled from a millisecond clock: `rate` tokens per second
// is `rate` thousandths per millisecond, so refills are exact integer arithmetic. The rate and the capacity are
// the caller's (one configuration serves every bucket), which keeps a bucket at 16 bytes.
//
// A request is admitted when the bucket holds its cost, and one that costs more than the whole burst (a message
// larger than byte_burst) when the bucket is full; it then takes its whole cost, into debt, which keeps the
// average at `rate`: the debt is paid back before anything else is admitted.
class TokenBucket {
 public:
  void fill(std::uint64_t burst, std::uint64_t now_ms) {
    level_ = static_cast<std::int64_t>(burst * 1000);
    stamp_ = now_ms;
  }
  // False (nothing taken) when the bucket does not hold min(cost, burst).
  bool take(std::uint64_t cost, std::uint64_t rate, std::uint64_t burst, std::uint64_t now_ms) {
    refill(rate, burst, now_ms);
    if (level_ < static_cast<std::int64_t>(std::min(cost, burst) * 1000)) return false;
    level_ -= static_cast<std::int64_t>(cost * 1000);
    return true;
  }
  // Takes the cost whatever the level; false when that leaves the bucket in debt (the caller waits wait_ms(0)).
  bool owe(std::uint64_t cost, std::uint64_t rate, std::uint64_t burst, std::uint64_t now_ms) {
    refill(rate, burst, now_ms);
    level_ -= static_cast<std::int64_t>(cost * 1000);
    return level_ >= 0;
  }
  // Milliseconds until take() of `cost` admits (0: now).
  std::uint64_t wait_ms(std::uint64_t cost, std::uint64_t rate, std::uint64_t burst) const {
    const std::int64_t missing = static_cast<std::int64_t>(std::min(cost, burst) * 1000) - level_;
    return missing <= 0 ? 0 : (static_cast<std::uint64_t>(missing) + rate - 1) / rate;
  }
  // Milliseconds until the bucket is out of debt, from now_ms.
  std::uint64_t debt_ms(std::uint64_t rate, std::uint64_t burst, std::uint64_t now_ms) {
    refill(rate, burst, now_ms);
    return wait_ms(0, rate, burst);
  }
  bool full(std::uint64_t rate, std::uint64_t burst, std::uint64_t now_ms) {
    refill(rate, burst, now_ms);
    return level_ >= static_cast<std::int64_t>(burst * 1000);
  }

 private:
  void refill(std::uint64_t rate, std::uint64_t burst, std::uint64_t now_ms) {
    // Clocks of different reactor threads are read at different moments: one may lag the stamp a little.
    if (now_ms <= stamp_) return;
    const std::int64_t capacity = static_cast<std::int64_t>(burst * 1000);
    const std::uint64_t elapsed = now_ms - stamp_;
    stamp_ = now_ms;
    if (level_ >= capacity) return;
    const std::uint64_t missing = static_cast<std::uint64_t>(capacity - level_);
    // Compared before multiplying: an hour of silence times a large byte rate must not overflow.
    level_ = elapsed > missing / rate ? capacity : std::min(capacity, level_ + static_cast<std::int64_t>(elapsed * rate));
  }

  std::int64_t level_ = 0;
  std::uint64_t stamp_ = 0;
};

// The unit of the per-address limits: an IPv4 address, or the /64 prefix of an IPv6 one (the block a single
// host or site is usually given, so a client cannot escape its limits by walking its own addresses). An
// IPv4-mapped IPv6 address (::ffff:a.b.c.d, from a dual-stack socket) is its IPv4 address.
struct AddressKey {
  std::uint64_t bits = 0;
  std::uint8_t family = 0;  // 4, 6, or 0 for an address without an IP (never limited)

  static AddressKey of(const PeerAddress& address);
  bool valid() const { return family != 0; }
  friend bool operator==(const AddressKey&, const AddressKey&) = default;
};

struct AddressLimits {
  std::uint32_t max_connections = 0;  // concurrent connections per address; 0 = off
  std::uint32_t handshake_rate = 0;   // upgrade requests per second per address; 0 = off
  std::uint32_t handshake_burst = 0;
  std::size_t max_idle_entries = 0;   // addresses kept without connections (for their bucket), whole table
};

// The per-address state, shared by every reactor thread: a fixed number of shards, each a hash map under its own
// mutex. An entry lives while its address has connections or a bucket that is not yet full; an entry with
// neither is freed at once. Entries without connections (kept only for their bucket) are bounded by
// max_idle_entries: past it the least recently used of them is forgotten, and that address starts again with a
// full bucket. Entries with connections need no bound of their own: each holds at least one of at most
// Limits::max_connections connections. So the table stays under max_connections + max_idle_entries entries
// whatever the number of addresses that come by.
class AddressTable {
 public:
  explicit AddressTable(const AddressLimits& limits);

  bool limits_connections() const { return limits_.max_connections != 0; }
  bool limits_handshakes() const { return limits_.handshake_rate != 0; }

  // Counts one connection for the address; false (nothing counted) when it already holds max_connections.
  bool acquire_connection(const AddressKey& key, std::uint64_t now_ms);
  void release_connection(const AddressKey& key, std::uint64_t now_ms);
  // Takes an upgrade token for the address: 0 when admitted, else the milliseconds until one is available.
  std::uint64_t take_handshake(const AddressKey& key, std::uint64_t now_ms);

  std::size_t entries() const;                 // summed over shards; exact when no thread is changing it
  std::size_t connections(const AddressKey& key) const;
  std::uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }

 private:
  struct KeyHash {
    std::size_t operator()(const AddressKey& key) const {
      // splitmix64's finaliser: addresses of one network differ in a few low or middle bits.
      std::uint64_t x = key.bits ^ (static_cast<std::uint64_t>(key.family) << 56);
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      return static_cast<std::size_t>(x ^ (x >> 31));
    }
  };
  struct Entry {
    std::uint32_t connections = 0;
    bool idle = false;  // listed in Shard::idle (no connections, bucket not full)
    TokenBucket handshakes;
    std::list<AddressKey>::iterator idle_at;
  };
  using Map = std::unordered_map<AddressKey, Entry, KeyHash>;
  struct Shard {
    mutable std::mutex mutex;
    Map entries;
    std::list<AddressKey> idle;  // least recently used first
  };
  static constexpr std::size_t kShards = 16;

  Shard& shard(const AddressKey& key) { return shards_[KeyHash{}(key) % kShards]; }
  Entry& find_or_add(Shard& shard, const AddressKey& key, std::uint64_t now_ms);
  // After a change: frees the entry when it holds nothing, lists it as idle when only its bucket is left.
  void settle(Shard& shard, Map::iterator it, std::uint64_t now_ms);
  bool bucket_full(Entry& entry, std::uint64_t now_ms);

  AddressLimits limits_;
  std::size_t max_idle_per_shard_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> evictions_{0};
};

// Per-connection receive limits (Limits::message_rate, byte_rate), kept by the worker beside its slot table.
struct ReceiveRate {
  TokenBucket messages;
  TokenBucket bytes;
};

// At most one log line a second for a kind of event, with the number of lines it stands for: a flood of refusals
// must not become a flood of log lines. Owned by one reactor thread.
class LogThrottle {
 public:
  // True when a line may be written now; `suppressed` is then the number of events since the previous line.
  bool allow(std::uint64_t now_ms, std::uint64_t& suppressed) {
    if (written_ && now_ms - last_ms_ < 1000) {
      ++suppressed_;
      return false;
    }
    written_ = true;
    last_ms_ = now_ms;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  bool written_ = false;
  std::uint64_t last_ms_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace edgews::core
