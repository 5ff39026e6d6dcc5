#include "core/transport.hpp"

#include "core/connection_extras.hpp"
#include "core/server.hpp"
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

net::IoResult TlsTransport::read(Connection& c, void* buf, std::size_t len) { return to_io(c.tls_stream().read(buf, len)); }

net::IoResult TlsTransport::write(Connection& c, const iovec* iov, int count) { return to_io(c.tls_stream().write(iov, count)); }

void TlsTransport::shutdown(Connection& c) { c.tls_stream().shutdown(); }

void TlsTransport::close(Connection& c) {
  c.extras_->tls.reset();
  c.tls_ = false;
}

net::Error Worker::attach_tls(Connection& connection) {
  std::shared_ptr<net::TlsContext> context = server_.tls_context();
  net::TlsError error;
  std::unique_ptr<net::TlsStream> stream = net::TlsStream::accept(context, connection.fd_, error);
  if (!stream) return net::Error{EPROTO, error.message};
  connection.extras().tls = std::move(stream);
  connection.tls_ = true;
  return {};
}

Error Server::load_tls() {
  net::TlsOptions options;
  for (const TlsConfig::Certificate& certificate : config_.tls.certificates) {
    options.certificates.push_back({certificate.cert_chain_file, certificate.key_file});
  }
  options.min_version = config_.tls.min_version;
  options.enable_ktls = config_.tls.enable_ktls;
  net::TlsError error;
  std::shared_ptr<net::TlsContext> context = net::TlsContext::create(options, error);
  if (!context) return Error{"tls: " + error.message};
  tls_context_.store(std::move(context));
  return {};
}

Error Server::reload_tls() {
  std::shared_ptr<net::TlsContext> current = tls_context_.load();
  if (!current) return Error{"tls: no TLS listener is configured, nothing to reload"};
  net::TlsError error;
  std::shared_ptr<net::TlsContext> next = net::TlsContext::reload(current, error);
  // TlsContext::reload hands back `current` itself when the new files are unusable (never null).
  if (next == current) {
    logger_.log(LogLevel::error, "tls_reload", "%s", error.message.c_str());
    return Error{"tls: " + error.message};
  }
  tls_context_.store(std::move(next));
  logger_.log(LogLevel::info, "tls_reload", "certificates reloaded; open connections keep theirs");
  return {};
}

}  // namespace edgews::core
