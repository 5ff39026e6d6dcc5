// Handing descriptors to another process: records over a Unix SOCK_SEQPACKET
// socket, each carrying bytes and up to kMaxFdsPerRecord descriptors
// (SCM_RIGHTS). The live hand-off of a server's listeners and connections to
// its successor runs on this: a record arrives whole or not at all, and the
// receiver gets its own copies of the descriptors (the sender's stay open until
// it closes them, so ownership moves only when the receiver says so).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "net/error.hpp"
#include "net/fd.hpp"
#include "net/socket.hpp"

namespace edgews::net {

inline constexpr std::size_t kMaxFdsPerRecord = 32;

// A listening SOCK_SEQPACKET socket at `path`, mode 0600 before it listens
// (whoever connects can take the server's clients, so only this user may). A
// stale socket file is replaced; any other file at the path is an error.
// Blocking; close-on-exec.
Fd listen_unix(const std::string &path, Error &error);
Fd connect_unix(const std::string &path, Error &error);
// True when the peer of a connected Unix socket runs as this process's
// effective user (SO_PEERCRED).
bool peer_is_same_user(int fd, Error &error);

// Sends one record: `data` (at least one byte) with `fds` attached.
Error send_record(int fd, std::span<const std::uint8_t> data, std::span<const int> fds);
// Receives one record into `buffer` (status ok, bytes = its length) and appends
// its descriptors to `fds` (close-on-exec, owned). A record longer than the
// buffer, or with more descriptors than kMaxFdsPerRecord, is an error: its
// surplus would be lost silently otherwise. closed: the peer is gone (after every
// record it sent: the ECONNRESET of a peer that left records unread is read past).
IoResult receive_record(int fd, std::span<std::uint8_t> buffer, std::vector<Fd> &fds, Error &error);

}  // namespace edgews::net
