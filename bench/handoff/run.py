#!/usr/bin/env python3
"""Replace a running `edgews serve` under load, by live hand-off and then by drain, and report what the clients saw.

`edgews load` keeps N connections busy at a fixed rate (sequence numbers and hashes checked on every echo). After
--replace-after seconds a second server process replaces the first:
  none:    no replacement (the baseline for the longest pause);
  handoff: the new one is started with the same --handoff PATH; it takes the listener and every connection;
  drain:   the new one is started on the same port (SO_REUSEPORT) and the old one gets SIGTERM with
           --drain-seconds: its connections are closed with 1012 over the window (`edgews load` does not
           reconnect, so each close is counted and the connection stays closed).
Printed per mode: closes seen by the clients, lost / duplicated / reordered / corrupted messages, the longest wait
any message saw (the load's max latency: the longest pause), and for the hand-off the time from the new process's
"took over" line to its "adopted N connections" line (from its log timestamps).

    bench/handoff/run.py [--connections 1000] [--rate 20000] [--duration 8] [--replace-after 3]

10,000 connections fit this machine's 20,000-descriptor limit (ulimit -n): each process holds one descriptor
per connection (the load generator N, each server N), and the old server at most 256 duplicates per reactor
while it offers connections.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDGEWS = os.environ.get("EDGEWS_BIN", os.path.join(ROOT, "build", "release", "tools", "edgews"))


def start_server(args, log_path):
    log = open(log_path, "wb")
    proc = subprocess.Popen([EDGEWS, "serve"] + args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        m = re.match(r"edgews: listening on ports? (\d+)", line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"edgews serve {' '.join(args)} printed no port; see {log_path}")


def stamp(line):
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def run(mode, opts, tmp):
    path = os.path.join(tmp, "handoff.sock")
    common = ["--host", "127.0.0.1", "--threads", str(opts.threads), "--log-level", "info"]
    if mode == "handoff":
        old_args = common + ["--port", "0", "--handoff", path]
    elif mode == "none":
        old_args = common + ["--port", "0"]
    else:
        old_args = common + ["--port", "0", "--drain-seconds", str(opts.drain_seconds)]
    old, port = start_server(old_args, os.path.join(tmp, f"{mode}-old.log"))
    result_path = os.path.join(tmp, f"{mode}-load.json")
    load = subprocess.Popen([EDGEWS, "load", f"ws://127.0.0.1:{port}/", "--connections", str(opts.connections),
                             "--rate", str(opts.rate), "--duration", str(opts.duration), "--warmup", "1",
                             "--connect-timeout", "30", "--json", result_path, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Every connection open (the old server's log), then the warm-up, then part of the measured window.
    old_log = os.path.join(tmp, f"{mode}-old.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(old_log, "rb") as f:
            if f.read().count(b" open peer=") >= opts.connections:
                break
        time.sleep(0.2)
    time.sleep(1 + opts.replace_after)
    new_log = os.path.join(tmp, f"{mode}-new.log")
    if mode == "none":
        new, new_port = old, port
    elif mode == "handoff":
        new, new_port = start_server(old_args, new_log)
    else:
        new, new_port = start_server(common + ["--port", str(port)], new_log)
        old.send_signal(signal.SIGTERM)
    load.wait(timeout=opts.duration + opts.drain_seconds + 120)
    old_code = old.wait(timeout=opts.duration + opts.drain_seconds + 60) if mode != "none" else None
    with open(result_path) as f:
        result = json.load(f)
    new.send_signal(signal.SIGTERM)
    new.wait(timeout=30)
    handoff_ms = None
    if mode == "handoff":
        with open(new_log) as f:
            lines = f.readlines()
        took = [stamp(l) for l in lines if "handoff took over" in l]
        done = [stamp(l) for l in lines if re.search(r"handoff adopted \d+ connections", l)]
        if took and done:
            handoff_ms = (done[0] - took[0]) * 1000
    e = result["errors"]
    return {
        "mode": mode, "port_kept": new_port == port, "old_exit": old_code, "connections": result["connections"],
        "open_at_end": result.get("open"), "messages": result["messages"], "closed": e["closed_by_server"],
        "lost": e["lost"], "duplicated": e["duplicated"], "reordered": e["reordered"], "corrupted": e["corrupted"],
        "max_latency_ms": result["latency_us"]["max"] / 1000, "p99_ms": result["latency_us"]["p99"] / 1000,
        "handoff_ms": handoff_ms,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--rate", type=int, default=20000, help="messages/s in total")
    p.add_argument("--duration", type=int, default=8, help="measured seconds")
    p.add_argument("--replace-after", type=float, default=3, help="seconds into the measured window")
    p.add_argument("--drain-seconds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default="none,handoff,drain", help="none: no replacement, the baseline")
    opts = p.parse_args()
    if not os.access(EDGEWS, os.X_OK):
        sys.exit(f"no edgews binary at {EDGEWS} (build the release preset, or set EDGEWS_BIN)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in opts.modes.split(","):
            rows.append(run(mode, opts, tmp))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print("| replaced by | connections | messages | closes | lost | dup | reordered | longest pause | hand-off |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        took = f"{r['handoff_ms']:.0f} ms" if r["handoff_ms"] is not None else "-"
        print(f"| {r['mode']} | {r['connections']} | {r['messages']} | {r['closed']} | {r['lost']} | "
              f"{r['duplicated']} | {r['reordered']} | {r['max_latency_ms']:.0f} ms | {took} |")


if __name__ == "__main__":
    main()
