"""1,000 concurrent clients, each echoing a few messages: every one succeeds (node ws and python asyncio)."""
import asyncio

import ws_checks
from harness import expect, expect_eq, run_checks, run_node, serve

CLIENTS = 1000


def node_1000_clients():
    with serve() as server:
        rc, out = run_node("ws_client.mjs", [f"ws://127.0.0.1:{server.port}/", "--clients", CLIENTS,
                                             "--messages", 5, "concurrent"], timeout=150)
        print(out, end="")
        expect(rc == 0, f"node ws concurrent check failed (exit {rc})")
        expect(server.alive(), "the server died")


def python_1000_clients():
    with serve() as server:
        url = f"ws://127.0.0.1:{server.port}/"

        async def one(i, clients):
            ws = await ws_checks.connect(url)
            clients.append(ws)
            return ws

        async def run():
            clients = []
            # Opened in waves of 100 so that a slow open is not mistaken for a failure.
            for wave in range(0, CLIENTS, 100):
                await asyncio.gather(*(one(i, clients) for i in range(wave, wave + 100)))

            async def talk(i, ws):
                for m in range(3):
                    text = f"client {i} message {m}"
                    await ws.send(text)
                    expect_eq(await ws_checks.recv(ws), text, f"client {i} echo")
                await asyncio.wait_for(ws.close(), 60)
                expect_eq(ws.close_code, 1000, f"client {i} close")
            await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(clients)))
            return len(clients)
        expect_eq(asyncio.run(run()), CLIENTS, "clients that opened")


if __name__ == "__main__":
    run_checks([node_1000_clients, python_1000_clients])
