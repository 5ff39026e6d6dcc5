#!/usr/bin/env python3
"""edgews serve's admission control flags end to end: connections per address, the handshake rate, message and
byte rates, their /metrics counters (checked by promtool) and log lines, and refused flag values.

usage: admission_test.py EDGEWS [PROMTOOL]

Clients bind to several 127.0.0.x source addresses before they connect, so that each test has addresses of its
own. Every socket has a timeout; the server is stopped by its PID.
"""
import base64
import os
import socket
import struct
import subprocess
import sys
import time
import unittest

import operations_test as ops
from operations_test import EDGEWS, PROMTOOL, TIMEOUT, Server, parse_metrics, read_until_closed


def connect_from(source, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    s.settimeout(TIMEOUT)
    return s


def upgrade(sock):
    """Sends an upgrade request; returns the status and the response head (the 101's or a refusal's)."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return 0, head
        head += chunk
    head = head.partition(b"\r\n\r\n")[0]
    return int(head.split(b" ")[1]), head.decode()


class BoundWebSocket(ops.WebSocket):
    """operations_test's client, from a chosen source address."""

    def __init__(self, source, port, upgraded=None):  # pylint: disable=super-init-not-called
        """Connects from `source` and upgrades, or takes `upgraded`: a socket whose upgrade got its 101 already."""
        if upgraded is None:
            upgraded = connect_from(source, port)
            status, head = upgrade(upgraded)
            assert status == 101, head
        self.sock = upgraded
        self.rest = b""

    def read_close(self):
        """Data frames until the close frame: (number of data frames, close code, reason)."""
        frames = 0
        while True:
            opcode, payload = self.recv()
            if opcode == 0x8:
                return frames, struct.unpack(">H", payload[:2])[0], payload[2:].decode()
            frames += 1


def closed_without_response(sock):
    try:
        return read_until_closed(sock) == b""
    except socket.timeout:
        return False


class AdmissionFlags(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--metrics-port", "0", "--max-connections-per-address", "2", "--handshake-rate", "1",
                            "--handshake-burst", "3", "--message-rate", "10", "--byte-rate", "4096",
                            "--byte-burst", "4096")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def metrics(self):
        status, body = ops.http_get(self.server.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        return body

    def limited(self, limit, action):
        return parse_metrics(self.metrics())[
            'edgews_admission_limited_total{limit="%s",action="%s"}' % (limit, action)]

    def test_connections_per_address_close_the_third_at_accept(self):
        before = self.limited("address_connections", "refuse")
        first, second = BoundWebSocket("127.0.0.2", self.server.port), BoundWebSocket("127.0.0.2", self.server.port)
        third = connect_from("127.0.0.2", self.server.port)
        self.assertTrue(closed_without_response(third), "closed at accept, before any request")
        third.close()
        other = BoundWebSocket("127.0.0.3", self.server.port)  # another address is not affected
        other.send(b"hi")
        self.assertEqual(other.recv(), (0x1, b"hi"))
        self.assertEqual(self.limited("address_connections", "refuse"), before + 1)
        self.server.wait_log(r"limited client=127\.0\.0\.2:\d+ limit=address_connections action=refuse")
        for ws in (first, second, other):
            ws.close()

    def test_handshake_rate_answers_429_with_retry_after(self):
        before = self.limited("handshake_rate", "refuse")
        # Upgrades from one address until one is refused, each closed cleanly (the server has counted it out once it
        # closes). The burst (3) passes and a token comes back each second: at most 3 + the whole seconds they took
        # pass, exactly 3 when they take under a second; a loaded machine that stretches them does not fail a
        # correct refill.
        started = time.monotonic()
        passed = 0
        for _ in range(10):
            sock = connect_from("127.0.0.4", self.server.port)
            status, head = upgrade(sock)
            if status != 101:
                sock.close()
                break
            passed += 1
            BoundWebSocket("127.0.0.4", self.server.port, upgraded=sock).close()
        took = time.monotonic() - started
        self.assertEqual(status, 429, head)
        self.assertGreaterEqual(passed, 3, "the burst")
        self.assertLessEqual(passed, 3 + int(took), "more than the burst and the refill in %.1f s" % took)
        self.assertRegex(head, r"\r\nRetry-After: 1(\r\n|$)")
        self.assertEqual(self.limited("handshake_rate", "refuse"), before + 1)
        self.server.wait_log(r"limited client=127\.0\.0\.4:\d+ limit=handshake_rate action=refuse")

    def test_message_rate_closes_with_1008(self):
        ws = BoundWebSocket("127.0.0.5", self.server.port)
        for i in range(40):  # 10 fit the burst; 40 at 10 a second would take 3 seconds
            ws.send(b"m%d" % i)
        echoed, code, reason = ws.read_close()
        self.assertEqual((code, reason), (1008, "message rate limit exceeded"))
        self.assertGreaterEqual(echoed, 10)
        self.assertLess(echoed, 40)
        self.assertGreaterEqual(self.limited("message_rate", "close"), 1)
        self.server.wait_log(r"limit=message_rate action=close")

    def test_byte_rate_closes_with_1008(self):
        ws = BoundWebSocket("127.0.0.6", self.server.port)
        for _ in range(3):  # 3000 B from a 4096 B bucket; the next 3000 B would wait half a second
            ws.send(b"x" * 3000, opcode=0x2)
        echoed, code, reason = ws.read_close()
        self.assertEqual((echoed, code, reason), (1, 1008, "byte rate limit exceeded"))
        self.assertGreaterEqual(self.limited("byte_rate", "close"), 1)

    def test_scrape_with_admission_counters_passes_promtool(self):
        body = self.metrics()
        for name in ["edgews_admission_limited_total", "edgews_address_table_entries",
                     "edgews_address_table_evictions_total"]:
            self.assertIn("# TYPE " + name + " ", body)
        if PROMTOOL is None:
            self.skipTest("promtool not installed (Debian package prometheus; tools/install-deps.sh test)")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(check.stdout.strip() + check.stderr.strip(), "", "promtool found problems")


class PausePolicy(unittest.TestCase):
    def test_message_rate_pause_slows_the_sender_and_loses_nothing(self):
        server = Server("--metrics-port", "0", "--rate-policy", "pause", "--message-rate", "50",
                        "--message-burst", "5")
        try:
            ws = BoundWebSocket("127.0.0.7", server.port)
            for i in range(40):  # 35 over the burst: about 0.7 s at 50 a second
                ws.send(b"p%d" % i)
            for i in range(40):
                self.assertEqual(ws.recv(), (0x1, b"p%d" % i))
            ws.close()
            status, body = ops.http_get(server.metrics_port, "/metrics")
            self.assertEqual(status, 200)
            values = parse_metrics(body)
            self.assertGreaterEqual(values['edgews_admission_limited_total{limit="message_rate",action="pause"}'], 1)
            self.assertEqual(values['edgews_admission_limited_total{limit="message_rate",action="close"}'], 0)
            server.wait_log(r"limit=message_rate action=pause")
        finally:
            server.stop()


class AdmissionFlagValues(unittest.TestCase):
    def refuses(self, args, expected):
        done = subprocess.run([EDGEWS, "serve", "--port", "0", *args], capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 2, (args, done.stderr))
        self.assertIn(expected, done.stderr)
        self.assertEqual(done.stdout, "", "it must refuse before listening")

    def test_bad_values_exit_2_naming_the_flag(self):
        for flag in ["--max-connections-per-address", "--handshake-rate", "--message-rate"]:
            for value in ["-1", "abc", "5/s", ""]:
                self.refuses([flag, value], "%s takes 0 (off) or a whole number from 1 to" % flag)
        for flag in ["--handshake-burst", "--message-burst", "--byte-burst"]:
            self.refuses([flag, "0"], "%s takes a whole number from 1 to" % flag)
        self.refuses(["--byte-rate", "1125899906842625"], "--byte-rate takes 0 (off) or a whole number from 1 to")
        self.refuses(["--rate-policy", "slow"], "--rate-policy takes close or pause")

    def test_a_burst_without_its_rate_is_refused(self):
        for kind in ["handshake", "message", "byte"]:
            self.refuses(["--%s-burst" % kind, "10"], "--%s-burst has no effect without --%s-rate" % (kind, kind))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
