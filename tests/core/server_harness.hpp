// A Server running on its own thread on 127.0.0.1 port 0, for the core tests, plus bounded waiting helpers.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/edgews.hpp"

namespace edgews::test {

// Polls `done` every millisecond until it holds or timeout_ms passes.
inline bool eventually(const std::function<bool()>& done, int timeout_ms = 5000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Lines logged by the server, for tests that check what it says.
struct LogCapture {
  std::mutex mutex;
  std::vector<std::string> lines;
  Logger logger(LogLevel level = LogLevel::info) {
    return Logger(level, LogFormat::text, [this](LogLevel, std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    });
  }
  bool contains(std::string_view text) {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines)
      if (line.find(text) != std::string::npos) return true;
    return false;
  }
};

// Test defaults: quick timeouts so that closing handshakes and shutdown finish fast.
inline ServerConfig test_config(unsigned threads = 1) {
  ServerConfig config;
  config.listeners = {ListenConfig{"127.0.0.1", 0, false}};
  config.threads = threads;
  config.limits.close_timeout_ms = 1000;
  config.limits.shutdown_timeout_ms = 2000;
  config.limits.ping_interval_ms = 0;
  return config;
}

class RunningServer {
 public:
  RunningServer() = default;
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;
  ~RunningServer() { stop(); }

  // Creates, starts and runs the server on a thread; fails the test (and returns false) on error.
  bool start(ServerConfig config, Callbacks callbacks, Logger logger = Logger(LogLevel::off, LogFormat::text)) {
    auto [server, error] = Server::create(std::move(config), std::move(callbacks), std::move(logger));
    if (!server) {
      ADD_FAILURE() << "Server::create: " << error.message;
      return false;
    }
    server_ = std::move(server);
    if ((error = server_->start())) {
      ADD_FAILURE() << "Server::start: " << error.message;
      return false;
    }
    port_ = server_->ports().at(0);
    thread_ = std::thread([this] { server_->run(); });
    return true;
  }

  // Graceful shutdown; returns when run() returned (or after timeout_ms, failing the test).
  void stop(int timeout_ms = 10000) {
    if (!thread_.joinable()) return;
    server_->shutdown();
    if (!eventually([this] { return server_->stopped(); }, timeout_ms)) ADD_FAILURE() << "shutdown did not finish";
    thread_.join();
  }

  Server& server() { return *server_; }
  Server* operator->() { return server_.get(); }
  std::uint16_t port() const { return port_; }

 private:
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace edgews::test
