#!/usr/bin/python3
"""permessage-deflate against real clients: `edgews serve --deflate` on loopback, driven by Debian's
python3-websockets, node's ws (tests/deflate/ws_client.js) and a raw client that checks RSV1 and the bytes.

Each server is started on port 0 and stopped by PID (tests/integration/harness.py). Prints "N passed, N failed";
exits 1 on any failure.
"""
import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import zlib

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import serve  # noqa: E402


TIMEOUT = 10
results = {"passed": 0, "failed": 0}


def Server(*flags):
    """`edgews serve` on loopback without liveness pings, which a raw client would read where it expects an echo."""
    return serve("--ping-interval", "0", *flags)


def check(name, fn):
    try:
        fn()
        results["passed"] += 1
        print("PASS", name)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        results["failed"] += 1
        print("FAIL", name, "-", repr(e))


def messages():
    item = {"id": 1, "name": "widget", "price": 12.5, "tags": ["a", "b"]}
    small = json.dumps({"type": "tick", "items": [item]})
    s200 = (small + " " * 200)[:200]
    s4k = json.dumps({"type": "update", "items": [dict(item, id=i) for i in range(80)]})[:4096]
    return ["hi", s200, s4k, s4k.encode() + b"\x00\xff" * 100, "\u00e9t\u00e9 \U0001f600" * 50, ""]


# --- python3-websockets --------------------------------------------------------------------------------------------

def python_round_trip(server_args, offer, expect):
    async def run():
        with Server("--deflate", "--deflate-min-size", "0", *server_args) as server:
            factory = ClientPerMessageDeflateFactory(**offer)
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/", extensions=[factory], compression=None,
                                          open_timeout=TIMEOUT, max_size=None) as ws:
                header = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                assert header.startswith("permessage-deflate"), header
                pmd = ws.extensions[0]
                for key, value in expect.items():
                    assert getattr(pmd, key) == value, (key, getattr(pmd, key), value, header)
                for _ in range(3):  # repeated: context takeover matters from the second message on
                    for m in messages():
                        await ws.send(m)
                        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
                        assert echo == m, (len(echo), len(m))
    asyncio.run(asyncio.wait_for(run(), 30))


# --- node ws -------------------------------------------------------------------------------------------------------

def node_round_trip(server_args, options):
    with Server("--deflate", "--deflate-min-size", "0", *server_args) as server:
        out = subprocess.run(["node", os.path.join(HERE, "ws_client.js"), f"ws://127.0.0.1:{server.port}/",
                              json.dumps(options)], capture_output=True, text=True, timeout=30, cwd=HERE)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "permessage-deflate" in out.stdout, out.stdout


# --- raw client: checks what is on the wire --------------------------------------------------------------------------

class Raw:
    def __init__(self, port, extensions="permessage-deflate", user_agent=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if extensions:
            head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        if user_agent:
            head += f"User-Agent: {user_agent}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during the handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()
        assert self.head.startswith("HTTP/1.1 101"), self.head

    def extensions(self):
        for line in self.head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "sec-websocket-extensions":
                return value.strip()
        return None

    def send_frame(self, opcode, payload, rsv1=False, fin=True):
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self.read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read(8))[0]
        return b0 & 0x0F, bool(b0 & 0x40), self.read(n)

    def close(self):
        self.sock.close()


def deflate_raw(data, wbits=15):
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_raw(data, wbits=15):
    return zlib.decompressobj(-wbits).decompress(data + b"\x00\x00\xff\xff")


def raw_compressed_echo():
    with Server("--deflate", "--deflate-no-context-takeover") as server:
        c = Raw(server.port, "permessage-deflate; client_max_window_bits")
        assert c.extensions() == ("permessage-deflate; server_no_context_takeover; client_no_context_takeover"), \
            c.extensions()
        message = json.dumps({"items": list(range(300))}).encode()
        c.send_frame(1, deflate_raw(message), rsv1=True)
        op, rsv1, payload = c.recv_frame()
        assert op == 1 and rsv1, (op, rsv1)
        assert inflate_raw(payload) == message
        assert len(payload) < len(message) / 2
        # Below min_size (64): sent uncompressed, RSV1 clear.
        c.send_frame(1, deflate_raw(b"short"), rsv1=True)
        op, rsv1, payload = c.recv_frame()
        assert (op, rsv1, payload) == (1, False, b"short")
        c.close()


def raw_close_code(frames_payload, server_args=(), text=True):
    with Server("--deflate", *server_args) as server:
        c = Raw(server.port)
        c.send_frame(1 if text else 2, frames_payload, rsv1=True)
        op, _, payload = c.recv_frame()
        c.close()
        assert op == 8, op
        return struct.unpack("!H", payload[:2])[0]


def bomb_closes_1009():
    bomb = deflate_raw(b"\x00" * (32 << 20), 15)  # 32 MiB of zeros in about 32 KiB
    assert len(bomb) < 64 * 1024
    code = raw_close_code(bomb, ("--max-message-size", str(1 << 20)), text=False)
    assert code == 1009, code


def corrupt_closes_1007():
    assert raw_close_code(b"\xff\xff\xff\xff") == 1007


def invalid_utf8_after_inflate_closes_1007():
    assert raw_close_code(deflate_raw(b"ok \xc3\x28 not utf-8")) == 1007


def rsv1_on_continuation_closes_1002():
    with Server("--deflate") as server:
        c = Raw(server.port)
        c.send_frame(1, deflate_raw(b"part one")[:3], rsv1=True, fin=False)
        c.send_frame(0, b"xx", rsv1=True)
        op, _, payload = c.recv_frame()
        c.close()
        assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1002


def safari_15_declined():
    ua = ("Mozilla/5.0 (iPhone; CPU iPhone OS 15_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/15.2 Mobile/15E148 Safari/604.1")
    with Server("--deflate") as server:
        c = Raw(server.port, "permessage-deflate; client_max_window_bits", user_agent=ua)
        assert c.extensions() is None, c.extensions()  # no header at all, never an empty one
        c.send_frame(1, b"x" * 300)
        assert c.recv_frame() == (1, False, b"x" * 300)
        c.close()
        ok = Raw(server.port, "permessage-deflate", user_agent=ua.replace("15_2", "15_4").replace("15.2", "15.4"))
        assert ok.extensions() == "permessage-deflate"
        ok.close()


def disabled_by_default():
    with Server() as server:
        c = Raw(server.port, "permessage-deflate")
        assert c.extensions() is None
        c.send_frame(1, deflate_raw(b"hello"), rsv1=True)  # RSV1 without the extension: 1002
        op, _, payload = c.recv_frame()
        assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1002
        c.close()


def main():
    for bits in (9, 12, 15):
        for nct in (False, True):
            server_args = ["--deflate-window-bits", str(bits)] + (["--deflate-no-context-takeover"] if nct else [])
            check(f"python websockets, server window {bits}, no context takeover {nct}",
                  lambda a=server_args: python_round_trip(a, {"client_max_window_bits": True}, {}))
            offer = {"server_max_window_bits": bits, "client_max_window_bits": bits,
                     "server_no_context_takeover": nct, "client_no_context_takeover": nct}
            expect = {"remote_max_window_bits": bits, "local_max_window_bits": bits,
                      "remote_no_context_takeover": nct, "local_no_context_takeover": nct}
            check(f"python websockets offering windows {bits}, no context takeover {nct}",
                  lambda o=offer, e=expect: python_round_trip([], o, e))
            check(f"node ws, windows {bits}, no context takeover {nct}",
                  lambda b=bits, n=nct: node_round_trip([], {"serverMaxWindowBits": b, "clientMaxWindowBits": b,
                                                              "serverNoContextTakeover": n,
                                                              "clientNoContextTakeover": n}))
            check(f"node ws default offer, server window {bits}, no context takeover {nct}",
                  lambda a=server_args: node_round_trip(a, {}))
    check("python websockets, server window 8 asked by the client",
          lambda: python_round_trip([], {"server_max_window_bits": 8, "client_max_window_bits": 9},
                                    {"remote_max_window_bits": 8}))
    check("raw: compressed echo has RSV1 and inflates; short messages go uncompressed", raw_compressed_echo)
    check("raw: decompression bomb closes with 1009", bomb_closes_1009)
    check("raw: corrupt compressed data closes with 1007", corrupt_closes_1007)
    check("raw: invalid UTF-8 after inflating closes with 1007", invalid_utf8_after_inflate_closes_1007)
    check("raw: RSV1 on a continuation frame closes with 1002", rsv1_on_continuation_closes_1002)
    check("raw: Safari/iOS 15.2 is declined (no header), 15.4 accepted", safari_15_declined)
    check("raw: compression is off by default", disabled_by_default)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
