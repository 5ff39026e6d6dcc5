// The public error type: success is empty and false, every code has its own stable name.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/edgews.hpp"

namespace edgews::test {
namespace {

TEST(Error, DefaultIsSuccessWithoutAMessage) {
  const Error error;
  EXPECT_FALSE(error);
  EXPECT_EQ(error.code, Errc::none);
  EXPECT_TRUE(error.message.empty());
  EXPECT_EQ(error.sys_errno, 0);
  EXPECT_EQ(error.http_status, 0);
}

TEST(Error, AnyCodeButNoneIsAnError) {
  const Error config{Errc::invalid_config, "threads must be between 1 and 256"};
  const Error silent{Errc::timeout, {}};
  EXPECT_TRUE(config);
  EXPECT_TRUE(silent) << "the code decides, not the message";
}

TEST(Error, EveryCodeHasItsOwnStableName) {
  std::set<std::string> names;
  const auto last = static_cast<unsigned>(Errc::certificate_rejected);
  for (unsigned i = 0; i <= last; ++i) {
    const std::string name(errc_name(static_cast<Errc>(i)));
    EXPECT_NE(name, "unknown") << "code " << i << " has no name";
    EXPECT_TRUE(names.insert(name).second) << "two codes are named " << name;
  }
  EXPECT_EQ(errc_name(Errc::none), "none");
  EXPECT_EQ(errc_name(Errc::listen_failed), "listen_failed");
  EXPECT_EQ(errc_name(Errc::resolve_failed), "resolve_failed");
  EXPECT_EQ(errc_name(static_cast<Errc>(last + 1)), "unknown");
}

TEST(Version, MatchesTheProject) {
  EXPECT_EQ(version(), "0.2.0");
  EXPECT_EQ(version(), std::to_string(EDGEWS_VERSION_MAJOR) + "." + std::to_string(EDGEWS_VERSION_MINOR) + "." +
                           std::to_string(EDGEWS_VERSION_PATCH));
}

}  // namespace
}  // namespace edgews::test
