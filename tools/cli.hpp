// A small command-line reader for the edgews tools: --name value, --name=value, flags, numbers with ranges, and
// errors that say which option was wrong and how to get help.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace edgews::tools {

class Args {
 public:
  Args(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {}

  // Advances to the next option; false at the end or after an error (check ok()).
  bool next() {
    if (!ok_ || index_ >= argc_) return false;
    std::string_view arg = argv_[index_++];
    inline_value_.reset();
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage_, stdout);
      std::exit(0);
    }
    if (const std::size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      inline_value_ = std::string(arg.substr(eq + 1));
      arg = arg.substr(0, eq);
    }
    current_ = arg;
    return true;
  }
  bool is(std::string_view name) const { return current_ == name; }
  std::string_view current() const { return current_; }
  bool positional() const { return !current_.starts_with("-"); }

  std::string value() {
    if (inline_value_) return *inline_value_;
    if (index_ >= argc_) {
      fail(std::string(current_) + " needs a value");
      return {};
    }
    return argv_[index_++];
  }
  long long number(long long min, long long max) { return bounded(min, max, false); }
  // 0 (the feature off) or a whole number from min to max.
  long long number_or_off(long long min, long long max) { return bounded(min, max, true); }
  void unknown() { fail("unknown option " + std::string(current_)); }
  void fail(const std::string& message) {
    if (ok_) std::fprintf(stderr, "edgews: %s (try --help)\n", message.c_str());
    ok_ = false;
  }
  bool ok() const { return ok_; }

 private:
  long long bounded(long long min, long long max, bool zero_is_off) {
    const std::string text = value();
    if (!ok_) return zero_is_off ? 0 : min;
    char* end = nullptr;
    const long long n = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || (!(zero_is_off && n == 0) && (n < min || n > max))) {
      fail(std::string(current_) + " takes " + (zero_is_off ? "0 (off) or " : "") + "a whole number from " +
           std::to_string(min) + " to " + std::to_string(max) + ", not '" + text + "'");
      return zero_is_off ? 0 : min;
    }
    return n;
  }

  struct Optional {
    bool has = false;
    std::string text;
    void reset() { has = false; }
    Optional& operator=(std::string s) {
      text = std::move(s);
      has = true;
      return *this;
    }
    explicit operator bool() const { return has; }
    const std::string& operator*() const { return text; }
  };
  int argc_;
  char** argv_;
  const char* usage_;
  int index_ = 0;
  bool ok_ = true;
  std::string_view current_;
  Optional inline_value_;
};

}  // namespace edgews::tools
