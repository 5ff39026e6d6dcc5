"""Helpers for the integration and browser tests: start and stop `edgews serve` by PID, make a development
certificate, and a small deliberately broken WebSocket server (python sockets) for `edgews doctor` to diagnose."""

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def edgews_binary():
    path = os.environ.get("EDGEWS_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("EDGEWS_BIN must name the built edgews binary (ctest sets it)")
    return path


def make_cert(directory):
    """A CA and a localhost certificate from tools/make-dev-cert.sh: returns (ca, cert, key)."""
    subprocess.run([os.path.join(SOURCE_DIR, "tools", "make-dev-cert.sh"), directory], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return (os.path.join(directory, "ca.crt"), os.path.join(directory, "localhost.crt"),
            os.path.join(directory, "localhost.key"))


class EdgewsServer:
    """`edgews serve` as a child process. Ports 0 pick free ports; restart() reuses the ones it got."""

    def __init__(self, port=0, tls=None, extra=()):
        self.port = port
        self.tls_port = 0 if tls else None
        self.tls = tls  # (cert, key) or None
        self.extra = list(extra)
        self.process = None

    def command(self):
        cmd = [edgews_binary(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warn"]
        if self.tls:
            cmd += ["--tls-port", str(self.tls_port), "--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        return cmd + self.extra

    def start(self, timeout=10.0):
        # stderr goes to a file: a pipe nobody reads could fill up and stall the server.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        # The first line names the bound ports; read it with a deadline so a hung server cannot hang the test.
        result = {}

        def read_line():
            result["line"] = self.process.stdout.readline()

        reader = threading.Thread(target=read_line, daemon=True)
        reader.start()
        reader.join(timeout)
        line = result.get("line", "")
        if not line.startswith("edgews: listening on port"):
            self.stop()
            raise RuntimeError("edgews serve did not start: %r %s" % (line, self.log()))
        ports = [int(p) for p in line.split()[4:]]
        self.port = ports[0]
        if self.tls:
            self.tls_port = ports[1]
        return self

    def log(self):
        """What the server wrote to stderr so far."""
        if not getattr(self, "stderr", None) or self.stderr.closed:
            return ""
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process and self.process.stdout:
            self.process.stdout.close()
        self.process = None

    def restart(self, pause=0.0):
        self.stop()
        time.sleep(pause)
        deadline = time.monotonic() + 10
        while True:  # the port may linger for a moment after the old process exits
            try:
                return self.start()
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def canonical_head(key):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_for(key))


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _frame(opcode, payload, rsv1=False):
    n = len(payload)
    b0 = 0x80 | opcode | (0x40 if rsv1 else 0)
    if n < 126:
        header = struct.pack("!BB", b0, n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 126, n)
    else:
        header = struct.pack("!BBQ", b0, 127, n)
    return header + payload


def echo_frames(conn, deflate=False):
    """A minimal RFC 6455 echo loop (server side): echoes data frames, answers pings, answers a close and ends.
    With deflate, data replies are compressed (RFC 7692 7.2.1, with context takeover) and carry RSV1."""
    compressor = zlib.compressobj(wbits=-15) if deflate else None
    while True:
        b0, b1 = recv_exact(conn, 2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(conn, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(conn, 8))[0]
        mask = recv_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(recv_exact(conn, n)))
        if opcode in (1, 2) and compressor:
            data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\x00\x00\xff\xff")
            conn.sendall(_frame(opcode, data[:-4], rsv1=True))
        elif opcode in (1, 2):
            conn.sendall(_frame(opcode, payload))
        elif opcode == 9:
            conn.sendall(_frame(10, payload))
        elif opcode == 8:
            conn.sendall(_frame(8, payload[:2]))
            return


class BrokenServer:
    """Answers each upgrade with respond(key) -> bytes (the 101 head to send, possibly defective), then echoes
    frames unless respond returned close_after=True. Runs on a daemon thread; stop() closes the listener."""

    def __init__(self, respond, close_after=False, deflate=False):
        self.respond = respond
        self.close_after = close_after
        self.deflate = deflate
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        conn.settimeout(10)
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            key = ""
            for line in request.decode("latin-1").split("\r\n"):
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            conn.sendall(self.respond(key))
            if self.close_after:
                conn.shutdown(socket.SHUT_RDWR)
                return
            echo_frames(conn, self.deflate)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="edgews-test-")
