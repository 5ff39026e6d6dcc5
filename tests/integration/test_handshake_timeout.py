"""A handshake that never completes is closed at --handshake-timeout, while other clients keep being served."""
import asyncio
import socket
import time

import ws_checks
from harness import connect, expect, expect_eq, run_checks, serve

TIMEOUT_MS = 500


def wait_closed(sock, limit, since):
    """Blocks until the server closes the socket; returns the seconds since `since` (a time.monotonic() taken
    before the connect), or None if it stayed open `limit` seconds more."""
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return None
    return time.monotonic() - since


def incomplete_handshake_is_closed_at_timeout():
    with serve("--handshake-timeout", str(TIMEOUT_MS)) as server:
        async def run():
            # Each wait counts from before its connect (the server's deadline starts at its accept, after that),
            # not from whenever the executor's thread gets to run on a loaded machine.
            half_at = time.monotonic()
            half = connect(server.port)
            half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # and then nothing
            silent_at = time.monotonic()
            silent = connect(server.port)                                            # sends nothing at all
            started = time.monotonic()
            waits = [asyncio.get_running_loop().run_in_executor(None, wait_closed, s, 30, since)
                     for s, since in ((half, half_at), (silent, silent_at))]
            echoes = 0
            async with ws_checks.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                while not all(w.done() for w in waits) and time.monotonic() - started < 40:
                    await ws.send(f"echo {echoes}")
                    expect_eq(await ws_checks.recv(ws), f"echo {echoes}", "echo while a handshake hangs")
                    echoes += 1
                    await asyncio.sleep(0.02)
            results = [await w for w in waits]
            half.close()
            silent.close()
            return results, echoes
        (half_waited, silent_waited), echoes = asyncio.run(run())
        for what, waited in (("half a request", half_waited), ("no request", silent_waited)):
            expect(waited is not None, f"a connection with {what} was still open after 30 s")
            # Only a lower bound: a loaded machine may close late, never early.
            expect(waited >= TIMEOUT_MS / 1000 * 0.8, f"a connection with {what} was closed after {waited:.3f} s, "
                   f"before the {TIMEOUT_MS} ms handshake timeout")
        expect(echoes >= 1, "no echo while the handshakes hung")
        print(f"  closed after {half_waited:.2f} s and {silent_waited:.2f} s; {echoes} echoes meanwhile")


if __name__ == "__main__":
    run_checks([incomplete_handshake_is_closed_at_timeout])
