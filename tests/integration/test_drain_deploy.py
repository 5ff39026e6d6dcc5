"""A rolling restart of two `edgews serve` instances behind HAProxy (deploy/haproxy/edgews-tls-terminate.cfg, as
test_deploy.py runs it) under load, without and with --drain-seconds, and with the drain behind nginx
(deploy/nginx/edgews-tls-terminate.conf, which passes a draining instance's 503 on to the other one): clients that send numbered messages at a
steady pace and reconnect as edgews-client.js does (1012: the first backoff step with jitter, not counted as a
failure; other closes and refused attempts: exponential backoff with jitter). Each instance in turn gets SIGTERM,
exits 0 and is started again. Checked: every message is acknowledged by its echo (what a connection had not seen
echoed is sent again after the reconnection), no echo comes twice, every client of a stopped instance was closed
with 1001 (no drain) or 1012 (drain). Printed, not asserted: the peak of reconnections per second (any 1 s window)
with and without the drain, and how long the reconnections took.

    python3 tests/integration/test_drain_deploy.py [--clients N] [--drain-seconds S]    # EDGEWS_BIN=...
    (from tests/integration; ctest runs it with 20 clients and a 3 s drain)
"""
import argparse
import asyncio
import random
import sys
import time

import websockets

import ws_checks
from harness import CheckFailed, expect, expect_eq, wait_until
from test_deploy import INSTANCE_HEADER, Deployment

SEND_INTERVAL = 0.2
WAIT = 60.0
INITIAL_DELAY = 0.25
MAX_DELAY = 10.0
# HAProxy: rise 2 x inter 1 s; nginx: fail_timeout 5 s counted from the last failure (a 503 of the drain, a refused
# connection while the instance was down), and a little more.
RESTART_PAUSE = {"haproxy": 5.0, "nginx": 8.0}
RUN_LIMIT = 240.0  # the whole rolling restart of one run, at most


def backoff(attempt):
    base = min(MAX_DELAY, INITIAL_DELAY * 2 ** attempt)
    return base * 0.5 + base * 0.5 * random.random()


class Client:
    def __init__(self, k, deployment):
        self.k = k
        self.d = deployment
        self.next_id = 0
        self.unacked = {}
        self.acked = set()
        self.duplicates = 0
        self.resent = 0
        self.opens = []        # (monotonic time, instance)
        self.closes = []       # close codes of open connections
        self.close_times = []
        self.refused = 0       # attempts that did not open (503 during a drain, a proxy with no server up)
        self.refusals = {}     # by HTTP status, or by exception for a failed connection
        self.stop = False
        self.started = asyncio.Event()

    async def run(self):
        attempt = 0
        while True:  # until a session ends with our own close, after stop (bounded by the caller's wait)
            try:
                ws = await ws_checks.connect(self.d.url, self.d.ssl_context())
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
                self.refused += 1
                why = getattr(e, "status_code", None) or type(e).__name__
                self.refusals[why] = self.refusals.get(why, 0) + 1
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self.opens.append((time.monotonic(), ws.response_headers.get(INSTANCE_HEADER)))
            self.started.set()
            code = await self.session(ws)
            if code == 1000:
                return
            self.closes.append(code)
            self.close_times.append(time.monotonic())
            if code != 1012:
                attempt = 1  # as edgews-client.js: this close counted, the next refusal waits the second step
            await asyncio.sleep(backoff(0))

    async def session(self, ws):
        async def sender():
            try:
                for i in sorted(self.unacked):
                    self.resent += 1
                    await ws.send(self.unacked[i])
                while not self.stop:
                    self.unacked[self.next_id] = f"{self.k}:{self.next_id}"
                    self.next_id += 1
                    await ws.send(self.unacked[self.next_id - 1])
                    await asyncio.sleep(SEND_INTERVAL)
            except websockets.ConnectionClosed:
                pass
        task = asyncio.create_task(sender())
        try:
            heard = time.monotonic()
            while not (self.stop and not self.unacked):
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.5)  # then look at self.stop again
                except asyncio.TimeoutError:
                    expect(time.monotonic() - heard < WAIT, f"client {self.k}: no echo for {WAIT}s")
                    continue
                heard = time.monotonic()
                i = int(message.split(":")[1])
                if i in self.acked:
                    self.duplicates += 1
                self.acked.add(i)
                self.unacked.pop(i, None)
            await ws.close()
            return 1000
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def merged(counts):
    total = {}
    for count in counts:
        for k, v in count.items():
            total[k] = total.get(k, 0) + v
    return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(total.items(), key=str)) + ")" if total else ""


def peak_per_second(times):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def rolling_restart(kind, clients_count, drain_seconds):
    extra = ["--log-level", "warn"] + (["--drain-seconds", str(drain_seconds)] if drain_seconds else [])
    with Deployment(kind, extra_args=extra) as d:
        async def run():
            clients = [Client(k, d) for k in range(clients_count)]
            tasks = []
            for c in clients:  # one after the other, so that leastconn spreads them
                tasks.append(asyncio.create_task(c.run()))
                await asyncio.wait_for(c.started.wait(), WAIT)
            await asyncio.sleep(1.0)
            restart_started = time.monotonic()
            for i in range(2):
                d.instances[i].signal(15)
                code = await asyncio.get_running_loop().run_in_executor(None, d.instances[i].wait, WAIT + 20)
                expect_eq(code, 0, f"exit code of instance {i + 1} after SIGTERM")
                # In a thread: starting a process blocks, and the clients' closes and reconnections go on meanwhile.
                await asyncio.get_running_loop().run_in_executor(None, d.instances[i].__exit__, None, None, None)
                await asyncio.get_running_loop().run_in_executor(None, d.start_instance, i)
                # HAProxy marks it up after two good checks (inter 1s, rise 2), nginx after fail_timeout (5 s) at
                # the latest: the next one restarts after that, or its clients would wait in the proxy's queue for
                # a server and arrive together when this one comes up.
                await asyncio.sleep(RESTART_PAUSE[d.kind.proxy])
            restart_ended = time.monotonic()
            await asyncio.sleep(1.0)
            for c in clients:
                c.stop = True
            done, pending = await asyncio.wait(tasks, timeout=WAIT)
            for task in done:
                task.result()  # raises what a client raised
            expect(not pending, "clients that did not finish: " + "; ".join(
                f"{c.k}: opens={len(c.opens)} closes={c.closes} unacked={sorted(c.unacked)[:5]}"
                for c, t in zip(clients, tasks) if t in pending))
            return clients, restart_started, restart_ended
        return asyncio.run(asyncio.wait_for(run(), RUN_LIMIT))


def report(kind, clients, drain_seconds, started):
    reconnects = [t for c in clients for t, _ in c.opens[1:]]
    per_second = {}
    for t in reconnects:
        per_second[int(t - started)] = per_second.get(int(t - started), 0) + 1
    timeline = " ".join(f"{per_second.get(s, 0)}" for s in range(max(per_second) + 1)) if per_second else ""
    closes = [code for c in clients for code in c.closes if code != 1000]
    wanted = 1012 if drain_seconds else 1001
    for c in clients:
        expect_eq(c.acked, set(range(c.next_id)), f"client {c.k}: acknowledged messages")
        expect_eq(c.duplicates, 0, f"client {c.k}: echoes received twice")
        expect(len(c.opens) >= 2, f"client {c.k} was never moved by the rolling restart: {c.opens}")
    expect(closes and all(code == wanted for code in closes), f"close codes of the restarts: {sorted(set(closes))}")
    span = (max(reconnects) - min(reconnects)) if reconnects else 0.0
    label = f"{kind}, " + (f"drain {drain_seconds} s" if drain_seconds else "no drain")
    print(f"  {label:>28}: {len(clients)} clients, {len(reconnects)} reconnections, peak {peak_per_second(reconnects)}"
          f"/s (any 1 s window), {sum(c.refused for c in clients)} refused attempts{merged(c.refusals for c in clients)}, "
          f"{sum(c.resent for c in clients)} messages re-sent, {sum(c.next_id for c in clients)} messages, "
          f"restart took {span:.1f} s of reconnections; per second from the first SIGTERM: {timeline}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--drain-seconds", type=int, default=4)
    parser.add_argument("--only", help="run only the runs whose name contains this")
    args = parser.parse_args()
    passed = failed = 0
    for kind, drain in (("haproxy-terminate", 0), ("haproxy-terminate", args.drain_seconds),
                        ("nginx-terminate", args.drain_seconds)):
        name = f"rolling_restart_{kind.split('-')[0]}_{'drain' if drain else 'no_drain'}"
        if args.only and args.only not in name:
            continue
        started = time.monotonic()
        try:
            clients, restart_started, _ = rolling_restart(kind, args.clients, drain)
            report(kind, clients, drain, restart_started)
        except Exception as e:  # noqa: BLE001 - reported, the next run still goes
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - started:.1f}s): {type(e).__name__}: {e}", flush=True)
        else:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
