"""Shared pieces of the edgews integration tests: start a server, find its port, stop it by PID, look at its
descriptors and memory, speak raw RFC 6455 where a real client would refuse to misbehave, and report checks.

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

EDGEWS_BIN = os.environ.get("EDGEWS_BIN", "")
TEST_SERVER_BIN = os.environ.get("EDGEWS_TEST_SERVER", "")
SOURCE_DIR = os.environ.get("EDGEWS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
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


class Server:
    """One server process on an ephemeral port, owned by the test that started it."""

    def __init__(self, args, binary=None, name="edgews"):
        binary = binary or EDGEWS_BIN
        expect(binary and os.access(binary, os.X_OK), f"server binary not found: {binary!r} (set EDGEWS_BIN)")
        self.name = name
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="edgews-integ-", suffix=".log", delete=False)
        cmd = [binary] + list(args)
        if binary == EDGEWS_BIN:
            cmd = [binary, "serve"] + list(args)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr_file, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.ports = self._read_ports()
        self.port = self.ports[0]
        self.exit_code = None

    def _read_ports(self):
        lines = []
        result = {}

        def reader():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                lines.append(line)
                m = re.match(r"edgews: listening on ports? ([0-9 ]+)$", line)
                if m:
                    result["ports"] = [int(p) for p in m.group(1).split()]
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(START_TIMEOUT)
        if "ports" not in result:
            self.stop()
            raise CheckFailed(f"{self.cmd!r} printed no port within {START_TIMEOUT}s; stdout={lines!r} "
                              f"stderr={self.log()[-2000:]!r}")
        return result["ports"]

    def alive(self):
        return self.proc.poll() is None

    def log(self):
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
        if self.proc.poll() is None:
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
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            if self.wait(STOP_TIMEOUT) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.wait(STOP_TIMEOUT)
        self.exit_code = self.proc.returncode
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr_file.close()
        return self.exit_code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is None:
            os.unlink(self.stderr_file.name)
        else:
            sys.stderr.write(f"--- {self.name} log ({self.stderr_file.name}), last lines ---\n")
            sys.stderr.write(self.log()[-3000:] + "\n")
        return False


def edgews(*args):
    return Server(list(args))


def test_server(*args):
    return Server(list(args), binary=TEST_SERVER_BIN, name="integration_server")


def make_certs():
    """A development CA and a localhost certificate in a fresh temporary directory."""
    directory = tempfile.mkdtemp(prefix="edgews-certs-")
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
