#!/usr/bin/env python3
"""A WebSocket echo server that misbehaves on purpose, to prove that `edgews load` counts what goes wrong.

--fault names one defect, injected once on the first connection:
  corrupt       flips a byte in the payload of message --at
  drop          does not echo message --at
  duplicate     echoes message --at twice
  swap          echoes messages --at and --at+1 in the opposite order
  wrong-accept  answers every handshake with a wrong Sec-WebSocket-Accept
  dup-header    answers every handshake with a duplicated Connection header
  none          a correct echo server
Prints "faulty_echo_server: listening on port N". Stops after --lifetime seconds (bounded).
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import accept_for  # noqa: E402


def read_frame(sock, buf):
    """Returns (first_byte, payload, rest_of_buf) or None at EOF."""
    while True:
        if len(buf) >= 2:
            b1 = buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if len(buf) >= 4:
                    n = struct.unpack(">H", buf[2:4])[0]
                    off = 4
                else:
                    n = None
            elif n == 127:
                if len(buf) >= 10:
                    n = struct.unpack(">Q", buf[2:10])[0]
                    off = 10
                else:
                    n = None
            if n is not None:
                masked = b1 & 0x80
                end = off + (4 if masked else 0) + n
                if len(buf) >= end:
                    key = buf[off:off + 4] if masked else b"\0\0\0\0"
                    data = buf[end - n:end]
                    payload = bytes(c ^ key[i % 4] for i, c in enumerate(data))
                    return buf[0], payload, buf[end:]
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


def frame(first, payload):
    n = len(payload)
    if n < 126:
        head = bytes([first, n])
    elif n < 65536:
        head = bytes([first, 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 127]) + struct.pack(">Q", n)
    return head + payload


class Server:
    def __init__(self, fault, at):
        self.fault = fault
        self.at = at
        self.first = True
        self.lock = threading.Lock()

    def handle(self, sock):
        with self.lock:
            faulty = self.first
            self.first = False
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            key = ""
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip().decode("latin-1")
            # wrong-accept: the accept of another key.
            accept = accept_for(key + "x" if self.fault == "wrong-accept" else key).encode()
            response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            if self.fault == "dup-header":
                response += b"Connection: Upgrade\r\n"
            response += b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            sock.sendall(response)
            index = 0
            held = None
            while True:
                got = read_frame(sock, buf)
                if got is None:
                    return
                first, payload, buf = got
                opcode = first & 0x0F
                if opcode == 8:  # close: answer and stop
                    sock.sendall(frame(0x88, payload[:2]))
                    return
                if opcode >= 8:
                    continue
                out = frame(first, payload)
                if faulty and index == self.at:
                    if self.fault == "corrupt":
                        b = bytearray(payload)
                        b[len(b) // 2] ^= 0x01
                        out = frame(first, bytes(b))
                    elif self.fault == "drop":
                        out = b""
                    elif self.fault == "duplicate":
                        out = out + out
                    elif self.fault == "swap":
                        held = out
                        out = b""
                elif held is not None:
                    out = out + held
                    held = None
                index += 1
                if out:
                    sock.sendall(out)
        except OSError:
            pass
        finally:
            sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", default="none")
    parser.add_argument("--at", type=int, default=10)
    parser.add_argument("--lifetime", type=float, default=60)
    args = parser.parse_args()
    server = Server(args.fault, args.at)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    lsock.settimeout(0.5)
    print("faulty_echo_server: listening on port %d" % lsock.getsockname()[1], flush=True)
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        try:
            sock, _ = lsock.accept()
        except socket.timeout:
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=server.handle, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
