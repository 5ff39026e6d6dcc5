"""Drain (`edgews serve --drain-seconds N`): on SIGTERM the listeners stay open, every new request is answered 503
(an upgrade with Retry-After), /healthz fails at once on both the main and the admin listener while /metrics is
still served, open connections are closed with 1012 spread over the window (not in one burst), each after the
data queued for it, and the process exits 0. A second SIGTERM ends the drain at once with 1001."""
import asyncio
import re
import socket
import time

import websockets

import ws_checks
from harness import (IO_TIMEOUT, CheckFailed, FrameReader, connect, edgews, expect, expect_eq, frame,
                     raw_upgrade, read_http_response, run_checks, upgrade_request, wait_until)

CLIENTS = 20
WINDOW = 2.0
# Generous: the machine is shared and loaded; the spread is what is checked, not the speed.
SLACK = 10.0
BUCKET = 0.1
MIN_BUCKETS = 6  # 20 closes spread over 2 s fall in about 20 buckets of 100 ms; one burst would fill 1 or 2
EXIT_DEADLINE = 40


def http_get(port, path, extra=()):
    s = connect(port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"] + list(extra)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return read_http_response(s)
    finally:
        s.close()


def upgrade_status(port):
    s = connect(port)
    try:
        s.sendall(upgrade_request(port))
        return read_http_response(s)
    finally:
        s.close()


def header(headers, name):
    values = [v for k, v in headers if k.lower() == name.lower()]
    return values[0] if values else None


def wait_draining(port):
    expect(wait_until(lambda: http_get(port, "/healthz")[0] == 503, IO_TIMEOUT),
           "/healthz did not fail after SIGTERM with --drain-seconds")


def drain_spreads_1012_closes_and_refuses_new_requests():
    # --metrics-port 0: the kernel's choice, read from the start-up line (a port found free and bound later could be
    # taken in between by another test of a parallel run).
    with edgews("--host", "127.0.0.1", "--port", "0", "--drain-seconds", str(int(WINDOW)), "--metrics-port", "0",
                "--log-level", "warn") as server:
        metrics_port = server.metrics_port
        status, _, _ = http_get(server.port, "/healthz")
        expect_eq(status, 200, "/healthz before the drain")

        async def run():
            clients = [await ws_checks.connect(f"ws://127.0.0.1:{server.port}/") for _ in range(CLIENTS)]
            for ws in clients:
                await ws.send("ready")
                expect_eq(await ws_checks.recv(ws), "ready", "echo before the drain")

            async def until_close(ws):
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), WINDOW + SLACK)
                except websockets.ConnectionClosed as e:
                    return time.monotonic(), (e.rcvd.code if e.rcvd else None)
            waiting = [asyncio.create_task(until_close(ws)) for ws in clients]
            started = time.monotonic()
            server.signal(15)
            # While the drain runs (blocking calls in a thread: the clients' close handshakes go on meanwhile).
            def probe():
                wait_draining(server.port)
                return (http_get(server.port, "/healthz"), upgrade_status(server.port),
                        http_get(metrics_port, "/healthz"), http_get(metrics_port, "/metrics"))
            probes = await asyncio.get_running_loop().run_in_executor(None, probe)
            return started, await asyncio.gather(*waiting), probes

        started, closes, probes = asyncio.run(run())
        (health, health_headers, _), (upgrade, upgrade_headers, body), admin_health, metrics = probes
        expect_eq(health, 503, "/healthz during the drain")
        expect(header(health_headers, "Retry-After") is not None, "/healthz 503 without Retry-After")
        expect_eq(upgrade, 503, "an upgrade during the drain")
        retry = header(upgrade_headers, "Retry-After")
        expect(retry is not None and retry.isdigit() and 1 <= int(retry) <= int(WINDOW),
               f"Retry-After of the refused upgrade: {retry!r}")
        expect(b"restarting" in body, f"body of the refused upgrade: {body!r}")
        expect_eq(admin_health[0], 503, "/healthz on the admin listener during the drain")
        expect_eq(metrics[0], 200, "/metrics on the admin listener during the drain")
        expect(re.search(rb'edgews_handshakes_refused_total\{reason="draining"\} [1-9]', metrics[2]),
               "the refused requests are counted with reason=\"draining\"")

        codes = [code for _, code in closes]
        expect_eq(codes, [1012] * CLIENTS, "close codes during the drain")
        offsets = sorted(t - started for t, _ in closes)
        buckets = {int(offset / BUCKET) for offset in offsets}
        print(f"  close offsets (s): {' '.join(f'{o:.2f}' for o in offsets)}; {len(buckets)} buckets of "
              f"{BUCKET * 1000:.0f} ms", flush=True)
        expect(len(buckets) >= MIN_BUCKETS,
               f"the 1012 closes came in {len(buckets)} buckets of {BUCKET}s, not spread over the window: {offsets}")
        expect(offsets[-1] <= WINDOW + SLACK, f"the last close came {offsets[-1]:.1f}s after SIGTERM")
        code = server.wait(EXIT_DEADLINE)
        expect(code is not None, f"the server did not exit within {EXIT_DEADLINE}s of SIGTERM")
        expect_eq(code, 0, "exit code after the drain")


def drain_delivers_queued_data_before_1012():
    """A client that does not read while its echoes pile up in the server's send queue: after the drain's close it
    reads every echo, in order, and then the 1012 close frame."""
    messages, size = 40, 64 << 10
    with edgews("--host", "127.0.0.1", "--port", "0", "--drain-seconds", "1", "--metrics-port", "0",
                "--log-level", "warn") as server:
        metrics_port = server.metrics_port
        s, rest = raw_upgrade(server.port, rcvbuf=4096)
        for i in range(messages):
            s.sendall(frame(0x2, i.to_bytes(4, "big") * (size // 4)))

        def received():
            _, _, body = http_get(metrics_port, "/metrics")
            m = re.search(rb"^edgews_messages_received_total (\d+)", body, re.M)
            return m is not None and int(m.group(1)) == messages
        expect(wait_until(received, IO_TIMEOUT), "the server did not read every message")
        server.signal(15)
        reader = FrameReader(s, rest)
        seqs = []
        while True:
            _, opcode, payload = reader.next()
            if opcode == 0x8:
                expect_eq(int.from_bytes(payload[:2], "big"), 1012, "close code after the queued echoes")
                break
            expect_eq(len(payload), size, "echo size")
            seqs.append(int.from_bytes(payload[:4], "big"))
        expect_eq(seqs, list(range(messages)), "echoes delivered before the close")
        s.sendall(frame(0x8, (1012).to_bytes(2, "big")))
        s.close()
        code = server.wait(EXIT_DEADLINE)
        expect_eq(code, 0, "exit code after the drain")


def second_sigterm_ends_the_drain_with_1001():
    with edgews("--host", "127.0.0.1", "--port", "0", "--drain-seconds", "600", "--log-level", "warn") as server:
        async def run():
            clients = [await ws_checks.connect(f"ws://127.0.0.1:{server.port}/") for _ in range(5)]
            for ws in clients:
                await ws.send("ready")
                expect_eq(await ws_checks.recv(ws), "ready", "echo before the drain")
            server.signal(15)
            await asyncio.get_running_loop().run_in_executor(None, wait_draining, server.port)
            server.signal(15)
            codes = []
            for ws in clients:
                try:
                    got = await ws_checks.recv(ws)
                    raise CheckFailed(f"expected a close, received {got!r}")
                except websockets.ConnectionClosed as e:
                    codes.append(e.rcvd.code if e.rcvd else None)
            return codes
        codes = asyncio.run(run())
        # With 5 connections over 600 s the first 1012 is due in the first 120 s: all or nearly all get 1001.
        expect(all(c in (1012, 1001) for c in codes) and 1001 in codes, f"close codes: {codes}")
        code = server.wait(EXIT_DEADLINE)
        expect(code is not None, "a second SIGTERM did not end a 600 s drain")
        expect_eq(code, 0, "exit code after the second SIGTERM")


def pending_connections_are_answered_not_reset():
    """Connections that wait in the accept queue when the drain starts, and ones that arrive during it, get a
    complete 503, never a reset."""
    with edgews("--host", "127.0.0.1", "--port", "0", "--drain-seconds", "2", "--log-level", "warn") as server:
        early = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
        server.signal(15)
        wait_draining(server.port)
        statuses = [upgrade_status(server.port)[0] for _ in range(20)]
        expect_eq(statuses, [503] * 20, "upgrades during the drain")
        early.sendall(upgrade_request(server.port))
        expect_eq(read_http_response(early)[0], 503, "an upgrade on a connection made before the drain")
        early.close()
        expect_eq(server.wait(EXIT_DEADLINE), 0, "exit code after the drain")


if __name__ == "__main__":
    run_checks([drain_spreads_1012_closes_and_refuses_new_requests, drain_delivers_queued_data_before_1012,
                second_sigterm_ends_the_drain_with_1001, pending_connections_are_answered_not_reset])
