// The edgews command line.
#include <cstdio>
#include <string_view>

namespace edgews::tools {
int serve_main(int argc, char** argv);
int load_main(int argc, char** argv);
int doctor_main(int argc, char** argv);
}

namespace {

constexpr const char* kUsage = R"(usage: edgews COMMAND [options]

commands:
  serve     run the WebSocket server (echo or broadcast), with /healthz and a test page at /
  load      load generator: N connections against an echo server, every echo verified, latency and CPU figures
  doctor    check any ws:// or wss:// server the way strict clients (iOS Safari, Chromium, WebKit) do
  help      this text

Run 'edgews COMMAND --help' for the options of a command.
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string_view command = argv[1];
  if (command == "serve") return edgews::tools::serve_main(argc - 2, argv + 2);
  if (command == "load") return edgews::tools::load_main(argc - 2, argv + 2);
  if (command == "doctor") return edgews::tools::doctor_main(argc - 2, argv + 2);
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "edgews: unknown command '%.*s'\n%s", static_cast<int>(command.size()), command.data(), kUsage);
  return 2;
}
