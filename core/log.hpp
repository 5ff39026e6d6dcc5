// Logging: one line per event, with a level, in a stable format (text or JSON). The server never writes to a
// stream itself; it hands finished lines to a sink, which the embedder may replace.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace edgews::core {

enum class LogLevel : std::uint8_t { debug, info, warn, error, off };
enum class LogFormat : std::uint8_t { text, json };

std::string_view to_string(LogLevel level);
// Appends text as a JSON string literal (quotes, escapes for quote, backslash and control characters).
void append_json_string(std::string& out, std::string_view text);
bool parse_log_level(std::string_view text, LogLevel& out);

class Logger {
 public:
  using Sink = std::function<void(LogLevel, std::string_view line)>;

  Logger() = default;
  Logger(LogLevel level, LogFormat format, Sink sink = {});

  bool enabled(LogLevel level) const { return level >= level_ && level_ != LogLevel::off; }
  // printf-style message; `event` is a short stable key ("open", "close", "refused", ...).
  void log(LogLevel level, std::string_view event, const char* format, ...) const
      __attribute__((format(printf, 4, 5)));

 private:
  LogLevel level_ = LogLevel::info;
  LogFormat format_ = LogFormat::text;
  Sink sink_;  // empty: standard error
};

}  // namespace edgews::core
