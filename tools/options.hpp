// The command-line options of an edgews tool, declared once each in a table: name, value syntax, help, range and
// where the value goes (a field or a setter). The parser, --help, the range checks and the error messages are all
// made from the table, so that an option's limits and its help cannot disagree.
//
//   OptionTable table("edgews serve", "usage: edgews serve [options]\n");
//   table.number("--port", "N", port, {0, 65535}, "listen port; 0 = any free port, printed at start");
//   table.choice("--rate-policy", "P", limits.rate_policy, {{"close", RatePolicy::close}, {"pause", ...}}, "...");
//   if (int status = 0; !table.parse(argc, argv, status)) return status;
//
// The default shown by --help is the field's value when the option is declared (set defaults first), or the text
// given to shown_default(). Errors read "TOOL: --name what was wrong (try --help)". The table refers to the fields
// it sets: parse before they go out of scope.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace edgews::tools {

// The accepted range of a number option, checked against the type of its field when the program is compiled: a
// bound the field cannot hold does not compile.
template <class T>
struct Range {
  long long min;
  long long max;
  consteval Range(long long lo, long long hi) : min(lo), max(hi) {
    if (lo > hi) throw "a range's minimum is above its maximum";
    if (static_cast<long double>(hi) > static_cast<long double>(std::numeric_limits<T>::max()) ||
        static_cast<long double>(lo) < static_cast<long double>(std::numeric_limits<T>::lowest())) {
      throw "the range does not fit the type of the option's field";
    }
  }
};

template <class T>
struct Choice {
  std::string_view name;
  T value;
  std::string_view meaning = {};  // shown in the error message: "ws (the --port listener)"
};

class OptionTable {
 public:
  // tool: "edgews serve", the prefix of every error. head: printed by --help above the options, tail below them.
  OptionTable(std::string tool, std::string head, std::string tail = {})
      : tool_(std::move(tool)), head_(std::move(head)), tail_(std::move(tail)) {}

  // Takes the value (empty for a switch); returns what was wrong with it ("" when nothing was), which the error
  // message puts right after the option's name: " takes a non-empty TEXT", ": the host is empty".
  using Apply = std::function<std::string(const std::string& value)>;

  // A switch without a value.
  OptionTable& flag(std::string name, std::function<void()> set, std::string help) {
    return add(std::move(name), {}, std::move(help), {}, [set = std::move(set)](const std::string&) {
      set();
      return std::string();
    });
  }
  template <class T>
  OptionTable& flag(std::string name, T& field, T value, std::string help) {
    return flag(std::move(name), [&field, value] { field = value; }, std::move(help));
  }

  // A whole number in range, or with or_off() also 0 (the feature off).
  template <class T>
  OptionTable& number(std::string name, std::string syntax, T& field, std::type_identity_t<Range<T>> range,
                      std::string help) {
    add_number(std::move(name), std::move(syntax), std::move(help), range.min, range.max,
               [&field](long long n) { field = static_cast<T>(n); });
    last().default_value = std::to_string(static_cast<long long>(field));
    return *this;
  }
  OptionTable& number(std::string name, std::string syntax, std::function<void(long long)> set,
                      Range<long long> range, std::string help) {
    return add_number(std::move(name), std::move(syntax), std::move(help), range.min, range.max, std::move(set));
  }
  OptionTable& or_off() {
    last().zero_is_off = true;
    return *this;
  }

  // A string; with a default when the field has one.
  OptionTable& text(std::string name, std::string syntax, std::string& field, std::string help) {
    add(std::move(name), std::move(syntax), std::move(help), field, [&field](const std::string& value) {
      field = value;
      return std::string();
    });
    return *this;
  }
  // A repeatable string: each occurrence adds one, in order.
  OptionTable& list(std::string name, std::string syntax, std::vector<std::string>& field, std::string help) {
    return add(std::move(name), std::move(syntax), std::move(help), {}, [&field](const std::string& value) {
      field.push_back(value);
      return std::string();
    });
  }
  // Anything else: the setter checks the value and says what was wrong with it.
  OptionTable& custom(std::string name, std::string syntax, Apply apply, std::string help) {
    return add(std::move(name), std::move(syntax), std::move(help), {}, std::move(apply));
  }

  // One of a few words.
  template <class T>
  OptionTable& choice(std::string name, std::string syntax, std::function<void(T)> set,
                      std::vector<Choice<T>> choices, std::string help) {
    std::string names, error = " takes ";
    for (std::size_t i = 0; i < choices.size(); ++i) {
      const char* sep = i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ";
      names += sep;
      names += choices[i].name;
      error += sep;
      error += choices[i].name;
      if (!choices[i].meaning.empty()) error += " (" + std::string(choices[i].meaning) + ")";
    }
    add(std::move(name), std::move(syntax), std::move(help), {},
        [set = std::move(set), choices = std::move(choices), error](const std::string& value) {
          for (const Choice<T>& c : choices) {
            if (value == c.name) {
              set(c.value);
              return std::string();
            }
          }
          return error + ", not '" + value + "'";
        });
    last().choices = std::move(names);
    return *this;
  }
  template <class T>
  OptionTable& choice(std::string name, std::string syntax, T& field, std::vector<Choice<T>> choices,
                      std::string help) {
    std::string shown;
    for (const Choice<T>& c : choices) {
      if (c.value == field) shown = std::string(c.name);
    }
    choice<T>(std::move(name), std::move(syntax), [&field](T value) { field = value; }, std::move(choices),
              std::move(help));
    last().default_value = std::move(shown);
    return *this;
  }

  // The default --help shows when the field's own value does not say it ("one second's worth").
  OptionTable& shown_default(std::string text) {
    last().default_value = std::move(text);
    return *this;
  }
  // Options whose name starts with `prefix` that this build does not have: using one is refused with `reason`.
  OptionTable& unavailable(std::string prefix, std::string reason) {
    unavailable_.emplace_back(std::move(prefix), std::move(reason));
    return *this;
  }

  // What a positional argument (one that is not an option) is; "" when it is fine, else what was wrong with it.
  using Positional = std::function<std::string(std::string_view argument)>;

  // Reads --name value, --name=value and switches; positional, when given, takes the other arguments. False when
  // the tool is to exit with `status`: 0 after --help (printed on stdout), 2 after an error (printed on stderr).
  bool parse(int argc, char** argv, int& status, const Positional& positional = nullptr) const {
    bool help_asked = false;
    const std::string problem = read(argc, argv, help_asked, positional);
    if (help_asked) {
      std::fputs(help().c_str(), stdout);
      status = 0;
      return false;
    }
    if (!problem.empty()) {
      std::fprintf(stderr, "%s (try --help)\n", problem.c_str());
      status = 2;
      return false;
    }
    return true;
  }

  // parse() without printing: "" when every argument was taken, else the error message ("TOOL: ..."). Stops at
  // -h or --help, with help_asked set.
  std::string read(int argc, char** argv, bool& help_asked, const Positional& positional = nullptr) const {
    for (int i = 0; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        help_asked = true;
        return {};
      }
      std::string problem;
      if (!arg.starts_with("-") || arg == "-") {
        problem = positional ? positional(arg) : "unexpected argument '" + std::string(arg) + "'";
      } else {
        problem = apply(arg, argc, argv, i);
      }
      if (!problem.empty()) return tool_ + ": " + problem;
    }
    return {};
  }

  // The text of --help: head, one entry per option (help wrapped to the terminal's usual width, with the default
  // and the range), tail.
  std::string help() const {
    std::string out = head_;
    for (const Option& o : options_) {
      std::string entry = "  " + o.name + (o.syntax.empty() ? "" : " " + o.syntax);
      if (entry.size() + 2 > kHelpColumn) entry += "  ";
      else entry.resize(kHelpColumn, ' ');
      out += wrap(entry, o.help + bounds_note(o));
    }
    return out + tail_;
  }

 private:
  static constexpr std::size_t kHelpColumn = 28;
  static constexpr std::size_t kHelpWidth = 116;

  struct Option {
    std::string name, syntax, help, default_value;
    std::string choices;                        // "close or drop"
    Apply apply;                                // all but numbers
    std::function<void(long long)> set_number;  // numbers, once checked against the range
    bool zero_is_off = false;
    long long min = 0, max = 0;
  };

  OptionTable& add(std::string name, std::string syntax, std::string help, std::string default_value, Apply apply) {
    Option& o = options_.emplace_back();
    o.name = std::move(name);
    o.syntax = std::move(syntax);
    o.help = std::move(help);
    o.default_value = std::move(default_value);
    o.apply = std::move(apply);
    return *this;
  }
  OptionTable& add_number(std::string name, std::string syntax, std::string help, long long min, long long max,
                          std::function<void(long long)> set) {
    add(std::move(name), std::move(syntax), std::move(help), {}, {});
    Option& o = last();
    o.set_number = std::move(set);
    o.min = min;
    o.max = max;
    return *this;
  }
  static std::string apply_number(const Option& o, const std::string& text) {
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(text.c_str(), &end, 10);
    const bool off = o.zero_is_off && n == 0;
    if (text.empty() || *end != '\0' || errno == ERANGE || (!off && (n < o.min || n > o.max))) {
      return " takes " + std::string(o.zero_is_off ? "0 (off) or " : "") + "a whole number from " +
             std::to_string(o.min) + " to " + std::to_string(o.max) + ", not '" + text + "'";
    }
    o.set_number(n);
    return {};
  }
  Option& last() { return options_.back(); }

  std::string apply(std::string_view arg, int argc, char** argv, int& i) const {
    std::string_view name = arg;
    std::string value;
    bool has_value = false;
    if (const std::size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    for (const Option& o : options_) {
      if (o.name != name) continue;
      if (o.syntax.empty()) {
        if (has_value) return std::string(name) + " takes no value";
      } else if (!has_value) {
        if (i + 1 >= argc) return std::string(name) + " needs a value";
        value = argv[++i];
      }
      std::string problem = o.set_number ? apply_number(o, value) : o.apply(value);
      return problem.empty() ? problem : std::string(name) + problem;
    }
    for (const auto& [prefix, reason] : unavailable_) {
      if (name.starts_with(prefix)) return std::string(name) + ": " + reason;
    }
    return "unknown option " + std::string(name);
  }

  // "(close or drop; default close)", "(default 16777216; 1..1099511627776)", "(default 0 = off, else 1..9)".
  static std::string bounds_note(const Option& o) {
    std::vector<std::string> parts;
    if (!o.choices.empty()) parts.push_back(o.choices);
    const std::string range = std::to_string(o.min) + ".." + std::to_string(o.max);
    if (o.set_number && o.zero_is_off && o.default_value == "0") {
      parts.push_back("default 0 = off, else " + range);
    } else {
      if (!o.default_value.empty()) parts.push_back("default " + o.default_value);
      if (o.set_number) parts.push_back((o.zero_is_off ? "0 = off, else " : "") + range);
    }
    std::string note;
    for (const std::string& part : parts) note += (note.empty() ? " (" : "; ") + part;
    return note.empty() ? note : note + ")";
  }

  // Words of `text` after `first`, continued at kHelpColumn; a '\n' in the text starts a new line, and the spaces
  // that open it indent its continuations too.
  static std::string wrap(std::string line, std::string_view text) {
    std::string out;
    std::size_t indent = kHelpColumn;
    bool at_start = true;
    while (!text.empty()) {
      if (text.front() == '\n') {
        out += line + "\n";
        text.remove_prefix(1);
        const std::size_t spaces = std::min(text.find_first_not_of(' '), text.size());
        indent = kHelpColumn + spaces;
        text.remove_prefix(spaces);
        line.assign(indent, ' ');
        at_start = true;
        continue;
      }
      // Spaces between words stay as written (aligned columns), except where a line breaks.
      const std::size_t gap = std::min(text.find_first_not_of(' '), text.size());
      const std::string_view spaces = text.substr(0, gap);
      text.remove_prefix(gap);
      const std::string_view word = text.substr(0, std::min(text.find_first_of(" \n"), text.size()));
      text.remove_prefix(word.size());
      if (word.empty()) continue;
      if (!at_start && line.size() + spaces.size() + word.size() > kHelpWidth) {
        out += line + "\n";
        line.assign(indent, ' ');
        at_start = true;
      }
      if (!at_start) line += spaces;
      line += word;
      at_start = false;
    }
    return out + line + "\n";
  }

  std::string tool_, head_, tail_;
  std::vector<Option> options_;
  std::vector<std::pair<std::string, std::string>> unavailable_;
};

}  // namespace edgews::tools
