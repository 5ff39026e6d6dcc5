#!/usr/bin/python3
"""Cross-instance pub/sub figures: two `edgews serve --redis` instances and a redis-server on loopback.

  1. Fan-out: N subscribers on each instance (raw sockets, one client process per instance, counting bytes with
     epoll, so that the client costs little); publishers on both instances send K messages of P bytes each as
     fast as they can. Every message reaches 2N subscribers: N locally, N through Redis. Prints deliveries/s.
  2. Latency: one subscriber on each instance, a publisher on instance A sends timestamped messages at a steady
     pace; the subscriber on A measures local delivery, the one on B the Redis hop. Prints p50/p99 of both.

  EDGEWS_BIN=build/release/tools/edgews /usr/bin/python3 bench/pubsub/redis_fanout.py [--subscribers N] ...

Benchmarks print figures and assert nothing. Everything it starts it stops by PID.
"""
import argparse
import asyncio
import base64
import os
import select
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "integration"))
from harness import edgews  # noqa: E402
from services import Redis  # noqa: E402

import websockets  # noqa: E402


def masked(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    header = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + body


def frame_size(payload_len):
    return payload_len + (2 if payload_len < 126 else 4)


def subscriber_process(port, count, topic, expect_bytes):
    """Child: opens `count` subscribers, prints 'ready', waits for a line, then counts bytes until each socket got
    expect_bytes; prints the CLOCK_MONOTONIC time when the last byte arrived."""
    socks = []
    ok_reply = frame_size(len(f"ok sub {topic}"))
    request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
               ).encode()
    sub = masked(1, f"sub {topic}".encode())
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        rest = data[data.index(b"\r\n\r\n") + 4:]
        s.sendall(sub)
        while len(rest) < ok_reply:
            rest += s.recv(4096)
        s.setblocking(False)
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.readline()
    remaining = {s.fileno(): expect_bytes for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    buf = bytearray(1 << 16)
    last = time.monotonic()
    deadline = time.monotonic() + 300
    while remaining and time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            try:
                n = by_fd[fd].recv_into(buf)
            except BlockingIOError:
                continue
            if n <= 0:
                remaining.pop(fd, None)
                ep.unregister(fd)
                continue
            left = remaining.get(fd)
            if left is None:
                continue
            left -= n
            if left <= 0:
                remaining.pop(fd)
                ep.unregister(fd)
                last = time.monotonic()
            else:
                remaining[fd] = left
    print(f"done {last:.6f} {len(remaining)}", flush=True)


def fanout(args, a, b):
    payload = b"x" * args.payload
    per_sub = 2 * args.messages * frame_size(args.payload)  # every message of both publishers
    children = []
    for port in (a.port, b.port):
        children.append(subprocess.Popen(
            [sys.executable, __file__, "--child", str(port), str(args.subscribers), "bench", str(per_sub)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for c in children:
        line = c.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"subscriber process failed: {line!r}")
    time.sleep(1.0)  # both instances confirm their Redis subscription (one channel) well within this

    pubs = [socket.create_connection(("127.0.0.1", port)) for port in (a.port, b.port)]
    for s, port in zip(pubs, (a.port, b.port)):
        s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
    batch = masked(2, b"pub bench " + payload) * args.messages
    for c in children:
        c.stdin.write("go\n")
        c.stdin.flush()
    start = time.monotonic()
    for s in pubs:
        s.sendall(batch)
    ends = []
    for c in children:
        parts = c.stdout.readline().split()
        c.wait(60)
        if len(parts) != 3 or parts[2] != "0":
            print(f"  warning: a subscriber process did not receive everything: {parts}")
        ends.append(float(parts[1]))
    elapsed = max(ends) - start
    deliveries = 2 * args.messages * 2 * args.subscribers
    for s in pubs:
        s.close()
    print(f"fan-out: {args.subscribers} subscribers on each of 2 instances ({2 * args.subscribers} in all), "
          f"2 publishers x {args.messages} messages of {args.payload} B")
    print(f"  {deliveries} deliveries in {elapsed:.3f} s = {deliveries / elapsed:,.0f} deliveries/s "
          f"({deliveries // 2} of them through Redis)")


async def latency(args, a, b):
    sub_a = await websockets.connect(f"ws://127.0.0.1:{a.port}/", ping_interval=None)
    sub_b = await websockets.connect(f"ws://127.0.0.1:{b.port}/", ping_interval=None)
    for ws in (sub_a, sub_b):
        await ws.send("sub lat")
        await ws.recv()
    await asyncio.sleep(1.0)
    pub = await websockets.connect(f"ws://127.0.0.1:{a.port}/", ping_interval=None)
    local, remote = [], []

    async def reader(ws, out):
        while len(out) < args.samples:
            msg = await ws.recv()
            out.append(time.monotonic_ns() - int(msg))

    readers = [asyncio.create_task(reader(sub_a, local)), asyncio.create_task(reader(sub_b, remote))]
    for _ in range(args.samples):
        await pub.send(f"pub lat {time.monotonic_ns()}")
        await asyncio.sleep(args.interval_ms / 1000)
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    for ws in (sub_a, sub_b, pub):
        await ws.close()

    def pct(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * p))] / 1000

    print(f"latency: {args.samples} messages, one every {args.interval_ms} ms, publisher on A "
          "(client clock; includes the python client's own time)")
    print(f"  local (A->A):       p50 {pct(local, 0.5):8.1f} us   p99 {pct(local, 0.99):8.1f} us")
    print(f"  through Redis (A->B): p50 {pct(remote, 0.5):8.1f} us   p99 {pct(remote, 0.99):8.1f} us")
    print(f"  added by the Redis hop: p50 {pct(remote, 0.5) - pct(local, 0.5):8.1f} us   "
          f"p99 {pct(remote, 0.99) - pct(local, 0.99):8.1f} us")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, count, topic, expect_bytes = sys.argv[2:6]
        subscriber_process(int(port), int(count), topic, int(expect_bytes))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=9900, help="per instance")
    parser.add_argument("--messages", type=int, default=100, help="per publisher")
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    redis = Redis()
    try:
        common = ["--host", "127.0.0.1", "--port", "0", "--threads", str(args.threads), "--redis", redis.address,
                  "--log-level", "warn", "--max-backpressure", str(64 << 20)]
        with edgews(*common) as a, edgews(*common) as b:
            asyncio.run(latency(args, a, b))
            fanout(args, a, b)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
