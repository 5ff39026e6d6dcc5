// Records with descriptors over a Unix SOCK_SEQPACKET socket: what the live
// hand-off moves listeners and connections with.
#include "net/fd_passing.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

namespace edgews::net {
namespace {

std::string temp_path(const char *name) {
  return std::string(::testing::TempDir()) + "edgews-" + name + "-" + std::to_string(::getpid()) + ".sock";
}

struct Pair {
  Fd a, b;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    a = Fd(fds[0]);
    b = Fd(fds[1]);
  }
};

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t *>(s.data()), s.size()};
}

TEST(FdPassing, ARecordCarriesItsBytesAndWorkingDescriptors) {
  Pair pair;
  std::array<int, 2> pipe_a{}, pipe_b{};
  ASSERT_EQ(::pipe(pipe_a.data()), 0);
  ASSERT_EQ(::pipe(pipe_b.data()), 0);
  const int sent[2] = {pipe_a[1], pipe_b[1]};
  ASSERT_FALSE(send_record(pair.a.get(), bytes("state"), sent));
  std::array<std::uint8_t, 64> buffer{};
  std::vector<Fd> fds;
  Error error;
  const IoResult r = receive_record(pair.b.get(), buffer, fds, error);
  ASSERT_EQ(r.status, IoStatus::ok) << error.message;
  EXPECT_EQ(std::string(reinterpret_cast<char *>(buffer.data()), r.bytes), "state");
  ASSERT_EQ(fds.size(), 2u);
  // The received descriptors are copies of the sender's: writing to them
  // reaches the pipes' read ends.
  EXPECT_NE(fds[0].get(), pipe_a[1]);
  ASSERT_EQ(::write(fds[0].get(), "x", 1), 1);
  ASSERT_EQ(::write(fds[1].get(), "y", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe_a[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  ASSERT_EQ(::read(pipe_b[0], &c, 1), 1);
  EXPECT_EQ(c, 'y');
  for (int fd : {pipe_a[0], pipe_a[1], pipe_b[0], pipe_b[1]}) ::close(fd);
}

TEST(FdPassing, RecordsKeepTheirBoundaries) {
  Pair pair;
  ASSERT_FALSE(send_record(pair.a.get(), bytes("first"), {}));
  ASSERT_FALSE(send_record(pair.a.get(), bytes("second"), {}));
  std::array<std::uint8_t, 64> buffer{};
  std::vector<Fd> fds;
  Error error;
  EXPECT_EQ(receive_record(pair.b.get(), buffer, fds, error).bytes, 5u);
  EXPECT_EQ(receive_record(pair.b.get(), buffer, fds, error).bytes, 6u);
  EXPECT_TRUE(fds.empty());
}

TEST(FdPassing, ATruncatedRecordIsAnErrorAndItsDescriptorsAreClosed) {
  Pair pair;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ASSERT_FALSE(
      send_record(pair.a.get(), bytes("a record longer than the buffer"), std::span<const int>(&pipe_fds[1], 1)));
  ::close(pipe_fds[1]);
  std::array<std::uint8_t, 8> small{};
  std::vector<Fd> fds;
  Error error;
  const IoResult r = receive_record(pair.b.get(), small, fds, error);
  EXPECT_EQ(r.status, IoStatus::error);
  EXPECT_NE(error.message.find("longer than 8 bytes"), std::string::npos) << error.message;
  EXPECT_TRUE(fds.empty());
  // The only write end left was the one received and closed: the pipe reads
  // EOF.
  char c;
  EXPECT_EQ(::read(pipe_fds[0], &c, 1), 0);
  ::close(pipe_fds[0]);
}

TEST(FdPassing, RefusesEmptyRecordsAndTooManyDescriptors) {
  Pair pair;
  EXPECT_TRUE(send_record(pair.a.get(), {}, {}));
  std::vector<int> many(kMaxFdsPerRecord + 1, pair.a.get());
  const Error error = send_record(pair.a.get(), bytes("x"), many);
  EXPECT_TRUE(error);
  EXPECT_NE(error.message.find("at most"), std::string::npos);
}

TEST(FdPassing, ThePeerClosingIsReportedAsClosed) {
  Pair pair;
  pair.a.reset();
  std::array<std::uint8_t, 8> buffer{};
  std::vector<Fd> fds;
  Error error;
  EXPECT_EQ(receive_record(pair.b.get(), buffer, fds, error).status, IoStatus::closed);
}

// The peer sends two records (an answer "adopted" is one) and dies with a record of ours unread: the kernel then
// reports ECONNRESET once, ahead of the two records. They must still be read, then the end.
TEST(FdPassing, RecordsSentBeforeThePeerWentAwayAreReadPastItsReset) {
  Pair pair;
  const std::array<std::uint8_t, 3> one{'o', 'n', 'e'}, two{'t', 'w', 'o'}, unread{'u', 'n', 'r'};
  ASSERT_FALSE(send_record(pair.a.get(), one, {}));
  ASSERT_FALSE(send_record(pair.a.get(), two, {}));
  ASSERT_FALSE(send_record(pair.b.get(), unread, {}));
  pair.a.reset();
  std::array<std::uint8_t, 8> buffer{};
  std::vector<Fd> fds;
  Error error;
  IoResult r = receive_record(pair.b.get(), buffer, fds, error);
  ASSERT_EQ(r.status, IoStatus::ok) << error.message;
  EXPECT_EQ(std::string(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r.bytes)), "one");
  r = receive_record(pair.b.get(), buffer, fds, error);
  ASSERT_EQ(r.status, IoStatus::ok) << error.message;
  EXPECT_EQ(std::string(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r.bytes)), "two");
  EXPECT_EQ(receive_record(pair.b.get(), buffer, fds, error).status, IoStatus::closed);
}

TEST(FdPassing, TheListenerIsPrivateToItsUserAndReplacesAStaleSocket) {
  const std::string path = temp_path("listen");
  Error error;
  {
    Fd stale = listen_unix(path, error);
    ASSERT_TRUE(stale) << error.message;
  }  // closed, the file stays behind as after a crash
  Fd listener = listen_unix(path, error);
  ASSERT_TRUE(listener) << error.message;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Fd client = connect_unix(path, error);
  ASSERT_TRUE(client) << error.message;
  Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);
  EXPECT_TRUE(peer_is_same_user(server.get(), error));
  EXPECT_TRUE(peer_is_same_user(client.get(), error));
  ::unlink(path.c_str());
}

TEST(FdPassing, ExplainsPathsItCannotUse) {
  Error error;
  const std::string file = temp_path("regular");
  {
    FILE *f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  EXPECT_FALSE(listen_unix(file, error));
  EXPECT_NE(error.message.find("not a socket"), std::string::npos) << error.message;
  ::unlink(file.c_str());
  EXPECT_FALSE(listen_unix(std::string(200, 'x'), error));
  EXPECT_NE(error.message.find("bytes long"), std::string::npos) << error.message;
  EXPECT_FALSE(connect_unix(temp_path("nobody"), error));
  EXPECT_NE(error.message.find("connect to hand-off socket"), std::string::npos) << error.message;
}

}  // namespace
}  // namespace edgews::net
