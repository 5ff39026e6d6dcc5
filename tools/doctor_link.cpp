#include "tools/doctor_link.hpp"

#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/socket.hpp"

namespace edgews::tools {

namespace {

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left > 1000000 ? 1000000 : left);
}

}  // namespace

bool Link::wait(short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd_.get(), events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::unique_ptr<Link> Link::open(const codec::WsUrl& url, const TlsSetup& tls, Clock::time_point deadline,
                                 std::string& error, bool& tls_failed) {
  tls_failed = false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    error = "cannot resolve '" + url.host + "': " + ::gai_strerror(rc);
    return nullptr;
  }
  std::unique_ptr<Link> link(new Link());
  std::string failures;
  for (addrinfo* ai = found; ai != nullptr && !link->fd_; ai = ai->ai_next) {
    net::Address address;
    std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
    address.length = ai->ai_addrlen;
    net::Error e;
    net::Fd fd = net::connect_tcp(address, /*non_blocking=*/true, e);
    if (!fd) {
      failures += (failures.empty() ? "" : "; ") + e.message;
      continue;
    }
    link->fd_ = std::move(fd);
    if (!link->wait(POLLOUT, deadline)) {
      failures += (failures.empty() ? "" : "; ") + std::string("connect to ") + address.to_string() + ": timed out";
      link->fd_.reset();
      continue;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    ::getsockopt(link->fd_.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error != 0) {
      failures += (failures.empty() ? "" : "; ") + net::system_error(so_error, "connect to " + address.to_string()).message;
      link->fd_.reset();
      continue;
    }
    link->peer_ = address.to_string();
  }
  ::freeaddrinfo(found);
  if (!link->fd_) {
    error = failures.empty() ? "no address for '" + url.host + "'" : failures;
    return nullptr;
  }
  if (!url.secure) return link;

  tls_failed = true;
  net::TlsError tls_error;
  link->ctx_ = net::make_client_context(tls.insecure ? std::string() : tls.ca_file, tls_error);
  if (!link->ctx_) {
    error = tls_error.message;
    return nullptr;
  }
  if (!tls.insecure && tls.ca_file.empty()) {
    // No --ca: trust what the system trusts, as a browser would.
    SSL_CTX_set_default_verify_paths(link->ctx_.get());
    SSL_CTX_set_verify(link->ctx_.get(), SSL_VERIFY_PEER, nullptr);
  }
  link->tls_ = net::TlsStream::connect(link->ctx_.get(), link->fd_.get(), url.host, tls_error);
  if (!link->tls_) {
    error = tls_error.message;
    return nullptr;
  }
  for (;;) {
    const net::TlsResult r = link->tls_->handshake();
    if (r.status == net::TlsIo::ok) break;
    if ((r.status == net::TlsIo::want_read || r.status == net::TlsIo::want_write) &&
        link->wait(r.status == net::TlsIo::want_read ? POLLIN : POLLOUT, deadline)) {
      continue;
    }
    if (r.status == net::TlsIo::want_read || r.status == net::TlsIo::want_write) {
      error = "TLS handshake timed out";
    } else {
      error = "TLS handshake failed: " + link->tls_->error_message();
      const long verify = SSL_get_verify_result(link->tls_->native());
      if (verify != X509_V_OK) {
        error += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) +
                 "; use --ca FILE to trust a private CA, or --insecure to skip verification)";
      }
    }
    return nullptr;
  }
  tls_failed = false;
  return link;
}

LinkRead Link::read(void* buf, std::size_t len, Clock::time_point deadline) {
  for (;;) {
    if (tls_) {
      const net::TlsResult r = tls_->read(buf, len);
      switch (r.status) {
        case net::TlsIo::ok: return {LinkStatus::ok, r.bytes};
        case net::TlsIo::closed: return {LinkStatus::eof, 0};
        case net::TlsIo::error: last_error_ = tls_->error_message(); return {LinkStatus::error, 0};
        case net::TlsIo::want_read:
        case net::TlsIo::want_write:
          if (!wait(r.status == net::TlsIo::want_read ? POLLIN : POLLOUT, deadline)) return {LinkStatus::timeout, 0};
          continue;
      }
    }
    const net::IoResult r = net::read_some(fd_.get(), buf, len);
    switch (r.status) {
      case net::IoStatus::ok: return {LinkStatus::ok, r.bytes};
      case net::IoStatus::closed: return {LinkStatus::eof, 0};
      case net::IoStatus::error:
        // A reset after the peer closed reads as the end of the stream, which is what the caller checks for.
        if (r.error == ECONNRESET) return {LinkStatus::eof, 0};
        last_error_ = std::strerror(r.error);
        return {LinkStatus::error, 0};
      case net::IoStatus::would_block:
        if (!wait(POLLIN, deadline)) return {LinkStatus::timeout, 0};
        continue;
    }
  }
}

LinkStatus Link::write_all(const void* data, std::size_t len, Clock::time_point deadline) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (len > 0) {
    std::size_t taken = 0;
    bool want_read = false, again = false;
    if (tls_) {
      const net::TlsResult r = tls_->write(p, len);
      taken = r.bytes;
      if (r.status == net::TlsIo::closed) return LinkStatus::eof;
      if (r.status == net::TlsIo::error) {
        last_error_ = tls_->error_message();
        return LinkStatus::error;
      }
      want_read = r.status == net::TlsIo::want_read;
      again = r.status != net::TlsIo::ok;
    } else {
      iovec one{const_cast<std::uint8_t*>(p), len};
      const net::IoResult r = net::write_vec(fd_.get(), &one, 1);
      if (r.status == net::IoStatus::closed) return LinkStatus::eof;
      if (r.status == net::IoStatus::error) {
        last_error_ = std::strerror(r.error);
        return LinkStatus::error;
      }
      taken = r.status == net::IoStatus::ok ? r.bytes : 0;
      again = r.status == net::IoStatus::would_block;
    }
    p += taken;
    len -= taken;
    if (again && !wait(want_read ? POLLIN : POLLOUT, deadline)) return LinkStatus::timeout;
  }
  return LinkStatus::ok;
}

void Link::shutdown_tls() {
  if (tls_) tls_->shutdown();
}

std::string Link::tls_summary() const {
  if (!tls_) return {};
  return std::string(tls_->version()) + " " + std::string(tls_->cipher());
}

}  // namespace edgews::tools
