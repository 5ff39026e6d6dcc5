"""Live hand-off with `--redis`: what a subscriber sees of the messages published through Redis while the server it
is connected to is replaced by hand-off. A second instance publishes numbered messages at a fixed pace through a
real redis-server before, during and after the hand-off. Every subscriber of the replaced instance must see them
in order (the first copy of each), miss nothing published before the hand-off began or after the new process
holds the Redis subscription; the gap (messages missed) and any duplicate are counted and printed per subscriber
(README "Zero-downtime upgrades" states what the design bounds them by)."""
import asyncio
import json
import os
import tempfile
import time

import ws_checks
from harness import CheckFailed, edgews, expect, expect_eq, run_checks
from services import Redis, report_logs

SUBSCRIBERS = 20
PACE = 0.002        # seconds between two publishes (about 500 messages per second)
BEFORE = 0.3        # seconds of publishing before the new process starts
AFTER = 200         # messages published after the new process confirmed its Redis subscription
WAIT = 30.0
EXIT_DEADLINE = 30


def instance(redis, *extra):
    return edgews("--host", "127.0.0.1", "--port", "0", "--threads", "2", "--redis", redis.address,
                  "--log-level", "info", *extra)


async def command(ws, text):
    await ws.send(text)
    return await ws_checks.recv(ws)


async def redis_channels(port):
    async with ws_checks.connect(f"ws://127.0.0.1:{port}/") as ws:
        s = json.loads(await command(ws, "stats"))["redis"]
        return s["channels"] if s["link_up"] else 0


async def wait_channels(port, n):
    deadline = time.monotonic() + WAIT
    while await redis_channels(port) != n:
        if time.monotonic() > deadline:
            raise CheckFailed(f"port {port}: no confirmed Redis subscription within {WAIT}s")
        await asyncio.sleep(0.01)


def a_subscriber_sees_the_messages_in_order_with_a_gap_during_the_hand_off():
    redis = Redis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "handoff.sock")
            handoff_args = ("--handoff", path)
            with instance(redis) as publisher_side, instance(redis, *handoff_args) as old:
                state = {"new": None}

                async def run():
                    subscribers = []
                    for _ in range(SUBSCRIBERS):
                        ws = await ws_checks.connect(f"ws://127.0.0.1:{old.port}/")
                        expect_eq(await command(ws, "sub news"), "ok sub news", "subscription answer")
                        subscribers.append(ws)
                    await wait_channels(old.port, 1)
                    publisher = await ws_checks.connect(f"ws://127.0.0.1:{publisher_side.port}/")
                    published = {"n": 0, "confirmed_at": None, "stop_at": None}

                    async def publish():
                        while published["stop_at"] is None or published["n"] < published["stop_at"]:
                            await publisher.send(f"pub news {published['n']}")
                            published["n"] += 1
                            await asyncio.sleep(PACE)
                        await publisher.send("pub news end")

                    async def replace():
                        await asyncio.sleep(BEFORE)
                        started = published["n"]
                        state["new"] = await asyncio.to_thread(lambda: instance(redis, *handoff_args))
                        expect_eq(await asyncio.to_thread(old.wait, EXIT_DEADLINE), 0, "exit code of the old one")
                        await wait_channels(state["new"].port, 1)
                        published["confirmed_at"] = published["n"]
                        published["stop_at"] = published["n"] + AFTER
                        return started

                    async def receive(ws):
                        got = []
                        while True:
                            m = await asyncio.wait_for(ws.recv(), WAIT)
                            if m == "end":
                                return got
                            got.append(int(m))

                    receivers = [asyncio.create_task(receive(ws)) for ws in subscribers]
                    results = await asyncio.gather(replace(), publish(), *receivers)
                    started = results[0]
                    total = published["n"]
                    gaps = []
                    duplicates = 0
                    for i, got in enumerate(results[2:]):
                        seen = set()
                        first_copies = []
                        for n in got:
                            if n in seen:
                                duplicates += 1
                            else:
                                seen.add(n)
                                first_copies.append(n)
                        expect(all(a < b for a, b in zip(first_copies, first_copies[1:])),
                               f"subscriber {i}: messages out of order: {got}")
                        missing = sorted(set(range(total)) - set(got))
                        late = [n for n in missing if n >= published["confirmed_at"]]
                        expect(not late, f"subscriber {i}: missed {late[:10]} published after the new process "
                                         "confirmed its Redis subscription")
                        expect(not [n for n in missing if n < started],
                               f"subscriber {i}: missed messages published before the hand-off began: {missing[:10]}")
                        gaps.append(len(missing))
                    print(f"{total} messages published every {PACE * 1000:.0f} ms, the new process started after "
                          f"{started} and held the subscription after {published['confirmed_at']}; missed per "
                          f"subscriber: min {min(gaps)}, max {max(gaps)}, total {sum(gaps)} of "
                          f"{SUBSCRIBERS * total}; duplicates {duplicates}, reordered 0", flush=True)
                    for ws in subscribers + [publisher]:
                        await ws.close()

                try:
                    asyncio.run(run())
                finally:
                    if state["new"] is not None:
                        state["new"].stop()
    except Exception:
        report_logs(redis)
        raise
    finally:
        redis.stop()


if __name__ == "__main__":
    run_checks([a_subscriber_sees_the_messages_in_order_with_a_gap_during_the_hand_off])
