#include "core/log.hpp"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace edgews::core {

namespace {

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

std::string_view to_string(LogLevel level) { return kLevelNames[static_cast<int>(level)]; }

bool parse_log_level(std::string_view text, LogLevel& out) {
  for (int i = 0; i < 5; ++i) {
    if (text == kLevelNames[i]) {
      out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

Logger::Logger(LogLevel level, LogFormat format, Sink sink) : level_(level), format_(format), sink_(std::move(sink)) {}

void Logger::log(LogLevel level, std::string_view event, const char* format, ...) const {
  if (!enabled(level)) return;
  char message[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);

  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, now.tv_nsec / 1000000);

  std::string line;
  if (format_ == LogFormat::json) {
    line = "{\"time\":\"";
    line += stamp;
    line += "\",\"level\":\"";
    line += to_string(level);
    line += "\",\"event\":";
    append_json_string(line, event);
    line += ",\"message\":";
    append_json_string(line, message);
    line += "}";
  } else {
    line = stamp;
    line += ' ';
    line += to_string(level);
    line += ' ';
    line += event;
    line += ' ';
    line += message;
  }
  if (sink_) {
    sink_(level, line);
  } else {
    line += '\n';
    // One write per line, so lines from several reactor threads do not interleave.
    [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
  }
}

}  // namespace edgews::core
