// Boost.Beast echo server for bench/load/peers.sh: asynchronous, one thread, one io_context, as the Beast
// examples (websocket_server_async) do it, with what the documentation offers for speed: a plain tcp::socket
// under the stream (no tcp_stream timers), no automatic fragmentation, TCP_NODELAY, and a flat_buffer reused for
// every message. Per-message deflate is off (Beast's default; set explicitly). Text and binary are echoed with
// the opcode they came with.
//
// TLS mode (scenario (e)): the same session over boost::asio::ssl::stream<tcp::socket>, TLS 1.3 only, the
// OpenSSL defaults otherwise (as the Beast example websocket_server_async_ssl): handshake, then accept.
//
// usage: beast_echo [PORT] [--tls CERT KEY]   (0 = any free port; prints "beast_echo: listening on port N")
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (fixed in 1.75).
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>  // teardown for websocket::stream<asio::ssl::stream<...>>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

using TlsSocket = asio::ssl::stream<tcp::socket>;

template <class NextLayer>
class Session : public std::enable_shared_from_this<Session<NextLayer>> {
 public:
  explicit Session(tcp::socket socket) : ws_(std::move(socket)) {}
  Session(tcp::socket socket, asio::ssl::context& tls) : ws_(std::move(socket), tls) {}

  void start() {
    beast::get_lowest_layer(ws_).set_option(tcp::no_delay(true));
    websocket::permessage_deflate pmd;
    pmd.server_enable = false;
    pmd.client_enable = false;
    ws_.set_option(pmd);
    ws_.auto_fragment(false);
    ws_.read_message_max(1 << 24);
    if constexpr (std::is_same_v<NextLayer, TlsSocket>) {
      ws_.next_layer().async_handshake(asio::ssl::stream_base::server,
                                       [self = this->shared_from_this()](beast::error_code ec) {
                                         if (!ec) self->accept();
                                       });
    } else {
      accept();
    }
  }

 private:
  void accept() {
    ws_.async_accept([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) self->read();
    });
  }

  void read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->ws_.text(self->ws_.got_text());
      self->ws_.async_write(self->buffer_.data(), [self](beast::error_code wec, std::size_t n) {
        if (wec) return;
        self->buffer_.consume(n);
        self->read();
      });
    });
  }

  websocket::stream<NextLayer> ws_;
  beast::flat_buffer buffer_;
};

void do_accept(tcp::acceptor& acceptor, asio::ssl::context* tls) {
  acceptor.async_accept([&acceptor, tls](beast::error_code ec, tcp::socket socket) {
    if (!ec) {
      if (tls) std::make_shared<Session<TlsSocket>>(std::move(socket), *tls)->start();
      else std::make_shared<Session<tcp::socket>>(std::move(socket))->start();
    }
    do_accept(acceptor, tls);
  });
}

}  // namespace

int main(int argc, char** argv) {
  const auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 0);
  std::optional<asio::ssl::context> tls;
  if (argc > 4 && std::strcmp(argv[2], "--tls") == 0) {
    tls.emplace(asio::ssl::context::tls_server);
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_3_VERSION);
    tls->use_certificate_chain_file(argv[3]);
    tls->use_private_key_file(argv[4], asio::ssl::context::pem);
  }
  asio::io_context ioc(1);  // concurrency hint 1: one thread, no locking in the scheduler
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  acceptor.listen(asio::socket_base::max_listen_connections);
  std::printf("beast_echo: listening on port %u\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  do_accept(acceptor, tls ? &*tls : nullptr);
  ioc.run();
}
