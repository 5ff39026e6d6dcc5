#include "core/transport.hpp"
#include "core/connection_impl.hpp"

#include "core/connection_extras.hpp"
#include "core/server_impl.hpp"
#include "core/worker.hpp"
#include "net/tls.hpp"

namespace edgews::core {

namespace {

net::IoResult to_io(const net::TlsResult& r) {
  switch (r.status) {
    case net::TlsIo::ok:
      return {net::IoStatus::ok, r.bytes, 0};
    case net::TlsIo::want_read:
    case net::TlsIo::want_write:
      // A write may have taken part of the data before it had to wait.
      return {r.bytes != 0 ? net::IoStatus::ok : net::IoStatus::would_block, r.bytes, 0};
    case net::TlsIo::closed:
      return {net::IoStatus::closed, 0, 0};
    case net::TlsIo::error:
      break;
  }
  return {net::IoStatus::error, 0, EPROTO};
}

}  // namespace

// Data through a released (quiet) stream makes it busy again: it keeps its buffers and is listed for the sweep.
// A read that finds nothing leaves it quiet.
net::IoResult TlsTransport::read(ConnectionImpl& c, void* buf, std::size_t len) {
  if (c.stage_ == ConnectionImpl::Stage::tls && !c.worker_.take_handshake_step()) [[unlikely]] {
    c.worker_.read_later(c);  // this phase's share of handshakes is spent: the established connections go first
    return {net::IoStatus::would_block, 0, 0};
  }
  const net::TlsResult r = c.tls_stream().read(buf, len);
  if (c.tls_released_ && r.bytes != 0) [[unlikely]] c.worker_.hold_tls_buffers(c);
  // A read that has to write first (a handshake or key update message the socket would not take) goes on at
  // EPOLLOUT, which is polled for meanwhile; any other outcome needs no writability to read on.
  c.tls_read_waits_ = r.status == net::TlsIo::want_write;
  if (c.tls_read_waits_) [[unlikely]] c.poll_writable(true);
  return to_io(r);
}

net::IoResult TlsTransport::write(ConnectionImpl& c, const iovec* iov, int count) {
  const net::TlsResult r = c.tls_stream().write(iov, count);
  if (c.tls_released_ && r.bytes != 0) [[unlikely]] c.worker_.hold_tls_buffers(c);
  return to_io(r);
}

void TlsTransport::shutdown(ConnectionImpl& c) { c.tls_stream().shutdown(); }

void TlsTransport::close(ConnectionImpl& c) {
  c.extras_->tls.reset();
  c.tls_ = false;
}

net::Error Worker::attach_tls(ConnectionImpl& connection) {
  std::shared_ptr<net::TlsContext> context = server_.tls_context();
  net::TlsError error;
  std::unique_ptr<net::TlsStream> stream = net::TlsStream::accept(context, connection.fd_, error);
  if (!stream) return net::Error{EPROTO, error.message};
  connection.extras().tls = std::move(stream);
  connection.tls_ = true;
  return {};
}

// ---------------------------------------------------------------------------------------------------------------
// TLS record buffers. OpenSSL keeps a connection's read and write record buffers (about 17 KiB each) between
// messages, which spares a malloc/free per record while it is busy. A quiet connection gives them back: right
// after its upgrade, and through the quiet-connection sweep (core/worker.cpp) once it holds them again.

void Worker::settle_after_upgrade(ConnectionImpl& connection) {
  settling_.push_back(&connection);
  reactor_->defer(turn_hook_);
}

// What a TLS handshake allocates and frees again, about: its record buffers came and went with each flight
// (SSL_MODE_RELEASE_BUFFERS), besides the handshake buffer, the transcript and the key exchange. Freed between
// the connections' lasting allocations, it stays resident until a trim (Worker::trim_after_spike).
constexpr std::size_t kTlsHandshakeFreedBytes = 32 * 1024;

// At the end of the upgrade's turn, when the 101 (and whatever on_open sent) has been written.
void Worker::release_settled_tls(ConnectionImpl& connection) {
  if (connection.state_ == ConnectionImpl::State::dead || !connection.tls_ || connection.tls_released_) return;
  // Counted here, once per upgraded connection: a burst of handshakes is trimmed after it, never during it.
  note_freed(kTlsHandshakeFreedBytes);
  if (release_tls_buffers(connection)) return;
  connection.tls_stream().keep_buffers();
  list_for_sweep(connection);  // still busy: the sweep tries again once it is quiet
  list_memory_holder(connection);
}

// Gives a quiet connection's record buffers back; false (nothing freed) while it has output queued or OpenSSL
// holds unprocessed bytes.
bool Worker::release_tls_buffers(ConnectionImpl& connection) {
  if (!connection.queue_empty() || !connection.tls_stream().release_buffers()) return false;
  connection.tls_released_ = true;
  counters_.bump_tls_buffers_released();
  return true;
}

void Worker::hold_tls_buffers(ConnectionImpl& connection) {
  connection.tls_released_ = false;
  connection.tls_stream().keep_buffers();
  list_for_sweep(connection);
  list_memory_holder(connection);
}

Error ServerImpl::load_tls() {
  net::TlsOptions options;
  for (const TlsConfig::Certificate& certificate : config_.tls.certificates) {
    options.certificates.push_back({certificate.cert_chain_file, certificate.key_file});
  }
  options.min_version = config_.tls.min_version;
  options.enable_ktls = config_.tls.enable_ktls;
  net::TlsError error;
  std::shared_ptr<net::TlsContext> context = net::TlsContext::create(options, error);
  if (!context) return Error{Errc::tls_config, "tls: " + error.message};
  tls_context_.store(std::move(context));
  return {};
}

Error ServerImpl::reload_tls() {
  std::shared_ptr<net::TlsContext> current = tls_context_.load();
  if (!current) return Error{Errc::wrong_state, "tls: no TLS listener is configured, nothing to reload"};
  net::TlsError error;
  std::shared_ptr<net::TlsContext> next = net::TlsContext::reload(current, error);
  // TlsContext::reload hands back `current` itself when the new files are unusable (never null).
  if (next == current) {
    logger_.log(LogLevel::error, "tls_reload", "%s", error.message.c_str());
    return Error{Errc::tls_config, "tls: " + error.message};
  }
  tls_context_.store(std::move(next));
  logger_.log(LogLevel::info, "tls_reload", "certificates reloaded; open connections keep theirs");
  return {};
}

}  // namespace edgews::core
