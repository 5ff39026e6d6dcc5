#include "tools/options.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace edgews::tools {
namespace {

enum class Policy { close, drop };

// Runs `table` over `args` as a command line would give them; returns the error message ("" when none).
std::string read(const OptionTable& table, std::vector<std::string> args, bool* help = nullptr,
                 const OptionTable::Positional& positional = nullptr) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  bool help_asked = false;
  std::string error = table.read(static_cast<int>(argv.size()), argv.data(), help_asked, positional);
  if (help) *help = help_asked;
  return error;
}

struct Fields {
  std::uint32_t size = 64;
  std::uint64_t rate = 0;
  std::string host = "127.0.0.1";
  std::vector<std::string> origins;
  bool verbose = false;
  Policy policy = Policy::close;
  long long set_by_setter = -1;
};

OptionTable make_table(Fields& f) {
  OptionTable table("tool", "usage: tool [options]\n\n", "tail\n");
  table.number("--size", "BYTES", f.size, {16, 1024}, "message size")
      .number("--rate", "N", f.rate, {1, 1000}, "messages per second")
      .or_off()
      .text("--host", "ADDR", f.host, "address")
      .list("--origin", "ORIGIN", f.origins, "allowed origin (repeatable)")
      .flag("--verbose", f.verbose, true, "say more")
      .choice("--policy", "P", f.policy, {{"close", Policy::close}, {"drop", Policy::drop, "lose the message"}},
              "over the limit")
      .number("--port", "N", [&f](long long n) { f.set_by_setter = n; }, {0, 65535}, "a port through a setter")
      .shown_default("off")
      .custom("--even", "N",
              [](const std::string& value) {
                return value.size() % 2 == 0 ? std::string() : std::string(" takes an even number of characters");
              },
              "checked by its own setter")
      .unavailable("--redis", "built without Redis");
  return table;
}

TEST(OptionTable, TakesValuesSeparateOrAfterAnEqualsSign) {
  Fields f;
  const OptionTable table = make_table(f);
  EXPECT_EQ(read(table, {"--size", "100", "--host=::1", "--rate=0", "--verbose", "--origin", "a", "--origin=b",
                         "--policy", "drop", "--port", "0"}),
            "");
  EXPECT_EQ(f.size, 100u);
  EXPECT_EQ(f.host, "::1");
  EXPECT_EQ(f.rate, 0u);
  EXPECT_TRUE(f.verbose);
  EXPECT_EQ(f.origins, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.policy, Policy::drop);
  EXPECT_EQ(f.set_by_setter, 0);
}

TEST(OptionTable, RefusesNumbersOutsideTheRangeWithTheRangeInTheMessage) {
  Fields f;
  const OptionTable table = make_table(f);
  for (const char* bad : {"15", "1025", "-1", "", "abc", "3x", "99999999999999999999"}) {
    EXPECT_EQ(read(table, {"--size", bad}),
              std::string("tool: --size takes a whole number from 16 to 1024, not '") + bad + "'");
  }
  EXPECT_EQ(f.size, 64u) << "a refused value must not be stored";
  EXPECT_EQ(read(table, {"--rate", "1001"}), "tool: --rate takes 0 (off) or a whole number from 1 to 1000, not '1001'");
  EXPECT_EQ(read(table, {"--port", "65536"}), "tool: --port takes a whole number from 0 to 65535, not '65536'");
  EXPECT_EQ(f.set_by_setter, -1);
}

TEST(OptionTable, NamesTheOptionAndWhatWasWrong) {
  Fields f;
  const OptionTable table = make_table(f);
  EXPECT_EQ(read(table, {"--size"}), "tool: --size needs a value");
  EXPECT_EQ(read(table, {"--verbose=yes"}), "tool: --verbose takes no value");
  EXPECT_EQ(read(table, {"--sizes", "1"}), "tool: unknown option --sizes");
  EXPECT_EQ(read(table, {"--policy", "keep"}), "tool: --policy takes close or drop (lose the message), not 'keep'");
  EXPECT_EQ(read(table, {"--even", "abc"}), "tool: --even takes an even number of characters");
  EXPECT_EQ(read(table, {"--redis-prefix", "x"}), "tool: --redis-prefix: built without Redis");
  EXPECT_EQ(read(table, {"stray"}), "tool: unexpected argument 'stray'");
  EXPECT_EQ(read(table, {"--verbose", "--size", "8", "--size", "9"}),
            "tool: --size takes a whole number from 16 to 1024, not '8'")
      << "the first error is the one reported";
}

TEST(OptionTable, GivesOtherArgumentsToThePositionalHandler) {
  Fields f;
  const OptionTable table = make_table(f);
  std::vector<std::string> urls;
  const auto take = [&urls](std::string_view a) {
    if (!urls.empty()) return std::string("one URL only");
    urls.emplace_back(a);
    return std::string();
  };
  EXPECT_EQ(read(table, {"ws://a/", "--verbose"}, nullptr, take), "");
  EXPECT_EQ(urls, (std::vector<std::string>{"ws://a/"}));
  EXPECT_EQ(read(table, {"ws://b/"}, nullptr, take), "tool: one URL only");
}

TEST(OptionTable, StopsAtHelp) {
  Fields f;
  const OptionTable table = make_table(f);
  bool help = false;
  EXPECT_EQ(read(table, {"--verbose", "--help", "--size", "1"}, &help), "");
  EXPECT_TRUE(help);
  help = false;
  EXPECT_EQ(read(table, {"-h"}, &help), "");
  EXPECT_TRUE(help);
}

TEST(OptionTable, HelpShowsEachOptionWithItsDefaultAndRange) {
  Fields f;
  f.size = 128;  // a default is the field's value when the option is declared
  const std::string help = make_table(f).help();
  EXPECT_EQ(help.rfind("usage: tool [options]\n\n", 0), 0u);
  EXPECT_NE(help.find("  --size BYTES              message size (default 128; 16..1024)\n"), std::string::npos)
      << help;
  EXPECT_NE(help.find("  --rate N                  messages per second (default 0 = off, else 1..1000)\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("  --host ADDR               address (default 127.0.0.1)\n"), std::string::npos) << help;
  EXPECT_NE(help.find("  --verbose                 say more\n"), std::string::npos) << help;
  EXPECT_NE(help.find("  --policy P                over the limit (close or drop; default close)\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("  --port N                  a port through a setter (default off; 0..65535)\n"),
            std::string::npos)
      << help;
  EXPECT_EQ(help.find("--redis"), std::string::npos) << "an unavailable option is not offered";
  EXPECT_EQ(help.substr(help.size() - 5), "tail\n");
}

TEST(OptionTable, HelpWrapsLongTextUnderTheHelpColumn) {
  std::string value;
  OptionTable table("tool", "");
  std::string words;
  for (int i = 0; i < 60; ++i) words += "word" + std::to_string(i) + " ";
  table.text("--a-rather-long-option-name", "VALUE", value, words + "\n  aligned    columns stay");
  const std::string help = table.help();
  std::size_t start = 0, lines = 0;
  while (start < help.size()) {
    const std::size_t end = help.find('\n', start);
    const std::string line = help.substr(start, end - start);
    EXPECT_LE(line.size(), 116u) << line;
    if (lines > 0) {
      EXPECT_EQ(line.rfind(std::string(28, ' '), 0), 0u) << "continuations start at column 28: " << line;
    }
    start = end + 1;
    ++lines;
  }
  EXPECT_GT(lines, 3u);
  EXPECT_EQ(help.rfind("  --a-rather-long-option-name VALUE  word0 word1", 0), 0u) << help;
  EXPECT_NE(help.find("\n" + std::string(30, ' ') + "aligned    columns stay\n"), std::string::npos) << help;
  // Every word once, in order: wrapping moves words, it never drops or repeats one.
  std::string flat;
  for (std::size_t i = 0; i < help.size(); ++i) {
    const bool space = help[i] == ' ' || help[i] == '\n';
    if (!space) flat += help[i];
    else if (!flat.empty() && flat.back() != ' ') flat += ' ';
  }
  EXPECT_EQ(flat, "--a-rather-long-option-name VALUE " + words + "aligned columns stay ");
}

}  // namespace
}  // namespace edgews::tools
