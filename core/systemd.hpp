// systemd integration without libsystemd: the documented protocols, each a few system calls, and all of them
// do nothing when the process was not started by systemd.
//
//   Socket activation (sd_listen_fds(3)): systemd binds the sockets and passes them from descriptor 3 on, with
//   LISTEN_PID (this process), LISTEN_FDS (how many) and LISTEN_FDNAMES (FileDescriptorName= of each socket unit,
//   colon-separated). The sockets outlive restarts of the service, so a restart refuses no connection: the
//   kernel queues them until the new process accepts.
//   Notification (sd_notify(3)): one datagram per state ("READY=1", "STOPPING=1", "WATCHDOG=1") to the Unix socket
//   named by NOTIFY_SOCKET, a path or, when it starts with '@', a name in the abstract namespace.
//   Watchdog (sd_watchdog_enabled(3)): with WatchdogSec=, systemd sets WATCHDOG_USEC and restarts the service when
//   WATCHDOG=1 does not come within it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/timer_wheel.hpp"

namespace edgews::core {

class Server;

namespace systemd {

// The listening sockets systemd passed, by the names edgews knows (-1 where none was passed).
struct InheritedSockets {
  int ws = -1;       // FileDescriptorName=ws: the ws:// listener (ListenConfig::fd)
  int wss = -1;      // FileDescriptorName=wss: the wss:// listener (needs certificates)
  int metrics = -1;  // FileDescriptorName=metrics: the admin listener (/metrics, /healthz)
  bool any() const { return ws >= 0 || wss >= 0 || metrics >= 0; }
};

// Reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES and removes them from the environment (children must not take
// the sockets for theirs). Sockets meant for another process (LISTEN_PID is not ours) are ignored. A single socket
// may carry any name (systemd's default is the socket unit's name) and is the ws:// listener; several must be
// named ws, wss and metrics. False with `error` saying what to fix for anything else.
bool inherited_sockets(InheritedSockets& out, std::string& error);

// Sends one notification ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...") to NOTIFY_SOCKET. False when there
// is none (not under systemd, or Type= is not notify) or the send failed: nothing to do about it either way.
bool notify(std::string_view state);

// "RELOADING=1" with MONOTONIC_USEC (CLOCK_MONOTONIC now, in microseconds) in the same datagram, as sd_notify(3)
// asks, so that systemd can tell this reload from an earlier one; READY=1 must follow once the reload is done.
bool notify_reloading();

// WATCHDOG_USEC in microseconds when the watchdog is asked of this process (WATCHDOG_PID unset or ours), else 0.
std::uint64_t watchdog_usec();

// Sends WATCHDOG=1 every period, but only while every reactor thread of the server is turning: each period a task
// is posted to every reactor, and the next period sends WATCHDOG=1 only if all of them ran it. A reactor stuck in
// a callback (or a deadlock) then stops the notifications and systemd restarts the service. Runs on reactor 0
// (a stuck reactor 0 sends nothing at all); create it after Server::start() and destroy it after run() returned.
class Watchdog {
 public:
  // period_ms: how often to check and notify; a third of WATCHDOG_USEC leaves room for a late turn.
  Watchdog(Server& server, std::uint32_t period_ms);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // From the environment: nullptr when systemd asks for no watchdog.
  static std::unique_ptr<Watchdog> from_environment(Server& server);

  // Any thread. probe() posts a task to every reactor; all_turned() is true once each has run the last one.
  void probe();
  bool all_turned() const;
  std::uint64_t notifications() const { return sent_.load(std::memory_order_relaxed); }

 private:
  static void on_timer(net::Timer& timer, void* context);
  void tick();

  Server& server_;
  std::uint32_t period_ms_;
  net::Timer timer_;
  // Shared with the posted tasks, which may outlive this object in a queue that is never run again.
  std::shared_ptr<std::vector<std::atomic<std::uint64_t>>> answered_;
  std::atomic<std::uint64_t> probe_{0};
  std::atomic<std::uint64_t> sent_{0};
};

}  // namespace systemd
}  // namespace edgews::core
