// Live hand-off between two server processes (Server::listen_for_handoff, Server::adopt), internal to core/.
//
// Each side runs one thread for the Unix socket (blocking I/O, off the reactors); the reactors reach it through a
// queue and an eventfd, and it reaches them by posting. The old side's thread sends the listeners, the records
// the workers build and, at the end, done; it posts each answer back to the worker that owns the connection. The
// new side's thread decodes each record and posts it to a worker (round robin), which adopts the connection and
// answers itself (one sendmsg per record: SOCK_SEQPACKET keeps concurrent records whole).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/connection.hpp"
#include "core/handoff_record.hpp"
#include "core/worker.hpp"
#include "net/fd.hpp"
#include "net/timer_wheel.hpp"

namespace edgews::core {

class ServerImpl;

// Listening sockets are named by kind and position in ServerConfig::listeners ("ws:0", "wss:1"; "metrics").
inline std::string handoff_listener_name(bool tls, std::size_t index) {
  return std::string(tls ? "wss:" : "ws:") + std::to_string(index);
}

// A worker's part of a hand-off on the old side: rescans its connections until each was offered or drained.
struct Worker::HandoffScan {
  HandoffScan(Worker& worker, HandoffOut& session, std::uint64_t deadline_ms)
      : out(session), deadline(deadline_ms), timer(&HandoffScan::on_timer, &worker) {}
  static void on_timer(net::Timer&, void* context) { static_cast<Worker*>(context)->handoff_scan(); }
  HandoffOut& out;
  std::uint64_t deadline;
  std::uint64_t window_ms = 0;
  net::Timer timer;
  bool reported = false;
  // Offered and not yet answered. Bounded: each holds a duplicate descriptor until it is sent, and a process near
  // its descriptor limit (one per connection) must not run out half-way.
  std::size_t in_flight = 0;
  static constexpr std::size_t kMaxInFlight = 256;
};

class HandoffOut {
 public:
  // listen_fd is bound to bound_path. When that is not `path` (this process is itself still taking over from a
  // predecessor listening at `path`), it is renamed to `path` once predecessor_ended is set: until then `path`
  // stays the predecessor's, so that if this process dies half-way the predecessor can still be reached there
  // (by the next attempt at an upgrade).
  HandoffOut(ServerImpl& server, net::Fd listen_fd, std::string path, std::string bound_path,
             std::shared_ptr<const std::atomic<bool>> predecessor_ended, std::uint32_t deadline_ms);
  ~HandoffOut();  // stops the thread; a hand-off under way ends as if the successor had gone

  // Worker threads: a connection's record and a duplicate of its socket, or "this worker has nothing more to
  // offer" (every connection offered, drained or gone).
  void offer(ConnectionHandle handle, handoff::ConnectionState state, net::Fd fd);
  void worker_finished();
  void count_drained() { drained_.fetch_add(1, std::memory_order_relaxed); }

  std::atomic<std::uint64_t> offered_{0}, adopted_{0}, refused_{0}, drained_{0};
  std::atomic<bool> finished_{false};

 private:
  void run();
  bool serve(int peer);  // one successor; false when it went away before the end
  void wake();

  bool publish();  // renames bound_path_ to path_ once the predecessor is done with; false when stopping

  ServerImpl& server_;
  net::Fd listen_fd_;
  std::string path_;
  std::string bound_path_;
  std::shared_ptr<const std::atomic<bool>> predecessor_ended_;
  std::atomic<bool> published_{false};
  ino_t inode_ = 0;  // of the socket file, which a rename keeps: the path is unlinked only while it is ours
  std::uint32_t deadline_ms_;
  net::Fd event_fd_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  struct Offer {
    ConnectionHandle handle;
    handoff::ConnectionState state;
    net::Fd fd;
  };
  std::deque<Offer> offers_;
  unsigned workers_finished_ = 0;
  std::thread thread_;
};

class HandoffIn {
 public:
  HandoffIn(ServerImpl& server, net::Fd peer);
  ~HandoffIn();
  void start();
  void answer(std::uint64_t id, bool adopted, const std::string& reason);

  std::atomic<std::uint64_t> received_{0}, adopted_{0}, refused_{0};
  std::atomic<bool> finished_{false};
  // Set when this side's thread is done: the predecessor said done, or went away. Shared with HandoffOut.
  std::shared_ptr<std::atomic<bool>> ended_ = std::make_shared<std::atomic<bool>>(false);

 private:
  void run();
  void run_records();
  ServerImpl& server_;
  net::Fd peer_;
  net::Fd event_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace edgews::core
