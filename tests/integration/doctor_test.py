"""`edgews doctor` against edgews serve (clean, ws and wss) and against deliberately broken servers, each of
which must be diagnosed precisely: the --json output names exactly the expected defect, and the exit status is
non-zero. Run one case: doctor_test.py DoctorTest.test_duplicated_connection_header"""

import json
import subprocess
import sys
import unittest

from harness import BrokenServer, accept_for, canonical_head, edgews_binary, make_certs, serve, temp_dir


def doctor(url, *options):
    done = subprocess.run([edgews_binary(), "doctor", "--json", "--timeout", "3000", *options, url],
                          capture_output=True, text=True, timeout=30)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError("doctor printed no JSON (exit %d): %r %r" % (done.returncode, done.stdout, done.stderr))
    return done.returncode, report


def defect_names(report):
    return sorted(d["name"] for d in report["defects"])


def steps(report):
    return {s["name"]: s["status"] for s in report["steps"]}


class DoctorTest(unittest.TestCase):
    def assert_diagnosis(self, respond, expected, *options, close_after=False, echo_steps="pass"):
        with BrokenServer(respond, close_after=close_after) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port, *options)
        self.assertEqual(defect_names(report), sorted(expected), json.dumps(report, indent=1))
        self.assertEqual(code, 1, "a defect must make the exit status non-zero")
        self.assertFalse(report["ok"])
        for d in report["defects"]:
            self.assertTrue(d["message"] and d["clients"], d)
        if echo_steps:
            # The broken servers echo correctly: only the handshake is to blame.
            self.assertEqual(steps(report)["echo_text"], echo_steps)
            self.assertEqual(steps(report)["close"], echo_steps)
        return report

    # --- clean servers ------------------------------------------------------------------------------------

    def test_edgews_serve_is_clean_over_ws(self):
        with serve() as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port, "--origin", "http://localhost")
        self.assertEqual(report["defects"], [])
        self.assertEqual(code, 0)
        self.assertEqual(steps(report), {"connect": "pass", "handshake": "pass", "echo_text": "pass",
                                         "echo_binary": "pass", "ping": "pass", "close": "pass"})
        self.assertTrue(report["response_head"].startswith("HTTP/1.1 101 Switching Protocols\r\n"))

    def test_edgews_serve_is_clean_over_wss_with_the_test_ca(self):
        with temp_dir() as d:
            certs = make_certs(d)
            ca = certs["ca"]
            with serve(tls=(certs["cert"], certs["key"])) as server:
                code, report = doctor("wss://localhost:%d/" % server.tls_port, "--ca", ca)
                self.assertEqual(report["defects"], [], json.dumps(report, indent=1))
                self.assertEqual(code, 0)
                self.assertEqual(steps(report)["tls"], "pass")
                # Without the CA the certificate is not trusted: diagnosed as such, and --insecure gets past it.
                code, report = doctor("wss://localhost:%d/" % server.tls_port)
                self.assertEqual(defect_names(report), ["tls_failed"])
                self.assertIn("--ca", report["defects"][0]["message"])
                code, report = doctor("wss://localhost:%d/" % server.tls_port, "--insecure")
                self.assertEqual((code, report["defects"]), (0, []))

    def test_edgews_serve_with_subprotocol_is_clean_when_it_matches(self):
        with serve("--subprotocol", "chat") as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port, "--subprotocol", "other",
                                  "--subprotocol", "chat")
        self.assertEqual((code, report["defects"]), (0, []))
        self.assertIn("Sec-WebSocket-Protocol: chat\r\n", report["response_head"])

    def test_a_canonical_python_server_is_clean(self):
        # The broken-server harness itself, answering correctly: proves the cases below fail for their defect.
        with BrokenServer(lambda key: canonical_head(key).encode()) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port)
        self.assertEqual((code, report["defects"]), (0, []))

    def test_compressed_echoes_are_inflated_with_deflate(self):
        respond = lambda key: canonical_head(key).replace(
            "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode()
        with BrokenServer(respond, deflate=True) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port, "--deflate")
        self.assertEqual((code, report["defects"]), (0, []), json.dumps(report, indent=1))
        self.assertIn("permessage-deflate", report["request_head"])
        self.assertEqual(steps(report)["echo_binary"], "pass")

    # --- deliberately broken servers ---------------------------------------------------------------------

    def test_duplicated_connection_header(self):
        report = self.assert_diagnosis(
            lambda key: canonical_head(key).replace("Connection: Upgrade\r\n",
                                                    "Connection: Upgrade\r\nConnection: upgrade\r\n").encode(),
            ["duplicate_header"])
        self.assertEqual(report["defects"][0]["header"], "Connection")
        self.assertIn("iOS Safari", report["defects"][0]["clients"])

    def test_duplicated_upgrade_header(self):
        report = self.assert_diagnosis(
            lambda key: canonical_head(key).replace("Upgrade: websocket\r\n",
                                                    "Upgrade: websocket\r\nUpgrade: websocket\r\n").encode(),
            ["duplicate_header"])
        self.assertEqual(report["defects"][0]["header"], "Upgrade")
        self.assertIn("Chromium and WebKit", report["defects"][0]["clients"])

    def test_empty_extensions_header(self):
        report = self.assert_diagnosis(
            lambda key: canonical_head(key).replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: \r\n\r\n").encode(),
            ["empty_extensions"])
        self.assertIn("Chromium", report["defects"][0]["clients"])

    def test_http10_status_line(self):
        report = self.assert_diagnosis(lambda key: canonical_head(key).replace("HTTP/1.1", "HTTP/1.0").encode(),
                                       ["status_line_not_http11"])
        self.assertIn("WebKit", report["defects"][0]["clients"])

    def test_lf_only_line_endings(self):
        report = self.assert_diagnosis(lambda key: canonical_head(key).replace("\r\n", "\n").encode(), ["bare_lf"])
        self.assertNotIn("\r", report["response_head"])

    def test_wrong_accept(self):
        report = self.assert_diagnosis(
            lambda key: canonical_head(key).replace(accept_for(key), accept_for("AAAAAAAAAAAAAAAAAAAAAA==")).encode(),
            ["accept_mismatch"])
        self.assertIn("every client", report["defects"][0]["clients"])

    def test_subprotocol_not_offered(self):
        self.assert_diagnosis(
            lambda key: canonical_head(key).replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n").encode(),
            ["unoffered_subprotocol"])

    def test_no_subprotocol_when_offered(self):
        report = self.assert_diagnosis(lambda key: canonical_head(key).encode(), ["no_subprotocol_when_offered"],
                                       "--subprotocol", "chat")
        self.assertIn("Chromium", report["defects"][0]["clients"])

    def test_extension_not_offered(self):
        self.assert_diagnosis(
            lambda key: canonical_head(key).replace(
                "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode(),
            ["unoffered_extension"])

    def test_early_close_in_the_head(self):
        self.assert_diagnosis(lambda key: canonical_head(key)[:40].encode(), ["early_close"], close_after=True,
                              echo_steps=None)

    def test_silent_server_times_out(self):
        report = self.assert_diagnosis(lambda key: b"", ["handshake_timeout"], "--timeout", "500", echo_steps=None)
        self.assertEqual(report["response_head"], "")

    def test_extra_bytes_after_the_head(self):
        self.assert_diagnosis(lambda key: (canonical_head(key) + "hello").encode(), ["extra_bytes"],
                              echo_steps=None)

    def test_refused_upgrade(self):
        report = self.assert_diagnosis(
            lambda key: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", ["not_101"], echo_steps="skip")
        self.assertEqual(steps(report)["handshake"], "fail")

    def test_non_canonical_spelling_is_a_note_not_a_defect(self):
        # Every client accepts these (case-insensitive comparison, Connection is a list): exit 0, with notes.
        respond = (lambda key: canonical_head(key).replace("Upgrade: websocket", "upgrade: WebSocket")
                   .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade").encode())
        with BrokenServer(respond) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port)
        self.assertEqual((code, report["defects"]), (0, []))
        notes = " ".join(report["notes"])
        self.assertIn('"WebSocket"', notes)
        self.assertIn('"keep-alive, Upgrade"', notes)
        self.assertIn('"upgrade"', notes)

    def test_refusal_body_is_shown(self):
        with BrokenServer(lambda key: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 26\r\n\r\nno subprotocol in common\r\n",
                          close_after=True) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port)
        self.assertEqual((code, defect_names(report)), (1, ["not_101"]))
        self.assertIn("no subprotocol in common", " ".join(report["notes"]))

    def test_no_close_reply(self):
        # A 101 that is fine, then the server drops the connection when the doctor starts the closing handshake.
        with BrokenServer(lambda key: canonical_head(key).encode(), close_after=True) as server:
            code, report = doctor("ws://127.0.0.1:%d/" % server.port, "--no-echo")
        self.assertEqual(code, 1)
        self.assertIn(defect_names(report), (["no_close_reply", "no_pong"], ["no_pong", "send_failed"]))


if __name__ == "__main__":
    unittest.main(argv=sys.argv, verbosity=2)
