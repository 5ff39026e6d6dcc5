// Creates a Server from the installed package, starts it on a free loopback port, turns its reactor once and
// exits: proof that headers, libraries and dependencies of the package fit together.
#include <edgews/core/edgews.hpp>

#include <cstdio>

int main() {
  edgews::ServerConfig config;
  config.listeners = {{"127.0.0.1", 0, false}};
  edgews::Callbacks callbacks;
  callbacks.on_message = [](edgews::Connection& c, const edgews::Message& m) { c.send(m.data, m.opcode); };
  auto [server, error] = edgews::Server::create(config, callbacks,
                                                edgews::Logger(edgews::LogLevel::warn, edgews::LogFormat::text));
  if (!server || (error = server->start())) {
    std::fprintf(stderr, "consumer: %s\n", error.message.c_str());
    return 1;
  }
  if (server->ports().empty() || server->ports()[0] == 0) {
    std::fprintf(stderr, "consumer: no port bound\n");
    return 1;
  }
  server->run_ready();
  std::printf("edgews package ok: version %.*s, listening on port %u\n", static_cast<int>(edgews::version().size()),
              edgews::version().data(), static_cast<unsigned>(server->ports()[0]));
  return 0;
}
