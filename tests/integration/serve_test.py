"""`edgews serve` behaviour the browser tests rely on: the origin story's start-up refusal, application headers on
the 101, the --test-commands switch (off by default) and --deflate-decline-ua; --redis-connect-timeout against
a Redis that accepts connections but never answers; and the options' ranges, as --help shows and the parser
enforces them."""

import re
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from harness import CheckFailed, connect, edgews_binary, frame, read_http_head, recv_exact, serve, upgrade_request


def open_socket(port, extra_headers=()):
    sock = connect(port, timeout=5)
    sock.sendall(upgrade_request(port, extra=extra_headers))
    head, rest = read_http_head(sock, timeout=5)
    assert rest == b"", "nothing may follow the 101 before the client speaks: %r" % rest
    return sock, head.decode("latin-1")


def send_text(sock, text):
    sock.sendall(frame(0x1, text.encode()))


def read_frame(sock):
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    return b0 & 0x0F, recv_exact(sock, n)


def built_with_redis():
    """Whether this edgews has the --redis options (a build without Redis refuses every one of them alike)."""
    done = subprocess.run([edgews_binary(), "serve", "--help"], capture_output=True, text=True, timeout=20)
    return "  --redis HOST:PORT " in done.stdout


class SilentRedis:
    """A loopback listener that accepts connections and never answers (a hung Redis): TCP comes up, PING does not."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.peers = []
        self.first_accept = None  # time.monotonic() of the first accept: the server's link was connected by then
        self.stopping = False
        self.thread = threading.Thread(target=self.accept_all, daemon=True)
        self.thread.start()

    def accept_all(self):
        while not self.stopping:
            try:
                self.peers.append(self.listener.accept()[0])
                if self.first_accept is None:
                    self.first_accept = time.monotonic()
            except socket.timeout:
                continue
            except OSError:
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(5)
        for peer in self.peers:
            peer.close()
        self.listener.close()


def wait_for_log(server, text, timeout):
    """True once `text` shows in the server's log, False if it has not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log():
            return True
        time.sleep(0.02)
    return text in server.log()


class ServeTest(unittest.TestCase):
    def test_refuses_an_application_connection_header_naming_the_library(self):
        done = subprocess.run([edgews_binary(), "serve", "--port", "0", "--header", "Connection: upgrade"],
                              capture_output=True, text=True, timeout=20)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("Connection", done.stderr)
        self.assertIn("edgews writes Connection itself", done.stderr)
        self.assertEqual(done.stdout, "", "it must refuse before listening")

    def test_serves_an_application_cors_header_once(self):
        with serve("--header", "Access-Control-Allow-Origin: *") as server:
            sock, head = open_socket(server.port)
            sock.close()
        self.assertEqual(head.count("Access-Control-Allow-Origin: *\r\n"), 1)
        self.assertEqual(head.lower().count("connection:"), 1)

    def first_reply(self, text, extra=()):
        """The opcode and payload of the first frame `edgews serve EXTRA` sends after the text message `text`."""
        with serve(*extra) as server:
            sock, _ = open_socket(server.port)
            send_text(sock, text)
            reply = read_frame(sock)
            sock.close()
        return reply

    def test_close_command_closes_with_the_code_and_reason(self):
        opcode, payload = self.first_reply("close-me 4000 server says bye", ["--test-commands"])
        self.assertEqual(opcode, 8)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 4000)
        self.assertEqual(payload[2:].decode(), "server says bye")

    def test_close_command_is_echoed_without_the_flag(self):
        self.assertEqual(self.first_reply("close-me 4000 server says bye"), (1, b"close-me 4000 server says bye"))

    def test_close_command_with_a_reserved_code_is_echoed(self):
        # 1005 and 1006 may never be sent (RFC 6455 7.4.1): the command is not a command then.
        self.assertEqual(self.first_reply("close-me 1006 no", ["--test-commands"]), (1, b"close-me 1006 no"))

    def deflate_offer(self, port, user_agent):
        sock, head = open_socket(port, ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                                        "User-Agent: " + user_agent])
        # Still a working connection: an uncompressed reply (no RSV1) to a short text.
        send_text(sock, "still here")
        b0 = sock.recv(1, socket.MSG_PEEK)[0]
        opcode, payload = read_frame(sock)
        sock.close()
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertEqual((opcode, payload, b0 & 0x40), (1, b"still here", 0))
        return [line for line in head.split("\r\n") if line.lower().startswith("sec-websocket-extensions")]

    def test_deflate_decline_ua_declines_matching_user_agents_only(self):
        safari = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "Version/17.4 Safari/605.1.15")
        chrome = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
                  "Safari/537.36")
        with serve("--deflate", "--deflate-decline-ua", "Firefox/", "--deflate-decline-ua", "AppleWebKit/605") as server:
            # No Sec-WebSocket-Extensions line at all, not even an empty one (RFC 7692 5: no response, no extension).
            self.assertEqual(self.deflate_offer(server.port, safari), [])
            self.assertEqual(self.deflate_offer(server.port, "Mozilla/5.0 Gecko/20100101 Firefox/128.0"), [])
            accepted = self.deflate_offer(server.port, chrome)
        self.assertEqual(len(accepted), 1, accepted)
        self.assertTrue(accepted[0].split(":", 1)[1].strip().startswith("permessage-deflate"), accepted)
        # Without the flag, this Safari (17.4, not a broken version) is offered compression.
        with serve("--deflate") as server:
            self.assertEqual(len(self.deflate_offer(server.port, safari)), 1)

    def test_deflate_decline_ua_needs_deflate(self):
        done = subprocess.run([edgews_binary(), "serve", "--port", "0", "--deflate-decline-ua", "Safari/"],
                              capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 2)
        self.assertIn("--deflate-decline-ua has no effect without --deflate", done.stderr)
        self.assertEqual(done.stdout, "")

    def test_redis_connect_timeout_decides_when_an_unanswered_link_is_reported_down(self):
        with SilentRedis() as redis:
            server = serve("--redis", "127.0.0.1:%d" % redis.port, "--redis-connect-timeout", "300", start=False)
            started = time.monotonic()
            try:
                server.start()
            except CheckFailed as e:
                if "built without Redis support" in str(e):
                    self.skipTest("edgews built without Redis support")
                raise
            try:
                down = wait_for_log(server, "down (no answer within 300 ms)", 10)
                seen = time.monotonic()
                log = server.log()
            finally:
                server.stop()
        self.assertTrue(down, log)
        # A timer never fires early: at least 300 ms after the process started (the link connects after that).
        self.assertGreaterEqual(seen - started, 0.3, log)
        # The default (2000 ms) could not be reported this soon after the link connected. Counted from the accept,
        # not from the start: the process start-up (seconds on a loaded machine) is no part of the timeout.
        self.assertIsNotNone(redis.first_accept, log)
        self.assertLess(seen - redis.first_accept, 1.8, log)

    def assert_refuses(self, flag, values, expected):
        """`edgews serve --redis ... FLAG VALUE` exits 2 before listening, with `expected % VALUE` on stderr, for
        each value, and says when FLAG has no value at all."""
        if flag.startswith("--redis") and not built_with_redis():
            self.skipTest("edgews built without Redis support")
        for value in values:
            done = subprocess.run([edgews_binary(), "serve", "--port", "0", "--redis", "127.0.0.1:1", flag, value],
                                  capture_output=True, text=True, timeout=20)
            self.assertEqual(done.returncode, 2, (value, done.stderr))
            self.assertIn(expected % value, done.stderr)
            self.assertEqual(done.stdout, "", "it must refuse before listening")
        done = subprocess.run([edgews_binary(), "serve", "--port", "0", flag], capture_output=True, text=True,
                              timeout=20)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn(flag + " needs a value", done.stderr)

    def test_redis_connect_timeout_refuses_bad_values(self):
        self.assert_refuses("--redis-connect-timeout",
                            ["0", "49", "-300", "abc", "300ms", "", "600001", "99999999999999999999"],
                            "--redis-connect-timeout takes a whole number from 50 to 600000, not '%s'")

    def test_redis_keepalive_refuses_bad_values(self):
        # 0 turns it off; 1-49 would be refused by the Redis bridge only after binding, so the flag refuses them.
        self.assert_refuses("--redis-keepalive", ["1", "49", "-1", "abc", "5s", "", "3600001", "99999999999999999999"],
                            "--redis-keepalive takes 0 (off) or a whole number from 50 to 3600000, not '%s'")

    def test_max_fragments_refuses_bad_values(self):
        # 0 is the default (no cap); the message-size limit bounds a message's bytes.
        self.assert_refuses("--max-fragments", ["-1", "abc", "3x", "", "4294967296", "99999999999999999999"],
                            "--max-fragments takes 0 (off) or a whole number from 1 to 4294967295, not '%s'")

    def test_every_range_in_the_help_is_the_one_enforced(self):
        # --help and the parser come from one table: a number just outside the range that --help shows is refused,
        # with that range in the message.
        done = subprocess.run([edgews_binary(), "serve", "--help"], capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 0, done.stderr)
        entries = []
        for name, note in re.findall(r"^  (--[a-z0-9-]+) [A-Z]+ .*\(([^()]*)\)$", re.sub(r"\n {28}", " ", done.stdout),
                                     re.M):
            bounds = re.search(r"(0 = off, else )?(-?\d+)\.\.(\d+)$", note)
            if bounds:
                entries.append((name,) + bounds.groups())
        names = [e[0] for e in entries]
        for expected in ("--port", "--max-message-size", "--max-fragments", "--deflate-level", "--drain-seconds"):
            self.assertIn(expected, names, done.stdout)
        for name, off, low, high in entries:
            if name.startswith("--redis") and not built_with_redis():
                continue
            low, high = int(low), int(high)
            message = "%s takes %sa whole number from %d to %d, not '%%d'" % (name, "0 (off) or " if off else "", low,
                                                                             high)
            outside = [high + 1] + ([low - 1] if not (off and low == 1) else [-1])
            for value in outside:
                refused = subprocess.run([edgews_binary(), "serve", "--port", "0", name, str(value)],
                                         capture_output=True, text=True, timeout=20)
                self.assertEqual(refused.returncode, 2, (name, value, refused.stderr))
                self.assertIn(message % value, refused.stderr)
                self.assertEqual(refused.stdout, "")


if __name__ == "__main__":
    unittest.main(argv=sys.argv, verbosity=2)
