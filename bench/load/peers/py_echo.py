#!/usr/bin/python3
"""python3-websockets echo server for bench/load/peers.sh (Debian's websockets 10.4, asyncio's default loop).

Per-message deflate is off (compression=None) and keepalive pings are off, like the other peers. TLS mode
(scenario (e)): the same server given an ssl.SSLContext (TLS 1.3 only, Python's defaults otherwise).

usage: /usr/bin/python3 py_echo.py [PORT] [--tls CERT KEY]
       (0 = any free port; prints "py_echo: listening on port N")
"""
import asyncio
import ssl
import sys

import websockets


async def echo(ws, _path=None):
    async for message in ws:  # str for text frames, bytes for binary: send() keeps the opcode
        await ws.send(message)


async def main(port, tls):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None, ping_interval=None,
                                max_size=1 << 24, ssl=tls) as server:
        print("py_echo: listening on port %d" % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    context = None
    if len(sys.argv) > 4 and sys.argv[2] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0, context))
