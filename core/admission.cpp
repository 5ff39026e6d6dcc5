#include "core/admission.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace edgews::core {

AddressKey AddressKey::of(const PeerAddress& address) {
  AddressKey key;
  if (address.addr.sa.sa_family == AF_INET) {
    key.family = 4;
    key.bits = ntohl(address.addr.v4.sin_addr.s_addr);
  } else if (address.addr.sa.sa_family == AF_INET6) {
    const std::uint8_t* b = address.addr.v6.sin6_addr.s6_addr;
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, kMapped, sizeof kMapped) == 0) {
      key.family = 4;
      key.bits = (std::uint64_t{b[12]} << 24) | (std::uint64_t{b[13]} << 16) | (std::uint64_t{b[14]} << 8) | b[15];
    } else {
      key.family = 6;
      for (int i = 0; i < 8; ++i) key.bits = (key.bits << 8) | b[i];  // the /64 prefix; the interface part goes
    }
  }
  return key;
}

AddressTable::AddressTable(const AddressLimits& limits)
    : limits_(limits), max_idle_per_shard_(std::max<std::size_t>(1, limits.max_idle_entries / kShards)) {}

bool AddressTable::bucket_full(Entry& entry, std::uint64_t now_ms) {
  return !limits_handshakes() ||
         entry.handshakes.full(limits_.handshake_rate, limits_.handshake_burst, now_ms);
}

AddressTable::Entry& AddressTable::find_or_add(Shard& shard, const AddressKey& key, std::uint64_t now_ms) {
  auto [it, added] = shard.entries.try_emplace(key);
  Entry& entry = it->second;
  if (added) {
    entry.handshakes.fill(limits_.handshake_burst, now_ms);
    // Addresses that went quiet long enough to have full buckets again are worth nothing: free a few of the
    // oldest while we hold the lock anyway, so that the idle list is mostly entries that still matter.
    for (int i = 0; i < 2 && !shard.idle.empty(); ++i) {
      auto oldest = shard.entries.find(shard.idle.front());
      if (!bucket_full(oldest->second, now_ms)) break;
      shard.idle.pop_front();
      shard.entries.erase(oldest);
    }
  } else if (entry.idle) {
    shard.idle.erase(entry.idle_at);
    entry.idle = false;
  }
  return entry;
}

void AddressTable::settle(Shard& shard, Map::iterator it, std::uint64_t now_ms) {
  Entry& entry = it->second;
  if (entry.connections != 0) return;
  if (bucket_full(entry, now_ms)) {
    shard.entries.erase(it);
    return;
  }
  entry.idle = true;
  entry.idle_at = shard.idle.insert(shard.idle.end(), it->first);
  if (shard.idle.size() > max_idle_per_shard_) {
    // Over the bound: forget the least recently used address; it comes back, if ever, with a full bucket.
    shard.entries.erase(shard.idle.front());
    shard.idle.pop_front();
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool AddressTable::acquire_connection(const AddressKey& key, std::uint64_t now_ms) {
  if (!limits_connections() || !key.valid()) return true;
  Shard& s = shard(key);
  std::lock_guard lock(s.mutex);
  auto existing = s.entries.find(key);
  if (existing != s.entries.end() && existing->second.connections >= limits_.max_connections) return false;
  Entry& entry = find_or_add(s, key, now_ms);
  ++entry.connections;
  return true;
}

void AddressTable::release_connection(const AddressKey& key, std::uint64_t now_ms) {
  if (!limits_connections() || !key.valid()) return;
  Shard& s = shard(key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(key);
  if (it == s.entries.end() || it->second.connections == 0) return;  // not counted (cannot happen)
  --it->second.connections;
  settle(s, it, now_ms);
}

std::uint64_t AddressTable::take_handshake(const AddressKey& key, std::uint64_t now_ms) {
  if (!limits_handshakes() || !key.valid()) return 0;
  Shard& s = shard(key);
  std::lock_guard lock(s.mutex);
  Entry& entry = find_or_add(s, key, now_ms);
  const bool admitted = entry.handshakes.take(1, limits_.handshake_rate, limits_.handshake_burst, now_ms);
  const std::uint64_t wait = admitted ? 0 : entry.handshakes.wait_ms(1, limits_.handshake_rate, limits_.handshake_burst);
  settle(s, s.entries.find(key), now_ms);
  return wait;
}

std::size_t AddressTable::entries() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.entries.size();
  }
  return n;
}

std::size_t AddressTable::connections(const AddressKey& key) const {
  const Shard& s = shards_[KeyHash{}(key) % kShards];
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(key);
  return it == s.entries.end() ? 0 : it->second.connections;
}

}  // namespace edgews::core
