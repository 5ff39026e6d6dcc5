#include "net/socket.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>

namespace edgews::net {
namespace {

TEST(Address, ParsesNumericIpv4AndIpv6) {
  Address a;
  Error error;
  ASSERT_TRUE(Address::parse("127.0.0.1", 8080, a, error)) << error.message;
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.port(), 8080);
  EXPECT_EQ(a.to_string(), "127.0.0.1:8080");
  ASSERT_TRUE(Address::parse("::1", 443, a, error)) << error.message;
  EXPECT_EQ(a.family(), AF_INET6);
  EXPECT_EQ(a.to_string(), "[::1]:443");
  ASSERT_TRUE(Address::parse("[::1]", 1, a, error)) << error.message;
  EXPECT_EQ(a.to_string(), "[::1]:1");
  ASSERT_TRUE(Address::parse("0.0.0.0", 0, a, error));
  EXPECT_EQ(a.to_string(), "0.0.0.0:0");
  ASSERT_TRUE(Address::parse("localhost", 9, a, error));
  EXPECT_EQ(a.to_string(), "127.0.0.1:9");
}

TEST(Address, RefusesHostNamesWithAMessageSayingWhatToUse) {
  Address a;
  Error error;
  for (const char* bad : {"example.com", "", "256.1.1.1", "[::1", "1.2.3.4.5"}) {
    error = {};
    EXPECT_FALSE(Address::parse(bad, 80, a, error)) << bad;
    EXPECT_TRUE(error);
    EXPECT_NE(error.message.find("numeric"), std::string::npos) << error.message;
  }
}

TEST(SocketIo, ReadReportsWouldBlockDataAndClose) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  Fd a(fds[0]), b(fds[1]);
  char buf[16];
  EXPECT_EQ(read_some(a.get(), buf, sizeof buf).status, IoStatus::would_block);
  ASSERT_EQ(::write(b.get(), "hello", 5), 5);
  IoResult r = read_some(a.get(), buf, sizeof buf);
  EXPECT_EQ(r.status, IoStatus::ok);
  EXPECT_EQ(r.bytes, 5u);
  b.reset();
  EXPECT_EQ(read_some(a.get(), buf, sizeof buf).status, IoStatus::closed);
}

// read_some uses recv(2), which refuses descriptors that are not sockets; a pipe must still read.
TEST(SocketIo, ReadWorksOnAPipeToo) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  Fd a(fds[0]), b(fds[1]);
  char buf[16];
  EXPECT_EQ(read_some(a.get(), buf, sizeof buf).status, IoStatus::would_block);
  ASSERT_EQ(::write(b.get(), "pipe", 4), 4);
  IoResult r = read_some(a.get(), buf, sizeof buf);
  EXPECT_EQ(r.status, IoStatus::ok);
  ASSERT_EQ(r.bytes, 4u);
  EXPECT_EQ(std::string(buf, 4), "pipe");
  b.reset();
  EXPECT_EQ(read_some(a.get(), buf, sizeof buf).status, IoStatus::closed);
}

TEST(SocketIo, WriteVecGathersAndReportsAClosedPeerWithoutSigpipe) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  Fd a(fds[0]), b(fds[1]);
  char head[] = "ab", tail[] = "cde";
  iovec iov[2] = {{head, 2}, {tail, 3}};
  IoResult r = write_vec(a.get(), iov, 2);
  EXPECT_EQ(r.status, IoStatus::ok);
  EXPECT_EQ(r.bytes, 5u);
  char buf[8] = {};
  ASSERT_EQ(::read(b.get(), buf, sizeof buf), 5);
  EXPECT_STREQ(buf, "abcde");
  b.reset();
  // With SIGPIPE at its default action the process would die here if MSG_NOSIGNAL were missing.
  auto previous = ::signal(SIGPIPE, SIG_DFL);
  r = write_vec(a.get(), iov, 2);
  ::signal(SIGPIPE, previous);
  EXPECT_EQ(r.status, IoStatus::closed);
  EXPECT_EQ(r.error, EPIPE);
}

}  // namespace
}  // namespace edgews::net
