// The server-wide memory budget (Limits::max_memory): where the automatic budget comes from, what a connection
// counts as holding, the per-worker sweep that sums it, and the action over the budget.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/connection_extras.hpp"
#include "core/connection_impl.hpp"
#include "core/server_impl.hpp"
#include "core/worker.hpp"

namespace edgews::core {

namespace {

constexpr std::uint64_t kDefaultMemoryBudget = 256ull << 20;
constexpr std::uint64_t kMinAutomaticBudget = 64ull << 20;
// OpenSSL's read and write record buffers while a TLS connection keeps them (released when it is quiet).
constexpr std::size_t kTlsRecordBuffers = 2 * 17 * 1024;

// A cgroup limit in bytes, or 0 when the file is missing or says there is none ("max" in v2, a figure near
// 2^63 in v1).
std::uint64_t read_limit(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || value >= (1ull << 60)) return 0;
  return value;
}

}  // namespace

std::uint64_t ServerImpl::resolve_memory_budget(const ServerConfig& config, std::string& source) {
  if (config.limits.max_memory != 0) {
    source = "limits.max_memory";
    return config.limits.max_memory;
  }
  if (!config.cgroup_dir.empty()) {
    for (const char* file : {"/memory.max", "/memory/memory.limit_in_bytes", "/memory.limit_in_bytes"}) {
      const std::string path = config.cgroup_dir + file;
      if (const std::uint64_t limit = read_limit(path)) {
        // A quarter: the rest is the process itself, allocator slack and the kernel's socket buffers, which the
        // cgroup charges too and which grow with connections (README, Configuration).
        source = "a quarter of " + path;
        return std::max(limit / 4, kMinAutomaticBudget);
      }
    }
  }
  source = "default, no container memory limit found";
  return kDefaultMemoryBudget;
}

std::size_t ConnectionImpl::memory_held() const {
  std::size_t held = buffered_amount() + reader_.buffered_bytes();
  if (extras_) {
    held += extras_->unread.capacity();
    if (extras_->deflate) held += worker_.deflate_estimate();
  }
  if (tls_ && !tls_released_) held += kTlsRecordBuffers;
  return held;
}

void ConnectionImpl::shed_for_memory(std::size_t held) {
  ServerImpl& server = worker_.server();
  server.logger().log(LogLevel::warn, "memory_budget", "peer=%s held=%zu budget=%" PRIu64 ": closing with 1013",
                      peer_.to_string().c_str(), held, server.memory_budget());
  worker_.counters().bump_memory_close();
  if (extras_) std::vector<std::uint8_t>().swap(extras_->unread);  // never processed: a closing peer is not read
  // RFC 6455 7.4.1 / IANA: 1013 Try Again Later; the client did nothing wrong, the server is short of memory.
  fail_with(1013, "server memory budget");
}

void Worker::list_memory_holder(ConnectionImpl& connection) {
  if (connection.memory_listed_) return;
  connection.memory_listed_ = true;
  memory_holders_.push_back({connection.slot_, connection.generation_});
  if (!memory_timer_.scheduled() && !shutting_down_) reactor_->timers().schedule(memory_timer_, kMemorySweepMs);
}

void Worker::on_memory_sweep(net::Timer&, void* context) {
  auto* self = static_cast<Worker*>(context);
  std::uint64_t other = 0, releasing = 0;
  std::size_t kept = 0;
  self->memory_candidates_.clear();
  for (const SlotRef ref : self->memory_holders_) {
    ConnectionImpl* connection = self->find({self->index_, ref.slot, ref.generation});
    if (connection == nullptr) continue;  // gone: what it held is freed
    const std::size_t held = connection->memory_held();
    if (held == 0) {
      connection->memory_listed_ = false;
      connection->release_reading(ReadHold::memory);  // nothing held: nothing to stop growing
      continue;
    }
    other += held - connection->buffered_amount();  // queued output is counted by chunk, below
    if (connection->state_ == ConnectionImpl::State::open) {
      self->memory_candidates_.push_back({held, ref});
    } else {
      releasing += held;
    }
    self->memory_holders_[kept++] = ref;
  }
  self->memory_holders_.resize(kept);
  const std::int64_t chunks = Chunk::bytes_on_this_thread();
  const std::uint64_t own = static_cast<std::uint64_t>(std::max<std::int64_t>(0, chunks)) + other;
  self->counters_.memory_in_use.store(own, std::memory_order_relaxed);
  self->counters_.memory_releasing.store(releasing, std::memory_order_relaxed);
  self->enforce_memory_budget(own, releasing);
  // No holder, no timer: an idle server does not wake up for this.
  if (!self->memory_holders_.empty() && !self->shutting_down_) {
    self->reactor_->timers().schedule(self->memory_timer_, kMemorySweepMs);
  }
}

// Two marks. Over three quarters of the budget, the connections holding the most are not read (ReadHold::memory):
// their queues, assembly buffers and kept input stop growing, while others are served; under half of it they are
// read again. Over the budget itself, the connections holding the most are closed. Each worker acts on its part of
// the excess, in proportion to what its connections hold. Connections already closing are not counted twice: what
// they hold is on its way out (after their queue or the close timeout).
void Worker::enforce_memory_budget(std::uint64_t own, std::uint64_t own_releasing) {
  std::uint64_t total = 0, total_releasing = 0;
  for (const auto& worker : server_.workers_) {
    total += worker->counters_.memory_in_use.load(std::memory_order_relaxed);
    total_releasing += worker->counters_.memory_releasing.load(std::memory_order_relaxed);
  }
  const std::uint64_t budget = server_.memory_budget();
  const std::uint64_t pause_mark = budget / 4 * 3;
  const std::uint64_t staying = total - std::min(total, total_releasing);
  const std::uint64_t own_staying = own - std::min(own, own_releasing);
  constexpr auto kMemoryHold = static_cast<std::uint8_t>(ReadHold::memory);
  if (staying < budget / 2) {
    for (const Candidate& candidate : memory_candidates_) {
      ConnectionImpl* connection = find({index_, candidate.ref.slot, candidate.ref.generation});
      if (connection != nullptr) connection->release_reading(ReadHold::memory);
    }
    return;
  }
  if (staying <= pause_mark || own_staying == 0 || memory_candidates_.empty()) return;
  const bool over = staying > budget;
  const std::uint64_t share = (staying - (over ? budget : pause_mark)) * own_staying / staying + 1;
  std::sort(memory_candidates_.begin(), memory_candidates_.end(),
            [](const Candidate& a, const Candidate& b) { return a.held > b.held; });
  std::uint64_t acted = 0;
  for (const Candidate& candidate : memory_candidates_) {
    if (acted >= share) break;
    ConnectionImpl* connection = find({index_, candidate.ref.slot, candidate.ref.generation});
    if (connection == nullptr || connection->state_ != ConnectionImpl::State::open) continue;
    acted += candidate.held;
    if (over) {
      connection->shed_for_memory(candidate.held);
    } else if ((connection->read_holds_ & kMemoryHold) == 0) {
      server_.logger().log(LogLevel::warn, "memory_budget",
                           "peer=%s held=%zu in_use=%" PRIu64 " budget=%" PRIu64 ": not read until memory is freed",
                           connection->peer_.to_string().c_str(), candidate.held, staying, budget);
      counters_.bump_memory_pause();
      connection->hold_reading(ReadHold::memory);
    }
  }
}

}  // namespace edgews::core
