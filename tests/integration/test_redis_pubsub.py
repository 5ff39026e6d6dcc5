"""Cross-instance pub/sub through a real redis-server: two `edgews serve --redis` instances, subscribers on both,
publishers on both. Every subscriber receives every message, in order per publisher; Redis channel subscriptions
follow local interest; a Redis crash and restart during traffic keeps local delivery going, counts the failed
cross-instance publishes, and cross-instance delivery resumes with the subscriptions restored."""
import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import websockets

import ws_checks
from harness import CheckFailed, edgews, expect, expect_eq, run_checks, wait_until
from services import Redis, report_logs

SUBSCRIBERS = 1000
MESSAGES_PER_PUBLISHER = 40
WAIT = 30.0
KEEPALIVE_MS = 200
# A silent link is dropped after two keepalive intervals without a byte from Redis; the next check comes at most
# an interval later. The bound allows for a loaded machine, and is still far below what TCP alone would take
# (minutes: a stopped peer's kernel acknowledges everything).
DETECTION_BOUND = 3.0


def instance(redis, *extra, threads=2):
    return edgews("--host", "127.0.0.1", "--port", "0", "--threads", str(threads), "--redis", redis.address,
                  "--log-level", "info", "--max-connections", "5000", *extra)


async def command(ws, text):
    await ws.send(text)
    return await ws_checks.recv(ws)


async def stats(port):
    async with ws_checks.connect(f"ws://127.0.0.1:{port}/") as ws:
        return json.loads(await command(ws, "stats"))


async def wait_for(predicate_async, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = await predicate_async()
        if ok:
            return last
        await asyncio.sleep(0.05)
    raise CheckFailed(f"{what}: not reached within {timeout}s (last: {last!r})")


async def wait_channels(port, n):
    async def check():
        s = await stats(port)
        return s["redis"]["channels"] == n and s["redis"]["link_up"], s["redis"]
    return await wait_for(check, f"port {port}: {n} confirmed Redis channel(s)")


async def subscribe(port, topic):
    ws = await ws_checks.connect(f"ws://127.0.0.1:{port}/")
    expect_eq(await command(ws, f"sub {topic}"), f"ok sub {topic}", "subscription answer")
    return ws


async def collect(ws, count):
    got = []
    while len(got) < count:
        got.append(await asyncio.wait_for(ws.recv(), WAIT))
    return got


def check_order(messages, publishers, count, who):
    """Each publisher's messages arrive complete and in its order (interleaving between publishers is free)."""
    for p in publishers:
        seqs = [int(m.split(":")[1]) for m in messages if m.startswith(p + ":")]
        expect_eq(seqs, list(range(count)), f"{who}: messages of publisher {p}")


def run_then_check_one_outage_logged(run, redis, servers, down):
    """Runs the coroutine function `run` (Redis' log on failure), then checks each server's log: one line when
    the link went down (containing `down`) and one when it came back, not one per message."""
    try:
        asyncio.run(run())
    except Exception:
        report_logs(redis)
        raise
    for name, server in servers.items():
        log = server.log()
        expect_eq(log.count(down), 1, f"{name}: 'link down' log lines")
        expect_eq(log.count("restored after"), 1, f"{name}: 'link restored' log lines")


def thousand_subscribers_on_two_instances_receive_every_message_in_order():
    redis = Redis()
    try:
        with instance(redis) as a, instance(redis) as b:
            async def run():
                ports = [a.port, b.port]
                subscribers = []
                for i in range(SUBSCRIBERS):  # spread over both instances (and over their reactor threads)
                    subscribers.append(await subscribe(ports[i % 2], "news"))
                await wait_channels(a.port, 1)
                await wait_channels(b.port, 1)
                numsub = redis.command("PUBSUB", "NUMSUB", "edgews:news")
                expect_eq(numsub[1], 2, "Redis subscribers of edgews:news (one per instance)")

                publishers = {"A": await ws_checks.connect(f"ws://127.0.0.1:{a.port}/"),
                              "B": await ws_checks.connect(f"ws://127.0.0.1:{b.port}/")}

                async def publish(name, ws):
                    for i in range(MESSAGES_PER_PUBLISHER):
                        await ws.send(f"pub news {name}:{i}")
                receivers = [asyncio.create_task(collect(ws, 2 * MESSAGES_PER_PUBLISHER)) for ws in subscribers]
                await asyncio.gather(*(publish(n, ws) for n, ws in publishers.items()))
                results = await asyncio.gather(*receivers)
                for i, messages in enumerate(results):
                    check_order(messages, ["A", "B"], MESSAGES_PER_PUBLISHER, f"subscriber {i} on {'AB'[i % 2]}")
                # Nothing more arrives: each message came once (the echo of one's own publish is ignored).
                extra = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 0.5) for ws in subscribers[:10]),
                                             return_exceptions=True)
                expect(all(isinstance(e, asyncio.TimeoutError) for e in extra), f"duplicate deliveries: {extra[:3]!r}")
                sa, sb = (await stats(a.port))["redis"], (await stats(b.port))["redis"]
                expect_eq(sa["received"], MESSAGES_PER_PUBLISHER, "A: messages received from B through Redis")
                expect_eq(sb["received"], MESSAGES_PER_PUBLISHER, "B: messages received from A through Redis")
                expect_eq(sa["echoes_ignored"], MESSAGES_PER_PUBLISHER, "A: its own messages coming back, ignored")
                expect_eq(sa["publish_failed"], 0, "A: failed publishes")

                # Interest: when B's last subscriber leaves, B unsubscribes from the channel; A stays.
                for ws in subscribers[1::2]:
                    await ws.close()
                await wait_channels(b.port, 0)
                expect_eq(redis.command("PUBSUB", "NUMSUB", "edgews:news")[1], 1, "Redis subscribers after B's left")
                # ...and subscribes again when one comes back.
                again = await subscribe(b.port, "news")
                await wait_channels(b.port, 1)
                await publishers["A"].send("pub news A:again")
                expect_eq(await ws_checks.recv(again), "A:again", "B's new subscriber gets A's message")
                for ws in subscribers[0::2] + [again] + list(publishers.values()):
                    await ws.close()
                await wait_channels(a.port, 0)
                expect_eq(redis.command("PUBSUB", "NUMSUB", "edgews:news")[1], 0, "Redis subscribers at the end")
            try:
                asyncio.run(run())
            except Exception:
                report_logs(redis)
                raise
    finally:
        redis.stop()


def redis_restart_during_traffic_keeps_local_delivery_and_restores_subscriptions():
    redis = Redis()
    port = redis.port
    try:
        with instance(redis) as a, instance(redis) as b:
            async def run():
                nonlocal redis
                subs_a = [await subscribe(a.port, "ticks") for _ in range(10)]
                subs_b = [await subscribe(b.port, "ticks") for _ in range(10)]
                await wait_channels(a.port, 1)
                await wait_channels(b.port, 1)
                pub_a = await ws_checks.connect(f"ws://127.0.0.1:{a.port}/")
                pub_b = await ws_checks.connect(f"ws://127.0.0.1:{b.port}/")
                received = {id(ws): [] for ws in subs_a + subs_b}
                stop = asyncio.Event()

                async def reader(ws):
                    while True:
                        try:
                            received[id(ws)].append(await ws.recv())
                        except websockets.ConnectionClosed:
                            return

                readers = [asyncio.create_task(reader(ws)) for ws in subs_a + subs_b]
                sent = {"A": 0}

                async def publisher():
                    while not stop.is_set():
                        await pub_a.send(f"pub ticks A:{sent['A']}")
                        sent["A"] += 1
                        await asyncio.sleep(0.01)

                pumping = asyncio.create_task(publisher())
                await asyncio.sleep(0.5)
                before_kill = sent["A"]

                # Redis pub/sub is at-most-once: what is in flight to Redis when it dies is lost. So the steady
                # state is checked first: every message sent so far reaches B's subscribers, then Redis dies.
                async def b_caught_up():
                    counts = [sum(1 for m in received[id(ws)] if m.startswith("A:") and
                                  int(m.split(":")[1]) < before_kill) for ws in subs_b]
                    return min(counts) >= before_kill, min(counts)
                await wait_for(b_caught_up, "B's subscribers receive every message sent before the kill")
                # What was sent until here went out while Redis lived (the wait above may take a few polls on a
                # loaded machine, each a few more messages): only what follows is sent into the outage.
                at_kill = sent["A"]
                redis.kill()  # SIGKILL: a crash, not a polite shutdown
                await asyncio.sleep(1.5)
                during_outage = sent["A"]
                expect((await stats(a.port))["redis"]["link_up"] is False, "A sees the link down")
                redis = Redis(port=port)
                # Cross-instance delivery resumes: B's subscribers get a message A publishes after the restart.
                after_restart = sent["A"]

                async def b_resumed():
                    seqs = [int(m.split(":")[1]) for m in received[id(subs_b[0])] if m.startswith("A:")]
                    return bool(seqs) and seqs[-1] >= after_restart, seqs[-3:]
                await wait_for(b_resumed, "B receives A's messages again after the Redis restart")
                stop.set()
                await pumping
                total = sent["A"]
                # Other direction: A's subscription was restored too.
                await wait_channels(a.port, 1)
                await pub_b.send("pub ticks B:0")

                async def a_got_b():
                    return all("B:0" in received[id(ws)] for ws in subs_a), None
                await wait_for(a_got_b, "A's subscribers receive B's message after the restart")
                await asyncio.sleep(0.3)
                for ws in subs_a + subs_b + [pub_a, pub_b]:
                    await ws.close()
                await asyncio.gather(*readers)

                for ws in subs_a:  # local delivery never stopped: every message, in order, outage or not
                    seqs = [int(m.split(":")[1]) for m in received[id(ws)] if m.startswith("A:")]
                    expect_eq(seqs, list(range(total)), "A's subscriber: A's messages through the outage")
                for ws in subs_b:  # across instances: in order, the outage's messages may be missing
                    seqs = [int(m.split(":")[1]) for m in received[id(ws)] if m.startswith("A:")]
                    expect(seqs == sorted(set(seqs)), "B's subscriber: A's messages out of order or duplicated")
                    expect(set(range(before_kill)) <= set(seqs), "B's subscriber lost messages sent before the kill")
                    expect(seqs[-1] == total - 1, "B's subscriber: the last message is missing")
                sa = (await stats(a.port))["redis"]
                expect(sa["publish_failed"] > 0, f"A counts failed publishes during the outage: {sa}")
                # Every publish is accounted for: acknowledged by Redis or counted as failed, and failures only
                # after the kill (until A's reconnection, which may come a backoff step after the restart).
                expect_eq(sa["published"] + sa["publish_failed"], total, f"A: acknowledged + failed publishes ({sa})")
                expect(sa["published"] >= before_kill, f"A: publishes before the kill acknowledged: {sa}")
                expect(sa["publish_failed"] >= during_outage - at_kill - 5,
                       f"A: publishes during the outage counted as failed: {sa}, {during_outage - at_kill} sent")
                expect(sa["outages"] == 1 and sa["link_up"], f"A: one outage, link up again: {sa}")
            run_then_check_one_outage_logged(run, redis, {"A": a, "B": b}, "down (")
    finally:
        redis.stop()


def metrics(port, promtool=False):
    """The /metrics samples of an instance started with --metrics-allow 127.0.0.0/8, as {name: value}; with
    promtool=True the exposition is also checked by promtool (when installed: Debian package prometheus)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        text = response.read().decode()
    if promtool and shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=WAIT)
        expect_eq((check.returncode, check.stdout + check.stderr), (0, ""), "promtool check metrics")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def redis_stopped_with_sigstop_is_detected_by_the_keepalive_and_the_link_recovers():
    """SIGSTOP: Redis keeps its connections open and answers nothing. Only the keepalive notices: each instance
    takes the link down within the bound (metric and one log line), local delivery goes on, and after SIGCONT
    the link comes back, the subscriptions are restored and cross-instance delivery resumes."""
    redis = Redis()
    try:
        with instance(redis, "--redis-keepalive", str(KEEPALIVE_MS), "--metrics-allow", "127.0.0.0/8") as a, \
                instance(redis, "--redis-keepalive", str(KEEPALIVE_MS), "--metrics-allow", "127.0.0.0/8") as b:
            async def run():
                sub_a, sub_b = await subscribe(a.port, "ticks"), await subscribe(b.port, "ticks")
                await wait_channels(a.port, 1)
                await wait_channels(b.port, 1)
                pub_a = await ws_checks.connect(f"ws://127.0.0.1:{a.port}/")
                pub_b = await ws_checks.connect(f"ws://127.0.0.1:{b.port}/")
                # Idle for several intervals: the PINGs of both connections (one of them in subscribed mode) are
                # answered, so a live link is never dropped.
                await asyncio.sleep(8 * KEEPALIVE_MS / 1000)
                for server in (a, b):
                    m = metrics(server.port, promtool=True)
                    expect_eq((m["edgews_redis_link_up"], m["edgews_redis_ping_timeouts_total"],
                               m["edgews_redis_link_outages_total"]), (1, 0, 0),
                              "link up, no keepalive timeout, no outage while Redis answers")
                await pub_a.send("pub ticks A:0")
                expect_eq(await ws_checks.recv(sub_b), "A:0", "B's subscriber before the stop")
                expect_eq(await ws_checks.recv(sub_a), "A:0", "A's subscriber before the stop")

                redis.pause()
                stopped = time.monotonic()
                down = await asyncio.to_thread(wait_until, lambda: all(
                    metrics(s.port)["edgews_redis_link_up"] == 0 for s in (a, b)), WAIT, 0.02)
                detected = time.monotonic() - stopped
                expect(down, "the link never went down while Redis was stopped")
                expect(detected <= DETECTION_BOUND, f"link down after {detected:.2f}s (bound {DETECTION_BOUND}s)")
                for server in (a, b):
                    expect(metrics(server.port)["edgews_redis_ping_timeouts_total"] >= 1,
                           "keepalive timeouts counted")
                # Local delivery goes on while Redis is stopped.
                for i in range(1, 6):
                    await pub_a.send(f"pub ticks A:{i}")
                    expect_eq(await ws_checks.recv(sub_a), f"A:{i}", "A's subscriber while Redis is stopped")
                await asyncio.sleep(1.0)  # several reconnection attempts meet the stopped Redis

                redis.resume()
                await wait_channels(a.port, 1)
                await wait_channels(b.port, 1)
                await pub_a.send("pub ticks A:after")
                expect_eq(await ws_checks.recv(sub_b), "A:after", "B's subscriber gets A's message after SIGCONT")
                await pub_b.send("pub ticks B:after")
                expect_eq(await ws_checks.recv(sub_a), "A:after", "A's own message, locally")
                expect_eq(await ws_checks.recv(sub_a), "B:after", "A's subscriber gets B's message after SIGCONT")
                for server in (a, b):
                    s = (await stats(server.port))["redis"]
                    expect(s["link_up"] and s["outages"] == 1 and s["ping_timeouts"] >= 1,
                           f"port {server.port}: one outage, detected by the keepalive, link up again: {s}")
                for ws in (sub_a, sub_b, pub_a, pub_b):
                    await ws.close()
            run_then_check_one_outage_logged(run, redis, {"A": a, "B": b}, "down (no answer to PING")
    finally:
        redis.stop()


if __name__ == "__main__":
    run_checks([thousand_subscribers_on_two_instances_receive_every_message_in_order,
                redis_restart_during_traffic_keeps_local_delivery_and_restores_subscriptions,
                redis_stopped_with_sigstop_is_detected_by_the_keepalive_and_the_link_recovers])
