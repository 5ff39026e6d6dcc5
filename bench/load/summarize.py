#!/usr/bin/env python3
"""Summarizes bench/load/run.sh output: medians per scenario and server, ratios taken within each round."""
import glob
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    names = {"a": "(a) 100 conns, 16 B, 1 in flight", "b": "(b) 100 conns, 16 B, 16 in flight",
             "c": "(c) 10 conns, 64 KiB binary", "f": "(f) scenario (b), edgews 1 vs 2 threads"}
    print("| scenario | server | msgs/s (median) | min..max | server CPU us/msg | client CPU us/msg | p50 us | p99 us "
          "| p99.9 us | errors | ratio msgs/s | ratio CPU/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s, pair in (("a", ("edgews", "floor")), ("b", ("edgews", "floor")), ("c", ("edgews", "floor")),
                    ("f", ("edgews1", "edgews2"))):
        runs = {}
        for server in pair:
            runs[server] = [load(p) for p in sorted(glob.glob(os.path.join(out, "%s-%s-*.json" % (s, server))))]
        if not all(runs.values()):
            continue
        # Ratios within the same round: first server / second server.
        ratio_rate, ratio_cpu = [], []
        for r in range(1, rounds + 1):
            try:
                x = load(os.path.join(out, "%s-%s-%d.json" % (s, pair[0], r)))
                y = load(os.path.join(out, "%s-%s-%d.json" % (s, pair[1], r)))
            except FileNotFoundError:
                continue
            if y["messages_per_s"] > 0:
                ratio_rate.append(x["messages_per_s"] / y["messages_per_s"])
            if y["server"]["cpu_us_per_msg"] > 0:
                ratio_cpu.append(x["server"]["cpu_us_per_msg"] / y["server"]["cpu_us_per_msg"])
        for i, server in enumerate(pair):
            rs = runs[server]
            rate = [r["messages_per_s"] for r in rs]
            print("| %s | %s | %.0f | %.0f..%.0f | %.2f | %.2f | %.1f | %.1f | %.1f | %d | %s | %s |" % (
                names[s], server, med(rate), min(rate), max(rate),
                med([r["server"]["cpu_us_per_msg"] for r in rs]), med([r["client"]["cpu_us_per_msg"] for r in rs]),
                med([r["latency_us"]["p50"] for r in rs]), med([r["latency_us"]["p99"] for r in rs]),
                med([r["latency_us"]["p999"] for r in rs]), sum(r["errors_total"] for r in rs),
                "%.3f" % med(ratio_rate) if i == 0 else "", "%.3f" % med(ratio_cpu) if i == 0 else ""))
    print()
    print("| idle connections | server | open | RSS before KiB | RSS after KiB | bytes per connection |")
    print("|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(out, "d*-*.json"))):
        r = load(path)
        n = os.path.basename(path)[1:].split("-")[0]
        server = os.path.basename(path).split("-")[1][:-5]
        print("| %s | %s | %d | %d | %d | %.0f |" % (n, server, r["open"], r["server"]["rss_kib_before"],
                                                     r["server"]["rss_kib"], r["server"]["rss_bytes_per_connection"]))


if __name__ == "__main__":
    main()
