"""systemd integration without systemd running: `edgews serve` under `systemd-socket-activate` (which binds the
sockets and passes them with LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES, as systemd does), and a datagram socket of
this test standing in for systemd's notify socket (NOTIFY_SOCKET, a path or an abstract name): READY=1 once
listening, WATCHDOG=1 while WATCHDOG_USEC is set, RELOADING=1 and READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
The unit files of deploy/systemd pass `systemd-analyze verify`."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import (EDGEWS_BIN, IO_TIMEOUT, SOURCE_DIR, CheckFailed, FrameReader, connect, edgews, expect,
                     expect_eq, frame, make_certs, read_http_head, read_http_response, run_checks, serve,
                     upgrade_request, wait_until)
from services import free_port

EXIT_DEADLINE = 40


class NotifySocket:
    """systemd's side of sd_notify(3): a datagram socket that collects what the server sends."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edgews-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
            self.dir = None
        else:
            self.dir = tempfile.mkdtemp(prefix="edgews-notify-")
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(IO_TIMEOUT)
        self.messages = []

    def wait_for(self, wanted, count=1):
        """Reads notifications until `wanted` came `count` times (bounded by IO_TIMEOUT per datagram)."""
        while self.messages.count(wanted) < count:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise CheckFailed(f"no {wanted} within {IO_TIMEOUT}s; received {self.messages}")
            self.messages.extend(data.decode().split("\n"))

    def close(self):
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Environment:
    """Sets variables for the processes this test starts, and takes them back."""

    def __init__(self, **values):
        self.values = values
        self.saved = {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False


def echo_over_raw(sock, port):
    sock.sendall(upgrade_request(port))
    head, rest = read_http_head(sock)
    expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade through the inherited socket: {head!r}")
    sock.sendall(frame(0x1, b"hello"))
    _, opcode, payload = FrameReader(sock, rest).next()
    expect_eq((opcode, payload), (0x1, b"hello"), "echo through the inherited socket")


def notifications_ready_watchdog_stopping():
    notify = NotifySocket()
    try:
        with Environment(NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="300000"):
            server = edgews("--host", "127.0.0.1", "--port", "0", "--threads", "2", "--drain-seconds", "1",
                            "--log-level", "warn")
        with server:
            notify.wait_for("READY=1")
            notify.wait_for("WATCHDOG=1", 3)
            expect("STOPPING=1" not in notify.messages, "STOPPING=1 before SIGTERM")
            server.signal(15)
            notify.wait_for("STOPPING=1")
            expect_eq(server.wait(EXIT_DEADLINE), 0, "exit code after the drain")
        expect_eq(notify.messages.index("READY=1") < notify.messages.index("STOPPING=1"), True, "order")
    finally:
        notify.close()


def reload_is_announced_around_sighup():
    """SIGHUP (ExecReload) re-reads the certificates between RELOADING=1 (with MONOTONIC_USEC, in the same
    datagram) and READY=1, so that `systemctl reload` returns once the reload is done."""
    certs = make_certs()
    notify = NotifySocket()
    try:
        with Environment(NOTIFY_SOCKET=notify.address):
            server = edgews("--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--tls-cert", certs["cert"],
                            "--tls-key", certs["key"])
        with server:
            notify.wait_for("READY=1")
            expect("RELOADING=1" not in notify.messages, "RELOADING=1 before SIGHUP")
            before_usec = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC, the clock MONOTONIC_USEC is read on
            server.signal(signal.SIGHUP)
            notify.wait_for("READY=1", 2)
            after_usec = time.monotonic_ns() // 1000
            at = notify.messages.index("RELOADING=1")
            expect(at < len(notify.messages) - 1 and notify.messages[at + 1].startswith("MONOTONIC_USEC="),
                   f"MONOTONIC_USEC must come with RELOADING=1: {notify.messages}")
            usec = int(notify.messages[at + 1].split("=", 1)[1])
            expect(before_usec <= usec <= after_usec,
                   f"MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC between {before_usec} and {after_usec}")
            second_ready = len(notify.messages) - 1 - notify.messages[::-1].index("READY=1")
            expect(at < second_ready, f"READY=1 must follow RELOADING=1: {notify.messages}")
            expect(wait_until(lambda: "certificates reloaded" in server.log(), 10),
                   "no certificate reload logged after SIGHUP")
            server.signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1")
            expect_eq(server.wait(EXIT_DEADLINE), 0, "exit code")
    finally:
        notify.close()
        shutil.rmtree(certs["dir"], ignore_errors=True)


def notifications_to_an_abstract_socket():
    notify = NotifySocket(abstract=True)
    try:
        with Environment(NOTIFY_SOCKET=notify.address):
            server = serve()
        with server:
            notify.wait_for("READY=1")
            server.signal(15)
            notify.wait_for("STOPPING=1")
            expect_eq(server.wait(EXIT_DEADLINE), 0, "exit code")
        expect("WATCHDOG=1" not in notify.messages, "WATCHDOG=1 without WATCHDOG_USEC")
    finally:
        notify.close()


def without_systemd_nothing_is_sent():
    """No NOTIFY_SOCKET, no LISTEN_FDS: the server binds its own port and runs as ever."""
    with Environment():
        os.environ.pop("NOTIFY_SOCKET", None)
        with serve() as server:
            s = connect(server.port)
            echo_over_raw(s, server.port)
            s.close()


class Activated:
    """edgews serve under systemd-socket-activate, which listens first and starts the server on the first
    connection, passing the sockets (LISTEN_FDS) with the names given."""

    def __init__(self, ports, names, args, notify=None):
        tool = shutil.which("systemd-socket-activate")
        expect(tool is not None, "systemd-socket-activate is missing (tools/install-deps.sh test installs systemd)")
        cmd = [tool]
        for port in ports:
            cmd += ["-l", f"127.0.0.1:{port}"]
        cmd += [f"--fdname={':'.join(names)}"]
        if notify is not None:
            cmd += ["-E", f"NOTIFY_SOCKET={notify.address}"]
        cmd += [EDGEWS_BIN, "serve", "--log-level", "info"] + list(args)
        self.log = tempfile.NamedTemporaryFile(prefix="edgews-activated-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        self.stdout = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + IO_TIMEOUT
        while not self._listening(ports[0]):
            expect(time.monotonic() < deadline and self.proc.poll() is None,
                   f"systemd-socket-activate did not listen on {ports[0]}: {self.text()}")
            time.sleep(0.05)

    @staticmethod
    def _listening(port):
        with open("/proc/net/tcp") as f:
            return any(f":{port:04X} 00000000:0000 0A" in line for line in f)

    def _read(self):
        for raw in self.proc.stdout:
            self.stdout.append(raw.decode(errors="replace").strip())

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return " | ".join(self.stdout) + " || " + f.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(EXIT_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(EXIT_DEADLINE)
        os.unlink(self.log.name)
        return self.proc.returncode


def socket_activation_ws_and_metrics():
    port, metrics_port = free_port(), free_port()
    notify = NotifySocket()
    activated = Activated([port, metrics_port], ["ws", "metrics"], ["--drain-seconds", "1"], notify)
    try:
        # The first connection waits in the queue of systemd-socket-activate's socket while edgews starts: the
        # server accepts it from the inherited socket.
        s = connect(port)
        echo_over_raw(s, port)
        notify.wait_for("READY=1")
        m = connect(metrics_port)
        m.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_http_response(m)
        m.close()
        expect_eq(status, 200, "/metrics on the inherited metrics socket")
        # The WebSocket and this scrape.
        expect(b"\nedgews_connections_open 2\n" in body, f"the activated server's metrics: {body[:600]!r}")
        expect(any(re.fullmatch(rf"edgews: listening on port {port}", line) for line in activated.stdout),
               f"announced ports: {activated.stdout}")
        activated.proc.send_signal(15)
        notify.wait_for("STOPPING=1")
        close_code, _ = FrameReader(s).until_close()
        expect_eq(close_code, 1012, "close code of the drain")
        s.close()
        expect_eq(activated.proc.wait(EXIT_DEADLINE), 0, f"exit code: {activated.text()}")
    finally:
        activated.stop()
        notify.close()


def socket_activation_refuses_unknown_names():
    ports = [free_port(), free_port()]
    activated = Activated(ports, ["ws", "admin"], [])
    try:
        # This connection starts the server. The server refuses the names and exits, which resets the connections
        # still queued on the inherited socket: when this process is scheduled late, that reset reaches connect().
        try:
            connect(ports[0]).close()
        except ConnectionResetError:
            pass
        code = activated.proc.wait(EXIT_DEADLINE)
        expect_eq(code, 2, "exit code with a socket named admin")
        expect('named "admin"' in activated.text() and "ws, wss or metrics" in activated.text(),
               f"the error names the socket and the names edgews takes: {activated.text()}")
    finally:
        activated.stop()


def unit_files_verify():
    tool = shutil.which("systemd-analyze")
    expect(tool is not None, "systemd-analyze is missing (tools/install-deps.sh test installs systemd)")
    directory = tempfile.mkdtemp(prefix="edgews-units-")
    try:
        units = []
        for name in sorted(os.listdir(os.path.join(SOURCE_DIR, "deploy", "systemd"))):
            if not name.endswith((".service", ".socket")):
                continue
            with open(os.path.join(SOURCE_DIR, "deploy", "systemd", name)) as f:
                text = f.read()
            # verify checks that ExecStart's program exists: point it at the one built here.
            text = text.replace("/usr/local/bin/edgews", EDGEWS_BIN)
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
            units.append(os.path.join(directory, name))
        expect(len(units) >= 2, f"deploy/systemd has no units: {units}")
        r = subprocess.run([tool, "verify"] + units, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120, cwd=directory)
        expect_eq((r.returncode, r.stdout.decode(errors="replace").strip()), (0, ""), "systemd-analyze verify")
        with open(os.path.join(SOURCE_DIR, "deploy", "systemd", "edgews.service")) as f:
            service = f.read()
        drain = int(re.search(r"--drain-seconds (\d+)", service).group(1))
        stop = int(re.search(r"^TimeoutStopSec=(\d+)$", service, re.M).group(1))
        expect(stop > drain + 5, f"TimeoutStopSec={stop} must outlast the drain ({drain} s) and the close deadline")
        expect(re.search(r"^LimitNOFILE=1048576$", service, re.M), "LimitNOFILE as in README's Deploying section")
        for key in ("MemoryMax", "WatchdogSec", "ExecReload"):
            expect(re.search(rf"^{key}=", service, re.M), f"{key} in edgews.service")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    run_checks([notifications_ready_watchdog_stopping, reload_is_announced_around_sighup,
                notifications_to_an_abstract_socket,
                without_systemd_nothing_is_sent, socket_activation_ws_and_metrics,
                socket_activation_refuses_unknown_names, unit_files_verify])
