#!/usr/bin/env python3
"""`edgews load` counts every fault a misbehaving echo server injects, and none against `edgews serve`.

usage: load_test.py EDGEWS_BINARY SOURCE_DIR [unittest args]
EDGEWS_LOAD_ENGINE=client runs every case on the client engine (one edgews::Client per connection).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

EDGEWS = None
SOURCE = None
HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.environ.get("EDGEWS_LOAD_ENGINE", "raw")


def start(cmd):
    """Starts a server that prints '... listening on port N' and returns (process, port)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on port" not in line:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError("server did not start: %r" % line)
    return proc, int(line.split()[-1])


def stop(proc):
    proc.stdout.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_load(url, *extra):
    """Runs edgews load and returns (exit status, parsed --json output)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "load.json")
        cmd = [EDGEWS, "load", url, "--json", out, "--quiet", "--engine", ENGINE] + list(extra)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        with open(out) as f:
            report = json.load(f)
        assert report["engine"] == ENGINE, report["engine"]
        return done.returncode, report, done.stderr


class FaultInjection(unittest.TestCase):
    def run_fault(self, fault, connections=2):
        server, port = start([sys.executable, os.path.join(HERE, "faulty_echo_server.py"), "--fault", fault,
                              "--at", "10", "--lifetime", "30"])
        try:
            return run_load("ws://127.0.0.1:%d/" % port, "--connections", str(connections), "--inflight", "4",
                            "--duration", "1", "--warmup", "0", "--connect-timeout", "5")
        finally:
            stop(server)

    def assert_only(self, result, **expected):
        status, report, stderr = result
        errors = report["errors"]
        for name, value in errors.items():
            self.assertEqual(value, expected.get(name, 0), "%s in %s\n%s" % (name, errors, stderr))
        self.assertEqual(status, 0 if report["errors_total"] == 0 else 1)

    def test_correct_server_counts_no_error(self):
        result = self.run_fault("none")
        self.assert_only(result)
        self.assertGreater(result[1]["messages"], 20)

    def test_counts_a_corrupted_byte(self):
        self.assert_only(self.run_fault("corrupt"), corrupted=1)

    def test_counts_a_dropped_message_as_lost(self):
        self.assert_only(self.run_fault("drop"), lost=1)

    def test_counts_a_duplicated_message(self):
        self.assert_only(self.run_fault("duplicate"), duplicated=1)

    def test_counts_swapped_messages_as_one_reordered(self):
        self.assert_only(self.run_fault("swap"), reordered=1)

    def test_counts_a_wrong_accept_on_every_connection(self):
        self.assert_only(self.run_fault("wrong-accept", connections=3), handshake_failed=3, accept_mismatch=3)

    def test_counts_a_duplicated_header_on_every_connection(self):
        self.assert_only(self.run_fault("dup-header", connections=3), handshake_failed=3, duplicate_header=3)


class AgainstServe(unittest.TestCase):
    def run_against_serve(self, *extra):
        server, port = start([EDGEWS, "serve", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"])
        try:
            status, report, stderr = run_load("ws://127.0.0.1:%d/" % port, "--server-pid", str(server.pid),
                                              "--duration", "2", "--warmup", "0", *extra)
        finally:
            stop(server)
        self.assertEqual(report["errors_total"], 0, stderr)
        self.assertEqual(status, 0, stderr)
        self.assertGreater(report["messages"], 100, stderr)
        self.assertGreater(report["server"]["cpu_s"], 0, stderr)
        self.assertGreater(report["latency_us"]["max"], 0, stderr)
        return report

    def test_binary_echo_has_no_errors(self):
        self.run_against_serve("--connections", "20", "--inflight", "4")

    def test_text_64k_echo_has_no_errors(self):
        self.run_against_serve("--connections", "4", "--size", "65536", "--text")

    def test_wss_echo_verified_against_the_ca_has_no_errors(self):
        with tempfile.TemporaryDirectory() as certs:
            subprocess.run(["bash", os.path.join(SOURCE, "tools", "make-dev-cert.sh"), certs], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            server, port = start([EDGEWS, "serve", "--host", "127.0.0.1", "--port", "0", "--tls-port", "0",
                                  "--tls-cert", os.path.join(certs, "localhost.crt"),
                                  "--tls-key", os.path.join(certs, "localhost.key"), "--log-level", "warn"])
            try:
                status, report, stderr = run_load("wss://127.0.0.1:%d/" % port, "--ca", os.path.join(certs, "ca.crt"),
                                                  "--connections", "8", "--inflight", "4", "--duration", "1",
                                                  "--warmup", "0")
            finally:
                stop(server)
        self.assertTrue(report["tls"])
        self.assertEqual(report["errors_total"], 0, stderr)
        self.assertEqual(status, 0, stderr)
        self.assertGreater(report["messages"], 100, stderr)

    def test_open_loop_echo_has_no_errors(self):
        report = self.run_against_serve("--connections", "10", "--rate", "2000")
        self.assertGreater(report["messages"], 2000)


if __name__ == "__main__":
    EDGEWS, SOURCE = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
