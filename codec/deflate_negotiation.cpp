// permessage-deflate negotiation (RFC 7692 5 and 7.1) and the user-agent list; see codec/deflate.hpp.
#include <algorithm>
#include <array>
#include <cstring>

#include "codec/deflate.hpp"
#include "codec/extensions.hpp"

namespace edgews::codec {

namespace {

bool valid_window_bits(unsigned bits) { return bits >= kMinWindowBits && bits <= kMaxWindowBits; }

class ResponseWriter {
 public:
  explicit ResponseWriter(DeflateResponse& r) : r_(r) { r_.size = 0; }
  void append(std::string_view text) {
    const std::size_t n = std::min(text.size(), sizeof r_.text - r_.size);
    std::memcpy(r_.text + r_.size, text.data(), n);
    r_.size += n;
  }
  void param(std::string_view name) {
    append("; ");
    append(name);
  }
  void param(std::string_view name, unsigned value) {  // value 8..15
    param(name);
    const char digits[3] = {'=', static_cast<char>('0' + value / 10), static_cast<char>('0' + value % 10)};
    if (value >= 10) {
      append(std::string_view(digits, 3));
    } else {
      append("=");
      append(std::string_view(digits + 2, 1));
    }
  }

 private:
  DeflateResponse& r_;
};

// Server's decision for one valid offer; false declines it.
bool accept_offer(const DeflateClientOffer& offer, const DeflateServerOptions& options, DeflateParams& params,
                  DeflateResponse& response) {
  params = DeflateParams{};
  ResponseWriter out(response);
  out.append(kPerMessageDeflate);

  // RFC 7692 7.1.1.1: a server accepts server_no_context_takeover by naming it in the response; it may also
  // name it unasked to announce that it does not use context takeover.
  params.server_no_context_takeover = offer.server_no_context_takeover || options.server_no_context_takeover;
  if (params.server_no_context_takeover) out.param("server_no_context_takeover");

  // RFC 7692 7.1.1.2: the server may name client_no_context_takeover whether or not the client offered it. An
  // offered one is echoed: the client does it anyway, and naming it lets the inflater drop its window.
  params.client_no_context_takeover = offer.client_no_context_takeover || options.client_no_context_takeover;
  if (params.client_no_context_takeover) out.param("client_no_context_takeover");

  // RFC 7692 7.1.2.2: an offered server_max_window_bits is accepted with the same or a smaller value.
  const unsigned own_bits = std::clamp(options.server_max_window_bits, kMinWindowBits, kMaxWindowBits);
  if (offer.server_max_window_bits != 0) {
    params.server_max_window_bits = std::min(offer.server_max_window_bits, own_bits);
    out.param("server_max_window_bits", params.server_max_window_bits);
  } else {
    params.server_max_window_bits = own_bits;  // used without announcing it (see DeflateServerOptions)
  }

  // RFC 7692 7.1.2.1: client_max_window_bits may appear in the response only when the offer has it; then with a
  // value no larger than an offered one.
  const unsigned peer_limit = std::clamp(options.client_max_window_bits, kMinWindowBits, kMaxWindowBits);
  if (offer.client_max_window_bits) {
    const unsigned offered = offer.client_max_window_bits_value == 0 ? kMaxWindowBits : offer.client_max_window_bits_value;
    params.client_max_window_bits = std::min(offered, peer_limit);
    // Named when the client gave a value (the response then confirms the one in force) or when the server limits
    // the client below 15; otherwise the client's default of 15 stands.
    if (offer.client_max_window_bits_value != 0 || params.client_max_window_bits < kMaxWindowBits) {
      out.param("client_max_window_bits", params.client_max_window_bits);
    }
  } else {
    params.client_max_window_bits = kMaxWindowBits;
  }
  return true;
}

}  // namespace

bool parse_deflate_offer(std::span<const ExtensionParam> params, DeflateClientOffer& offer) {
  offer = DeflateClientOffer{};
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  for (const ExtensionParam& p : params) {
    // RFC 7692 7: an offer with an unknown parameter, a parameter twice, or an invalid value is declined.
    if (p.name == "server_no_context_takeover") {
      if (seen_snct || p.has_value) return false;
      seen_snct = offer.server_no_context_takeover = true;
    } else if (p.name == "client_no_context_takeover") {
      if (seen_cnct || p.has_value) return false;
      seen_cnct = offer.client_no_context_takeover = true;
    } else if (p.name == "server_max_window_bits") {
      // RFC 7692 7.1.2.2: a value is required.
      const std::optional<unsigned> bits = p.value_as_number();
      if (seen_smwb || !bits || !valid_window_bits(*bits)) return false;
      seen_smwb = true;
      offer.server_max_window_bits = *bits;
    } else if (p.name == "client_max_window_bits") {
      // RFC 7692 7.1.2.1: the value is optional in an offer.
      if (seen_cmwb) return false;
      seen_cmwb = offer.client_max_window_bits = true;
      if (p.has_value) {
        const std::optional<unsigned> bits = p.value_as_number();
        if (!bits || !valid_window_bits(*bits)) return false;
        offer.client_max_window_bits_value = *bits;
      }
    } else {
      return false;
    }
  }
  return true;
}

DeflateNegotiation negotiate_deflate(std::string_view offered_list, const DeflateServerOptions& options) {
  DeflateNegotiation result;
  std::array<ExtensionOffer, 16> offers;
  std::array<ExtensionParam, 64> params;
  const ExtensionParseResult parsed = parse_extension_offers(offered_list, offers, params);
  if (!parsed.ok) return result;
  for (std::size_t i = 0; i < parsed.offer_count; ++i) {
    if (offers[i].name != kPerMessageDeflate) continue;
    DeflateClientOffer offer;
    if (!parse_deflate_offer(offers[i].params, offer)) {
      ++result.declined;
      continue;
    }
    if (accept_offer(offer, options, result.params, result.response)) {
      result.accepted = true;
      result.offer_index = i;
      return result;
    }
    ++result.declined;
  }
  result.response.size = 0;
  return result;
}

DeflateResponseParse parse_deflate_response(std::span<const ExtensionParam> accepted, const DeflateClientOffer& offer) {
  DeflateResponseParse r;
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  auto fail = [&r](std::string_view why) {
    r.ok = false;
    r.error = why;
    return r;
  };
  r.params.server_max_window_bits = offer.server_max_window_bits != 0 ? offer.server_max_window_bits : 15;
  r.params.client_max_window_bits = 15;
  r.params.server_no_context_takeover = false;
  r.params.client_no_context_takeover = false;
  for (const ExtensionParam& p : accepted) {
    if (p.name == "server_no_context_takeover") {
      if (seen_snct) return fail("server_no_context_takeover appears twice");
      if (p.has_value) return fail("server_no_context_takeover has a value");
      seen_snct = r.params.server_no_context_takeover = true;
    } else if (p.name == "client_no_context_takeover") {
      if (seen_cnct) return fail("client_no_context_takeover appears twice");
      if (p.has_value) return fail("client_no_context_takeover has a value");
      seen_cnct = r.params.client_no_context_takeover = true;
    } else if (p.name == "server_max_window_bits") {
      if (seen_smwb) return fail("server_max_window_bits appears twice");
      seen_smwb = true;
      const std::optional<unsigned> bits = p.value_as_number();
      if (!bits || !valid_window_bits(*bits)) return fail("server_max_window_bits is not a number from 8 to 15");
      // RFC 7692 7.1.2.2: the same or a smaller value than offered.
      if (offer.server_max_window_bits != 0 && *bits > offer.server_max_window_bits) {
        return fail("server_max_window_bits is larger than the offered value");
      }
      r.params.server_max_window_bits = *bits;
    } else if (p.name == "client_max_window_bits") {
      if (seen_cmwb) return fail("client_max_window_bits appears twice");
      seen_cmwb = true;
      // RFC 7692 7.1.2.1: only when offered, and in a response always with a value.
      if (!offer.client_max_window_bits) return fail("client_max_window_bits was not offered");
      const std::optional<unsigned> bits = p.value_as_number();
      if (!bits || !valid_window_bits(*bits)) return fail("client_max_window_bits is not a number from 8 to 15");
      if (offer.client_max_window_bits_value != 0 && *bits > offer.client_max_window_bits_value) {
        return fail("client_max_window_bits is larger than the offered value");
      }
      r.params.client_max_window_bits = *bits;
    } else {
      return fail("the response has a parameter that RFC 7692 does not define");
    }
  }
  // RFC 7692 7.1.1.1: an offered server_no_context_takeover must be accepted by naming it.
  if (offer.server_no_context_takeover && !r.params.server_no_context_takeover) {
    return fail("server_no_context_takeover was offered and the response does not name it");
  }
  if (offer.client_max_window_bits_value != 0 && !seen_cmwb) {
    r.params.client_max_window_bits = offer.client_max_window_bits_value;
  }
  if (offer.client_no_context_takeover) r.params.client_no_context_takeover = true;
  r.ok = true;
  return r;
}

namespace {

// The number right after `prefix` in text, e.g. "15" in "Version/15.3"; major and minor, -1 when absent.
bool find_version(std::string_view ua, std::string_view prefix, char separator, int& major, int& minor) {
  const std::size_t at = ua.find(prefix);
  if (at == std::string_view::npos) return false;
  std::size_t i = at + prefix.size();
  auto number = [&](int& n) {
    n = -1;
    int v = 0;
    std::size_t digits = 0;
    while (i < ua.size() && ua[i] >= '0' && ua[i] <= '9' && digits < 4) {
      v = v * 10 + (ua[i] - '0');
      ++i;
      ++digits;
    }
    if (digits != 0) n = v;
  };
  number(major);
  minor = 0;
  if (i < ua.size() && ua[i] == separator) {
    ++i;
    number(minor);
    if (minor < 0) minor = 0;
  }
  return major >= 0;
}

}  // namespace

bool is_deflate_broken_user_agent(std::string_view ua) {
  int major = 0, minor = 0;
  // iPhone, iPod ("CPU iPhone OS 15_2 like Mac OS X") and iPad ("CPU OS 15_2 like Mac OS X"): every iOS
  // browser (Safari, CriOS, FxiOS, in-app views) runs the system WebKit, so the OS version decides.
  if ((find_version(ua, "iPhone OS ", '_', major, minor) || find_version(ua, "CPU OS ", '_', major, minor)) &&
      ua.find("like Mac OS X") != std::string_view::npos) {
    return major == 15 && minor <= 3;
  }
  // macOS Safari (and iPadOS asking for the desktop site): "Version/15.2 Safari/605.1.15". Chromium-based
  // browsers also say "Safari/" but not "Version/".
  if (ua.find("Safari/") != std::string_view::npos && ua.find("Chrome/") == std::string_view::npos &&
      ua.find("Chromium/") == std::string_view::npos && find_version(ua, "Version/", '.', major, minor)) {
    return major == 15 && minor <= 3;
  }
  return false;
}

}  // namespace edgews::codec
