"""Third-party services for the scale-out tests: a real redis-server, HAProxy and nginx, each started by the test
on free loopback ports with its files in a temporary directory, and stopped by PID.

Nothing here touches a system-wide instance: no service manager, no default port, no file outside the temporary
directory.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import CheckFailed, expect

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port():
    """A loopback port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, timeout=START_TIMEOUT, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Process:
    """A service process owned by the test: stopped by PID (SIGTERM, then SIGKILL), log kept on failure."""

    def __init__(self, name, cmd, directory, log_path, cwd=None):
        self.name = name
        self.cmd = cmd
        self.dir = directory
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=cwd or directory)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self, signo=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.pid, signo)
        self.proc.wait(STOP_TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        self.log_file.close()


class Redis(Process):
    """redis-server on 127.0.0.1:port without persistence. Restart by stopping it and starting another on the
    same port: Redis(port=old.port)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        directory = tempfile.mkdtemp(prefix="edgews-redis-")
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", directory, "--logfile", "", "--protected-mode", "no"]
        super().__init__("redis-server", cmd, directory, os.path.join(directory, "redis.log"))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            expect(self.alive(), f"redis-server exited at start: {self.log()[-1500:]}")
            time.sleep(0.05)
        self.stop()
        raise CheckFailed(f"redis-server did not answer PING on port {self.port}: {self.log()[-1500:]}")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def pause(self):
        """SIGSTOP: the process stops answering but its connections stay open (the kernel even completes new
        TCP handshakes into the listen backlog), like a hung Redis."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)

    def command(self, *args):
        """One command through a fresh connection (RESP by hand: no client library needed)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            request = f"*{len(args)}\r\n".encode()
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                request += f"${len(a)}\r\n".encode() + a + b"\r\n"
            s.sendall(request)
            reader = s.makefile("rb")
            return _read_resp(reader)

    def stop(self):
        if self.alive():
            self.resume()  # a stopped process would not act on SIGTERM
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_resp(reader):
    line = reader.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise CheckFailed(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [_read_resp(reader) for _ in range(int(rest))]
    raise CheckFailed(f"unexpected RESP reply {line!r}")


def report_logs(*services):
    """For a failed check: the end of each service's log on standard error."""
    for service in services:
        if service is None:
            continue
        log = service.log() if hasattr(service, "log") else ""
        sys.stderr.write(f"--- {getattr(service, 'name', 'service')} log, last lines ---\n{log[-3000:]}\n")
