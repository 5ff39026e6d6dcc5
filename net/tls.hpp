// TLS streams over non-blocking sockets (OpenSSL 3), driven by an edge-triggered reactor.
//
// A TlsStream does the socket I/O itself (OpenSSL's socket BIO) and reports what it waits for instead of blocking:
// want_read means "call me again after the descriptor is readable", want_write "after it is writable". The
// stream does not own the descriptor; whoever owns it closes it after the stream is gone. It writes with
// send(MSG_NOSIGNAL): a peer that is gone is an error, not a SIGPIPE. The one exception is a kernel with kernel TLS
// (the tls module loaded; kernel_tls_available()), where OpenSSL's socket BIO writes with write(2) itself: a
// process that uses TLS there must ignore SIGPIPE (edgews::Server does so when the signal has its default action).
//
// Edge-triggered rule. After an EPOLLIN edge the owner calls read() until it returns want_read (and then
// pending() is 0). Two shortcuts that are right for plain TCP hang a TLS connection:
//   - "a read shorter than the buffer proves the socket is drained": read() returns at most one record, and
//     OpenSSL reads ahead, so many records can already sit in OpenSSL's buffer while the kernel queue is empty
//     and no further edge will ever come;
//   - "the buffer was full, but the data is all here": decrypted bytes of a record larger than the caller's
//     buffer stay in OpenSSL (pending()).
// socket_drained() is the safe form of the first shortcut: it looks at OpenSSL's own last read(2) and its buffers.
// A want_write from read() (TLS 1.3 key update, post-handshake messages) means: wait for EPOLLOUT, then call
// read() again. Symmetrically a want_read from write() means: wait for EPOLLIN, then call write() again.
// With an edge-triggered registration that simply means "retry on the next edge of the kind asked for". The
// owner remembers writability and what waits for it (core's Connection polls EPOLLOUT only from an EAGAIN, or a
// read's want_write, until nothing waits any more), and OpenSSL says want_write only after its write(2) returned
// EAGAIN, so the EPOLLOUT edge it waits for is sure to come (adding EPOLLOUT reports a socket writable already).
#pragma once

#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/tls_options.hpp"

namespace edgews::net {

struct TlsError {
  bool ok = true;
  std::string message;  // names the file or setting, what is wrong with it, and what to do
};

struct TlsCertificate {
  std::string cert_chain_file;  // PEM: the certificate, then its intermediates (not the root)
  std::string key_file;         // PEM, unencrypted
};

struct TlsOptions {
  // The first is the default; the others are chosen when the client's SNI matches their SAN (or CN when
  // there is no SAN), wildcards included. Certificates are tried in order.
  std::vector<TlsCertificate> certificates;
  std::string min_version = "1.2";  // "1.2" or "1.3"
  // OpenSSL cipher list for TLS 1.2. Empty: ECDHE with AEAD only (Mozilla "intermediate"). TLS 1.3 suites
  // stay OpenSSL's defaults (all AEAD).
  std::string ciphers;
  // SSL_OP_ENABLE_KTLS when kernel_tls_available(); OpenSSL falls back to user-space records without it.
  bool enable_ktls = true;
  // Server preference order. A client that offers none of them gets no ALPN answer (as nginx does) rather
  // than a fatal alert, so an ALPN-less or h2-only client still reaches the HTTP layer that can reply.
  std::vector<std::string> alpn = {"http/1.1"};
};

// The server side, shared by all connections of a server and by all reactor threads: SSL_CTX is thread-safe
// for creating connections. The server session cache is off (it takes a lock shared by all threads and
// holds memory); resumption uses stateless tickets.
class TlsContext {
 public:
  // Checks every file up front and explains what is wrong: missing or unreadable file, not PEM, no
  // certificate in the chain file, expired or not yet valid certificate (with its dates), encrypted key,
  // key that does not belong to the certificate, unknown min_version, cipher list that selects nothing.
  static std::shared_ptr<TlsContext> create(const TlsOptions& options, TlsError& error);

  // For SIGHUP: builds a new context from the same options (the files are read again). On success returns
  // the new context; on failure returns `current` unchanged and fills `error`, so the server keeps serving.
  // Connections keep the context they were accepted with; new ones take the returned one.
  static std::shared_ptr<TlsContext> reload(const std::shared_ptr<TlsContext>& current, TlsError& error);

  const TlsOptions& options() const { return options_; }
  SSL_CTX* native_default() const { return contexts_.front().get(); }

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

 private:
  struct CtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
  };
  TlsContext() = default;
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg);

  TlsOptions options_;
  std::vector<std::unique_ptr<SSL_CTX, CtxFree>> contexts_;  // one per certificate, same settings
  std::vector<X509*> leaves_;                                // borrowed from contexts_, for SNI matching
  std::string alpn_wire_;                                    // length-prefixed protocol list (RFC 7301 3.1)
};

enum class TlsIo : std::uint8_t {
  ok,
  want_read,   // wait for the descriptor to be readable, then call the same function again
  want_write,  // wait for it to be writable, then call the same function again (with the same data)
  closed,      // the peer sent close_notify, or the connection ended (EOF) without one
  error,       // protocol or system error: close the descriptor; error_message() says why
};

struct TlsResult {
  TlsIo status;
  std::size_t bytes;  // read: bytes stored (status ok). write: bytes taken, in every status.
};

class TlsStream {
 public:
  // Server side, for an accepted non-blocking socket, read as the edge-triggered rule above says: within one call
  // it makes no read(2) after one that came back short (that one would only return EAGAIN).
  static std::unique_ptr<TlsStream> accept(const std::shared_ptr<TlsContext>& context, int fd, TlsError& error);
  // Client side (tools and tests): sends `sni` (unless empty or an IP literal) and, when the context
  // verifies peers, checks the certificate against it.
  static std::unique_ptr<TlsStream> connect(SSL_CTX* client_ctx, int fd, std::string_view sni, TlsError& error);
  // The same, resuming `session` (from session() of an earlier stream to the same server) when it is not null:
  // the server skips the certificate and key exchange work when it accepts it (resumed() tells).
  static std::unique_ptr<TlsStream> connect(SSL_CTX* client_ctx, int fd, std::string_view sni, SSL_SESSION* session,
                                            TlsError& error);

  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Drives the handshake; ok once it is complete (then handshake_done() is true).
  TlsResult handshake();
  bool handshake_done() const;

  // Reads decrypted bytes (drives the handshake first when it is not complete). See the edge-triggered rule.
  TlsResult read(void* buf, std::size_t len);

  // Encrypts the buffers in order. Small pieces are gathered into full records through a per-thread staging
  // buffer (no 1-byte records, no per-connection buffer); large pieces are encrypted in place. Reports the
  // bytes taken. After want_write the caller must offer at least the same bytes again: they may have moved
  // or be split differently and more may follow, but offering fewer makes OpenSSL fail ("bad length").
  TlsResult write(const iovec* iov, int iovcnt);
  TlsResult write(const void* buf, std::size_t len) {
    iovec one{const_cast<void*>(buf), len};
    return write(&one, 1);
  }

  // Decrypted bytes of the current record held by OpenSSL (SSL_pending).
  std::size_t pending() const;
  // Any input held by OpenSSL: decrypted bytes or read-ahead records not yet decrypted (SSL_has_pending).
  bool has_buffered_input() const;
  // True when another read() would only find the kernel queue empty: the last read(2) OpenSSL made on the socket
  // returned less than it asked for (or would block) and OpenSSL holds no input. This is the TLS form of "a short
  // read proves the socket is drained": after an EPOLLIN edge the owner may stop here instead of paying a read()
  // that ends in want_read (one system call per message at 1 in flight). As for plain sockets, an owner that saw
  // the peer hang up reads on to the EOF.
  bool socket_drained() const;

  // Record buffers. A stream is either quiet (no read and write record buffers, about 17 KiB each, between calls;
  // a server stream starts so, through its handshake) or busy (keep_buffers(): they stay between calls, which
  // spares a malloc/free per record).
  // release_buffers() frees them now and makes the stream quiet; the owner calls it once the upgrade is done and
  // whenever a busy connection has been quiet for a while, and keep_buffers() when data flows again.
  // release_buffers() returns false, freeing nothing, while they hold bytes not yet processed (a record not yet
  // decrypted or not completely received, decrypted bytes not yet read, an encrypted record not yet sent): try
  // again later. True when nothing is held any more.
  bool release_buffers();
  void keep_buffers();
  // Bytes that passed through the socket both ways so far (OpenSSL's own BIO counters: costs the I/O path
  // nothing). An owner compares two samples to tell whether the connection was quiet in between.
  std::uint64_t socket_bytes() const;

  // Sends close_notify once, best effort: never waits for the peer's.
  void shutdown();

  // Client side: the session to resume on the next connection to the same server, or null when the server gave
  // none that can be resumed (with TLS 1.3 its tickets arrive after the handshake, with the first records read).
  // The caller owns the reference (SSL_SESSION_free, or TlsSession).
  SSL_SESSION* session() const;
  bool resumed() const;              // this handshake resumed an earlier session
  std::string_view alpn() const;     // empty when none was negotiated
  std::string_view sni() const;      // the server name the client asked for, or empty
  std::string_view version() const;  // "TLSv1.3", "TLSv1.2"
  std::string_view cipher() const;
  bool ktls_send() const;  // records are encrypted by the kernel (sendfile-friendly)
  bool ktls_recv() const;

  // Why the last call returned error (OpenSSL's reason, or the errno of a failed system call). Built on
  // demand: the I/O path only remembers the codes.
  std::string error_message() const;
  SSL* native() const { return ssl_; }

 private:
  TlsStream(SSL* ssl, int fd, std::shared_ptr<TlsContext> context);
  TlsIo classify(int ret);
  void begin_call();  // before each SSL_* I/O call
  // Around each read and handshake call of a server stream in its handshake (net/tls.cpp).
  bool begin_handshake_step();
  void end_handshake_step();
  bool free_idle_buffers();   // SSL_free_buffers, refused while OpenSSL holds a partial record
  template <bool kernel_tls>
  static int read_socket(BIO* bio, char* buf, int len);          // the socket BIO's read (net/tls.cpp)
  static int write_socket(BIO* bio, const char* buf, int len);  // its write without a kernel tls ULP
  static bool attach_socket(SSL* ssl, int fd);  // SSL_set_fd with the BIO whose read is read_socket

  // What the last read(2) OpenSSL made on the socket says of the kernel queue (set by read_socket).
  enum class SocketQueue : std::uint8_t {
    maybe_more,  // the read filled what OpenSSL asked for
    empty,       // it came back short, would block or ended: see socket_drained()
    empty_now,   // the same, during the current call: an edge-triggered stream asks no more in it (read_socket)
  };

  SSL* ssl_;
  std::shared_ptr<TlsContext> context_;  // keeps the SNI callback's argument alive (null on the client side)
  unsigned long last_ssl_error_ = 0;
  int last_errno_ = 0;
  bool failed_ = false;  // after a fatal error OpenSSL forbids SSL_shutdown
  SocketQueue socket_queue_ = SocketQueue::maybe_more;
  bool edge_triggered_ = false;  // server side: a non-blocking socket read after EPOLLIN edges (see read_socket)
  // A server stream until its handshake is done (or the owner's first release_buffers() or keep_buffers()): record
  // buffers kept within each call and freed at its end.
  bool handshake_steps_ = false;
  int fd_;                       // the socket (not owned)
};

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using ClientContextPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

struct SslSessionDeleter {
  void operator()(SSL_SESSION* session) const { SSL_SESSION_free(session); }
};
using TlsSession = std::unique_ptr<SSL_SESSION, SslSessionDeleter>;

// Whether this kernel can take TLS records over (the "tls" TCP upper-layer protocol is built in, loaded, or loads on
// demand). Asked once per process, on first use; contexts ask for kTLS (SSL_OP_ENABLE_KTLS) only when it says yes.
bool kernel_tls_available();

// Client context: TLS 1.2+, the peer's chain verified (against ca_file or the system store) and its name checked
// by TlsStream::connect (host name or IP address), ALPN, kTLS when available, sessions resumable.
ClientContextPtr make_client_context(const ClientTlsOptions& options, TlsError& error);
// For tools and tests: verifies the server against `ca_file` (PEM), or verifies nothing when `ca_file` is empty.
ClientContextPtr make_client_context(const std::string& ca_file, TlsError& error);

}  // namespace edgews::net
