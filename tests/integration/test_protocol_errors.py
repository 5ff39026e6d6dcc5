"""Protocol errors from a raw client (what real clients refuse to send): the server fails the connection with
the RFC 6455 close code and then closes the TCP connection."""
import threading
import time

from harness import (FrameReader, close_payload, connect, edgews, expect, expect_eq, frame, raw_upgrade,
                     read_http_head, run_checks, serve, upgrade_request, wait_until)

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def expect_failed_with(port, frames, code, what, rcvbuf=None):
    s, rest = raw_upgrade(port, rcvbuf=rcvbuf)
    try:
        for f in frames:
            try:
                s.sendall(f)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server may fail the connection before it read everything
        reader = FrameReader(s, rest)
        got, _ = reader.until_close()
        expect_eq(got, code, f"close code for {what}")
        # RFC 6455 7.1.7: after failing the connection the server closes it; a clean EOF or a reset both end it.
        try:
            while True:
                reader.next()
        except (EOFError, ConnectionResetError):
            pass
    finally:
        s.close()


def invalid_utf8_closes_1007():
    with serve() as server:
        cases = [
            ([frame(TEXT, b"ok \xc3\x28")], "an invalid continuation byte"),
            ([frame(TEXT, b"\xed\xa0\x80")], "a UTF-16 surrogate"),
            ([frame(TEXT, b"\xc0\xaf")], "an overlong encoding"),
            ([frame(TEXT, b"abc\xe2\x82")], "a text message ending inside a character"),
            ([frame(TEXT, b"\xe2\x82", fin=False), frame(CONTINUATION, b"A")],
             "a character broken across fragments"),
            ([frame(CLOSE, close_payload(1000, b"\xff\xfe"))], "a close reason that is not UTF-8"),
        ]
        for frames, what in cases:
            expect_failed_with(server.port, frames, 1007, what)
        # Valid UTF-8 split across fragments is fine (control: the same server echoes it).
        s, rest = raw_upgrade(server.port)
        s.sendall(frame(TEXT, b"\xe2\x82", fin=False) + frame(CONTINUATION, b"\xac!"))
        _, opcode, payload = FrameReader(s, rest).next()
        expect_eq((opcode, payload), (TEXT, "€!".encode()), "echo of a character split across fragments")
        s.close()


def oversized_message_closes_1009():
    with edgews("--host", "127.0.0.1", "--port", "0", "--max-message-size", "4096", "--log-level", "warn") as server:
        expect_failed_with(server.port, [frame(BINARY, b"x" * 4097)], 1009, "one frame over the limit")
        expect_failed_with(server.port, [frame(BINARY, b"x" * 3000, fin=False), frame(CONTINUATION, b"y" * 3000)],
                           1009, "fragments that add up to more than the limit")
        # A frame header that announces 1 GiB is refused before its payload arrives.
        header_only = frame(BINARY, b"")[:1] + bytes([0x80 | 127]) + (1 << 30).to_bytes(8, "big") + b"\0\0\0\0"
        expect_failed_with(server.port, [header_only], 1009, "a header announcing 1 GiB")
        # At the limit: still echoed.
        s, rest = raw_upgrade(server.port)
        s.sendall(frame(BINARY, b"z" * 4096))
        _, opcode, payload = FrameReader(s, rest).next()
        expect_eq((opcode, len(payload)), (BINARY, 4096), "echo of a message exactly at the limit")
        s.close()


def fragments_are_uncapped_by_default_and_capped_by_the_flag():
    """RFC 6455 sets no bound on the number of fragments, so by default neither does edgews (max_message_size
    bounds the bytes); --max-fragments N closes with 1009 beyond N frames of one message."""
    payload = bytes(i % 251 for i in range(5000))
    fragments = [frame(BINARY if i == 0 else CONTINUATION, payload[i:i + 1], fin=i == len(payload) - 1)
                 for i in range(len(payload))]
    for flags in ([], ["--max-fragments", "0"]):
        with serve(*flags) as server:
            s, rest = raw_upgrade(server.port)
            s.sendall(b"".join(fragments))
            _, opcode, echoed = FrameReader(s, rest).next()
            expect_eq((opcode, echoed), (BINARY, payload),
                      f"echo of a message in 5000 fragments with {flags or 'the defaults'}")
            s.close()
    with edgews("--host", "127.0.0.1", "--port", "0", "--max-fragments", "3", "--log-level", "warn") as server:
        s, rest = raw_upgrade(server.port)
        s.sendall(frame(TEXT, b"a", fin=False) + frame(CONTINUATION, b"b", fin=False) + frame(CONTINUATION, b"c"))
        expect_eq(FrameReader(s, rest).next()[1:], (TEXT, b"abc"), "echo of three fragments at --max-fragments 3")
        s.close()
        expect_failed_with(server.port, [frame(TEXT, b"a", fin=False)] + [frame(CONTINUATION, b"b", fin=False)] * 3,
                           1009, "a fourth fragment over --max-fragments 3")


def empty_continuation_flood_is_bounded():
    """Without a fragment cap, a message that never ends in empty continuation frames costs the server parsing
    only: memory does not grow with the frames, another connection is served meanwhile (the read budget per
    turn), and the message is still delivered whole when it ends."""
    empty = b"\x00\x80" + b"\x5a\x17\xc3\x01"  # FIN=0, continuation, masked, no payload: 6 bytes
    chunk = empty * (64 << 10)
    flood_before_echoes = 32 << 20
    flood_during_echoes = 8 << 20
    flood_limit = 1 << 30
    with serve() as server:
        flood, flood_rest = raw_upgrade(server.port)
        honest, honest_rest = raw_upgrade(server.port)
        honest_reader = FrameReader(honest, honest_rest)

        def echo(i):
            message = f"honest {i}".encode()
            honest.sendall(frame(TEXT, message))
            expect_eq(honest_reader.next()[1:], (TEXT, message), f"echo {i} during the flood")

        echo(0)
        baseline_rss = server.rss_kib()
        sent = [0]
        stop = threading.Event()
        failures = []

        def flooder():
            try:
                flood.sendall(frame(TEXT, b"a", fin=False))
                while not stop.is_set() and sent[0] < flood_limit:
                    flood.sendall(chunk)
                    sent[0] += len(chunk)
                flood.sendall(frame(CONTINUATION, b"b"))
            except OSError as e:
                failures.append(e)

        thread = threading.Thread(target=flooder, daemon=True)
        thread.start()
        try:
            expect(wait_until(lambda: sent[0] >= flood_before_echoes or failures, 120),
                   f"the flood stalled at {sent[0]} bytes")
            expect(not failures, f"the flood connection failed: {failures}")
            # Echoes while the flood goes on, until it has sent some more: proof that both were served at once.
            start = sent[0]
            echoes = 0
            while sent[0] - start < flood_during_echoes and sent[0] < flood_limit and echoes < 1000000:
                echoes += 1
                echo(echoes)
            expect(sent[0] - start >= flood_during_echoes, f"the flood made no progress during {echoes} echoes")
            rss = server.rss_kib()
        finally:
            stop.set()
            thread.join(120)
        expect(not thread.is_alive() and not failures, f"the flood connection failed: {failures}")
        expect_eq(FrameReader(flood, flood_rest).next()[1:], (TEXT, b"ab"),
                  f"the message that ended after {sent[0] // len(empty)} empty continuations")
        expect(rss - baseline_rss < (16 << 10),
               f"RSS grew from {baseline_rss} to {rss} KiB over {sent[0] >> 20} MiB of empty continuation frames")
        flood.close()
        honest.close()
        expect(server.alive(), "the server died")


def unmasked_frame_closes_1002():
    with serve() as server:
        # RFC 6455 5.1: a server MUST close the connection upon receiving a frame that is not masked.
        expect_failed_with(server.port, [frame(TEXT, b"hello", mask=False)], 1002, "an unmasked text frame")
        expect_failed_with(server.port, [frame(PING, b"", mask=False)], 1002, "an unmasked ping")
        expect_failed_with(server.port, [frame(TEXT, b"a", fin=True), frame(CONTINUATION, b"b")], 1002,
                           "a continuation with nothing to continue")
        expect_failed_with(server.port, [frame(TEXT, b"a", rsv=4)], 1002, "RSV1 without a negotiated extension")
        other_framing_errors = [
            ([frame(CLOSE, close_payload(1005))], "close code 1005 on the wire"),
            ([frame(CLOSE, close_payload(999))], "close code 999"),
            ([frame(CLOSE, b"\x03")], "a one-byte close payload"),
            ([frame(PING, b"p" * 126)], "a ping longer than 125 bytes"),
            ([frame(PING, b"p", fin=False)], "a fragmented ping"),
            ([frame(0x3, b"")], "reserved opcode 3"),
            ([frame(TEXT, b"a", fin=False), frame(TEXT, b"b")], "a new message inside a fragmented one"),
        ]
        for frames, what in other_framing_errors:
            expect_failed_with(server.port, frames, 1002, what)
        expect(server.alive(), "the server died")


def frames_right_behind_the_request_are_read():
    """A client may send frames in the same packets as its upgrade request (RFC 6455 does not forbid it): the
    bytes after the head belong to the frame reader, also when the request arrived in pieces."""
    with serve() as server:
        request = upgrade_request(server.port)
        first, second = frame(TEXT, b"first"), frame(BINARY, bytes(range(256)) * 300)
        data = request + first + second
        for cuts in ([], [len(request) - 5, len(request) + 3], [len(request) - 1, len(request) + len(first) + 100]):
            s = connect(server.port)
            start = 0
            for cut in cuts + [len(data)]:
                s.sendall(data[start:cut])
                start = cut
                time.sleep(0.05)  # separate reads on the server (not required for correctness)
            head, rest = read_http_head(s)
            expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade refused: {head!r}")
            reader = FrameReader(s, rest)
            expect_eq(reader.next()[1:], (TEXT, b"first"), f"first frame behind the request (cuts {cuts})")
            expect_eq(reader.next()[1:], (BINARY, bytes(range(256)) * 300), f"second frame (cuts {cuts})")
            s.close()


if __name__ == "__main__":
    run_checks([invalid_utf8_closes_1007, oversized_message_closes_1009,
                fragments_are_uncapped_by_default_and_capped_by_the_flag, empty_continuation_flood_is_bounded,
                unmasked_frame_closes_1002, frames_right_behind_the_request_are_read])
