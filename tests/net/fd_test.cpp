#include "net/fd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace edgews::net {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(Fd, ClosesOnDestructionAndMovesOwnership) {
  int raw[2];
  ASSERT_EQ(::pipe(raw), 0);
  ::close(raw[1]);
  {
    Fd a(raw[0]);
    Fd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw[0]);
    EXPECT_TRUE(is_open(raw[0]));
  }
  EXPECT_FALSE(is_open(raw[0]));
}

}  // namespace
}  // namespace edgews::net
