#include "codec/handshake_response.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <charconv>
#include <cstring>
#include <limits>

#include "codec/base64.hpp"
#include "codec/http_token.hpp"

namespace edgews::codec {

namespace {

constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 1.3

void append_number(std::string& out, std::size_t value) {
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, static_cast<std::size_t>(result.ptr - digits));
}

// Copies `piece` to `p` and returns the end of the copy.
char* put(char* p, std::string_view piece) {
  if (!piece.empty()) std::memcpy(p, piece.data(), piece.size());
  return p + piece.size();
}

void append_status_line(std::string& out, int status) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<std::size_t>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\n");
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

}  // namespace

namespace {

#if defined(OPENSSL_NO_DEPRECATED_3_0)
// OpenSSL 3's one-shot SHA1() fetches the algorithm and allocates a context on every call (a lock, a malloc and a
// free): measured at about twice the cost of a per-thread context with a prefetched EVP_MD (bench/RESULTS.md).
class Sha1Context {
 public:
  Sha1Context() : md_(EVP_MD_fetch(nullptr, "SHA1", nullptr)), ctx_(EVP_MD_CTX_new()) {}
  ~Sha1Context() {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_free(md_);
  }
  Sha1Context(const Sha1Context&) = delete;
  Sha1Context& operator=(const Sha1Context&) = delete;

  bool digest(std::string_view a, std::string_view b, unsigned char* out) {
    unsigned int length = 0;
    return md_ != nullptr && ctx_ != nullptr && EVP_DigestInit_ex2(ctx_, md_, nullptr) == 1 &&
           EVP_DigestUpdate(ctx_, a.data(), a.size()) == 1 && EVP_DigestUpdate(ctx_, b.data(), b.size()) == 1 &&
           EVP_DigestFinal_ex(ctx_, out, &length) == 1;
  }

 private:
  EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};
#endif

// SHA-1 of `key` followed by the GUID.
void accept_digest(std::string_view key, unsigned char* digest) {
#if !defined(OPENSSL_NO_DEPRECATED_3_0)
  // OpenSSL 3.0's EVP_DigestInit_ex2 frees and allocates the provider's context on every call, even on a reused
  // EVP_MD_CTX; the low-level functions (deprecated in 3.0, still built unless OpenSSL is configured without
  // them) run the same assembly on a context on the stack: about a third less per handshake (bench/RESULTS.md).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  SHA_CTX sha;
  SHA1_Init(&sha);
  SHA1_Update(&sha, key.data(), key.size());
  SHA1_Update(&sha, kAcceptGuid.data(), kAcceptGuid.size());
  SHA1_Final(digest, &sha);
#pragma GCC diagnostic pop
#else
  thread_local Sha1Context context;
  if (!context.digest(key, kAcceptGuid, digest)) {
    // Only if OpenSSL could not set up a context (out of memory): the slower one-shot path still answers.
    std::string joined;
    joined.reserve(key.size() + kAcceptGuid.size());
    joined.append(key).append(kAcceptGuid);
    SHA1(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), digest);
  }
#endif
}

}  // namespace

std::array<char, 28> compute_accept(std::string_view key) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  accept_digest(key, digest);
  std::array<char, 28> accept{};
  base64_encode(std::span<const std::uint8_t>(digest, SHA_DIGEST_LENGTH), accept.data());
  return accept;
}

bool write_switching_protocols(std::string& out, std::string_view accept, std::string_view subprotocol,
                               std::string_view extensions, const ResponseHeaders* app_headers) {
  if (!is_clean_field_value(accept)) return false;
  if (!subprotocol.empty() && !is_token(subprotocol)) return false;
  if (!extensions.empty() && !is_clean_field_value(extensions)) return false;

  constexpr std::string_view kHead =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  constexpr std::string_view kProtocol = "Sec-WebSocket-Protocol: ";
  constexpr std::string_view kExtensions = "Sec-WebSocket-Extensions: ";
  constexpr std::string_view kCrlf = "\r\n";
  const std::string_view app = app_headers != nullptr ? app_headers->serialized() : std::string_view{};
  // The size is known before a byte is written: one resize (no allocation once `out` has grown to it) and then
  // copies, instead of an append with its own capacity check per piece.
  const std::size_t size = kHead.size() + accept.size() + kCrlf.size() +
                           (subprotocol.empty() ? 0 : kProtocol.size() + subprotocol.size() + kCrlf.size()) +
                           (extensions.empty() ? 0 : kExtensions.size() + extensions.size() + kCrlf.size()) +
                           app.size() + kCrlf.size();
  const std::size_t start = out.size();
  out.resize(start + size);
  char* p = out.data() + start;
  p = put(p, kHead);
  p = put(p, accept);
  p = put(p, kCrlf);
  if (!subprotocol.empty()) {
    p = put(p, kProtocol);
    p = put(p, subprotocol);
    p = put(p, kCrlf);
  }
  if (!extensions.empty()) {
    p = put(p, kExtensions);
    p = put(p, extensions);
    p = put(p, kCrlf);
  }
  p = put(p, app);
  put(p, kCrlf);
  return true;
}

void write_refusal(std::string& out, int status, std::string_view body, const ResponseHeaders* app_headers) {
  if (status < 400 || status > 599) status = 500;
  if (body.empty()) body = reason_phrase(status);
  const bool add_newline = body.back() != '\n';
  append_status_line(out, status);
  out.append("Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  append_number(out, body.size() + (add_newline ? 1 : 0));
  if (status == 426) {
    // RFC 9110 15.5.22: a 426 must carry Upgrade naming the protocol, and RFC 9110 7.8 pairs Upgrade with an
    // "upgrade" connection option; RFC 6455 4.2.2 adds the versions this server speaks.
    out.append("\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
  } else {
    out.append("\r\nConnection: close\r\n");
  }
  if (app_headers != nullptr) out.append(app_headers->serialized());
  out.append("\r\n");
  out.append(body);
  if (add_newline) out.push_back('\n');
}

bool write_http_response(std::string& out, int status, std::string_view content_type, std::string_view body,
                         const ResponseHeaders* app_headers, bool keep_alive) {
  if (status < 200 || status > 599) return false;
  if (!content_type.empty() && !is_clean_field_value(content_type)) return false;
  // RFC 9110 6.4.1, 8.6: 204 and 304 have no content and a 204 has no Content-Length.
  const bool bodyless = status == 204 || status == 304;
  append_status_line(out, status);
  if (!content_type.empty() && !bodyless) append_header(out, "Content-Type", content_type);
  if (!bodyless) {
    out.append("Content-Length: ");
    append_number(out, body.size());
    out.append("\r\n");
  }
  out.append(keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (app_headers != nullptr) out.append(app_headers->serialized());
  out.append("\r\n");
  if (!bodyless) out.append(body);
  return true;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown Status";
  }
}

void append_subprotocol_refusal_reason(std::string& out, std::string_view offered,
                                       std::span<const std::string_view> supported) {
  out.append("no common WebSocket subprotocol: the client offered \"");
  out.append(offered);
  out.append("\" and this server supports \"");
  for (std::size_t i = 0; i < supported.size(); ++i) {
    if (i != 0) out.append(", ");
    out.append(supported[i]);
  }
  out.append("\"");
}

}  // namespace edgews::codec
