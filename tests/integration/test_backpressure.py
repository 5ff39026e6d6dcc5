"""Slow consumers: a raw client asks for large echoes and never reads. By default the server stops reading it once
its send queue passes the high-water mark (read throttling): the client is pushed back by TCP, memory stays bounded,
and once it reads it gets every echo. With throttling off (--read-high-water 0) the backpressure policy decides:
close closes it (1008) and its memory stays bounded; with drop the messages over the limit are dropped and the
connection stays open. Other clients are served throughout."""
import asyncio
import socket

import ws_checks
from harness import FrameReader, close_payload, expect, expect_eq, frame, raw_upgrade, run_checks, serve

BINARY, CLOSE, PING, PONG = 0x2, 0x8, 0x9, 0xA
LIMIT = 1 << 20               # --max-backpressure
FRAME_PAYLOAD = 256 << 10     # each request: a 256 KiB message to echo
TOTAL = 160 << 20             # never read: far more than kernel buffers plus the limit can hold
RSS_BOUND_KIB = 64 << 10      # an unbounded queue would grow by ~TOTAL


def other_client_echoes(port):
    async def run():
        async with ws_checks.connect(f"ws://127.0.0.1:{port}/") as ws:
            for i in range(5):
                payload = bytes([i]) * 100000
                await ws.send(payload)
                expect_eq(await ws_checks.recv(ws), payload, "echo to another client")
    asyncio.run(run())


def flood(sock):
    """Sends TOTAL bytes of echo requests without reading; returns (frames sent, whether the server cut us off)."""
    request = frame(BINARY, bytes(range(256)) * (FRAME_PAYLOAD // 256))
    sent = 0
    try:
        for _ in range(TOTAL // FRAME_PAYLOAD):
            sock.sendall(request)
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        return sent, True
    return sent, False


def slow_reader_is_throttled_and_loses_nothing():
    with serve() as server:
        other_client_echoes(server.port)
        rss_before = server.rss_kib()
        s, rest = raw_upgrade(server.port, rcvbuf=64 << 10)
        s.settimeout(3)
        requests, sent, partial = [], 0, b""
        for i in range(TOTAL // FRAME_PAYLOAD):  # bounded: far more than every buffer on the way holds
            payload = i.to_bytes(4, "big") * (FRAME_PAYLOAD // 4)
            request = frame(BINARY, payload)
            offset = 0
            try:
                while offset < len(request):
                    offset += s.send(request[offset:])
            except socket.timeout:
                partial = request[offset:]
                break
            requests.append(payload)
            sent += 1
        expect(partial, f"the server read all {sent} requests of a client that never reads: not throttled")
        rss_after = server.rss_kib()
        expect(rss_after - rss_before < RSS_BOUND_KIB,
               f"server RSS grew by {(rss_after - rss_before) >> 10} MiB for one throttled reader (bound "
               f"{RSS_BOUND_KIB >> 10} MiB)")
        other_client_echoes(server.port)
        # Now read: every echo arrives, in order; then the half-sent request is finished and echoed too.
        s.settimeout(60)
        reader = FrameReader(s, rest)
        for i, payload in enumerate(requests):
            _, opcode, echoed = reader.next()
            expect_eq(opcode, BINARY, f"echo {i}")
            expect(echoed == payload, f"echo {i} of {sent} damaged or out of order")
        s.sendall(partial)
        _, opcode, echoed = reader.next()
        expect(opcode == BINARY and echoed[:4] == sent.to_bytes(4, "big"), "the request sent while throttled")
        s.sendall(frame(CLOSE, close_payload(1000)))
        code, _ = reader.until_close()
        expect_eq(code, 1000, "close answer after the flood")
        s.close()
        expect("1008" not in server.log(), "a throttled reader was closed")
        print(f"  throttled after {sent} requests, all echoed, RSS {rss_before >> 10} -> {rss_after >> 10} MiB")


# With read throttling off: a handler that keeps replying to a reader that does not read meets the policy.
def slow_reader_closed_with_1008():
    with serve("--max-backpressure", str(LIMIT), "--backpressure-policy", "close", "--read-high-water", "0") as server:
        other_client_echoes(server.port)  # warm up: buffers every connection shares are allocated now
        rss_before = server.rss_kib()
        s, rest = raw_upgrade(server.port, rcvbuf=64 << 10)
        sent, cut_off = flood(s)
        rss_after = server.rss_kib()
        expect(rss_after - rss_before < RSS_BOUND_KIB,
               f"server RSS grew by {(rss_after - rss_before) >> 10} MiB for one slow reader (bound "
               f"{RSS_BOUND_KIB >> 10} MiB)")
        other_client_echoes(server.port)
        # Now read: echoes, then the 1008 close frame, or the end of a connection the server already dropped.
        s.settimeout(60)
        reader = FrameReader(s, rest)
        echoes, close_code = 0, None
        try:
            while True:
                _, opcode, payload = reader.next()
                if opcode == CLOSE:
                    close_code = int.from_bytes(payload[:2], "big")
                    break
                echoes += 1
        except (EOFError, ConnectionResetError):
            pass
        s.close()
        expect(close_code in (None, 1008), f"close code {close_code}, expected 1008")
        expect(echoes < sent, f"all {sent} echoes arrived: the backpressure limit never applied")
        expect("1008" in server.log(), "the server did not log a backpressure close with 1008")
        print(f"  sent {sent} requests (cut off: {cut_off}), read {echoes} echoes, close frame: {close_code}, "
              f"RSS {rss_before >> 10} -> {rss_after >> 10} MiB")
        other_client_echoes(server.port)


def slow_reader_with_drop_stays_open():
    with serve("--max-backpressure", str(LIMIT), "--backpressure-policy", "drop", "--read-high-water", "0") as server:
        other_client_echoes(server.port)
        rss_before = server.rss_kib()
        s, rest = raw_upgrade(server.port, rcvbuf=64 << 10)
        sent, cut_off = flood(s)
        expect(not cut_off, "the server closed a slow reader although the policy is drop")
        rss_after = server.rss_kib()
        expect(rss_after - rss_before < RSS_BOUND_KIB,
               f"server RSS grew by {(rss_after - rss_before) >> 10} MiB (bound {RSS_BOUND_KIB >> 10} MiB)")
        other_client_echoes(server.port)
        # The connection is open: a ping is answered (control frames are never dropped), after what was kept.
        s.sendall(frame(PING, b"alive?"))
        s.settimeout(60)
        reader = FrameReader(s, rest)
        echoes = 0
        while True:
            _, opcode, payload = reader.next()
            if opcode == PONG:
                expect_eq(payload, b"alive?", "pong payload")
                break
            expect_eq(opcode, BINARY, "frame before the pong")
            expect_eq(len(payload), FRAME_PAYLOAD, "echo size")
            echoes += 1
        expect(echoes < sent, f"all {sent} echoes arrived: nothing was dropped")
        s.sendall(frame(CLOSE, close_payload(1000)))
        code, _ = reader.until_close()
        expect_eq(code, 1000, "close answer after the flood")
        s.close()
        print(f"  sent {sent} requests, {echoes} echoes kept, RSS {rss_before >> 10} -> {rss_after >> 10} MiB")


if __name__ == "__main__":
    run_checks([slow_reader_is_throttled_and_loses_nothing, slow_reader_closed_with_1008,
                slow_reader_with_drop_stays_open])
