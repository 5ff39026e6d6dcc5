"""The configurations in deploy/ as they are (only ports and paths replaced), with the real proxies: HAProxy 2.6
terminating TLS (X-Forwarded-For, or the PROXY protocol v2) and passing TLS through (mode tcp, without and with the
PROXY protocol v2), nginx 1.22 terminating TLS (X-Forwarded-For) and passing it through (stream module, PROXY
protocol v1), each in front of two `edgews serve` instances. Through each: echo of text and binary over wss://;
the 101 that reaches the client is canonical (each protocol header exactly once, the right accept key); the client
address edgews reports is the real one (the client connects from 127.0.0.2, the proxy from 127.0.0.1, and forges
forwarding headers that must not be believed); the proxy spreads clients over both instances; a rolling restart
(SIGTERM one instance) closes its clients with 1001, they reconnect through the proxy to the other instance,
re-send what was not acknowledged, and lose no message. Without trust in the proxy, its forwarding headers are
ignored and edgews reports the proxy's address."""
import asyncio
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field

import websockets

import ws_checks
from harness import (SOURCE_DIR, CheckFailed, accept_for, client_ssl_context, edgews, expect, expect_eq,
                     make_certs, read_http_head, run_checks, upgrade_request, wait_until)
from services import Process, free_port, report_logs, wait_listening

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
INSTANCE_HEADER = "X-Edgews-Instance"
CLIENTS = 12
MESSAGES = 120
SEND_INTERVAL = 0.02
RESTART_AFTER = 0.8
WAIT = 60.0
LOG_WAIT = 15.0  # a log line is written when the connection opens: no need to wait long
# On loopback the proxy and a client would both be 127.0.0.1: the client connects from another loopback address
# (the whole of 127.0.0.0/8 is local on Linux), the proxy to edgews from 127.0.0.1.
CLIENT_ADDRESS = "127.0.0.2"
PROXY_ADDRESS = "127.0.0.1"
# What a client may send to pass for someone else; a proxy that forwards them unchanged would let it.
FORGED_HEADERS = ("X-Forwarded-For: 203.0.113.7", "Forwarded: for=203.0.113.8", "X-Real-IP: 203.0.113.9")


@dataclass(frozen=True)
class Kind:
    """One file of deploy/: which proxy runs it, where TLS ends, how the client's address reaches edgews
    ("xff": forwarding headers, believed from trusted proxies; "proxy-protocol"; None: it does not, edgews sees
    the proxy), and the strings of the file that the test replaces (ports; paths to files in the test's
    directory)."""
    proxy: str
    file: str
    tls_at_edgews: bool
    address: str | None
    proxy_protocol_version: int = 0
    paths: dict = field(default_factory=dict)


HAPROXY_TERMINATE_PATHS = {"/etc/edgews/tls/edgews.pem": "edgews.pem"}
KINDS = {
    "haproxy-terminate": Kind("haproxy", "haproxy/edgews-tls-terminate.cfg", False, "xff",
                              paths=HAPROXY_TERMINATE_PATHS),
    "haproxy-terminate-proxy-protocol": Kind("haproxy", "haproxy/edgews-tls-terminate-proxy-protocol.cfg", False,
                                             "proxy-protocol", 2, HAPROXY_TERMINATE_PATHS),
    "haproxy-passthrough": Kind("haproxy", "haproxy/edgews-tls-passthrough.cfg", True, None),
    "haproxy-passthrough-proxy-protocol": Kind("haproxy", "haproxy/edgews-tls-passthrough-proxy-protocol.cfg", True,
                                               "proxy-protocol", 2),
    "nginx-terminate": Kind("nginx", "nginx/edgews-tls-terminate.conf", False, "xff", paths={
        "/etc/edgews/tls/edgews.crt": "certs/localhost.crt", "/etc/edgews/tls/edgews.key": "certs/localhost.key",
        "/run/nginx-edgews.pid": "nginx.pid", "/var/log/nginx/edgews-error.log": "logs/error.log"}),
    "nginx-passthrough": Kind("nginx", "nginx/edgews-tls-passthrough.conf", True, "proxy-protocol", 1, paths={
        "/run/nginx-edgews-passthrough.pid": "nginx.pid",
        "/var/log/nginx/edgews-passthrough-error.log": "logs/error.log"}),
}


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
    """Two edgews instances and a proxy in front of them, all on free loopback ports. trust_proxy=False starts
    the instances without --trusted-proxy (only meaningful where the address travels in headers); extra_args go
    to every instance."""

    def __init__(self, name, trust_proxy=True, extra_args=()):
        self.name = name
        self.extra_args = list(extra_args)
        self.kind = KINDS[name]
        self.trust_proxy = trust_proxy
        self.dir = tempfile.mkdtemp(prefix=f"edgews-deploy-{name}-")
        os.chmod(self.dir, 0o755)  # nginx workers run as nobody
        os.makedirs(os.path.join(self.dir, "logs"))
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

    def local_path(self, name):
        if name.startswith("certs/"):
            return os.path.join(self.certs["dir"], name[len("certs/"):])
        return os.path.join(self.dir, name)

    def start_instance(self, i):
        # debug: the PROXY protocol line (peer=... via=...) is a debug line.
        args = ["--host", "127.0.0.1", "--port", str(self.ws_ports[i]), "--log-level", "debug",
                "--header", f"{INSTANCE_HEADER}: edgews{i + 1}"]
        if self.kind.tls_at_edgews:
            args += ["--tls-port", str(self.tls_ports[i]), "--tls-cert", self.certs["cert"],
                     "--tls-key", self.certs["key"]]
        if self.kind.address == "proxy-protocol":
            args += ["--proxy-protocol"]
        elif self.kind.address == "xff" and self.trust_proxy:
            args += ["--trusted-proxy", PROXY_ADDRESS]
        server = edgews(*(args + self.extra_args))
        server.__enter__()
        self.instances[i] = server

    def replacements(self):
        """Ports and paths of the file -> the test's. The listen lines are the proxy's own spelling of :443."""
        r = {k: self.local_path(v) for k, v in self.kind.paths.items()}
        if self.kind.proxy == "haproxy":
            r["0.0.0.0:443"] = f"127.0.0.1:{self.proxy_port}"
        else:
            r["listen 443"] = f"listen 127.0.0.1:{self.proxy_port}"
        for i in range(2):
            if self.kind.tls_at_edgews and self.kind.proxy == "haproxy":  # TLS port, checks on the ws:// port
                r[f"127.0.0.1:944{i + 1} port 900{i + 1}"] = f"127.0.0.1:{self.tls_ports[i]} port {self.ws_ports[i]}"
            elif self.kind.tls_at_edgews:
                r[f"127.0.0.1:944{i + 1}"] = f"127.0.0.1:{self.tls_ports[i]}"
            else:
                r[f"127.0.0.1:900{i + 1}"] = f"127.0.0.1:{self.ws_ports[i]}"
        return r

    def __enter__(self):
        try:
            for i in range(2):
                self.start_instance(i)
            cfg = render(os.path.join(DEPLOY, self.kind.file), self.dir, self.replacements())
            if self.kind.proxy == "haproxy":
                cmd = ["haproxy", "-f", cfg, "-db"]
            else:
                cmd = ["nginx", "-p", self.dir + "/", "-c", cfg, "-e", os.path.join(self.dir, "logs", "error.log"),
                       "-g", "daemon off;"]
            self.proxy = Process(self.kind.proxy, cmd, self.dir, os.path.join(self.dir, f"{self.kind.proxy}.out"))
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
            if self.kind.proxy == "nginx":
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
    """An upgrade through the proxy over TLS, from CLIENT_ADDRESS, with forged forwarding headers. Returns the 101
    head as bytes, the key sent, the path asked for (it names the client's source port, so that the instance's
    log line of this very connection can be found) and the client's source port."""
    raw = socket.create_connection(("127.0.0.1", deployment.proxy_port), timeout=WAIT,
                                   source_address=(CLIENT_ADDRESS, 0))
    source_port = raw.getsockname()[1]
    sock = deployment.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        path = f"/address-check/{source_port}"
        sock.sendall(upgrade_request(deployment.proxy_port, key=key, path=path, extra=FORGED_HEADERS))
        head, _ = read_http_head(sock)
        return head, key, path, source_port
    finally:
        sock.close()


def check_client_address(deployment, head, path, source_port):
    """The instance that answered logs the address it believes for the connection: the client's (the proxy's
    address with client=CLIENT_ADDRESS for forwarding headers from a trusted proxy; the client's address and port
    as the peer for the PROXY protocol) or, where nothing carries it or the proxy is not trusted, the proxy's.
    Never a forged one."""
    kind, what = deployment.kind, f"{deployment.name}: client address"
    answered = re.search(rf"^{INSTANCE_HEADER}: edgews([12])\r$", head.decode("latin-1"), re.M | re.I)
    expect(answered is not None, f"{what}: no {INSTANCE_HEADER} in {head!r}")
    instance = deployment.instances[int(answered.group(1)) - 1]
    proxy, client = re.escape(PROXY_ADDRESS), re.escape(CLIENT_ADDRESS)
    if kind.address == "proxy-protocol":
        wanted = [rf"proxy_protocol peer={client}:{source_port} via={proxy}:\d+ version={kind.proxy_protocol_version} ",
                  rf"open peer={client}:{source_port} path={path}$"]
    elif kind.address == "xff" and deployment.trust_proxy:
        wanted = [rf"open peer={proxy}:\d+ client={client} path={path}$"]
    else:
        wanted = [rf"open peer={proxy}:\d+ path={path}$"]
    found = lambda: all(re.search(w, instance.log(), re.M) for w in wanted)
    expect(wait_until(found, LOG_WAIT), f"{what}: the instance's log has no line matching {wanted}: "
                                    f"{[l for l in instance.log().splitlines() if path in l]}")
    expect("203.0.113." not in instance.log(), f"{what}: a forged forwarding header was believed")


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


def exercise(name):
    with Deployment(name) as d:
        async def run():
            # Echo of text and binary, 0 B .. 16 MiB, through the proxy.
            await ws_checks.echo(d.url, d.ssl_context())
        asyncio.run(run())
        head, key, path, source_port = raw_101_through(d)
        check_canonical_101(head, key, f"{name}: 101 through the proxy")
        check_client_address(d, head, path, source_port)

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
        expect("edgews1" in first and "edgews2" in first, f"{name}: clients were not spread: {first}")
        for k, (instances, closes, acked) in enumerate(results):
            expect_eq(acked, set(range(MESSAGES)), f"{name}: client {k}: acknowledged messages")
            if instances[0] == "edgews1":
                expect_eq(closes[:1], [1001], f"{name}: client {k} on the stopped instance: close code")
                expect_eq(instances[-1], "edgews2", f"{name}: client {k}: reconnected to the other instance")
            else:
                expect_eq(closes, [], f"{name}: client {k} on the remaining instance: closes")
        code = d.instances[0].wait(WAIT)
        expect_eq(code, 0, f"{name}: exit code of the stopped instance")


def untrusted(name):
    """Instances that do not trust the proxy: its forwarding headers (and the client's forged ones) are ignored
    and edgews reports the proxy's address."""
    with Deployment(name, trust_proxy=False) as d:
        head, key, path, source_port = raw_101_through(d)
        check_canonical_101(head, key, f"{name} (untrusted): 101 through the proxy")
        check_client_address(d, head, path, source_port)


def haproxy_tls_terminate():
    exercise("haproxy-terminate")


def haproxy_tls_terminate_proxy_protocol():
    exercise("haproxy-terminate-proxy-protocol")


def haproxy_tls_passthrough():
    exercise("haproxy-passthrough")


def haproxy_tls_passthrough_proxy_protocol():
    exercise("haproxy-passthrough-proxy-protocol")


def nginx_tls_terminate():
    exercise("nginx-terminate")


def nginx_tls_passthrough_proxy_protocol():
    exercise("nginx-passthrough")


def haproxy_forwarding_headers_from_an_untrusted_proxy_are_ignored():
    untrusted("haproxy-terminate")


def nginx_forwarding_headers_from_an_untrusted_proxy_are_ignored():
    untrusted("nginx-terminate")


if __name__ == "__main__":
    run_checks([haproxy_tls_terminate, haproxy_tls_terminate_proxy_protocol, haproxy_tls_passthrough,
                haproxy_tls_passthrough_proxy_protocol, nginx_tls_terminate, nginx_tls_passthrough_proxy_protocol,
                haproxy_forwarding_headers_from_an_untrusted_proxy_are_ignored,
                nginx_forwarding_headers_from_an_untrusted_proxy_are_ignored])
