#include "codec/protocol.hpp"

namespace edgews::codec {

namespace {

struct ErrorEntry {
  CloseCode code;
  std::string_view text;
};

// The one table: protocol error -> RFC 6455 close code and a sentence for logs.
constexpr ErrorEntry kErrors[] = {
    /* none */ {CloseCode::normal, "no error"},
    /* reserved_bits_set */ {CloseCode::protocol_error, "reserved bits RSV1-3 set without a negotiated extension"},
    /* reserved_opcode */ {CloseCode::protocol_error, "reserved opcode"},
    /* unmasked_client_frame */ {CloseCode::protocol_error, "client frame is not masked (RFC 6455 5.1)"},
    /* masked_server_frame */ {CloseCode::protocol_error, "server frame is masked (RFC 6455 5.1)"},
    /* non_minimal_length */ {CloseCode::protocol_error, "payload length not in its minimal encoding (RFC 6455 5.2)"},
    /* length_msb_set */ {CloseCode::protocol_error, "64-bit payload length has its most significant bit set"},
    /* control_frame_too_long */ {CloseCode::protocol_error, "control frame payload longer than 125 bytes"},
    /* fragmented_control_frame */ {CloseCode::protocol_error, "control frame without FIN"},
    /* unexpected_continuation */ {CloseCode::protocol_error, "continuation frame with no message to continue"},
    /* expected_continuation */ {CloseCode::protocol_error, "new data frame inside a fragmented message"},
    /* too_many_fragments */ {CloseCode::message_too_big, "message has more fragments than the limit"},
    /* message_too_big */ {CloseCode::message_too_big, "message larger than the maximum message size"},
    /* invalid_utf8 */ {CloseCode::invalid_payload, "text is not valid UTF-8"},
    /* invalid_close_payload */ {CloseCode::protocol_error, "close frame payload of 1 byte"},
    /* invalid_close_code */ {CloseCode::protocol_error, "close code that may not be sent on the wire"},
    /* rsv1_on_control_or_continuation */ {CloseCode::protocol_error, "RSV1 set on a control or continuation frame"},
    /* compressed_payload_invalid */ {CloseCode::invalid_payload, "compressed payload does not inflate"},
};

static_assert(sizeof(kErrors) / sizeof(kErrors[0]) ==
              static_cast<std::size_t>(ProtocolError::compressed_payload_invalid) + 1);

}  // namespace

CloseCode close_code_for(ProtocolError error) { return kErrors[static_cast<std::size_t>(error)].code; }

std::string_view describe(ProtocolError error) { return kErrors[static_cast<std::size_t>(error)].text; }

}  // namespace edgews::codec
