#include "core/error.hpp"

namespace edgews::core {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::none: return "none";
    case Errc::invalid_config: return "invalid_config";
    case Errc::tls_config: return "tls_config";
    case Errc::header_refused: return "header_refused";
    case Errc::wrong_state: return "wrong_state";
    case Errc::system: return "system";
    case Errc::listen_failed: return "listen_failed";
    case Errc::no_predecessor: return "no_predecessor";
    case Errc::handoff_failed: return "handoff_failed";
    case Errc::bad_url: return "bad_url";
    case Errc::unsupported: return "unsupported";
    case Errc::resolve_failed: return "resolve_failed";
    case Errc::bad_request: return "bad_request";
    case Errc::refused: return "refused";
    case Errc::unreachable: return "unreachable";
    case Errc::timeout: return "timeout";
    case Errc::http_status: return "http_status";
    case Errc::invalid_101: return "invalid_101";
    case Errc::protocol_error: return "protocol_error";
    case Errc::connection_lost: return "connection_lost";
    case Errc::tls_failed: return "tls_failed";
    case Errc::certificate_rejected: return "certificate_rejected";
  }
  return "unknown";
}

}  // namespace edgews::core
