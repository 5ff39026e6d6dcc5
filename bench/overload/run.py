#!/usr/bin/python3
"""The overload benchmark: honest clients beside hostile ones, against edgews and peer servers.

    bench/overload/run.py [BUILD_DIR] [--servers edgews,uws,websocketpp] [--duration 20] [--after 30] ...

For each server (pinned to core 0; the clients on core 1, the hostile ones at the lowest CPU priority so that they
do not delay the honest ones' generator):
  1. baseline: the honest load alone (`edgews load`, open loop, every echo verified by hash and sequence);
  2. the mix: the same honest load while edgews_hostile runs its kinds (slowloris, huge frames, garbage,
     half frames with reset, floods that never read), each switchable (--slowloris 0 turns one off);
  3. after: the server is watched for --after seconds once the hostile clients are gone.
It prints the honest clients' p50 / p99 / max and failures (baseline and under the mix), the server's RSS and
open descriptors (before, at peak, after), what the hostile clients saw (closes by code, HTTP statuses,
survivors), and for edgews what /metrics counted (closes by code, refusals, throttling). Raw JSON in --out.
Every phase is bounded in time; the servers and clients it started are stopped by PID.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def server_commands(build, edgews_args):
    peers = os.path.join(build, "bench", "load", "peers")
    return {
        "edgews": [os.path.join(build, "tools", "edgews"), "serve", "--port", "0", "--metrics-port", "0",
                   "--log-level", "warn"] + edgews_args,
        "uws": [os.path.join(peers, "uws_echo"), "0"],
        "websocketpp": [os.path.join(peers, "websocketpp_echo"), "0"],
        "beast": [os.path.join(peers, "beast_echo"), "0"],
    }


class Sampler(threading.Thread):
    """RSS and open descriptors of one process, every 0.5 s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop_event = pid, [], threading.Event()

    def read(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            return time.monotonic(), rss, fds
        except (OSError, AttributeError):
            return None

    def run(self):
        while not self.stop_event.wait(0.5):
            s = self.read()
            if s:
                self.samples.append(s)

    def between(self, start, end):
        return [s for s in self.samples if start <= s[0] <= end]


def start_server(name, command, log):
    proc = subprocess.Popen(["taskset", "-c", "0"] + command, stdout=subprocess.PIPE, stderr=log, text=True)
    ports = []
    deadline = time.monotonic() + 10
    line = proc.stdout.readline()
    ports.append(int(line.split()[-1]))
    if name == "edgews":  # "edgews: metrics on port N"
        ports.append(int(proc.stdout.readline().split()[-1]))
    if time.monotonic() > deadline or proc.poll() is not None:
        raise RuntimeError(f"{name} did not start")
    # Keep reading its stdout so that it never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc, ports


def honest(build, port, seconds, args, json_path):
    edgews = os.path.join(build, "tools", "edgews")
    cmd = ["taskset", "-c", "1", edgews, "load", f"ws://127.0.0.1:{port}/", "--connections", str(args.connections),
           "--rate", str(args.rate), "--size", str(args.size), "--inflight", str(args.inflight), "--duration",
           str(seconds), "--warmup", "1", "--connect-timeout", "5", "--json", json_path, "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


GAUGES = ("edgews_connections_open", "edgews_connections_throttled", "edgews_connections_paused",
          "edgews_memory_bytes", "edgews_memory_budget_bytes")


def metrics(port, gauges=None):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError as e:
        return [f"(metrics unavailable: {e})"]
    keep = ("edgews_connections_closed_total", "edgews_handshakes_refused_total", "edgews_backpressure_actions_total",
            "edgews_accepts_shed_total", "edgews_connections_open", "edgews_memory", "edgews_read",
            "edgews_paused", "edgews_throttled", "edgews_admission", "edgews_rate")
    lines = []
    for line in text.splitlines():
        if gauges is not None:
            if line.split(" ")[0] in gauges:
                lines.append(line)
        elif line.startswith(keep) and not line.rstrip().endswith(" 0"):
            lines.append(line)
    return lines


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


def latency(result):
    if not result:
        return "no result", "", "", ""
    lat = result["latency_us"]
    return (f"{lat['p50'] / 1000:.2f} ms", f"{lat['p99'] / 1000:.2f} ms", f"{lat['max'] / 1000:.2f} ms",
            f"{result['errors_total']} errors, {result['messages_per_s']:.0f} msgs/s")


def run_server(name, command, args, out):
    log = open(os.path.join(out, f"{name}.log"), "w")
    proc, ports = start_server(name, command, log)
    sampler = Sampler(proc.pid)
    sampler.start()
    report = {"server": name}
    try:
        port = ports[0]
        time.sleep(1)
        base_json = os.path.join(out, f"{name}-baseline.json")
        honest(args.build, port, args.baseline, args, base_json).wait(timeout=args.baseline + 30)
        report["baseline"] = read_json(base_json)

        time.sleep(1)
        before = sampler.read()
        t_mix = time.monotonic()
        hostile_json = os.path.join(out, f"{name}-hostile.json")
        # The hostile clients share the honest ones' core at the lowest priority: the honest latency then measures
        # how the server treats them, not how the two generators share a core.
        hostile_cmd = ["nice", "-n", "19", "taskset", "-c", "1",
                       os.path.join(args.build, "bench", "overload", "edgews_hostile"),
                       "--port", str(port), "--duration", str(args.duration), "--json", hostile_json,
                       "--slowloris", str(args.slowloris), "--huge", str(args.huge), "--garbage", str(args.garbage),
                       "--reset", str(args.reset), "--flood", str(args.flood), "--sources", str(args.sources)]
        hostile = subprocess.Popen(hostile_cmd, stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the hostile connections are in place before the honest ones measure
        mix_json = os.path.join(out, f"{name}-mix.json")
        honest(args.build, port, max(1, args.duration - 3), args, mix_json).wait(timeout=args.duration + 30)
        # While the hostile clients are still there: the gauges of what is held (throttled, paused, memory).
        gauges_seen = metrics(ports[1], GAUGES) if name == "edgews" else []
        hostile_table, _ = hostile.communicate(timeout=args.duration + 60)
        t_hostile_gone = time.monotonic()
        report["mix"] = read_json(mix_json)
        report["hostile"] = read_json(hostile_json)

        time.sleep(args.after)
        after = sampler.read()
        during = sampler.between(t_mix, t_hostile_gone + 1)
        peak_rss = max([s[1] for s in during] + [before[1]])
        peak_fds = max([s[2] for s in during] + [before[2]])
        report["rss"] = {"before": before[1], "peak": peak_rss, "after": after[1]}
        report["fds"] = {"before": before[2], "peak": peak_fds, "after": after[2]}
        report["metrics"] = metrics(ports[1]) if name == "edgews" else []

        print(f"\n### {name}\n")
        print("| honest clients | p50 | p99 | max | result |\n|---|---|---|---|---|")
        print("| alone | " + " | ".join(latency(report["baseline"])) + " |")
        print("| with the mix | " + " | ".join(latency(report["mix"])) + " |")
        print(f"\n| server | before | peak | {args.after} s after |\n|---|---|---|---|")
        print(f"| RSS | {mib(before[1])} | {mib(peak_rss)} | {mib(after[1])} |")
        print(f"| open descriptors | {before[2]} | {peak_fds} | {after[2]} |")
        print("\nhostile clients:\n```\n" + hostile_table.rstrip() + "\n```")
        report["metrics_during_mix"] = gauges_seen
        if gauges_seen:
            print("edgews /metrics gauges near the end of the mix:\n```\n" + "\n".join(gauges_seen) + "\n```")
        if report["metrics"]:
            print("edgews /metrics after the run (non-zero):\n```\n" + "\n".join(report["metrics"]) + "\n```")
        sys.stdout.flush()
    finally:
        sampler.stop_event.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build", nargs="?", default=os.path.join(ROOT, "build", "release"))
    p.add_argument("--servers", default="edgews,uws,websocketpp",
                   help="comma-separated: edgews, uws, websocketpp, beast (peers missing from the build are skipped)")
    p.add_argument("--edgews-args", default="", help="extra flags for edgews serve, e.g. '--max-backpressure 1048576'")
    p.add_argument("--duration", type=int, default=20, help="seconds of the mix (default 20)")
    p.add_argument("--baseline", type=int, default=10, help="seconds of the honest load alone (default 10)")
    p.add_argument("--after", type=int, default=30, help="seconds watched after the mix (default 30)")
    p.add_argument("--rate", type=int, default=20000, help="honest messages/s in total (default 20000)")
    p.add_argument("--connections", type=int, default=50, help="honest connections (default 50)")
    p.add_argument("--size", type=int, default=64, help="honest message size (default 64)")
    p.add_argument("--inflight", type=int, default=8, help="honest messages in flight per connection (default 8)")
    for kind, default in (("slowloris", 1500), ("huge", 200), ("garbage", 100), ("reset", 100), ("flood", 100)):
        p.add_argument(f"--{kind}", type=int, default=default, help=f"edgews_hostile --{kind} (default {default})")
    p.add_argument("--sources", type=int, default=1, help="hostile source addresses 127.0.0.2.. (default 1)")
    p.add_argument("--out", default=None, help="raw results (default BUILD/overload-results)")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    out = args.out or os.path.join(args.build, "overload-results")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for tool in (os.path.join(args.build, "tools", "edgews"), os.path.join(args.build, "bench", "overload", "edgews_hostile")):
        if not os.access(tool, os.X_OK):
            sys.exit(f"build first: cmake --build --preset release (missing {tool})")
    commands = server_commands(args.build, args.edgews_args.split())
    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}; {os.cpu_count()} cores; "
              f"honest: {args.connections} connections, {args.rate} msgs/s of {args.size} B; mix for {args.duration} s")
    reports = []
    for name in args.servers.split(","):
        if name not in commands:
            sys.exit(f"unknown server '{name}' (edgews, uws, websocketpp, beast)")
        if not os.access(commands[name][0], os.X_OK):
            print(f"\n### {name}\n\nskipped: {commands[name][0]} is not built (bench/load/peers.sh builds the peers)")
            continue
        reports.append(run_server(name, commands[name], args, out))
    with open(os.path.join(out, "overload.json"), "w") as f:
        json.dump(reports, f, indent=1)
    failed = [r["server"] for r in reports if r["server"] == "edgews" and (not r.get("mix") or r["mix"]["errors_total"])]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
