"""TLS at the level of the `edgews serve` process: the TLS handshake timeout (--tls-handshake-timeout) on silent
and half-ClientHello clients while a wss client keeps echoing; SIGHUP certificate reload under traffic (a new
certificate for new connections, open connections untouched, a broken replacement refused and logged); plain HTTP
and garbage on the TLS port closed quickly; several --tls-cert/--tls-key pairs chosen by SNI.

Certificates come from tools/make-dev-cert.sh in temporary directories."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (EDGEWS_BIN, SOURCE_DIR, CheckFailed, FrameReader, client_ssl_context, edgews, expect,
                     expect_eq, frame, make_certs, read_http_head, run_checks, upgrade_request, wait_until)

TEMP_DIRS = []


def certs():
    c = make_certs()
    TEMP_DIRS.append(c["dir"])
    return c


def make_dev_cert(directory, *args):
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "tools", "make-dev-cert.sh"), *args, directory], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def serial_of(cert_file):
    out = subprocess.run(["openssl", "x509", "-in", cert_file, "-noout", "-serial"], check=True, timeout=30,
                         capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


def der_of(cert_file):
    with open(cert_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def tls_server(c, *extra):
    return edgews("--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--tls-cert", c["cert"],
                  "--tls-key", c["key"], "--log-level", "info", *extra)


def peer_certificate(port, ca, server_hostname="localhost"):
    """DER of the certificate a new TLS connection is shown (verified against ca unless the name is unknown)."""
    context = client_ssl_context(ca)
    context.check_hostname = False  # the test compares certificates itself; SNI is still sent
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as s:
            return s.getpeercert(binary_form=True)


def closed_within(sock, seconds, since=None):
    """Seconds until the server closes sock (EOF or RST), or None if it is still open after `seconds`; counted from
    `since` (a time.monotonic() taken before the connect, so that the server's deadline cannot have started
    earlier) or from now."""
    started = time.monotonic() if since is None else since
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def client_hello(server_hostname="localhost"):
    """The bytes of a real ClientHello, made with Python's ssl over memory BIOs (nothing is sent)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    expect(len(hello) > 100, f"no ClientHello made ({len(hello)} bytes)")
    return hello


class EchoLoop(threading.Thread):
    """One wss connection that echoes numbered messages in a loop until stopped; every answer is checked."""

    def __init__(self, port, ca):
        super().__init__(daemon=True)
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.sock = client_ssl_context(ca).wrap_socket(raw, server_hostname="localhost")
        self.sock.sendall(upgrade_request(port))
        head, rest = read_http_head(self.sock, timeout=15)
        expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade refused: {head!r}")
        self.reader = FrameReader(self.sock, rest)
        self.der = self.sock.getpeercert(binary_form=True)
        self.stop_event = threading.Event()
        self.echoed = 0
        self.error = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                payload = b"echo %d" % self.echoed
                self.sock.sendall(frame(0x2, payload))
                _, opcode, answer = self.reader.next()
                if opcode != 0x2 or answer != payload:
                    raise CheckFailed(f"echo {self.echoed}: got opcode {opcode} {answer[:40]!r}")
                self.echoed += 1
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported by finish()
            self.error = e

    def count_after(self, n, timeout=15):
        """Waits until more than n echoes were answered (proof that the connection still works)."""
        return wait_until(lambda: self.echoed > n or self.error is not None, timeout) and self.error is None

    def finish(self):
        self.stop_event.set()
        self.join(30)
        expect(not self.is_alive(), "the echo loop hung")
        if self.error is not None:
            raise CheckFailed(f"the open wss connection broke after {self.echoed} echoes: "
                              f"{type(self.error).__name__}: {self.error}")
        self.sock.close()
        return self.echoed


def tls_handshake_timeout_closes_silent_and_half_hello():
    c = certs()
    # The upgrade deadline is far longer than the TLS one: a close after ~1 s proves which deadline ran.
    with tls_server(c, "--tls-handshake-timeout", "1000", "--handshake-timeout", "20000") as server:
        port = server.ports[1]
        echo = EchoLoop(port, c["ca"])
        echo.start()
        # Each wait is counted from just before its connect: the server's deadline starts at its accept, after
        # that. Counted from later (after client_hello(), tens of ms of CPU that a loaded machine stretches to
        # hundreds), a close on time would look early.
        silent_at = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", port), timeout=15)
        half_at = time.monotonic()
        half = socket.create_connection(("127.0.0.1", port), timeout=15)
        hello = client_hello()
        half.sendall(hello[:len(hello) // 2])
        started = time.monotonic()
        echoed_at_start = echo.echoed
        results = {}

        def watch(name, sock, since):
            results[name] = (closed_within(sock, 10, since), echo.echoed)

        watchers = [threading.Thread(target=watch, args=(name, sock, since)) for name, sock, since in
                    (("silent", silent, silent_at), ("half ClientHello", half, half_at))]
        for t in watchers:
            t.start()
        for t in watchers:
            t.join(20)
        for name in ("silent", "half ClientHello"):
            took, echoed_at_close = results.get(name, (None, 0))
            expect(took is not None, f"the {name} client was still open 10 s after connecting "
                                     "(the TLS handshake timeout is 1000 ms)")
            # Measured from the connect: not at once (a deadline, not a refusal), not the 20 s upgrade one.
            expect(0.7 <= took <= 6.0, f"the {name} client was closed after {took:.2f} s, expected about 1 s")
            # Served meanwhile: answers came while this handshake hung (a count, not a rate).
            expect(echoed_at_close > echoed_at_start, f"no echo while the {name} client's handshake hung "
                                                      f"({echoed_at_start} before, {echoed_at_close} at its close)")
        silent.close()
        half.close()
        before = echo.echoed
        expect(echo.count_after(before + 20), "the echoing wss client stopped being answered")
        echoed = echo.finish()
        print(f"  {echoed} echoes in {time.monotonic() - started:.1f} s")
        expect(server.log().count("tls_handshake_timeout") >= 2, "the timeouts were not logged")
        expect(server.alive(), "the server died")


def upgrade_deadline_starts_after_the_tls_handshake():
    c = certs()
    with tls_server(c, "--tls-handshake-timeout", "800", "--handshake-timeout", "3000") as server:
        port = server.ports[1]
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        s = client_ssl_context(c["ca"]).wrap_socket(raw, server_hostname="localhost")  # TLS done, then silence
        started = time.monotonic()
        took = closed_within(s, 10)
        expect(took is not None, "a TLS client that never sent an upgrade request was still open after 10 s")
        # The TLS deadline (800 ms) no longer applies once TLS is up; the 3000 ms upgrade deadline does.
        expect(took >= 2.0, f"closed after {took:.2f} s: the TLS handshake timeout ran after the TLS handshake")
        expect(took <= 8.0, f"closed after {took:.2f} s, expected about 3 s")
        s.close()
        expect("handshake_timeout" in server.log(), "the upgrade timeout was not logged")
        expect(time.monotonic() - started < 15, "took too long")


def plain_http_and_garbage_on_the_tls_port_are_closed_quickly():
    c = certs()
    # A TLS handshake timeout far beyond any stall of a loaded machine: a close well before it cannot be its work.
    with tls_server(c, "--tls-handshake-timeout", "60000") as server:
        port = server.ports[1]
        baseline = server.fd_count()
        for name, data in (("plain HTTP", upgrade_request(port)),
                           ("an HTTP GET", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                           ("garbage", bytes(range(256)) * 4),
                           ("a TLS record header of a wrong type", b"\x17\x03\x03\x00\x10" + b"\x00" * 16)):
            s = socket.create_connection(("127.0.0.1", port), timeout=15)
            s.sendall(data)
            took = closed_within(s, 40)
            s.close()
            expect(took is not None, f"{name} on the TLS port: still open after 40 s")
            expect(took < 20.0, f"{name} on the TLS port: closed only after {took:.2f} s (waited for the 60 s "
                                "TLS handshake timeout?)")
        expect(wait_until(lambda: server.fd_count() <= baseline, 10),
               f"{server.fd_count()} descriptors after the refused clients, {baseline} before")
        expect(peer_certificate(port, c["ca"]) == der_of(c["cert"]), "the TLS port stopped serving")


def sighup_reload_under_traffic():
    c = certs()
    with tls_server(c) as server:
        port = server.ports[1]
        old_der = der_of(c["cert"])
        old_serial = serial_of(c["cert"])
        expect(peer_certificate(port, c["ca"]) == old_der, "the server shows a different certificate at start")
        echo = EchoLoop(port, c["ca"])
        echo.start()
        expect(echo.count_after(20), "the wss echo loop did not start")

        # A newly issued certificate (new key, new serial, same CA) replaces the files, then SIGHUP.
        make_dev_cert(c["dir"], "--force")
        new_der = der_of(c["cert"])
        new_serial = serial_of(c["cert"])
        expect(new_serial != old_serial, f"make-dev-cert.sh issued the same serial {new_serial}")
        expect(new_der != old_der, "the reissued certificate is identical")
        expect(peer_certificate(port, c["ca"]) == old_der, "the server changed certificate before SIGHUP")
        server.signal(signal.SIGHUP)
        expect(wait_until(lambda: peer_certificate(port, c["ca"]) == new_der, 10),
               "new connections still see the old certificate 10 s after SIGHUP")
        expect(wait_until(lambda: "certificates reloaded" in server.log(), 5), "the reload was not logged")
        before = echo.echoed
        expect(echo.count_after(before + 20), "the connection opened before the reload stopped echoing")

        # A broken replacement: a key that does not belong to the certificate. The server refuses it, says so,
        # and keeps the certificate it has.
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        c["key"]], check=True, timeout=30, capture_output=True)
        server.signal(signal.SIGHUP)
        expect(wait_until(lambda: "TLS reload failed, still serving the previous certificates" in server.log(), 10),
               "a key that does not match its certificate was not reported at SIGHUP")
        expect(peer_certificate(port, c["ca"]) == new_der, "after a failed reload the certificate changed")
        expect(server.alive(), "a failed reload stopped the server")
        before = echo.echoed
        expect(echo.count_after(before + 20), "the open connection stopped echoing after the failed reload")
        echoed = echo.finish()
        print(f"  {echoed} echoes on one connection across two SIGHUPs, none lost")
        error_lines = [line for line in server.log().splitlines() if "tls_reload" in line and "does not match" in line]
        expect(len(error_lines) == 1, f"expected one reload error line, got {error_lines!r}")
        print(f"  logged: {error_lines[0][:200]}")


def sni_selects_among_repeated_cert_key_pairs():
    c = certs()
    make_dev_cert(c["dir"], "--name", "other", "--san", "DNS:other.test")
    other_cert, other_key = os.path.join(c["dir"], "other.crt"), os.path.join(c["dir"], "other.key")
    with tls_server(c, "--tls-cert", other_cert, "--tls-key", other_key) as server:
        port = server.ports[1]
        expect_eq(peer_certificate(port, c["ca"], "other.test") == der_of(other_cert), True,
                  "SNI other.test gets other.crt")
        expect_eq(peer_certificate(port, c["ca"], "localhost") == der_of(c["cert"]), True,
                  "SNI localhost gets localhost.crt")
        expect_eq(peer_certificate(port, c["ca"], "unknown.test") == der_of(c["cert"]), True,
                  "an unknown SNI gets the first (default) certificate")
        # A full wss exchange verified by name against the second certificate.
        context = client_ssl_context(c["ca"])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
            with context.wrap_socket(raw, server_hostname="other.test") as s:
                s.sendall(upgrade_request(port))
                head, rest = read_http_head(s, timeout=15)
                expect(head.startswith(b"HTTP/1.1 101 "), f"upgrade refused: {head!r}")
                s.sendall(frame(0x1, b"via SNI"))
                _, opcode, payload = FrameReader(s, rest).next()
                expect_eq((opcode, payload), (0x1, b"via SNI"), "echo over the SNI-selected certificate")
    # Pairs must be complete: an unpaired --tls-cert is refused before listening, naming the problem.
    done = subprocess.run([EDGEWS_BIN, "serve", "--port", "0", "--tls-port", "0", "--tls-cert", c["cert"],
                           "--tls-key", c["key"], "--tls-cert", other_cert], capture_output=True, text=True,
                          timeout=20)
    expect(done.returncode == 2, f"an unpaired --tls-cert: exit {done.returncode}, stderr {done.stderr!r}")
    expect("2 --tls-cert but 1 --tls-key" in done.stderr, f"unclear message: {done.stderr!r}")


if __name__ == "__main__":
    try:
        run_checks([tls_handshake_timeout_closes_silent_and_half_hello, upgrade_deadline_starts_after_the_tls_handshake,
                    plain_http_and_garbage_on_the_tls_port_are_closed_quickly, sighup_reload_under_traffic,
                    sni_selects_among_repeated_cert_key_pairs])
    finally:
        for d in TEMP_DIRS:
            shutil.rmtree(d, ignore_errors=True)
