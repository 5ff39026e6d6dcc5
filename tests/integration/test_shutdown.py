"""SIGTERM: every connected client receives what was queued before it, then close code 1001, and the server
exits 0 within the deadline."""
import asyncio

import websockets

import ws_checks
from harness import CheckFailed, FrameReader, expect, expect_eq, raw_upgrade, run_checks, serve, test_server

CLIENTS = 20
BURST = 200
BURST_SIZE = 16 << 10
EXIT_DEADLINE = 30


async def read_burst_then_close(ws):
    """Returns the sequence numbers received before the close, and the close code."""
    seqs = []
    while True:
        try:
            message = await ws_checks.recv(ws)
        except websockets.ConnectionClosed as e:
            return seqs, (e.rcvd.code if e.rcvd else None)
        expect(isinstance(message, bytes) and len(message) == BURST_SIZE, "burst message size")
        seqs.append(int.from_bytes(message[:8], "big"))


def sigterm_delivers_queued_messages_then_1001():
    with test_server("--port", "0") as server:
        async def run():
            clients = [await ws_checks.connect(f"ws://127.0.0.1:{server.port}/") for _ in range(CLIENTS)]
            for ws in clients:  # every connection is open on the server before the burst
                await ws.send("ready")
                expect_eq(await ws_checks.recv(ws), "ready", "echo before the burst")
            # The server queues BURST messages for every client, then raises SIGTERM in its own process.
            await clients[0].send(f"burst-all {BURST} {BURST_SIZE}")
            return await asyncio.gather(*(read_burst_then_close(ws) for ws in clients))
        results = asyncio.run(run())
        for i, (seqs, code) in enumerate(results):
            expect_eq(seqs, list(range(BURST)), f"client {i}: burst messages before the close")
            expect_eq(code, 1001, f"client {i}: close code")
        code = server.wait(EXIT_DEADLINE)
        expect(code is not None, f"the server did not exit within {EXIT_DEADLINE}s of SIGTERM")
        expect_eq(code, 0, "exit code after SIGTERM")


def sigterm_closes_edgews_serve_clients_with_1001():
    with serve() as server:
        ws_checks.sigterm_closes_clients_with_1001(server, f"ws://127.0.0.1:{server.port}/", None, CLIENTS,
                                                   EXIT_DEADLINE)


def sigterm_with_unresponsive_client_exits_within_deadline():
    """A client that never answers the 1001 close does not keep the server alive past its shutdown timeout."""
    with serve() as server:
        s, rest = raw_upgrade(server.port)
        server.signal(15)
        code = server.wait(EXIT_DEADLINE)
        expect(code is not None, f"edgews serve did not exit within {EXIT_DEADLINE}s with an unresponsive client")
        expect_eq(code, 0, "exit code after SIGTERM")
        # What the client got: the 1001 close frame, then the end of the connection.
        reader = FrameReader(s, rest)
        close_code, _ = reader.until_close()
        expect_eq(close_code, 1001, "close code sent to the unresponsive client")
        s.close()


if __name__ == "__main__":
    run_checks([sigterm_delivers_queued_messages_then_1001, sigterm_closes_edgews_serve_clients_with_1001,
                sigterm_with_unresponsive_client_exits_within_deadline])
