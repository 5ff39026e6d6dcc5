"""Abrupt disconnects (RST) in the middle of a frame, of the handshake and of a large echo: the server frees
every descriptor, its memory does not grow without bound, and it still serves a fresh client."""
import asyncio

import ws_checks
from harness import (connect, expect, expect_eq, frame, raw_upgrade, rst_close, run_checks, serve, upgrade_request,
                     wait_until)

ROUNDS = 200
BINARY = 0x2


def fresh_client_echoes(port):
    async def run():
        async with ws_checks.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("fresh")
            expect_eq(await ws_checks.recv(ws), "fresh", "echo to a fresh client")
    asyncio.run(run())


def resets_leak_nothing():
    with serve() as server:
        fresh_client_echoes(server.port)
        baseline_fds = server.fd_count()
        baseline_rss = server.rss_kib()
        big = frame(BINARY, b"\x01" * 100000)
        request = upgrade_request(server.port)
        for i in range(ROUNDS):
            s, _ = raw_upgrade(server.port)
            s.sendall(big[:len(big) // 2 + i])             # in the middle of a frame
            rst_close(s)
            s = connect(server.port)
            s.sendall(request[:10 + i % (len(request) - 12)])  # in the middle of the handshake
            rst_close(s)
            s, _ = raw_upgrade(server.port, rcvbuf=4096)
            s.sendall(frame(BINARY, b"\x02" * (1 << 20)))  # the server is still writing the echo
            rst_close(s)
        settled = wait_until(lambda: server.fd_count() <= baseline_fds, 30)
        expect(settled, f"the server holds {server.fd_count()} descriptors after the resets, {baseline_fds} before")
        rss = server.rss_kib()
        expect(rss - baseline_rss < (64 << 10),
               f"RSS grew from {baseline_rss >> 10} to {rss >> 10} MiB over {3 * ROUNDS} reset connections")
        expect(server.alive(), "the server died")
        fresh_client_echoes(server.port)
        print(f"  {3 * ROUNDS} resets: descriptors {baseline_fds} -> {server.fd_count()}, "
              f"RSS {baseline_rss >> 10} -> {rss >> 10} MiB")


if __name__ == "__main__":
    run_checks([resets_leak_nothing])
