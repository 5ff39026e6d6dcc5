#!/usr/bin/env python3
"""edgews serve behind proxies and under scrape: PROXY protocol, trusted forwarding headers, /metrics.

usage: operations_test.py EDGEWS [PROMTOOL]

Starts `edgews serve` on loopback (port 0), talks raw TCP to it (so that malformed PROXY headers can be sent),
reads its log, scrapes /metrics and checks the exposition with promtool. Every socket has a timeout; every
server is stopped by its PID.
"""
import base64
import os
import re
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

EDGEWS = sys.argv[1] if len(sys.argv) > 1 else harness.EDGEWS_BIN
PROMTOOL = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] and not sys.argv[2].endswith("NOTFOUND") else None
TIMEOUT = 5.0


class Server(harness.Server):
    """`edgews serve` on loopback with debug logging (the tests read the log); stop() also removes the log."""

    def __init__(self, *flags):
        super().__init__(["serve", "--host", "127.0.0.1", "--port", "0", "--log-level", "debug", *flags],
                         binary=EDGEWS)

    def wait_log(self, pattern, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            if re.search(pattern, text):
                return text
            time.sleep(0.02)
        raise AssertionError("log never matched %r:\n%s" % (pattern, self.log()))

    def stop(self):
        exit_code = super().stop()
        self.stderr_file.close()
        if os.path.exists(self.stderr_file.name):
            os.unlink(self.stderr_file.name)
        return exit_code


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def read_until_closed(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def http_get(port, path, prefix=b""):
    s = connect(port)
    s.sendall(prefix + b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    data = read_until_closed(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body.decode()


class WebSocket:
    def __init__(self, port, prefix=b"", headers=""):
        self.sock = connect(port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (key, headers))
        self.sock.sendall(prefix + request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("closed during the handshake")
            head += chunk
        head, _, self.rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def send(self, payload, opcode=0x1):
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n):
        while len(self.rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def recv(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def close(self, code=1000):
        self.send(struct.pack(">H", code), opcode=0x8)
        opcode, _ = self.recv()
        assert opcode == 0x8
        read_until_closed(self.sock)
        self.sock.close()


def proxy_v2(command, family, body, length=None):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    return sig + bytes([0x20 | command, family]) + struct.pack(">H", len(body) if length is None else length) + body


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


class ProxyProtocolListener(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--proxy-protocol", "--handshake-timeout", "400", "--metrics-port", "0",
                            "--trusted-proxy", "203.0.113.0/24")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def proxy_errors(self):
        status, body = http_get(self.server.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        return parse_metrics(body)["edgews_proxy_protocol_errors_total"]

    def test_v1_source_address_becomes_the_peer(self):
        ws = WebSocket(self.server.port, b"PROXY TCP4 198.51.100.5 10.0.0.1 4242 80\r\n")
        ws.send(b"hello")
        self.assertEqual(ws.recv(), (0x1, b"hello"))
        ws.close()
        self.server.wait_log(r"open peer=198\.51\.100\.5:4242 path=/echo")

    def test_v2_tcp6_source_address_becomes_the_peer(self):
        import ipaddress
        body = (ipaddress.IPv6Address("2001:db8::9").packed + ipaddress.IPv6Address("2001:db8::1").packed +
                struct.pack(">HH", 555, 443) + b"\x04\x00\x02\x00\x00")  # and a NOOP TLV, skipped
        ws = WebSocket(self.server.port, proxy_v2(1, 0x21, body))
        ws.send(b"six")
        self.assertEqual(ws.recv(), (0x1, b"six"))
        ws.close()
        self.server.wait_log(r"open peer=\[2001:db8::9\]:555 ")

    def test_v2_local_health_check_is_served(self):
        status, body = http_get(self.server.port, "/healthz", proxy_v2(0, 0x00, b""))
        self.assertEqual((status, body), (200, "ok\n"))

    def test_trusted_proxy_behind_proxy_protocol_names_the_client(self):
        ws = WebSocket(self.server.port, b"PROXY TCP4 203.0.113.8 10.0.0.1 999 80\r\n",
                       "X-Forwarded-For: 6.6.6.6, 192.0.2.77\r\n")
        ws.close()
        self.server.wait_log(r"open peer=203\.0\.113\.8:999 client=192\.0\.2\.77 path=/echo")

    def test_bad_headers_close_the_connection_and_are_counted(self):
        before = self.proxy_errors()
        cases = {
            "no header": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "malformed v1": b"PROXY TCP4 1.2.3 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
            "oversized v2": proxy_v2(1, 0x11, b"", length=65535),
            "v1 over 107 bytes": b"PROXY UNKNOWN " + b"x" * 200,
        }
        for name, data in cases.items():
            s = connect(self.server.port)
            s.sendall(data)
            self.assertEqual(read_until_closed(s), b"", name)  # closed, nothing answered
            s.close()
        # A header that never completes: closed at the handshake timeout (400 ms).
        s = connect(self.server.port)
        s.sendall(b"PROXY TCP4 1.2.3.4")
        started = time.time()
        self.assertEqual(read_until_closed(s), b"")
        self.assertLess(time.time() - started, 3.0)
        s.close()
        self.server.wait_log(r"no complete PROXY header within 400 ms")
        deadline = time.time() + TIMEOUT
        while self.proxy_errors() < before + 5 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.proxy_errors(), before + 5)


class TlsServerCase(unittest.TestCase):
    """A server with a ws:// and a wss:// listener (development certificate); PROXY_FLAGS choose the PROXY protocol."""
    PROXY_FLAGS = ()

    @classmethod
    def setUpClass(cls):
        cls.certs = harness.make_certs()["dir"]
        cls.server = Server(*cls.PROXY_FLAGS, "--tls-port", "0", "--tls-cert", os.path.join(cls.certs, "localhost.crt"),
                            "--tls-key", os.path.join(cls.certs, "localhost.key"), "--metrics-port", "0")
        cls.tls_port = cls.server.tls_port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        subprocess.run(["rm", "-rf", cls.certs], check=False)

    def tls_healthz(self, prefix=b""):
        """GET /healthz over TLS on the wss:// listener, after `prefix` in clear (a PROXY header)."""
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.certs, "ca.crt"))
        raw = connect(self.tls_port)
        raw.sendall(prefix)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = read_until_closed(tls)
        tls.close()
        return data

    def assert_tls_refused_without_header(self):
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.certs, "ca.crt"))
        raw = connect(self.tls_port)
        with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
        raw.close()
        status, body = http_get(self.server.metrics_port, "/metrics")
        self.assertGreaterEqual(parse_metrics(body)["edgews_proxy_protocol_errors_total"], 1)


class ProxyProtocolBeforeTls(TlsServerCase):
    """On a TLS listener the PROXY header comes first, in clear; TLS starts right behind it."""
    PROXY_FLAGS = ("--proxy-protocol",)

    def test_tls_after_proxy_header_reports_the_source(self):
        data = self.tls_healthz(b"PROXY TCP4 198.51.100.99 10.0.0.1 31337 443\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.server.wait_log(r"peer=198\.51\.100\.99:31337 via=127\.0\.0\.1:\d+ version=1")

    def test_tls_without_proxy_header_is_refused(self):
        self.assert_tls_refused_without_header()


class ProxyProtocolOnTheTlsListenerOnly(TlsServerCase):
    """--proxy-protocol-on wss: the TLS listener requires the header (a passthrough proxy sends it), the plain one
    serves clients directly (or a proxy that speaks HTTP and forwards the address in headers)."""
    PROXY_FLAGS = ("--proxy-protocol-on", "wss")

    def test_plain_listener_needs_no_header(self):
        status, body = http_get(self.server.port, "/healthz")
        self.assertEqual(status, 200, body)

    def test_plain_listener_does_not_read_a_header(self):
        status, body = http_get(self.server.port, "/healthz", prefix=b"PROXY TCP4 198.51.100.7 10.0.0.1 31337 443\r\n")
        self.assertEqual(status, 400, body)

    def test_tls_listener_requires_the_header(self):
        data = self.tls_healthz(b"PROXY TCP4 198.51.100.8 10.0.0.1 31338 443\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.server.wait_log(r"peer=198\.51\.100\.8:31338 via=127\.0\.0\.1:\d+ version=1")
        self.assert_tls_refused_without_header()


class TrustedProxiesAndMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--trusted-proxy", "127.0.0.1", "--metrics-allow", "127.0.0.0/8")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def scrape(self):
        status, body = http_get(self.server.port, "/metrics")
        self.assertEqual(status, 200)
        return body

    def test_forwarded_headers_from_a_trusted_peer_name_the_client(self):
        ws = WebSocket(self.server.port, headers="X-Forwarded-For: 192.0.2.1, 198.51.100.23\r\n")
        ws.close()
        self.server.wait_log(r"client=198\.51\.100\.23 path=/echo")
        ws = WebSocket(self.server.port, headers='Forwarded: for="[2001:db8::23]:7000"\r\n')
        ws.close()
        self.server.wait_log(r"client=\[2001:db8::23\]:7000 path=/echo")

    def test_scrape_passes_promtool(self):
        body = self.scrape()
        for name in ["edgews_connections_open", "edgews_connections_accepted_total", "edgews_connections_closed_total",
                     "edgews_handshakes_refused_total", "edgews_messages_received_total",
                     "edgews_messages_sent_total", "edgews_bytes_received_total", "edgews_bytes_sent_total",
                     "edgews_send_queue_bytes", "edgews_backpressure_actions_total",
                     "edgews_tls_handshake_failures_total", "edgews_tls_buffers_released_total",
                     "edgews_proxy_protocol_errors_total",
                     "edgews_reactor_loop_lag_seconds", "edgews_accepts_shed_total"]:
            self.assertIn("# TYPE " + name + " ", body)
        if PROMTOOL is None:
            self.skipTest("promtool not installed (Debian package prometheus; tools/install-deps.sh test)")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(check.stdout.strip() + check.stderr.strip(), "", "promtool found problems")

    def test_counters_move_as_traffic_flows(self):
        before = parse_metrics(self.scrape())
        ws = WebSocket(self.server.port)
        for i in range(50):
            ws.send(b"x" * 100)
            self.assertEqual(ws.recv(), (0x1, b"x" * 100))
        opened = parse_metrics(self.scrape())
        self.assertGreaterEqual(opened["edgews_connections_open"], 2)  # the socket and the scrape itself
        ws.close(4001)
        self.assertEqual(http_get(self.server.port, "/", b"")[0], 200)
        # A request refused by the validator (version 8).
        s = connect(self.server.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
        self.assertIn(b" 426 ", read_until_closed(s))
        s.close()
        time.sleep(0.3)  # loop-lag samples every 100 ms
        after = parse_metrics(self.scrape())
        delta = lambda name: after.get(name, 0) - before.get(name, 0)
        self.assertEqual(delta("edgews_messages_received_total"), 50)
        self.assertEqual(delta("edgews_messages_sent_total"), 50)
        self.assertGreaterEqual(delta("edgews_bytes_received_total"), 50 * 106)
        self.assertGreaterEqual(delta("edgews_bytes_sent_total"), 50 * 102)
        self.assertGreaterEqual(delta("edgews_connections_accepted_total"), 4)
        self.assertEqual(delta('edgews_connections_closed_total{code="4xxx"}'), 1)
        self.assertEqual(delta('edgews_handshakes_refused_total{reason="unsupported_version"}'), 1)
        self.assertGreater(after['edgews_reactor_loop_lag_seconds_count{reactor="0"}'], 0)
        self.assertEqual(after['edgews_reactor_loop_lag_seconds_count{reactor="0"}'],
                         after['edgews_reactor_loop_lag_seconds_bucket{reactor="0",le="+Inf"}'])


class MetricsOffByDefault(unittest.TestCase):
    def test_metrics_are_not_served_without_opt_in(self):
        server = Server()
        try:
            self.assertEqual(http_get(server.port, "/metrics")[0], 404)
        finally:
            server.stop()

    def test_metrics_are_not_served_to_peers_outside_the_allow_list(self):
        server = Server("--metrics-allow", "10.0.0.0/8")
        try:
            self.assertEqual(http_get(server.port, "/metrics")[0], 404)
        finally:
            server.stop()

    def test_forwarding_headers_from_untrusted_peers_are_ignored(self):
        server = Server("--trusted-proxy", "10.0.0.0/8")
        try:
            ws = WebSocket(server.port, headers="X-Forwarded-For: 198.51.100.23\r\nX-Real-IP: 198.51.100.24\r\n")
            ws.close()
            text = server.wait_log(r"open peer=127\.0\.0\.1:\d+ path=/echo")
            self.assertNotIn("client=", text)
        finally:
            server.stop()

    def test_bad_cidr_is_refused_at_start_with_the_entry_named(self):
        run = subprocess.run([EDGEWS, "serve", "--port", "0", "--trusted-proxy", "10.1.2.3/8"], capture_output=True,
                             text=True, timeout=TIMEOUT)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn('trusted_proxies: "10.1.2.3/8"', run.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
