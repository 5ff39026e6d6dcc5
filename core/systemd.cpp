#include "core/systemd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "core/server.hpp"
#include "net/fd.hpp"
#include "net/reactor.hpp"

namespace edgews::core::systemd {

namespace {

// SD_LISTEN_FDS_START: the first passed descriptor.
constexpr int kListenFdsStart = 3;

bool parse_number(const char* text, long long& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(text, &end, 10);
  return errno == 0 && *end == '\0';
}

std::vector<std::string> split_names(const char* text) {
  std::vector<std::string> names;
  if (text == nullptr) return names;
  std::string_view rest(text);
  for (;;) {
    const std::size_t colon = rest.find(':');
    names.emplace_back(rest.substr(0, colon));
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return names;
}

}  // namespace

bool inherited_sockets(InheritedSockets& out, std::string& error) {
  out = {};
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* count_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  long long pid = 0, count = 0;
  const bool ours = parse_number(pid_text, pid) && pid == ::getpid() && parse_number(count_text, count);
  const std::vector<std::string> names = split_names(names_text);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!ours || count <= 0) return true;
  if (count > 3) {
    error = "socket activation passed " + std::to_string(count) + " sockets (LISTEN_FDS); edgews takes at most "
            "three, named ws, wss and metrics (FileDescriptorName= in each socket unit)";
    return false;
  }
  for (int i = 0; i < count; ++i) {
    const int fd = kListenFdsStart + i;
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) {
      error = "socket activation: descriptor " + std::to_string(fd) + " (LISTEN_FDS=" + std::to_string(count) +
              ") is not open";
      return false;
    }
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);  // not for processes this one starts
    const std::string name = static_cast<std::size_t>(i) < names.size() ? names[i] : std::string();
    int* slot = nullptr;
    if (name == "ws") slot = &out.ws;
    else if (name == "wss") slot = &out.wss;
    else if (name == "metrics") slot = &out.metrics;
    else if (count == 1) slot = &out.ws;  // one socket, named after its unit by default: the ws:// listener
    if (slot == nullptr) {
      error = "socket activation: socket " + std::to_string(i + 1) + " of " + std::to_string(count) + " is named \"" +
              name + "\" (LISTEN_FDNAMES); with several sockets name each ws, wss or metrics "
              "(FileDescriptorName= in its socket unit)";
      return false;
    }
    if (*slot >= 0) {
      error = "socket activation: two sockets are named \"" + name + "\" (LISTEN_FDNAMES); each of ws, wss and "
              "metrics names one socket";
      return false;
    }
    *slot = fd;
  }
  return true;
}

bool notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::size_t length = std::strlen(path);
  if (length < 2 || length >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0';  // the abstract namespace: no file, the name is the bytes
  const auto address_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  net::Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  return ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address),
                  address_length) == static_cast<ssize_t>(state.size());
}

bool notify_reloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<unsigned long long>(now.tv_sec) * 1000000ULL +
                    static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
  return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

std::uint64_t watchdog_usec() {
  long long usec = 0, pid = 0;
  if (!parse_number(std::getenv("WATCHDOG_USEC"), usec) || usec <= 0) return 0;
  const char* pid_text = std::getenv("WATCHDOG_PID");
  if (pid_text != nullptr && (!parse_number(pid_text, pid) || pid != ::getpid())) return 0;
  return static_cast<std::uint64_t>(usec);
}

Watchdog::Watchdog(Server& server, std::uint32_t period_ms)
    : server_(server),
      period_ms_(period_ms == 0 ? 1 : period_ms),
      timer_(&Watchdog::on_timer, this),
      answered_(std::make_shared<std::vector<std::atomic<std::uint64_t>>>(server.config().threads)) {
  // The timer belongs to reactor 0: started from its thread.
  if (net::Reactor* reactor = server_.reactor(0)) reactor->post([this] { tick(); });
}

Watchdog::~Watchdog() { timer_.cancel(); }

std::unique_ptr<Watchdog> Watchdog::from_environment(Server& server) {
  const std::uint64_t usec = watchdog_usec();
  if (usec == 0) return nullptr;
  const std::uint64_t period_ms = usec / 3000;
  return std::make_unique<Watchdog>(server, static_cast<std::uint32_t>(period_ms > 3600000 ? 3600000 : period_ms));
}

void Watchdog::probe() {
  const std::uint64_t probe = probe_.fetch_add(1) + 1;
  for (unsigned i = 0; i < answered_->size(); ++i) {
    net::Reactor* reactor = server_.reactor(i);
    if (reactor == nullptr) continue;
    // The highest probe seen: probes posted from two threads may arrive out of order (only this reactor writes).
    reactor->post([answered = answered_, i, probe] {
      std::atomic<std::uint64_t>& slot = (*answered)[i];
      if (slot.load(std::memory_order_relaxed) < probe) slot.store(probe, std::memory_order_relaxed);
    });
  }
}

bool Watchdog::all_turned() const {
  const std::uint64_t probe = probe_.load();
  for (const auto& answered : *answered_) {
    if (answered.load(std::memory_order_relaxed) != probe) return false;
  }
  return true;
}

void Watchdog::on_timer(net::Timer&, void* context) { static_cast<Watchdog*>(context)->tick(); }

void Watchdog::tick() {
  if (all_turned() && notify("WATCHDOG=1")) sent_.fetch_add(1, std::memory_order_relaxed);
  probe();
  if (net::Reactor* reactor = server_.reactor(0)) reactor->timers().schedule(timer_, period_ms_);
}

}  // namespace edgews::core::systemd
