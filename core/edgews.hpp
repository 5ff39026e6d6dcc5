// The one header an embedder includes: the server and client API, re-exported as edgews::. It reaches no
// machinery (reactor, sockets, timers, send queues, the message reader): tests/core/public_headers_test.cpp keeps
// that line. Value types of the protocol (opcodes, close codes, the parsed request, checked headers) come from
// codec/ and are exported here too.
#pragma once

#include "core/client.hpp"
#include "core/config.hpp"
#include "core/connection.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/pubsub.hpp"
#include "core/server.hpp"
#include "core/version.hpp"

namespace edgews {
using core::AdminListenerConfig;
using core::BackoffPolicy;
using core::BackpressurePolicy;
using core::Callbacks;
using core::Client;
using core::ClientCallbacks;
using core::ClientOptions;
using core::ClientState;
using core::CloseCode;
using core::Connection;
using core::ConnectionHandle;
using core::DeflateConfig;
using core::Errc;
using core::errc_name;
using core::Error;
using core::HttpResponse;
using core::Limits;
using core::ListenConfig;
using core::Logger;
using core::LogFormat;
using core::LogLevel;
using core::Message;
using core::Opcode;
using core::PeerAddress;
using core::PubSubRelay;
using core::RatePolicy;
using core::ReadHold;
using core::Result;
using core::SendStatus;
using core::Server;
using core::ServerConfig;
using core::ServerStats;
using core::TlsConfig;
using core::UpgradeContext;
using core::version;
// Value types of the protocol and of the handshake that callbacks and options carry.
using ClientTlsOptions = net::ClientTlsOptions;
using DeflateParams = codec::DeflateParams;
using HttpHeader = codec::HttpHeader;
using HttpRequest = codec::HttpRequest;
using RequestHeaders = codec::RequestHeaders;
using ResponseHeaders = codec::ResponseHeaders;
using ResponseMode = codec::ResponseMode;
using UpgradeRequest = codec::UpgradeRequest;
}  // namespace edgews
