// websocketpp echo server for bench/load/peers.sh: the library's echo_server example with what its
// documentation offers for speed: logging off, TCP_NODELAY, one thread (config::asio, no TLS). Per-message
// deflate is off (config::asio does not enable the extension). Text and binary keep their opcode.
//
// TLS mode (scenario (e)): the same server on config::asio_tls (the echo_server_tls example), TLS 1.3 only,
// OpenSSL's defaults otherwise.
//
// websocketpp 0.8.2 does not compile as C++20 (template-id constructors), so this file is C++17.
//
// usage: websocketpp_echo [PORT] [--tls CERT KEY]   (0 = any free port; prints "websocketpp_echo: listening on
// port N")
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (fixed in 1.75).
#include <utility>

#include <websocketpp/config/asio.hpp>
#include <websocketpp/server.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

namespace {

template <class Config>
int serve(std::uint16_t port, const char* cert, const char* key) {
  using Server = websocketpp::server<Config>;
  Server server;
  server.clear_access_channels(websocketpp::log::alevel::all);
  server.clear_error_channels(websocketpp::log::elevel::all);
  server.init_asio();
  server.set_reuse_addr(true);
  server.set_listen_backlog(4096);
  server.set_max_message_size(1 << 24);
  if constexpr (std::is_same_v<Config, websocketpp::config::asio_tls>) {
    // One context for all connections (the example builds one per connection, which only costs at connect).
    auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION);
    ctx->use_certificate_chain_file(cert);
    ctx->use_private_key_file(key, boost::asio::ssl::context::pem);
    server.set_tls_init_handler([ctx](websocketpp::connection_hdl) { return ctx; });
  }
  // After accept: the socket_init handler runs before the socket is open.
  server.set_tcp_post_init_handler([&server](websocketpp::connection_hdl hdl) {
    boost::system::error_code ec;
    server.get_con_from_hdl(hdl)->get_raw_socket().set_option(boost::asio::ip::tcp::no_delay(true), ec);
  });
  server.set_message_handler([&server](websocketpp::connection_hdl hdl, typename Server::message_ptr msg) {
    websocketpp::lib::error_code ec;
    server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
  });
  server.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  server.start_accept();
  websocketpp::lib::asio::error_code ec;
  std::printf("websocketpp_echo: listening on port %u\n", server.get_local_endpoint(ec).port());
  std::fflush(stdout);
  server.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);
  if (argc > 4 && std::strcmp(argv[2], "--tls") == 0) return serve<websocketpp::config::asio_tls>(port, argv[3], argv[4]);
  return serve<websocketpp::config::asio>(port, nullptr, nullptr);
}
