// The Autobahn TestSuite's fuzzingserver drives a client: this one, edgews::Client, echoes every message back.
//
//   autobahn_echo_client --url ws://127.0.0.1:PORT --agent NAME [--deflate] [--client-no-context-takeover]
//
// It asks /getCaseCount, runs /runCase?case=N&agent=NAME for N = 1..count one connection at a time, then
// /updateReports?agent=NAME so that the suite writes its reports. Exits 0 when every connection ran to its end
// (the verdicts are in the suite's reports), 1 when one could not be made, 2 on bad arguments.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/client.hpp"

namespace {

using edgews::core::Client;
using edgews::core::ClientCallbacks;
using edgews::core::ClientOptions;
using edgews::core::ClientState;
using edgews::core::Error;

struct Settings {
  std::string url;
  std::string agent = "edgews-client";
  bool deflate = false;
  bool client_no_context_takeover = false;
};

// One connection to `resource`, until it ends. on_text, when set, receives the text messages instead of the echo.
bool run(const Settings& settings, const std::string& resource, void (*on_text)(std::string_view, void*),
         void* context) {
  ClientOptions options;
  options.url = settings.url + resource;
  options.reconnect.enabled = false;
  options.ping_interval = std::chrono::milliseconds(0);  // the cases count the frames they see
  options.max_message_size = 64u << 20;                   // section 9 sends up to 16 MiB
  options.connect_timeout = std::chrono::milliseconds(10000);
  options.handshake_timeout = std::chrono::milliseconds(10000);
  options.close_timeout = std::chrono::milliseconds(10000);
  options.deflate.enabled = settings.deflate;
  options.deflate.client_no_context_takeover = settings.client_no_context_takeover;
  // Compress every message, as the cases of section 12 expect, however small.
  options.deflate.min_size = 0;
  Client* self = nullptr;
  ClientCallbacks callbacks;
  callbacks.on_message = [&](std::span<const std::uint8_t> data, bool text) {
    if (on_text != nullptr) {
      if (text) on_text({reinterpret_cast<const char*>(data.data()), data.size()}, context);
      return;
    }
    if (text) {
      self->send_text({reinterpret_cast<const char*>(data.data()), data.size()});
    } else {
      self->send_binary(data);
    }
  };
  bool failed = false;
  callbacks.on_close = [&](std::uint16_t, std::string_view, const Error& error) {
    // A failed connect is a harness failure; a protocol error the client detected is the case's business.
    if (error.code != edgews::core::Errc::none && error.code != edgews::core::Errc::protocol_error &&
        error.code != edgews::core::Errc::connection_lost) {
      std::fprintf(stderr, "autobahn_echo_client: %s: %s (%s)\n", resource.c_str(), error.message.c_str(),
                   std::string(edgews::core::errc_name(error.code)).c_str());
      failed = true;
    }
  };
  Client client(options, callbacks);
  self = &client;
  if (const Error e = client.start()) {
    std::fprintf(stderr, "autobahn_echo_client: %s\n", e.message.c_str());
    return false;
  }
  // Every case ends within the suite's own timeouts (480 s for the longest compressed ones on a slow machine);
  // this bounds a hung one beyond them.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(600);
  while (client.state() != ClientState::stopped && std::chrono::steady_clock::now() < give_up) {
    client.poll(std::chrono::milliseconds(100));
  }
  if (client.state() != ClientState::stopped) {
    std::fprintf(stderr, "autobahn_echo_client: %s did not end within 600 s\n", resource.c_str());
    return false;
  }
  return !failed;
}

void keep_count(std::string_view text, void* context) { *static_cast<std::string*>(context) = std::string(text); }

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--url" && i + 1 < argc) {
      settings.url = argv[++i];
    } else if (arg == "--agent" && i + 1 < argc) {
      settings.agent = argv[++i];
    } else if (arg == "--deflate") {
      settings.deflate = true;
    } else if (arg == "--client-no-context-takeover") {
      settings.client_no_context_takeover = true;
    } else {
      std::fprintf(stderr,
                   "usage: autobahn_echo_client --url ws://HOST:PORT [--agent NAME] [--deflate] "
                   "[--client-no-context-takeover]\n");
      return 2;
    }
  }
  if (settings.url.empty()) {
    std::fprintf(stderr, "autobahn_echo_client: --url ws://HOST:PORT is required (the fuzzingserver's address)\n");
    return 2;
  }
  std::string count_text;
  if (!run(settings, "/getCaseCount", keep_count, &count_text) || count_text.empty()) {
    std::fprintf(stderr, "autobahn_echo_client: no case count from %s/getCaseCount\n", settings.url.c_str());
    return 1;
  }
  const int count = std::atoi(count_text.c_str());
  std::fprintf(stderr, "autobahn_echo_client: %d cases\n", count);
  int status = 0;
  for (int n = 1; n <= count; ++n) {
    if (!run(settings, "/runCase?case=" + std::to_string(n) + "&agent=" + settings.agent, nullptr, nullptr)) {
      status = 1;
    }
  }
  if (!run(settings, "/updateReports?agent=" + settings.agent, keep_count, &count_text)) status = 1;
  return status;
}
