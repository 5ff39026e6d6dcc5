"""The configurations in deploy/ as they are (only ports and paths replaced), with the real proxies: HAProxy 2.6
terminating TLS and passing TLS through (mode tcp), nginx 1.22 terminating TLS, each in front of two
`edgews serve` instances. Through each: echo of text and binary over wss://; the 101 that reaches the client is
canonical (each protocol header exactly once, the right accept key); the proxy spreads clients over both
instances; a rolling restart (SIGTERM one instance) closes its clients with 1001, they reconnect through the proxy
to the other instance, re-send what was not acknowledged, and lose no message."""
import asyncio
import os
import shutil
import socket
import ssl
import tempfile

import websockets

import ws_checks
from harness import (SOURCE_DIR, CheckFailed, accept_for, client_ssl_context, edgews, expect, expect_eq,
                     make_certs, read_http_head, run_checks, upgrade_request)
from services import Process, free_port, report_logs, wait_listening

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
INSTANCE_HEADER = "X-Edgews-Instance"
CLIENTS = 12
MESSAGES = 120
SEND_INTERVAL = 0.02
RESTART_AFTER = 0.8
WAIT = 60.0


def render(source, directory, replacements):
    """Copies a deploy/ file with ports and paths replaced; each replaced string must be there."""
    with open(source) as f:
        text = f.read()
    for old, new in replacements.items():
        expect(old in text, f"{source}: '{old}' not found (the test and the file disagree)")
        text = text.replace(old, new)
    path = os.path.join(directory, os.path.basename(source))
    with open(path, "w") as f:
        f.write(text)
    return path


class Deployment:
    """Two edgews instances and a proxy in front of them, all on free loopback ports."""

    def __init__(self, kind):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"edgews-deploy-{kind}-")
        os.chmod(self.dir, 0o755)  # nginx workers run as nobody
        self.certs = make_certs()
        self.pem = os.path.join(self.dir, "edgews.pem")
        with open(self.pem, "wb") as out:
            for part in (self.certs["cert"], self.certs["key"]):
                with open(part, "rb") as f:
                    out.write(f.read())
        self.ws_ports = [free_port(), free_port()]
        self.tls_ports = [free_port(), free_port()]
        self.proxy_port = free_port()
        self.instances = [None, None]
        self.proxy = None

    def start_instance(self, i):
        args = ["--host", "127.0.0.1", "--port", str(self.ws_ports[i]), "--log-level", "warn",
                "--header", f"{INSTANCE_HEADER}: edgews{i + 1}"]
        if self.kind == "haproxy-passthrough":
            args += ["--tls-port", str(self.tls_ports[i]), "--tls-cert", self.certs["cert"],
                     "--tls-key", self.certs["key"]]
        server = edgews(*args)
        server.__enter__()
        self.instances[i] = server

    def __enter__(self):
        try:
            for i in range(2):
                self.start_instance(i)
            if self.kind == "haproxy-terminate":
                cfg = render(os.path.join(DEPLOY, "haproxy", "edgews-tls-terminate.cfg"), self.dir, {
                    "0.0.0.0:443": f"127.0.0.1:{self.proxy_port}",
                    "/etc/edgews/tls/edgews.pem": self.pem,
                    "127.0.0.1:9001": f"127.0.0.1:{self.ws_ports[0]}",
                    "127.0.0.1:9002": f"127.0.0.1:{self.ws_ports[1]}"})
                self.proxy = Process("haproxy", ["haproxy", "-f", cfg, "-db"], self.dir,
                                     os.path.join(self.dir, "haproxy.log"))
            elif self.kind == "haproxy-passthrough":
                cfg = render(os.path.join(DEPLOY, "haproxy", "edgews-tls-passthrough.cfg"), self.dir, {
                    "0.0.0.0:443": f"127.0.0.1:{self.proxy_port}",
                    "127.0.0.1:9441 port 9001": f"127.0.0.1:{self.tls_ports[0]} port {self.ws_ports[0]}",
                    "127.0.0.1:9442 port 9002": f"127.0.0.1:{self.tls_ports[1]} port {self.ws_ports[1]}"})
                self.proxy = Process("haproxy", ["haproxy", "-f", cfg, "-db"], self.dir,
                                     os.path.join(self.dir, "haproxy.log"))
            elif self.kind == "nginx-terminate":
                os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
                cfg = render(os.path.join(DEPLOY, "nginx", "edgews-tls-terminate.conf"), self.dir, {
                    "listen 443 ssl": f"listen 127.0.0.1:{self.proxy_port} ssl",
                    "/etc/edgews/tls/edgews.crt": self.certs["cert"],
                    "/etc/edgews/tls/edgews.key": self.certs["key"],
                    "/run/nginx-edgews.pid": os.path.join(self.dir, "nginx.pid"),
                    "/var/log/nginx/edgews-error.log": os.path.join(self.dir, "logs", "error.log"),
                    "127.0.0.1:9001": f"127.0.0.1:{self.ws_ports[0]}",
                    "127.0.0.1:9002": f"127.0.0.1:{self.ws_ports[1]}"})
                self.proxy = Process("nginx", ["nginx", "-p", self.dir + "/", "-c", cfg, "-e",
                                               os.path.join(self.dir, "logs", "error.log"), "-g", "daemon off;"],
                                     self.dir, os.path.join(self.dir, "nginx.out"))
            else:
                raise CheckFailed(f"unknown deployment {self.kind}")
            if not wait_listening(self.proxy_port, proc=self.proxy.proc):
                raise CheckFailed(f"{self.proxy.name} did not listen on {self.proxy_port}: {self.proxy.log()[-2000:]}")
        except BaseException:
            self.__exit__(*(None,) * 3)
            raise
        return self

    def __exit__(self, *exc):
        failed = exc[0] is not None
        if failed and self.proxy is not None:
            report_logs(self.proxy)
            if self.kind.startswith("nginx"):
                try:
                    with open(os.path.join(self.dir, "logs", "error.log")) as f:
                        print(f.read()[-2000:])
                except OSError:
                    pass
        if self.proxy is not None:
            self.proxy.stop()
        for server in self.instances:
            if server is not None:
                server.__exit__(*exc)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.certs["dir"], ignore_errors=True)
        return False

    @property
    def url(self):
        return f"wss://127.0.0.1:{self.proxy_port}/"

    def ssl_context(self):
        return client_ssl_context(self.certs["ca"])


def raw_101_through(deployment):
    """The 101 head as bytes, read through the proxy over TLS."""
    raw = socket.create_connection(("127.0.0.1", deployment.proxy_port), timeout=WAIT)
    sock = deployment.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        sock.sendall(upgrade_request(deployment.proxy_port, key=key))
        head, _ = read_http_head(sock)
        return head, key
    finally:
        sock.close()


def check_canonical_101(head, key, what):
    lines = head.decode("latin-1").split("\r\n")
    expect_eq(lines[0], "HTTP/1.1 101 Switching Protocols", f"{what}: status line")
    expect(head.endswith(b"\r\n\r\n") and b"\n\n" not in head.replace(b"\r\n", b""), f"{what}: line endings")
    names = {}
    for line in lines[1:]:
        if not line:
            continue
        expect(":" in line, f"{what}: malformed header line {line!r}")
        name, value = line.split(":", 1)
        names.setdefault(name.strip().lower(), []).append(value.strip())
    for name, values in names.items():
        expect_eq(len(values), 1, f"{what}: number of '{name}' headers in {head!r}")
    expect_eq(names.get("upgrade", [""])[0].lower(), "websocket", f"{what}: Upgrade")
    expect_eq(names.get("connection", [""])[0].lower(), "upgrade", f"{what}: Connection")
    expect_eq(names.get("sec-websocket-accept", [""])[0], accept_for(key), f"{what}: Sec-WebSocket-Accept")
    expect(names.get(INSTANCE_HEADER.lower()) is not None, f"{what}: the application header got lost: {head!r}")


async def rolling_client(k, deployment, started):
    """Sends MESSAGES numbered messages at a steady pace; an echo acknowledges one. After a close it reconnects
    through the proxy and re-sends what was not acknowledged. Returns (instances used, close codes, acked ids)."""
    unacked = {}
    acked = set()
    instances, closes = [], []
    next_id = 0
    attempts = 0
    while len(acked) < MESSAGES:
        attempts += 1
        expect(attempts <= 20, f"client {k}: too many reconnections ({closes})")
        try:
            ws = await ws_checks.connect(deployment.url, deployment.ssl_context())
        except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
            closes.append(f"connect failed: {e}")
            await asyncio.sleep(0.1)
            continue
        instances.append(ws.response_headers.get(INSTANCE_HEADER))
        started.set()

        async def sender():
            nonlocal next_id
            try:
                for i in sorted(unacked):  # what the previous connection did not acknowledge
                    await ws.send(unacked[i])
                while next_id < MESSAGES:
                    unacked[next_id] = f"{k}:{next_id}"
                    next_id += 1
                    await ws.send(unacked[next_id - 1])
                    await asyncio.sleep(SEND_INTERVAL)
            except websockets.ConnectionClosed:
                pass
        task = asyncio.create_task(sender())
        try:
            while len(acked) < MESSAGES:
                message = await asyncio.wait_for(ws.recv(), WAIT)
                i = int(message.split(":")[1])
                unacked.pop(i, None)
                acked.add(i)
            await ws.close()
        except websockets.ConnectionClosed as e:
            closes.append(e.rcvd.code if e.rcvd else None)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return instances, closes, acked


def exercise(kind):
    with Deployment(kind) as d:
        async def run():
            # Echo of text and binary, 0 B .. 16 MiB, through the proxy.
            await ws_checks.echo(d.url, d.ssl_context())
        asyncio.run(run())
        head, key = raw_101_through(d)
        check_canonical_101(head, key, f"{kind}: 101 through the proxy")

        async def rolling():
            started = asyncio.Event()
            clients = []
            for k in range(CLIENTS):  # one after the other, so that the balancing decides each placement
                started.clear()
                clients.append(asyncio.create_task(rolling_client(k, d, started)))
                await asyncio.wait_for(started.wait(), WAIT)
            await asyncio.sleep(RESTART_AFTER)
            d.instances[0].signal(15)
            return await asyncio.gather(*clients)
        results = asyncio.run(rolling())
        first = [instances[0] for instances, _, _ in results]
        expect("edgews1" in first and "edgews2" in first, f"{kind}: clients were not spread: {first}")
        for k, (instances, closes, acked) in enumerate(results):
            expect_eq(acked, set(range(MESSAGES)), f"{kind}: client {k}: acknowledged messages")
            if instances[0] == "edgews1":
                expect_eq(closes[:1], [1001], f"{kind}: client {k} on the stopped instance: close code")
                expect_eq(instances[-1], "edgews2", f"{kind}: client {k}: reconnected to the other instance")
            else:
                expect_eq(closes, [], f"{kind}: client {k} on the remaining instance: closes")
        code = d.instances[0].wait(WAIT)
        expect_eq(code, 0, f"{kind}: exit code of the stopped instance")


def haproxy_tls_terminate():
    exercise("haproxy-terminate")


def haproxy_tls_passthrough():
    exercise("haproxy-passthrough")


def nginx_tls_terminate():
    exercise("nginx-terminate")


if __name__ == "__main__":
    run_checks([haproxy_tls_terminate, haproxy_tls_passthrough, nginx_tls_terminate])
