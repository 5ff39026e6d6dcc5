"""Checks with the python3-websockets client (10.4), shared by the ws:// and wss:// tests.

Each function takes the URL (and an SSL context for wss://) and raises CheckFailed or an exception on failure.
"""
import asyncio

import websockets

from harness import CheckFailed, expect, expect_eq

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]
STEP_TIMEOUT = 60


_TEXT_BASE = "".join(chr(0x20 + (i * 7) % 95) for i in range(95))
_BINARY_BASE = bytes((i * 31 + (i >> 8)) & 0xFF for i in range(65536))


def payload_of(size, text):
    """A deterministic payload of exactly `size` bytes (ASCII text or binary with every byte value)."""
    base = _TEXT_BASE if text else _BINARY_BASE
    return (base * (size // len(base) + 1))[:size]


def connect(url, ssl_context=None, **kwargs):
    return websockets.connect(url, ssl=ssl_context, max_size=64 << 20, open_timeout=STEP_TIMEOUT,
                              close_timeout=STEP_TIMEOUT, ping_interval=None, **kwargs)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)


async def echo(url, ssl_context=None):
    async with connect(url, ssl_context) as ws:
        for text in (True, False):
            for size in SIZES:
                want = payload_of(size, text)
                expect_eq(len(want), size, "test payload size")
                await ws.send(want)
                got = await recv(ws)
                expect(type(got) is type(want),
                       f"{'text' if text else 'binary'} {size}: got a {type(got).__name__} message back")
                expect(len(got) == size, f"{'text' if text else 'binary'} {size}: {len(got)} bytes back")
                expect(got == want, f"{'text' if text else 'binary'} {size}: the echo differs from what was sent")
        unicode = "héllo wörld ✓ 𝄞 " * 5000
        await ws.send(unicode)
        expect(await recv(ws) == unicode, "multi-byte UTF-8 text came back changed")


async def fragments(url, ssl_context=None):
    async with connect(url, ssl_context) as ws:
        # An iterable of bytes: websockets sends one frame per item (RFC 6455 5.4 fragmentation).
        parts = [b"a", bytes(range(256)) * 300, b"", b"tail"]
        await ws.send(parts)
        expect_eq(await recv(ws), b"".join(parts), "fragmented binary (list)")
        text_parts = ["αβγ ", "✓ ", "𝄞" * 40000, " end"]
        await ws.send(text_parts)
        expect_eq(await recv(ws), "".join(text_parts), "fragmented text (list)")

        async def gen():
            for i in range(50):
                yield f"piece {i};"
                await asyncio.sleep(0)
        await ws.send(gen())
        expect_eq(await recv(ws), "".join(f"piece {i};" for i in range(50)), "fragmented text (async iterator)")


async def ping(url, ssl_context=None):
    async with connect(url, ssl_context) as ws:
        for payload in (b"", b"edgews", bytes(range(125))):
            # websockets resolves the waiter only for a pong that carries the same payload (RFC 6455 5.5.3).
            waiter = await ws.ping(payload)
            latency = await asyncio.wait_for(waiter, STEP_TIMEOUT)
            expect(latency is None or latency >= 0, "pong waiter")
        await ws.send("still open")
        expect_eq(await recv(ws), "still open", "echo after pings")


async def close_codes(url, ssl_context=None):
    for code, reason in ((1000, ""), (4001, "custom reason"), (3000, "")):
        ws = await connect(url, ssl_context)
        await ws.send("x")
        await recv(ws)
        await asyncio.wait_for(ws.close(code=code, reason=reason), STEP_TIMEOUT)
        # close_code is the code of the close frame the server sent back (RFC 6455 5.5.1 echo).
        expect_eq(ws.close_code, code, f"server's answer to a close with {code}")


async def server_close(url, ssl_context=None):
    """Needs the integration server: 'close CODE REASON' makes it start the closing handshake."""
    for code, reason in ((4002, "server says bye"), (1000, "done"), (1008, "policy")):
        async with connect(url, ssl_context) as ws:
            await ws.send(f"close {code} {reason}")
            try:
                got = await recv(ws)
                raise CheckFailed(f"expected the server to close, received {got!r}")
            except websockets.ConnectionClosed as e:
                expect_eq((e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None), (code, reason),
                          "server-initiated close code and reason")
            expect_eq(ws.close_code, code, "close_code")
    # A reason longer than a close frame allows (123 bytes) is cut, but never inside a UTF-8 character: a cut
    # character would make every client fail the connection with 1007 instead of seeing the close.
    long_reason = "é" * 62  # 124 bytes
    async with connect(url, ssl_context) as ws:
        await ws.send(f"close 4003 {long_reason}")
        try:
            await recv(ws)
            raise CheckFailed("expected the server to close")
        except websockets.ConnectionClosed as e:
            expect(e.rcvd is not None, f"no close frame from the server (client sent {e.sent})")
            expect_eq(e.rcvd.code, 4003, "close code with a long reason")
            reason = e.rcvd.reason
            expect(long_reason.startswith(reason) and 0 < len(reason.encode()) <= 123,
                   f"long reason came back as {reason!r} ({len(reason.encode())} bytes)")


def sync(check, url, ssl_context=None):
    return lambda: asyncio.run(check(url, ssl_context))


def sigterm_closes_clients_with_1001(server, url, ssl_context=None, clients=20, exit_deadline=30):
    """Connects `clients` clients, checks an echo on each, sends SIGTERM to the server: every client must get
    close code 1001 and the server must exit 0 within exit_deadline seconds."""
    async def run():
        connected = [await connect(url, ssl_context) for _ in range(clients)]
        for ws in connected:
            await ws.send("ready")
            expect_eq(await recv(ws), "ready", "echo before SIGTERM")
        server.signal(15)
        codes = []
        for ws in connected:
            try:
                got = await recv(ws)
                raise CheckFailed(f"expected a close, received {got!r}")
            except websockets.ConnectionClosed as e:
                codes.append(e.rcvd.code if e.rcvd else None)
        return codes
    expect_eq(asyncio.run(run()), [1001] * clients, "close codes after SIGTERM")
    code = server.wait(exit_deadline)
    expect(code is not None, f"the server did not exit within {exit_deadline}s of SIGTERM")
    expect_eq(code, 0, "exit code after SIGTERM")

