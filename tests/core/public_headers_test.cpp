// The line between the API and the machinery: a translation unit that includes core/edgews.hpp, as an embedder's
// does, must not reach the reactor, sockets, the timer wheel, send queues, the message reader, TLS streams, the
// worker, or the state behind Connection and Server. Each of those headers completes the class declared below; if
// one is reached, the build of this test fails at the static_assert that names it. Value types (opcodes, close
// codes, the parsed request, checked headers) may come from codec/.
namespace edgews::net {
class Reactor;
struct IoResult;
class TimerWheel;
class TlsStream;
}  // namespace edgews::net
namespace edgews::codec {
class MessageReader;
class Deflater;
class Inflater;
}  // namespace edgews::codec
namespace edgews::core {
class OutQueue;
class Worker;
class ConnectionImpl;
class ServerImpl;
class CidrSet;
}  // namespace edgews::core

#include "core/edgews.hpp"

#include <gtest/gtest.h>

#include <type_traits>

namespace edgews::test {
namespace {

template <class T, class = void>
struct is_complete : std::false_type {};
template <class T>
struct is_complete<T, std::void_t<decltype(sizeof(T))>> : std::true_type {};

static_assert(!is_complete<net::Reactor>::value, "core/edgews.hpp reaches net/reactor.hpp");
static_assert(!is_complete<net::IoResult>::value, "core/edgews.hpp reaches net/socket.hpp");
static_assert(!is_complete<net::TimerWheel>::value, "core/edgews.hpp reaches net/timer_wheel.hpp");
static_assert(!is_complete<net::TlsStream>::value, "core/edgews.hpp reaches net/tls.hpp (and OpenSSL's headers)");
static_assert(!is_complete<codec::MessageReader>::value, "core/edgews.hpp reaches codec/message.hpp");
static_assert(!is_complete<codec::Deflater>::value, "core/edgews.hpp reaches codec/deflate.hpp (the zlib streams)");
static_assert(!is_complete<codec::Inflater>::value, "core/edgews.hpp reaches codec/deflate.hpp (the zlib streams)");
static_assert(!is_complete<core::OutQueue>::value, "core/edgews.hpp reaches core/out_queue.hpp");
static_assert(!is_complete<core::Worker>::value, "core/edgews.hpp reaches core/worker.hpp");
static_assert(!is_complete<core::ConnectionImpl>::value, "core/edgews.hpp reaches core/connection_impl.hpp");
static_assert(!is_complete<core::ServerImpl>::value, "core/edgews.hpp reaches core/server_impl.hpp");
static_assert(!is_complete<core::CidrSet>::value, "core/edgews.hpp reaches core/forwarded.hpp");
// The public Connection is the API only: its state is the internal class's.
static_assert(std::is_empty_v<Connection>, "Connection has data members: they belong in core::ConnectionImpl");
static_assert(!std::is_polymorphic_v<Connection>, "Connection has virtual functions: the reactor's belong inside");
static_assert(!std::is_constructible_v<Connection>, "an embedder can construct a Connection");
// Server: made by Server::create only; its state is the internal class's.
static_assert(!std::is_constructible_v<Server>, "an embedder can construct a Server");
static_assert(sizeof(Server) == sizeof(void*), "Server has data members: they belong in core::ServerImpl");
// UpgradeContext: made by the connection for on_upgrade only.
static_assert(!std::is_constructible_v<UpgradeContext, const HttpRequest&, const UpgradeRequest&, const PeerAddress&,
                                       const PeerAddress&, ResponseHeaders&, const ResponseHeaders&,
                                       std::string_view>,
              "an embedder can construct an UpgradeContext");
static_assert(!std::is_copy_constructible_v<UpgradeContext>, "an embedder can copy an UpgradeContext");

TEST(PublicHeaders, EdgewsHppExportsWhatAnEmbedderNames) {
  // Compiles only while these names are exported; the values are the documented defaults.
  const DeflateConfig deflate;
  const PeerAddress peer;
  const ClientTlsOptions tls;
  PubSubRelay* relay = nullptr;
  EXPECT_FALSE(deflate.enabled);
  const DeflateParams params;
  EXPECT_EQ(params.client_max_window_bits, 15u);
  EXPECT_EQ(peer.addr.sa.sa_family, 0);
  EXPECT_TRUE(tls.verify);
  EXPECT_EQ(relay, nullptr);
  EXPECT_EQ(errc_name(Errc::none), "none");
  EXPECT_FALSE(version().empty());
}

}  // namespace
}  // namespace edgews::test
