// The one header an embedder includes: the server and client API, re-exported as edgews::.
#pragma once

#include "core/client.hpp"
#include "core/config.hpp"
#include "core/connection.hpp"
#include "core/log.hpp"
#include "core/server.hpp"

namespace edgews {
using core::AdminListenerConfig;
using core::BackoffPolicy;
using core::BackpressurePolicy;
using core::Callbacks;
using core::Client;
using core::ClientCallbacks;
using core::ClientErrc;
using core::ClientError;
using core::ClientOptions;
using core::ClientState;
using core::CloseCode;
using core::Connection;
using core::ConnectionHandle;
using core::Error;
using core::HttpResponse;
using core::Limits;
using core::ListenConfig;
using core::Logger;
using core::LogFormat;
using core::LogLevel;
using core::Message;
using core::Opcode;
using core::RatePolicy;
using core::SendStatus;
using core::Server;
using core::ServerConfig;
using core::ServerStats;
using core::TlsConfig;
using core::UpgradeContext;
}  // namespace edgews
