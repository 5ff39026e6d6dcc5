"""The fixture of the edgews integration tests (and of the browser tests and benchmarks that start servers):
start a server, find its ports, stop it by PID, look at its log, descriptors and memory; make a development
certificate; speak raw RFC 6455 where a real client would refuse to misbehave; a deliberately broken server for
`edgews doctor` to diagnose; and report checks.

Run with /usr/bin/python3 (Debian's, which has python3-websockets 10.4). Paths come from the environment that
tests/integration/CMakeLists.txt sets: EDGEWS_BIN, EDGEWS_TEST_SERVER, EDGEWS_SOURCE_DIR, EDGEWS_CLIENTS_DIR.
"""
import base64
import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

EDGEWS_BIN = os.environ.get("EDGEWS_BIN", "")
TEST_SERVER_BIN = os.environ.get("EDGEWS_TEST_SERVER", "")
SOURCE_DIR = os.environ.get("EDGEWS_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLIENTS_DIR = os.environ.get("EDGEWS_CLIENTS_DIR", os.path.join(SOURCE_DIR, "tests", "clients"))

# Generous bounds: the suite runs on a loaded 2-core machine. Nothing asserts that anything is fast.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 30.0

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_eq(actual, wanted, what):
    if actual != wanted:
        raise CheckFailed(f"{what}: expected {wanted!r}, got {actual!r}")


# ---------------------------------------------------------------------------------------------------------------
# Servers


def edgews_binary():
    """The edgews command under test (EDGEWS_BIN, which ctest sets)."""
    expect(EDGEWS_BIN and os.access(EDGEWS_BIN, os.X_OK),
           f"EDGEWS_BIN must name the built edgews binary (ctest sets it), not {EDGEWS_BIN!r}")
    return EDGEWS_BIN


class Server:
    """One server process on ephemeral ports, owned by the test that started it: `edgews serve ARGS`, or BINARY
    ARGS. Started at once unless start=False; as a context manager it is stopped at the end, and its log is printed
    when the block failed. ports are those of the start-up line ("edgews: listening on ports P..."): port the
    first, tls_port the second when there is one; metrics_port that of "edgews: metrics on port N" when ARGS ask
    for one with --metrics-port."""

    def __init__(self, args, binary=None, name="edgews", start=True):
        self.command = [edgews_binary(), "serve"] if binary is None else [binary]
        expect(self.command[0] and os.access(self.command[0], os.X_OK),
               f"server binary not found: {self.command[0]!r}")
        self.name = name
        self.args = list(args)
        # stderr goes to a file, kept across restarts: a pipe nobody reads could fill up and stall the server.
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="edgews-integ-", suffix=".log", delete=False)
        self.proc = None
        self.ports = []
        self.port = self.tls_port = self.metrics_port = None
        self.exit_code = None
        if start:
            self.start()

    @property
    def cmd(self):
        return self.command + self.args

    def start(self, timeout=START_TIMEOUT):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.exit_code = None
        self.ports, self.metrics_port = self._read_ports(timeout)
        self.port = self.ports[0]
        self.tls_port = self.ports[1] if len(self.ports) > 1 else None
        return self

    def restart(self, pause=0.0):
        """Stops the server and starts it again on the ports it had (--port and --tls-port pinned to them)."""
        self.stop()
        pinned = {"--port": self.port, "--tls-port": self.tls_port}
        self.args = [str(pinned[self.args[i - 1]]) if i > 0 and pinned.get(self.args[i - 1]) is not None else arg
                     for i, arg in enumerate(self.args)]
        time.sleep(pause)
        deadline = time.monotonic() + 10
        while True:  # the port may linger for a moment after the old process exits
            try:
                return self.start()
            except CheckFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _read_ports(self, timeout):
        lines = []
        result = {}
        wants_metrics = any(arg == "--metrics-port" or arg.startswith("--metrics-port=") for arg in self.args)

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                lines.append(line)
                m = re.match(r"edgews: listening on ports? ([0-9 ]+)$", line)
                if m:
                    result["ports"] = [int(p) for p in m.group(1).split()]
                m = re.match(r"edgews: metrics on port ([0-9]+)$", line)
                if m:
                    result["metrics"] = int(m.group(1))
                if "ports" in result and ("metrics" in result or not wants_metrics):
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if "ports" not in result or (wants_metrics and "metrics" not in result):
            self.stop()
            raise CheckFailed(f"{self.cmd!r} printed no port within {timeout}s; stdout={lines!r} "
                              f"stderr={self.log()[-2000:]!r}")
        return result["ports"], result.get("metrics")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """What the server wrote to stderr so far (over all its starts)."""
        try:
            with open(self.stderr_file.name, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise CheckFailed("no VmRSS in /proc/PID/status")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def signal(self, signo):
        if self.alive():
            os.kill(self.pid, signo)

    def wait(self, timeout):
        """Waits for the process to exit; returns its exit code or None after timeout."""
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit code (negative for a signal)."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            if self.wait(STOP_TIMEOUT) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.wait(STOP_TIMEOUT)
        self.exit_code = self.proc.returncode
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.exit_code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.stderr_file.close()
        if exc[0] is None:
            os.unlink(self.stderr_file.name)
        else:
            sys.stderr.write(f"--- {self.name} log ({self.stderr_file.name}), last lines ---\n")
            sys.stderr.write(self.log()[-3000:] + "\n")
        return False


def edgews(*args):
    """`edgews serve ARGS`, exactly these arguments."""
    return Server(list(args))


def serve(*flags, tls=None, start=True):
    """`edgews serve` on 127.0.0.1, on ports the kernel chooses, logging warnings and errors, then FLAGS;
    tls=(cert, key) adds the wss:// listener (its port is tls_port)."""
    args = ["--host", "127.0.0.1", "--port", "0", "--log-level", "warn"]
    if tls:
        args += ["--tls-port", "0", "--tls-cert", tls[0], "--tls-key", tls[1]]
    return Server(args + list(flags), start=start)


def test_server(*args):
    return Server(list(args), binary=TEST_SERVER_BIN, name="integration_server")


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="edgews-test-")


def make_certs(directory=None):
    """A development CA and a localhost certificate (tools/make-dev-cert.sh) in `directory`, or in a fresh
    temporary one: {"dir", "ca", "cert", "key"}."""
    directory = directory or tempfile.mkdtemp(prefix="edgews-certs-")
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "tools", "make-dev-cert.sh"), directory], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    return {"dir": directory, "ca": os.path.join(directory, "ca.crt"),
            "cert": os.path.join(directory, "localhost.crt"), "key": os.path.join(directory, "localhost.key")}


def client_ssl_context(ca_file):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(ca_file)
    return context


# ---------------------------------------------------------------------------------------------------------------
# Raw RFC 6455, for what real clients will not do (unmasked frames, invalid UTF-8, half requests, RST).


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def canonical_head(key):
    """The 101 response head edgews writes (and the broken servers start from)."""
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_for(key))


def upgrade_request(port, key="dGhlIHNhbXBsZSBub25jZQ==", path="/", extra=(), version="13"):
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port, timeout=IO_TIMEOUT, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect: a fixed small receive buffer also turns off autotuning (which may grow to 32 MiB).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_http_head(sock, timeout=IO_TIMEOUT):
    """Reads until CRLF CRLF; returns (head bytes including the blank line, bytes after it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise CheckFailed(f"connection closed before the end of the HTTP head: {data!r}")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def read_http_response(sock, timeout=IO_TIMEOUT):
    """A whole response of a connection the server closes afterwards: (status, headers list, body)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    expect(b"\r\n\r\n" in data, f"no complete HTTP response: {data!r}")
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return status, headers, body


def raw_upgrade(port, rcvbuf=None, key="x3JJHMbDL1EzLkh9GBhXDw=="):
    """A connected, upgraded raw socket and any bytes that came after the 101 head."""
    s = connect(port, rcvbuf=rcvbuf)
    s.sendall(upgrade_request(port, key=key))
    head, rest = read_http_head(s)
    expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade refused: {head!r}")
    return s, rest


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_bytes(payload, key)


def mask_bytes(payload, key):
    if not payload:
        return b""
    # Whole-buffer XOR through big integers: fast enough for megabytes in pure Python.
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


class FrameReader:
    """Reads server frames (unmasked, as RFC 6455 5.1 requires) from a raw socket."""

    def __init__(self, sock, initial=b""):
        self.sock = sock
        self.buffer = bytearray(initial)

    def _need(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk

    def next(self):
        """(fin, opcode, payload); raises EOFError at a clean end, ConnectionResetError on RST."""
        self._need(2)
        b0, b1 = self.buffer[0], self.buffer[1]
        expect(b1 & 0x80 == 0, "the server sent a masked frame (RFC 6455 5.1 forbids it)")
        n = b1 & 0x7F
        offset = 2
        if n == 126:
            self._need(4)
            n = struct.unpack_from("!H", self.buffer, 2)[0]
            offset = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack_from("!Q", self.buffer, 2)[0]
            offset = 10
        self._need(offset + n)
        payload = bytes(self.buffer[offset:offset + n])
        del self.buffer[:offset + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def until_close(self):
        """Skips data frames up to the close frame: (code or None, reason)."""
        while True:
            _, opcode, payload = self.next()
            if opcode == 0x8:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
                return None, ""


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def rst_close(sock):
    """Closes with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ---------------------------------------------------------------------------------------------------------------
# A deliberately broken server, for `edgews doctor` to diagnose.


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
        key = recv_exact(conn, 4) if b1 & 0x80 else None
        payload = recv_exact(conn, n)
        if key:
            payload = mask_bytes(payload, key)
        if opcode in (1, 2) and compressor:
            data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\x00\x00\xff\xff")
            conn.sendall(frame(opcode, data[:-4], mask=False, rsv=4))
        elif opcode in (1, 2):
            conn.sendall(frame(opcode, payload, mask=False))
        elif opcode == 9:
            conn.sendall(frame(10, payload, mask=False))
        elif opcode == 8:
            conn.sendall(frame(8, payload[:2], mask=False))
            return


class BrokenServer:
    """Answers each upgrade with respond(key) -> bytes (the 101 head to send, possibly defective), then echoes
    frames unless close_after. Runs on a daemon thread; stop() closes the listener."""

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


# ---------------------------------------------------------------------------------------------------------------
# Node clients


def run_node(script, args, timeout=120):
    """Runs tests/clients/<script> with node; its last line is 'N passed, N failed'. Returns (rc, output)."""
    cmd = ["node", os.path.join(CLIENTS_DIR, script)] + [str(a) for a in args]
    env = dict(os.environ)
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode(errors="replace") + f"\nnode timed out after {timeout}s"
    # Indented, so that the node client's own summary line is not read as this test's.
    return r.returncode, "".join("  " + line + "\n" for line in r.stdout.decode(errors="replace").splitlines())


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def run_checks(checks):
    """Runs named checks in order; prints one line each and 'N passed, N failed'. Exits 1 on any failure."""
    only = set(sys.argv[1:])
    passed = failed = 0
    for check in checks:
        name = check.__name__
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            check()
        except Exception as e:  # noqa: BLE001 - every failure is reported, the next check still runs
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - started:.1f}s): {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
        else:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 and passed > 0 else 1)
