#!/usr/bin/env python3
"""A Python `websockets` echo server for edgews::Client's tests (tests/core/client_peers_test.cpp), with the
same commands as ws_echo_server.mjs:

    websockets_echo_server.py [--deflate]

Listens on a free loopback port and prints "listening PORT"; runs at most two minutes."""
import asyncio
import sys

import websockets

deflate = "--deflate" in sys.argv
last_close = "none"


async def handle(ws):
    global last_close
    try:
        async for m in ws:
            if m == "frag":
                await ws.send(iter(["ab", "cd", "ef"]))
            elif m == "ping":
                waiter = await ws.ping(b"p")
                await waiter
                await ws.send("pong:p")
            elif m == "ext":
                # Debian 12's websockets 10 (the legacy server API): the response's headers.
                accepted = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                await ws.send("permessage-deflate" if "permessage-deflate" in accepted else "")
            elif isinstance(m, str) and m.startswith("close:"):
                await ws.close(int(m[6:]), "bye")
            elif m == "last":
                await ws.send(last_close)
            else:
                await ws.send(m)
    except websockets.ConnectionClosed:
        pass
    code = ws.close_code
    last_close = str(code) if code is not None else "none"


async def main():
    async with websockets.serve(handle, "127.0.0.1", 0, compression="deflate" if deflate else None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.sleep(120)


asyncio.run(main())
