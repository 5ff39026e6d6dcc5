#!/usr/bin/python3
"""python3-websockets echo server for bench/load/peers.sh (Debian's websockets 10.4, asyncio's default loop).

Per-message deflate is off (compression=None) and keepalive pings are off, like the other peers.

usage: /usr/bin/python3 py_echo.py [PORT]   (0 = any free port; prints "py_echo: listening on port N")
"""
import asyncio
import sys

import websockets


async def echo(ws, _path=None):
    async for message in ws:  # str for text frames, bytes for binary: send() keeps the opcode
        await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None, ping_interval=None,
                                max_size=1 << 24) as server:
        print("py_echo: listening on port %d" % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
