#!/usr/bin/env python3
"""What idle connections cost after the messages they received, and whether RSS comes back after a spike.

    bench/memory/idle_after_message.py [EDGEWS ...] [--connections 300] [--sizes 16,1048576] [--wait 30]

For each edgews binary (default build/release/tools/edgews; give an older build as a second one to compare) and
each message size: a fresh `edgews serve --threads 1`, N connections upgraded, then every connection sends one
message of that size at the same moment (a spike: every message is assembled and echoed at once) and reads its
echo whole, and the connections stay open and idle. The server's RSS is printed before the connections, with
them open, at its peak (VmHWM), right after the echoes and then at intervals up to --wait seconds, each also as
bytes per connection over the RSS before. The RSS before is taken after one connection exchanged the same message
and closed, so that what the process touches once is not counted per connection. Kernel socket buffers are not in
the RSS.
"""
import argparse
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_EDGEWS = os.path.join(HERE, "..", "..", "build", "release", "tools", "edgews")
MASK = b"\x37\xfa\x21\x3d"


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def masked_frame(size):
    payload = bytes((i * 31 + 7) & 0xFF for i in range(min(size, 4096))) * (size // 4096 + 1)
    payload = payload[:size]
    if size < 126:
        head = bytes([0x82, 0x80 | size])
    elif size < 65536:
        head = bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big")
    key = (MASK * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
    return head + MASK + body


def upgrade(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("the server closed during the upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade refused: " + head.decode(errors="replace"))
    return s


def read_exactly(s, n, buf):
    view = memoryview(buf)
    got = 0
    first = b""
    while got < n:
        r = s.recv_into(view, min(len(buf), n - got))
        if r == 0:
            raise RuntimeError("the server closed the connection")
        if got < 2:
            first += bytes(view[: min(r, 2 - got)])
        got += r
    return first


def run(edgews, connections, size, wait):
    server = subprocess.Popen([edgews, "serve", "--host", "127.0.0.1", "--port", "0", "--threads", "1",
                               "--log-level", "warn", "--ping-interval", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.split()[-1])
        pid = server.pid
        frame = masked_frame(size)
        header = 2 if size < 126 else 4 if size < 65536 else 10
        buf = bytearray(256 * 1024)
        # One connection echoes the same message first and closes: what the process touches once (the reactor's
        # receive buffer, the cork buffer, malloc's arenas) is then in the RSS before, not counted per connection.
        warm = upgrade(port)
        warm.sendall(frame)
        read_exactly(warm, header + size, buf)
        warm.close()
        time.sleep(3)
        before = status_kib(pid, "VmRSS")
        socks = [upgrade(port) for _ in range(connections)]
        time.sleep(0.5)
        opened = status_kib(pid, "VmRSS")
        for s in socks:
            s.sendall(frame)
        for s in socks:
            first = read_exactly(s, header + size, buf)
            if first[0] != 0x82:
                raise RuntimeError("not a binary frame")
        t0 = time.monotonic()
        rows = [("after the echoes", status_kib(pid, "VmRSS"))]
        peak = status_kib(pid, "VmHWM")
        for at in sorted({t for t in (1, 3, 10, wait) if t <= wait}):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            rows.append((f"{at} s later", status_kib(pid, "VmRSS")))
        for s in socks:
            s.close()
        return before, opened, peak, rows
    finally:
        server.terminate()
        server.wait(timeout=10)


def per_connection(kib, before, n):
    return f"{(kib - before) * 1024 / n:,.0f} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("edgews", nargs="*", default=[DEFAULT_EDGEWS])
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--sizes", default="16,1048576", help="message sizes in bytes, comma-separated")
    ap.add_argument("--wait", type=int, default=30, help="seconds to watch the RSS after the echoes")
    args = ap.parse_args()
    n = args.connections
    print(f"{n} connections, one message each (all at once), echoed, then idle; server RSS in KiB "
          f"(per connection: over the RSS before the connections)")
    for edgews in args.edgews:
        for size in (int(x) for x in args.sizes.split(",")):
            before, opened, peak, rows = run(edgews, n, size, args.wait)
            print(f"\n{edgews}, {size:,} B messages")
            print(f"| when | RSS KiB | per connection |")
            print(f"|---|---|---|")
            print(f"| before the connections | {before:,} | |")
            print(f"| {n} open, no message yet | {opened:,} | {per_connection(opened, before, n)} |")
            print(f"| peak (VmHWM) | {peak:,} | {per_connection(peak, before, n)} |")
            for label, kib in rows:
                print(f"| {label} | {kib:,} | {per_connection(kib, before, n)} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
