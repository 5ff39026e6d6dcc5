"""Live hand-off (`edgews serve --handoff PATH`): a second process started with the same flag takes over the first
one's listening socket and open connections; the first exits 0. Clients (python websockets, permessage-deflate with
context takeover) keep talking through it: no close, every echo in order, and new clients reach the new process on
the same port. Topic subscriptions move with their connections. TLS connections cannot move: they are closed with
1012 while the plain ones move, and the wss:// listener itself moves."""
import asyncio
import os
import shutil
import stat
import tempfile

import websockets

from harness import (CheckFailed, client_ssl_context, edgews, expect, expect_eq, make_certs, run_checks,
                     wait_until)

CLIENTS = 20
EXIT_DEADLINE = 30


def connections_move_without_a_close_or_a_lost_message():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "handoff.sock")
        args = ("--host", "127.0.0.1", "--port", "0", "--deflate", "--deflate-min-size", "16", "--handoff", path)
        with edgews(*args) as old:
            expect(wait_until(lambda: os.path.exists(path), 10), "no hand-off socket")
            expect_eq(stat.S_IMODE(os.stat(path).st_mode), 0o600, "mode of the hand-off socket")
            state = {"new": None, "moved": False}

            async def client(i, ws):
                n = 0
                rounds_after = 0
                while rounds_after < 20:
                    # Three in flight; repetitive text so that the deflate windows matter.
                    batch = [f"client {i} message {n + k} " + "abcdefgh" * 8 for k in range(3)]
                    for m in batch:
                        await ws.send(m)
                    for m in batch:
                        got = await asyncio.wait_for(ws.recv(), 10)
                        if got != m:
                            raise CheckFailed(f"client {i}: got {got[:40]!r} for {m[:40]!r}")
                    n += 3
                    if state["moved"]:
                        rounds_after += 1
                    await asyncio.sleep(0.01)
                return n

            async def replace():
                await asyncio.sleep(0.5)
                state["new"] = await asyncio.to_thread(edgews(*args).__enter__)
                code = await asyncio.to_thread(old.wait, EXIT_DEADLINE)
                state["moved"] = True
                return code

            async def run():
                conns = [await websockets.connect(f"ws://127.0.0.1:{old.port}/", compression="deflate",
                                                  max_size=None) for _ in range(CLIENTS)]
                expect(all(c.response_headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
                           for c in conns), "permessage-deflate was not negotiated")
                results = await asyncio.gather(replace(), *[client(i, c) for i, c in enumerate(conns)])
                for c in conns:
                    await c.close()
                return results

            try:
                results = asyncio.run(run())
            finally:
                new = state["new"]
            try:
                expect_eq(results[0], 0, "exit code of the old process after the hand-off")
                expect(new is not None and new.port == old.port, "the new process did not take the port over")
                expect(all(n > 20 * 3 for n in results[1:]), f"messages per client: {results[1:]}")
                expect("adopted 20 connections, refused 0" in new.log(), "the new process did not adopt all 20: " + "".join(l for l in new.log().splitlines(True) if "handoff" in l))

                async def late():
                    async with websockets.connect(f"ws://127.0.0.1:{old.port}/") as ws:
                        await ws.send("late")
                        return await asyncio.wait_for(ws.recv(), 10)
                expect_eq(asyncio.run(late()), "late", "a new client after the hand-off")
            finally:
                if new is not None:
                    new.stop()


def subscriptions_move_with_their_connections():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "handoff.sock")
        args = ("--host", "127.0.0.1", "--port", "0", "--pubsub", "--handoff", path)
        with edgews(*args) as old:
            async def run():
                subs = [await websockets.connect(f"ws://127.0.0.1:{old.port}/") for _ in range(5)]
                for s in subs:
                    await s.send("sub news")
                    expect_eq(await asyncio.wait_for(s.recv(), 10), "ok sub news", "subscribe answer")
                new = await asyncio.to_thread(edgews(*args).__enter__)
                try:
                    expect_eq(await asyncio.to_thread(old.wait, EXIT_DEADLINE), 0, "exit code of the old process")
                    async with websockets.connect(f"ws://127.0.0.1:{new.port}/") as publisher:
                        await publisher.send("pub news after the hand-off")
                        for s in subs:
                            expect_eq(await asyncio.wait_for(s.recv(), 10), "after the hand-off", "publish")
                        # Once: a second publish is the next thing each subscriber reads.
                        await publisher.send("pub news second")
                        for s in subs:
                            expect_eq(await asyncio.wait_for(s.recv(), 10), "second", "the next publish")
                    for s in subs:
                        await s.close()
                finally:
                    new.stop()
            asyncio.run(run())


def tls_connections_are_drained_and_the_tls_listener_moves():
    c = make_certs()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "handoff.sock")
            args = ("--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--tls-cert", c["cert"], "--tls-key",
                    c["key"], "--handoff", path)
            with edgews(*args) as old:
                ws_port, wss_port = old.ports[0], old.ports[1]
                context = client_ssl_context(c["ca"])

                async def run():
                    plain = await websockets.connect(f"ws://127.0.0.1:{ws_port}/")
                    secure = await websockets.connect(f"wss://localhost:{wss_port}/", ssl=context)
                    await secure.send("over tls")
                    expect_eq(await asyncio.wait_for(secure.recv(), 10), "over tls", "echo over TLS")
                    new = await asyncio.to_thread(edgews(*args).__enter__)
                    try:
                        expect_eq(new.ports, [ws_port, wss_port], "ports of the new process")
                        try:
                            got = await asyncio.wait_for(secure.recv(), 10)
                            raise CheckFailed(f"expected the TLS connection to close, received {got!r}")
                        except websockets.ConnectionClosed as e:
                            expect_eq(e.rcvd.code if e.rcvd else None, 1012, "close code of the TLS connection")
                        expect_eq(await asyncio.to_thread(old.wait, EXIT_DEADLINE), 0, "exit code of the old process")
                        await plain.send("plain moved")
                        expect_eq(await asyncio.wait_for(plain.recv(), 10), "plain moved", "the plain connection")
                        async with websockets.connect(f"wss://localhost:{wss_port}/", ssl=context) as again:
                            await again.send("tls again")
                            expect_eq(await asyncio.wait_for(again.recv(), 10), "tls again",
                                      "a new TLS client of the new process")
                        expect("adopted 1 connections, refused 0" in new.log(), "the new process's count")
                        await plain.close()
                    finally:
                        new.stop()
                asyncio.run(run())
    finally:
        shutil.rmtree(c["dir"], ignore_errors=True)


if __name__ == "__main__":
    run_checks([connections_move_without_a_close_or_a_lost_message, subscriptions_move_with_their_connections,
                tls_connections_are_drained_and_the_tls_listener_moves])
