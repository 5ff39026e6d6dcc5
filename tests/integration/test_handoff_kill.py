"""Live hand-off under failure: either process of a hand-off is killed (SIGKILL) at a random point, several rounds
with a seeded random generator (EDGEWS_HANDOFF_SEED, else the time; printed), while clients (python websockets with
permessage-deflate and context takeover) keep sending and checking every echo.

Kill points: the new process at a random moment after its start (before or while it takes the listeners), just
after it took the listeners, or after it adopted a random number of the connections; the old process just after
it gave the listeners away, or after a random number of its connections moved.

After every round:
- no silent loss: every message a client sent was echoed, unchanged and in order, or its connection closed (a
  client waiting longer than SILENCE seconds for an echo fails the test);
- a connection is owned by exactly one process or closed: when the new process dies, the clients that see a close
  are at most the connections it had adopted (the old one serves every other again); when the old one dies, at
  most those the new one had not adopted; every client echoes again (on its connection or on a new one);
- the listeners still accept: a client that connects after the kill reaches the survivor, and the survivor can
  still hand everything over (the last round is a clean hand-off: no close at all, the old process exits 0).
"""
import asyncio
import os
import random
import re
import signal
import subprocess
import tempfile
import time

import websockets

from harness import EDGEWS_BIN, CheckFailed, edgews, expect, expect_eq, run_checks

CLIENTS = 120        # enough connections that a hand-off lasts long enough to be cut in the middle
ROUNDS = 8
SILENCE = 15.0       # seconds a client waits for an echo before it calls the message lost (over the 2 x 5 s
                     # a stuck successor can hold a connection before the old process shuts it down)
SETTLE_TIMEOUT = 20.0
SPAWN_TIMEOUT = 20.0


def seed():
    return int(os.environ.get("EDGEWS_HANDOFF_SEED", str(int(time.time()) % 100000)))


class Process:
    """An `edgews serve` started without waiting for its ports (it may be killed before it prints them)."""

    started = []  # every one, so that a failing test still stops them all

    def __init__(self, args):
        self.log_file = tempfile.NamedTemporaryFile(prefix="edgews-handoff-kill-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([EDGEWS_BIN, "serve"] + list(args), stdout=subprocess.DEVNULL,
                                     stderr=self.log_file, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        Process.started.append(self)

    def log(self):
        with open(self.log_file.name, "rb") as f:
            return f.read().decode(errors="replace")

    def adopted(self):
        return self.log().count(" adopted peer=")

    def handed_off(self):
        return self.log().count(" handed_off peer=")

    def finished(self):
        return self.log().count("handoff done:")

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            if self.wait(15) is None:
                self.kill()
        self.log_file.close()
        if not os.environ.get("EDGEWS_KEEP_LOGS"):
            os.unlink(self.log_file.name)


def sockets_of(port):
    """Both ends of the client's TCP connection as `ss` sees them (state, queues, owning processes)."""
    try:
        out = subprocess.run(["ss", "-tanpi", f"( sport = :{port} or dport = :{port} )"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=10).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        out = repr(e)
    return " | ".join(line.strip() for line in out.splitlines())


class Clients:
    """CLIENTS websocket clients, each with one message in flight at a time; a closed one counts and reconnects."""

    def __init__(self, port, rng):
        self.port = port
        self.rng = rng
        self.echoed = [0] * CLIENTS
        self.closes = 0
        self.close_codes = {}
        self.failure = None
        self.stopping = False

    async def connect(self):
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            try:
                return await asyncio.wait_for(websockets.connect(f"ws://127.0.0.1:{self.port}/", compression="deflate",
                                                                 max_size=None), 5)
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as e:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"no server accepts on port {self.port} ({e!r})")
                await asyncio.sleep(0.05)

    async def run(self, i):
        generation = 0
        try:
            while not self.stopping:
                ws = await self.connect()
                generation += 1
                n = 0
                try:
                    while not self.stopping:
                        # Numbered, so that a loss shows; repetitive, so that the deflate windows matter; of
                        # varying length, so that a window one message behind (a message read by a process that
                        # then lost the connection) decodes the next one into garbage instead of by luck.
                        message = (f"client {i} connection {generation} message {n} " + "abcdefgh"[:n % 8] +
                                   "abcdefgh" * (n % 7 + 2))
                        await ws.send(message)
                        try:
                            got = await asyncio.wait_for(ws.recv(), SILENCE)
                        except asyncio.TimeoutError:
                            port = ws.local_address[1]
                            raise CheckFailed(f"client {i} (port {port}, connection {generation}): no echo of message "
                                              f"{n} within {SILENCE} s and no close (a silent loss: the connection "
                                              f"is owned by no live process); its sockets: {sockets_of(port)}")
                        if got != message:
                            raise CheckFailed(f"client {i}: got {got[:50]!r} for {message[:50]!r}")
                        n += 1
                        self.echoed[i] += 1
                        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                    await ws.close()
                except websockets.ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd else 1006
                    self.closes += 1
                    self.close_codes[code] = self.close_codes.get(code, 0) + 1
        except Exception as e:  # noqa: BLE001 - the first failure ends the test with its message
            if self.failure is None:
                self.failure = e

    async def all_echo_again(self, what):
        """Every client echoes at least once more (bounded): nobody is stuck on a connection nobody serves."""
        before = list(self.echoed)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while any(self.echoed[i] <= before[i] for i in range(CLIENTS)):
            if self.failure:
                raise self.failure
            if time.monotonic() > deadline:
                stuck = [i for i in range(CLIENTS) if self.echoed[i] <= before[i]]
                raise CheckFailed(f"{what}: clients {stuck[:10]} echoed nothing within {SETTLE_TIMEOUT} s")
            await asyncio.sleep(0.05)


async def wait_for_log(process, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(process.log()) or not process.alive():
            return predicate(process.log())
        await asyncio.sleep(0.001)
    return False


async def one_round(number, kind, rng, old, args, clients):
    """Starts a successor, kills one side as `kind` says; returns the survivor."""
    closes_before = clients.closes
    handed_off_before = old.handed_off()
    finished_before = old.finished()
    new = await asyncio.to_thread(Process, args)
    cut = None
    victim = None
    if kind == "new-early":
        await asyncio.sleep(rng.uniform(0.0, 0.08))
        victim = new
    elif kind in ("new-after-listeners", "old-after-listeners"):
        await wait_for_log(new, lambda log: "took over" in log, SPAWN_TIMEOUT)
        victim = new if kind.startswith("new") else old
    else:
        cut = rng.randint(1, CLIENTS - 1)
        await wait_for_log(new, lambda log: log.count(" adopted peer=") >= cut, SPAWN_TIMEOUT)
        victim = new if kind.startswith("new") else old
    await asyncio.to_thread(victim.kill)
    survivor = old if victim is new else new
    # Whatever the dead one held closes; whatever the survivor holds echoes.
    await asyncio.sleep(0.5)
    # The old process said done (it handed everything over and exits) before the new one was killed: nothing
    # survives that.
    old_finished = victim is new and old.finished() > finished_before
    if old_finished:
        await asyncio.to_thread(old.wait, 30)
    if clients.failure:
        raise clients.failure
    if survivor.alive():
        await clients.all_echo_again(f"round {number} ({kind})")
    adopted = new.adopted()
    closes = clients.closes - closes_before
    print(f"round {number}: kill {kind}" + (f" after {cut} adopted" if cut else "") +
          f": the new process had adopted {adopted}, {closes} clients saw a close, survivor "
          f"{'old' if survivor is old else 'new'}" + (" (the hand-off had finished before the kill)"
                                                      if old_finished else ""), flush=True)
    if victim is new and not old_finished:
        # What the old process let go of is what it logged as handed off (its log is whole: it lives).
        let_go = old.handed_off() - handed_off_before
        expect(survivor.alive(), f"round {number}: the old process died with the new one:\n{old.log()[-2000:]}")
        expect(closes <= let_go, f"round {number}: {closes} clients saw a close but the old process had let go of "
                                 f"only {let_go}: it closed connections it should have taken back")
    elif victim is old:
        expect(survivor.alive(), f"round {number}: the new process died with the old one:\n{new.log()[-2000:]}")
        expect(closes <= CLIENTS - min(adopted, CLIENTS),
               f"round {number}: {closes} clients saw a close but the new process had adopted {adopted} of "
               f"{CLIENTS}: it lost connections it adopted")
    if not survivor.alive():
        # The new one was killed after the old one had handed everything over and exited: nothing survives
        # that; a fresh server starts (every client saw its close and reconnects).
        survivor = await asyncio.to_thread(Process, args)
        await clients.all_echo_again(f"round {number}: a fresh server")
    dead = new if victim is new else old
    dead.stop()
    return survivor


def either_side_killed_at_random_points_loses_nothing_silently():
    s = seed()
    rng = random.Random(s)  # what each round kills, and when
    client_rng = random.Random(s + 1)  # the clients' pace (drawn in an order the scheduling decides)
    print(f"seed {s} (rerun with EDGEWS_HANDOFF_SEED={s})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "handoff.sock")
        with edgews("--host", "127.0.0.1", "--port", "0", "--deflate", "--deflate-min-size", "16",
                    "--handoff", path) as first:
            port = first.port
            args = ("--host", "127.0.0.1", "--port", str(port), "--deflate", "--deflate-min-size", "16",
                    "--handoff", path)
            kinds = ["new-early", "new-after-listeners", "new-between", "old-after-listeners", "old-between"]

            class First:
                """The harness's server seen as a Process."""
                proc = first.proc
                pid = first.pid

                def log(self):
                    return first.log()

                def adopted(self):
                    return 0

                def handed_off(self):
                    return first.log().count(" handed_off peer=")

                def finished(self):
                    return first.log().count("handoff done:")

                def wait(self, timeout):
                    return first.wait(timeout)

                def alive(self):
                    return first.alive()

                def kill(self):
                    first.signal(signal.SIGKILL)
                    first.wait(10)

                def stop(self):
                    pass

            async def run():
                clients = Clients(port, client_rng)
                tasks = [asyncio.create_task(clients.run(i)) for i in range(CLIENTS)]
                try:
                    await clients.all_echo_again("before the first round")
                    current = First()
                    for number in range(1, ROUNDS + 1):
                        kind = rng.choice(kinds)
                        current = await one_round(number, kind, rng, current, args, clients)
                    # The survivor hands everything over cleanly: no close at all.
                    closes_before = clients.closes
                    new = await asyncio.to_thread(Process, args)
                    code = await asyncio.to_thread(current.proc.wait, 30)
                    expect_eq(code, 0, "exit code of the survivor after a clean hand-off")
                    await clients.all_echo_again("after the clean hand-off")
                    expect_eq(clients.closes - closes_before, 0, "closes during the clean hand-off")
                    print(f"clean hand-off: {new.adopted()} adopted, 0 closes; closes over all rounds: "
                          f"{clients.close_codes}", flush=True)
                    if clients.failure:
                        raise clients.failure
                    if isinstance(current, Process):
                        current.stop()
                    current = new
                finally:
                    clients.stopping = True
                    await asyncio.wait(tasks, timeout=SILENCE + 5)
                return current

            try:
                asyncio.run(run())
            finally:
                for process in Process.started:
                    if not process.log_file.closed:
                        process.stop()


if __name__ == "__main__":
    run_checks([either_side_killed_at_random_points_loses_nothing_silently])
