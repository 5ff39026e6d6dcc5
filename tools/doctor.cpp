// `edgews doctor URL`: checks any WebSocket server the way the strictest real clients would. It sends a standard
// upgrade request, prints the raw response head, runs edgews' strict response validator over it, then exchanges
// a text and a binary echo, a ping and a clean close. Every defect is reported with what real clients do with it
// (measured facts from docs/DESIGN.md, 'The handshake guarantee'), and any defect makes the exit status non-zero.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/close.hpp"
#include "codec/deflate.hpp"
#include "codec/extensions.hpp"
#include "codec/frame.hpp"
#include "codec/handshake_client.hpp"
#include "codec/http_token.hpp"
#include "codec/mask.hpp"
#include "codec/message.hpp"
#include "codec/response_validator.hpp"
#include "codec/utf8.hpp"
#include "core/log.hpp"
#include "tools/doctor_link.hpp"
#include "tools/options.hpp"

namespace edgews::tools {

namespace {

constexpr const char* kDoctorUsage = R"(usage: edgews doctor [options] URL

Checks a WebSocket server (any server, ws:// or wss://) the way strict clients such as iOS Safari, Chromium,
WebKit and node ws do: prints the raw 101 response head, validates it strictly, then exchanges a text and a
binary echo, a ping and a clean close. Exit status: 0 clean, 1 any defect, 2 usage error.

)";

using Kind = codec::ResponseDefect::Kind;
using codec::Opcode;
using codec::Role;

struct Defect {
  std::string name;     // stable: a validator kind ("duplicate_header") or a doctor check ("early_close")
  std::string header;   // the header concerned, when there is one
  std::string message;  // what is wrong, in one line
  std::string clients;  // what real clients do with it
};

enum class StepStatus : std::uint8_t { pass, fail, skip };

struct Step {
  std::string name;
  StepStatus status = StepStatus::skip;
  std::string detail;
};

struct Report {
  std::string url;
  std::string request_head;
  std::string response_head;
  std::vector<Step> steps;
  std::vector<Defect> defects;
  std::vector<std::string> notes;  // worth knowing, harmless to every client measured: no effect on the exit status

  Step& step(std::string name, StepStatus status, std::string detail) {
    steps.push_back(Step{std::move(name), status, std::move(detail)});
    return steps.back();
  }
  void defect(std::string name, std::string message, std::string clients, std::string header = {}) {
    defects.push_back(Defect{std::move(name), std::move(header), std::move(message), std::move(clients)});
  }
};

// What real clients do with each validator defect, as measured (docs/DESIGN.md, 'The handshake guarantee':
// Chromium 156 and WebKitGTK 2.50 against deliberately broken 101 responses, plus the origin story on iOS Safari).
std::string clients_for(Kind kind, std::string_view header) {
  switch (kind) {
    case Kind::duplicate_header:
      if (codec::iequals(header, "connection")) {
        return "iOS Safari fails the handshake (the origin story); desktop Chromium and WebKitGTK were measured to "
               "open it, so only a strict client catches it";
      }
      if (codec::iequals(header, "upgrade")) return "Chromium and WebKit (Safari) both fail the handshake (close 1006)";
      if (codec::istarts_with(header, "sec-websocket-")) {
        return "a repeated protocol header is ambiguous; strict clients fail the handshake (close 1006)";
      }
      return "clients that join repeated headers see a combined value; strict HTTP parsers refuse the response";
    case Kind::accept_mismatch:
    case Kind::missing_accept:
      return "every client fails the handshake (Chromium and WebKit close 1006, node ws throws): RFC 6455 4.1 "
             "requires the Accept to match the key";
    case Kind::status_line_not_http11:
      return "WebKit (Safari, iOS) fails the handshake; Chromium opens it";
    case Kind::empty_extensions:
      return "Chromium fails the handshake (close 1006); WebKit opens it";
    case Kind::bare_lf:
      return "Chromium and WebKit were measured to open it, but it is not HTTP/1.1 (RFC 9112 2.2): proxies and "
             "strict HTTP parsers may refuse it";
    case Kind::unoffered_subprotocol:
    case Kind::empty_subprotocol:
      return "every browser fails the handshake (Chromium and WebKit close 1006)";
    case Kind::no_subprotocol_when_offered:
      return "Chromium closes the socket (1006) and node ws throws, while WebKit opens it: refuse with a 400 that "
             "names the supported subprotocols instead";
    case Kind::unoffered_extension:
    case Kind::duplicate_extension:
    case Kind::malformed_extensions:
      return "every browser fails the handshake (close 1006): RFC 6455 9.1 and RFC 7692 5 forbid it";
    case Kind::invalid_extension_params:
      return "the client fails the handshake (close 1006): RFC 7692 7.1 lets a server answer only with parameters "
             "that fit the client's offer";
    case Kind::missing_upgrade:
    case Kind::bad_upgrade_value:
    case Kind::missing_connection:
    case Kind::bad_connection_value:
      return "every client fails the handshake (RFC 6455 4.1, close 1006)";
    case Kind::not_101:
      return "the browser reports an error and a close with code 1006; the page never sees the status or the body";
    case Kind::malformed_status_line:
    case Kind::malformed_header:
    case Kind::head_too_large:
      return "clients and proxies refuse a response they cannot parse (close 1006)";
    case Kind::empty_header_value:
    case Kind::forbidden_header:
      return "not measured in browsers; strict HTTP parsers and proxies may refuse it";
  }
  return "not measured";
}

std::string printable(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\t' || (c >= 0x20 && c < 0x7F) || c >= 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    }
  }
  return out;
}

std::string json_string(std::string_view s) {
  std::string out;
  core::append_json_string(out, s);
  return out;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", ms);
  return buf;
}

// The WebSocket session after the handshake: masked client frames out, server frames in (fragments assembled,
// pings answered, permessage-deflate inflated).
class Session {
 public:
  enum class Status : std::uint8_t { ok, eof, timeout, io_error, protocol_error };
  struct Received {
    Status status = Status::ok;
    Opcode opcode = Opcode::text;
    std::string payload;
    std::string error;  // for io_error and protocol_error
  };

  Session(Link& link, std::string leftover, bool deflate)
      : link_(link), in_(std::move(leftover)), reader_(Role::client, reader_limits(deflate)) {
    // Context takeover is assumed (the window carries over between messages), which also inflates servers that
    // reset it as they announced.
    if (deflate) inflate_ready_ = inflater_.init(codec::kMaxWindowBits);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  LinkStatus send(Opcode opcode, std::string_view payload, Clock::time_point deadline) {
    std::uint8_t key[4];
    RAND_bytes(key, sizeof key);
    std::string frame(codec::kMaxFrameHeaderSize + payload.size(), '\0');
    auto* out = reinterpret_cast<std::uint8_t*>(frame.data());
    const std::size_t header = codec::write_frame_header(out, opcode, payload.size(), true, false, key);
    codec::mask_copy(out + header, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(), key);
    frame.resize(header + payload.size());
    return link_.write_all(frame.data(), frame.size(), deadline);
  }

  // The next data message, pong or close frame, through the codec's MessageReader (frames checked, fragments
  // assembled, text checked as UTF-8). Pings are answered on the way (RFC 6455 5.5.2) and counted.
  Received next(Clock::time_point deadline) {
    Received r;
    for (;;) {
      std::size_t used = 0;
      codec::Event ev;
      if (!in_.empty()) ev = reader_.next(reinterpret_cast<std::uint8_t*>(in_.data()), in_.size(), used);
      switch (ev.type) {
        case codec::EventType::need_more:
          in_.clear();  // the reader keeps what it needs of a partial frame
          if (!fill(deadline, r)) return r;
          continue;
        case codec::EventType::error:
          return fail(Status::protocol_error,
                      "the server sent an invalid frame or message: " + std::string(codec::describe(ev.error)) +
                          " (clients close " + std::to_string(static_cast<int>(codec::close_code_for(ev.error))) +
                          ")");
        case codec::EventType::ping: {
          ++pings_from_server_;
          const std::string payload(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
          in_.erase(0, used);
          if (send(Opcode::pong, payload, deadline) != LinkStatus::ok) {
            return fail(Status::io_error, "cannot answer the server's ping: " + link_.last_error());
          }
          continue;
        }
        case codec::EventType::pong:
        case codec::EventType::close:
        case codec::EventType::message:
          break;
      }
      r.opcode = ev.opcode;
      std::span<const std::uint8_t> payload = ev.payload;
      if (ev.type == codec::EventType::message && ev.compressed) {
        if (!inflate_ready_ ||
            inflater_.inflate(ev.payload, kMaxInflated, inflated_, false) != codec::InflateStatus::ok) {
          return fail(Status::protocol_error, "a compressed message from the server does not inflate");
        }
        payload = inflated_.view();
        if (ev.opcode == Opcode::text && !codec::is_valid_utf8(payload.data(), payload.size())) {
          return fail(Status::protocol_error, "the server sent a text message that is not UTF-8 (clients close 1007)");
        }
      }
      r.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
      in_.erase(0, used);
      return r;
    }
  }

  // Waits for the end of the stream (the server closes TCP after the closing handshake, RFC 6455 7.1.1).
  Status wait_eof(Clock::time_point deadline) {
    char buf[4096];
    for (;;) {
      const LinkRead r = link_.read(buf, sizeof buf, deadline);
      if (r.status == LinkStatus::ok) continue;  // anything after the close frame is ignored (RFC 6455 5.5.1)
      return r.status == LinkStatus::eof       ? Status::eof
             : r.status == LinkStatus::timeout ? Status::timeout
                                               : Status::io_error;
    }
  }

  int pings_from_server() const { return pings_from_server_; }

 private:
  Received fail(Status status, std::string error) {
    Received r;
    r.status = status;
    r.error = std::move(error);
    return r;
  }
  bool fill(Clock::time_point deadline, Received& r) {
    char buf[16384];
    const LinkRead got = link_.read(buf, sizeof buf, deadline);
    if (got.status == LinkStatus::ok) {
      in_.append(buf, got.bytes);
      return true;
    }
    r.status = got.status == LinkStatus::eof       ? Status::eof
               : got.status == LinkStatus::timeout ? Status::timeout
                                                   : Status::io_error;
    r.error = link_.last_error();
    return false;
  }
  static codec::ReaderLimits reader_limits(bool deflate) {
    codec::ReaderLimits limits;
    limits.max_message_size = kMaxInflated;
    limits.rsv1_allowed = deflate;
    return limits;
  }
  // The largest message the doctor takes, compressed or inflated: far above what its checks send.
  static constexpr std::size_t kMaxInflated = 64u << 20;

  Link& link_;
  std::string in_;  // read and not yet given to the reader
  codec::MessageReader reader_;
  codec::Inflater inflater_;
  codec::ByteBuffer inflated_;
  bool inflate_ready_ = false;
  int pings_from_server_ = 0;
};

struct Options {
  std::string url;
  std::string origin;
  std::vector<std::string> subprotocols;
  bool deflate = false;
  bool echo = true;
  bool json = false;
  TlsSetup tls;
  long timeout_ms = 5000;
};

// Reads the response head: until the validator sees its end, the server closes, or the deadline passes.
// Returns the bytes read (head and whatever followed it).
std::string read_head(Link& link, Clock::time_point deadline, LinkStatus& status) {
  std::string bytes;
  char buf[16384];
  for (;;) {
    const LinkRead r = link.read(buf, sizeof buf, deadline);
    if (r.status != LinkStatus::ok) {
      status = r.status;
      return bytes;
    }
    bytes.append(buf, r.bytes);
    // The end of a head: a blank line, ended by CRLF or (leniently, to diagnose it) LF alone.
    if (bytes.find("\n\r\n") != std::string::npos || bytes.find("\n\n") != std::string::npos ||
        bytes.size() > 65 * 1024) {
      status = LinkStatus::ok;
      return bytes;
    }
  }
}

void check_echo(Report& report, Session& session, const Options& options, const char* name, Opcode opcode,
                const std::string& payload) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(options.timeout_ms);
  if (session.send(opcode, payload, deadline) != LinkStatus::ok) {
    report.step(name, StepStatus::fail, "cannot send: the connection is gone");
    report.defect("send_failed", std::string(name) + ": the connection failed while sending",
                  "browsers report close 1006");
    return;
  }
  int skipped = 0;
  for (;;) {
    Session::Received r = session.next(deadline);
    if (r.status == Session::Status::timeout) {
      report.step(name, StepStatus::fail, "no echo within " + std::to_string(options.timeout_ms) + " ms");
      report.defect("no_echo", std::string(name) + ": no reply within " + std::to_string(options.timeout_ms) +
                                   " ms (if this is not an echo server, run with --no-echo)",
                    "a client awaiting a reply waits forever");
      return;
    }
    if (r.status == Session::Status::eof || r.status == Session::Status::io_error) {
      report.step(name, StepStatus::fail, "the server closed the connection without a close frame");
      report.defect("closed_without_close_frame",
                    std::string(name) + ": the TCP connection ended without a close frame",
                    "browsers report close 1006 (abnormal closure) and reconnecting clients retry");
      return;
    }
    if (r.status == Session::Status::protocol_error) {
      report.step(name, StepStatus::fail, r.error);
      report.defect("invalid_frame", r.error, "browsers fail the connection (close 1002 or 1007, seen as 1006)");
      return;
    }
    if (r.opcode == Opcode::close) {
      const codec::ClosePayloadParse close = codec::parse_close_payload(
          reinterpret_cast<const std::uint8_t*>(r.payload.data()), r.payload.size());
      const std::string detail =
          "the server closed instead of echoing (code " + std::to_string(close.payload.code) +
          (close.payload.reason.empty() ? "" : ", \"" + std::string(close.payload.reason) + "\"") + ")";
      report.step(name, StepStatus::fail, detail);
      report.defect("closed_instead_of_echo", std::string(name) + ": " + detail, "clients see the close event");
      return;
    }
    if (r.opcode == opcode && r.payload == payload) {
      std::string detail = std::to_string(payload.size()) + " bytes echoed in " + ms_text(ms_since(start));
      if (skipped > 0) detail += " (after " + std::to_string(skipped) + " other message(s))";
      report.step(name, StepStatus::pass, detail);
      return;
    }
    ++skipped;  // a message the server sent on its own (a greeting, a broadcast): not the echo yet
  }
}

void check_ping(Report& report, Session& session, const Options& options) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(options.timeout_ms);
  const std::string payload = "edgews-doctor-ping";
  if (session.send(Opcode::ping, payload, deadline) != LinkStatus::ok) {
    report.step("ping", StepStatus::fail, "cannot send the ping: the connection is gone");
    report.defect("send_failed", "ping: the connection failed while sending", "browsers report close 1006");
    return;
  }
  for (;;) {
    Session::Received r = session.next(deadline);
    if (r.status != Session::Status::ok || r.opcode == Opcode::close) {
      const std::string why = r.status == Session::Status::timeout
                                  ? "no pong within " + std::to_string(options.timeout_ms) + " ms"
                              : r.status == Session::Status::ok ? "the server closed instead of answering the ping"
                              : r.error.empty()                 ? "the connection ended"
                                                                : r.error;
      report.step("ping", StepStatus::fail, why);
      report.defect("no_pong", "ping: " + why,
                    "RFC 6455 5.5.2 requires a pong; clients and proxies that ping for liveness drop the connection");
      return;
    }
    if (r.opcode == Opcode::pong) {
      if (r.payload != payload) {
        report.step("ping", StepStatus::fail, "the pong does not carry the ping's payload");
        report.defect("pong_mismatch", "ping: the pong's payload differs from the ping's (RFC 6455 5.5.3)",
                      "clients that match pongs to pings see no answer and may time the connection out");
        return;
      }
      report.step("ping", StepStatus::pass, "pong with the same payload in " + ms_text(ms_since(start)));
      return;
    }
    // A data message in between (broadcast, greeting): keep waiting for the pong.
  }
}

void check_close(Report& report, Session& session, const Options& options) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  std::uint8_t payload[codec::kMaxCloseReason + 2];
  const std::size_t len = codec::write_close_payload(payload, 1000, "edgews doctor done");
  if (session.send(Opcode::close, std::string_view(reinterpret_cast<const char*>(payload), len), deadline) !=
      LinkStatus::ok) {
    report.step("close", StepStatus::fail, "cannot send the close frame: the connection is gone");
    report.defect("send_failed", "close: the connection failed while sending", "browsers report close 1006");
    return;
  }
  for (;;) {
    Session::Received r = session.next(deadline);
    if (r.status != Session::Status::ok) {
      const std::string why = r.status == Session::Status::timeout
                                  ? "no close frame within " + std::to_string(options.timeout_ms) + " ms"
                                  : "the connection ended without a close frame";
      report.step("close", StepStatus::fail, why);
      report.defect("no_close_reply", "close: " + why + " (RFC 6455 5.5.1 requires one in reply)",
                    "browsers report close 1006 instead of the code sent, and wasClean is false");
      return;
    }
    if (r.opcode != Opcode::close) continue;  // data sent before the server saw our close
    const codec::ClosePayloadParse close =
        codec::parse_close_payload(reinterpret_cast<const std::uint8_t*>(r.payload.data()), r.payload.size());
    if (!close.ok) {
      report.step("close", StepStatus::fail, "the server's close frame is invalid");
      report.defect("invalid_close_frame", "close: the server's close frame is invalid: " +
                                               std::string(codec::describe(close.error)),
                    "browsers fail the connection (close 1002, seen as 1006)");
      return;
    }
    const Session::Status end = session.wait_eof(deadline);
    std::string detail = "the server answered with code " + std::to_string(close.payload.code);
    if (end != Session::Status::eof) {
      report.step("close", StepStatus::fail, detail + ", but did not close the TCP connection");
      report.defect("close_no_tcp_close",
                    "close: the server did not close the TCP connection within " + std::to_string(options.timeout_ms) +
                        " ms after the closing handshake (RFC 6455 7.1.1: the server closes first)",
                    "clients wait for their own close timeout and keep the socket meanwhile");
      return;
    }
    report.step("close", StepStatus::pass, detail + " and closed the TCP connection");
    return;
  }
}

void print_text(const Report& report, std::FILE* out) {
  std::fprintf(out, "edgews doctor %s\n\nrequest:\n", report.url.c_str());
  std::size_t pos = 0;
  while (pos < report.request_head.size()) {
    const std::size_t lf = report.request_head.find('\n', pos);
    std::string_view line(report.request_head.data() + pos, lf - pos);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (!line.empty()) std::fprintf(out, "  > %s\n", printable(line).c_str());
    pos = lf + 1;
  }
  if (!report.response_head.empty()) {
    std::fprintf(out, "\nresponse head (raw):\n");
    pos = 0;
    while (pos < report.response_head.size()) {
      std::size_t lf = report.response_head.find('\n', pos);
      const bool complete_line = lf != std::string::npos;
      if (!complete_line) lf = report.response_head.size();
      std::string_view line(report.response_head.data() + pos, lf - pos);
      const char* ending = "  [no line end: the stream stopped here]";
      if (complete_line) {
        ending = line.ends_with('\r') ? "" : "  [LF only]";
        if (line.ends_with('\r')) line.remove_suffix(1);
      }
      std::fprintf(out, "  < %s%s\n", printable(line).c_str(), ending);
      pos = lf + 1;
    }
  }
  std::fprintf(out, "\n");
  for (const Step& s : report.steps) {
    const char* tag = s.status == StepStatus::pass ? "PASS" : s.status == StepStatus::fail ? "FAIL" : "SKIP";
    std::fprintf(out, "%s  %-12s %s\n", tag, s.name.c_str(), s.detail.c_str());
  }
  if (!report.defects.empty()) {
    std::fprintf(out, "\ndefects:\n");
    for (const Defect& d : report.defects) {
      std::fprintf(out, "  %s: %s\n      clients: %s\n", d.name.c_str(), d.message.c_str(), d.clients.c_str());
    }
  }
  if (!report.notes.empty()) {
    std::fprintf(out, "\nnotes:\n");
    for (const std::string& n : report.notes) std::fprintf(out, "  %s\n", n.c_str());
  }
  std::fprintf(out, "\n%s\n", report.defects.empty() ? "result: no defect found"
                                                      : ("result: " + std::to_string(report.defects.size()) +
                                                         " defect(s)").c_str());
}

void print_json(const Report& report, std::FILE* out) {
  std::string j = "{\"url\":" + json_string(report.url) + ",\"ok\":" + (report.defects.empty() ? "true" : "false");
  j += ",\"request_head\":" + json_string(report.request_head);
  j += ",\"response_head\":" + json_string(report.response_head);
  j += ",\"steps\":[";
  for (std::size_t i = 0; i < report.steps.size(); ++i) {
    const Step& s = report.steps[i];
    const char* status = s.status == StepStatus::pass ? "pass" : s.status == StepStatus::fail ? "fail" : "skip";
    if (i) j.push_back(',');
    j.append("{\"name\":").append(json_string(s.name)).append(",\"status\":\"").append(status);
    j.append("\",\"detail\":").append(json_string(s.detail)).append("}");
  }
  j += "],\"defects\":[";
  for (std::size_t i = 0; i < report.defects.size(); ++i) {
    const Defect& d = report.defects[i];
    if (i) j.push_back(',');
    j.append("{\"name\":").append(json_string(d.name));
    if (!d.header.empty()) j += ",\"header\":" + json_string(d.header);
    j += ",\"message\":" + json_string(d.message) + ",\"clients\":" + json_string(d.clients) + "}";
  }
  j += "],\"notes\":[";
  for (std::size_t i = 0; i < report.notes.size(); ++i) {
    if (i) j.push_back(',');
    j.append(json_string(report.notes[i]));
  }
  j += "]}\n";
  std::fputs(j.c_str(), out);
}

// The header a duplicate_header defect is about: the validator reports each repeated name once, in order.
std::string duplicated_header(const codec::ResponseCheck& check, std::size_t nth) {
  std::vector<std::string_view> seen, repeated;
  for (const codec::HttpHeader& h : check.headers) {
    bool before = false;
    for (std::string_view s : seen) before |= codec::iequals(s, h.name);
    bool counted = false;
    for (std::string_view r : repeated) counted |= codec::iequals(r, h.name);
    if (before && !counted) repeated.push_back(h.name);
    if (!before) seen.push_back(h.name);
  }
  return nth < repeated.size() ? std::string(repeated[nth]) : std::string();
}

// Values that every client accepts (RFC 6455 compares them case-insensitively, and Connection is a list) but that
// differ from the canonical spelling: worth a note when comparing servers, never a defect.
void note_spelling(Report& report, const codec::ResponseCheck& check) {
  for (const codec::HttpHeader& h : check.headers) {
    if (codec::iequals(h.name, "upgrade") && h.value != "websocket" && codec::iequals(h.value, "websocket")) {
      report.notes.push_back("Upgrade is \"" + printable(h.value) + "\" rather than the canonical \"websocket\" "
                             "(accepted: the comparison is case-insensitive)");
    }
    if (codec::iequals(h.name, "connection") && h.value != "Upgrade" &&
        codec::list_contains_token(h.value, "upgrade")) {
      report.notes.push_back("Connection is \"" + printable(h.value) + "\" rather than the canonical \"Upgrade\" "
                             "(accepted: it lists upgrade)");
    }
    if (h.name != "Upgrade" && h.name != "Connection" &&
        (codec::iequals(h.name, "upgrade") || codec::iequals(h.name, "connection"))) {
      report.notes.push_back("the header name \"" + printable(h.name) + "\" is not in its usual spelling "
                             "(accepted: header names are case-insensitive)");
    }
  }
}

void run(const Options& options, Report& report) {
  codec::WsUrl url;
  std::string error;
  report.url = options.url;
  if (const codec::UrlError e = codec::parse_ws_url(options.url, url)) {
    report.step("url", StepStatus::fail, e.message);
    report.defect("bad_url", e.message, "no client can connect");
    return;
  }

  const auto connect_start = Clock::now();
  bool tls_failed = false;
  std::unique_ptr<Link> link =
      Link::open(url, options.tls, connect_start + std::chrono::milliseconds(options.timeout_ms), error, tls_failed);
  if (!link) {
    if (tls_failed) {
      report.step("connect", StepStatus::pass, "TCP connected");
      report.step("tls", StepStatus::fail, error);
      report.defect("tls_failed", error,
                    "browsers refuse the connection (close 1006) unless the certificate is trusted and valid for the "
                    "host");
    } else {
      report.step("connect", StepStatus::fail, error);
      report.defect("connect_failed", error, "no client can connect");
    }
    return;
  }
  report.step("connect", StepStatus::pass,
              "TCP connected to " + link->peer() + " in " + ms_text(ms_since(connect_start)));
  if (url.secure) {
    report.step(
        "tls", StepStatus::pass,
        link->tls_summary() + (options.tls.insecure          ? ", certificate not verified (--insecure)"
                               : options.tls.ca_file.empty() ? ", certificate verified by the system's CAs"
                                                             : ", certificate verified by " + options.tls.ca_file));
  }

  std::array<std::uint8_t, codec::kKeyNonceBytes> nonce{};
  RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
  const std::vector<std::string_view> protocol_list(options.subprotocols.begin(), options.subprotocols.end());
  std::string extensions;
  if (options.deflate) {
    codec::DeflateClientOffer offer;
    offer.client_max_window_bits = true;
    codec::append_deflate_offer(extensions, offer);
  }
  codec::RequestHeaders headers;
  (void)headers.add("User-Agent", "edgews-doctor");
  const std::string host = url.host_header();
  codec::ClientRequest request_args;
  request_args.host = host;
  request_args.resource = url.resource;
  request_args.origin = options.origin;
  request_args.subprotocols = protocol_list;
  request_args.extensions = extensions;
  request_args.headers = &headers;
  codec::ClientHandshake handshake;
  std::string& request = report.request_head;
  if (const codec::HeaderError e = handshake.write_request(request, request_args, codec::make_websocket_key(nonce))) {
    report.step("handshake", StepStatus::fail, e.message);
    report.defect("bad_request", e.message, "fix the option named in the message");
    return;
  }
  const auto handshake_start = Clock::now();
  const auto deadline = handshake_start + std::chrono::milliseconds(options.timeout_ms);
  if (link->write_all(request.data(), request.size(), deadline) != LinkStatus::ok) {
    report.step("handshake", StepStatus::fail, "cannot send the request: " + link->last_error());
    report.defect("early_close", "the server closed the connection before the request was sent",
                  "every client fails (close 1006)");
    return;
  }
  LinkStatus read_status = LinkStatus::ok;
  const std::string bytes = read_head(*link, deadline, read_status);
  const codec::ResponseCheck check = handshake.check_response(bytes);
  report.response_head = check.complete ? bytes.substr(0, check.head_length) : bytes;
  if (!check.complete) {
    std::string what;
    if (read_status == LinkStatus::timeout) {
      what = bytes.empty() ? "no response within " + std::to_string(options.timeout_ms) + " ms"
                           : "the response head did not end within " + std::to_string(options.timeout_ms) + " ms";
      report.defect("handshake_timeout", what, "browsers give up and report close 1006");
    } else if (check.has(Kind::head_too_large)) {
      what = "the response head is larger than 64 KiB";
      report.defect("head_too_large", what, clients_for(Kind::head_too_large, {}));
    } else {
      what = "the server closed the connection after " + std::to_string(bytes.size()) +
             " bytes, before the end of the response head";
      report.defect("early_close", what, "every client fails the handshake (close 1006)");
    }
    report.step("handshake", StepStatus::fail, what);
    return;
  }

  std::size_t duplicates = 0;
  for (const codec::ResponseDefect& d : check.defects) {
    std::string header;
    if (d.kind == Kind::duplicate_header) header = duplicated_header(check, duplicates++);
    report.defect(std::string(codec::defect_name(d.kind)), d.message, clients_for(d.kind, header), header);
  }
  std::string negotiated;
  for (const codec::HttpHeader& h : check.headers) {
    if (codec::iequals(h.name, "sec-websocket-protocol")) negotiated += " subprotocol " + std::string(h.value) + ";";
    if (codec::iequals(h.name, "sec-websocket-extensions")) negotiated += " extensions " + std::string(h.value) + ";";
  }
  const std::size_t handshake_defects = report.defects.size();
  if (handshake_defects == 0) {
    report.step("handshake", StepStatus::pass,
                "101 in " + ms_text(ms_since(handshake_start)) + ", canonical and valid for every strict client" +
                    (negotiated.empty() ? std::string() : " (" + negotiated.substr(1, negotiated.size() - 2) + ")"));
  } else {
    std::string names;
    for (const Defect& d : report.defects) names += (names.empty() ? "" : ", ") + d.name;
    report.step("handshake", StepStatus::fail, std::to_string(handshake_defects) + " defect(s): " + names);
  }
  if (check.status != 101) {
    // A refusal's body usually says why (edgews names the offered and supported subprotocols, for example).
    std::string body = bytes.substr(check.head_length, 300);
    if (body.empty()) {
      char buf[300];
      const LinkRead more = link->read(buf, sizeof buf, Clock::now() + std::chrono::milliseconds(300));
      if (more.status == LinkStatus::ok) body.assign(buf, more.bytes);
    }
    if (!body.empty()) report.notes.push_back("the refusal's body begins: \"" + printable(body) + "\"");
    for (const char* s : {"echo_text", "echo_binary", "ping", "close"}) report.step(s, StepStatus::skip, "no upgrade");
    return;
  }
  note_spelling(report, check);

  // Bytes that followed the head are the start of the frame stream: the Session parses them, and a server that
  // sent anything else after its 101 (a body, a second response) is caught as an invalid frame.
  bool deflate_accepted = false;
  for (const codec::HttpHeader& h : check.headers) {
    deflate_accepted |= codec::iequals(h.name, "sec-websocket-extensions") &&
                        h.value.find("permessage-deflate") != std::string_view::npos;
  }
  Session session(*link, bytes.substr(check.head_length), deflate_accepted);
  if (bytes.size() > check.head_length) {
    const std::string_view extra = std::string_view(bytes).substr(check.head_length);
    const codec::HeaderParse first = codec::parse_frame_header(reinterpret_cast<const std::uint8_t*>(extra.data()),
                                                               extra.size(), Role::client, deflate_accepted);
    if (first.status == codec::ParseStatus::error) {
      report.defect("extra_bytes",
                    std::to_string(extra.size()) + " bytes after the response head are not a WebSocket frame: \"" +
                        printable(extra.substr(0, 40)) + "\"",
                    "browsers fail the connection right after opening (close 1002, seen as 1006)");
      report.step("frames", StepStatus::fail, "bytes after the 101 head are not WebSocket frames");
      return;
    }
  }
  if (options.echo) {
    check_echo(report, session, options, "echo_text", Opcode::text, "edgews doctor \xE2\x9C\x93 text echo");
    std::string binary(300, '\0');
    for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i & 0xFF);
    check_echo(report, session, options, "echo_binary", Opcode::binary, binary);
  } else {
    report.step("echo_text", StepStatus::skip, "--no-echo");
    report.step("echo_binary", StepStatus::skip, "--no-echo");
  }
  check_ping(report, session, options);
  check_close(report, session, options);
  link->shutdown_tls();
}

}  // namespace

int doctor_main(int argc, char** argv) {
  Options options;
  OptionTable table("edgews doctor", kDoctorUsage);
  table.text("--origin", "ORIGIN", options.origin, "send this Origin header (browsers always send one)")
      .list("--subprotocol", "NAME", options.subprotocols, "offer this subprotocol (repeatable, in preference order)")
      .flag("--deflate", options.deflate, true, "offer permessage-deflate (compressed replies are inflated)")
      .text("--ca", "FILE", options.tls.ca_file, "for wss://: trust this CA (PEM) instead of the system's")
      .flag("--insecure", options.tls.insecure, true, "for wss://: do not verify the certificate")
      .number("--timeout", "MS", options.timeout_ms, {1, 600000}, "for each step")
      .flag("--no-echo", options.echo, false, "the server is not an echo server: skip the echo steps")
      .flag("--json", options.json, true, "one JSON object on stdout instead of the report");
  const auto take_url = [&options](std::string_view argument) {
    if (!options.url.empty()) return std::string("only one URL, please");
    options.url = std::string(argument);
    return std::string();
  };
  if (int status = 0; !table.parse(argc, argv, status, take_url)) return status;
  if (options.url.empty()) {
    std::fprintf(stderr, "edgews doctor: a ws:// or wss:// URL is needed (try --help)\n");
    return 2;
  }
  for (const std::string& p : options.subprotocols) {
    if (!codec::is_token(p)) {
      std::fprintf(stderr, "edgews doctor: --subprotocol '%s' is not an HTTP token (RFC 6455 4.1)\n", p.c_str());
      return 2;
    }
  }

  Report report;
  run(options, report);
  if (options.json) {
    print_json(report, stdout);
  } else {
    print_text(report, stdout);
  }
  return report.defects.empty() ? 0 : 1;
}

}  // namespace edgews::tools
