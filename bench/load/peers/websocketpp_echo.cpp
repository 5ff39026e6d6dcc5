// websocketpp echo server for bench/load/peers.sh: the library's echo_server example with what its
// documentation offers for speed: logging off, TCP_NODELAY, one thread (config::asio, no TLS). Per-message
// deflate is off (config::asio does not enable the extension). Text and binary keep their opcode.
//
// websocketpp 0.8.2 does not compile as C++20 (template-id constructors), so this file is C++17.
//
// usage: websocketpp_echo [PORT]   (0 = any free port; prints "websocketpp_echo: listening on port N")
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (fixed in 1.75).
#include <utility>

#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <cstdio>
#include <cstdlib>

using Server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);
  Server server;
  server.clear_access_channels(websocketpp::log::alevel::all);
  server.clear_error_channels(websocketpp::log::elevel::all);
  server.init_asio();
  server.set_reuse_addr(true);
  server.set_listen_backlog(4096);
  server.set_max_message_size(1 << 24);
  // After accept: the socket_init handler runs before the socket is open.
  server.set_tcp_post_init_handler([&server](websocketpp::connection_hdl hdl) {
    boost::system::error_code ec;
    server.get_con_from_hdl(hdl)->get_socket().set_option(boost::asio::ip::tcp::no_delay(true), ec);
  });
  server.set_message_handler([&server](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
    websocketpp::lib::error_code ec;
    server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
  });
  server.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  server.start_accept();
  websocketpp::lib::asio::error_code ec;
  std::printf("websocketpp_echo: listening on port %u\n", server.get_local_endpoint(ec).port());
  std::fflush(stdout);
  server.run();
}
