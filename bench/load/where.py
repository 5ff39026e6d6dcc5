#!/usr/bin/env python3
"""Tables of bench/load/where.sh: where.py OUT WINDOW ROUNDS RATE_A RATE_B RATE_C (see where.sh)."""
import glob
import json
import os
import re
import statistics
import sys
from collections import Counter

SERVERS = ("edgews", "uws", "floor", "edgews_before", "floor_before")  # those that ran
NAMES = {"a": "(a) 100 conns, 16 B, 1 in flight", "b": "(b) 100 conns, 16 B, 16 in flight",
         "c": "(c) 10 conns, 64 KiB binary"}
# x86-64 system call numbers of the calls these servers make.
SYSCALLS = {0: "read", 1: "write", 3: "close", 7: "poll", 19: "readv", 20: "writev", 44: "sendto", 45: "recvfrom",
            46: "sendmsg", 47: "recvmsg", 48: "shutdown", 228: "clock_gettime", 232: "epoll_wait",
            233: "epoll_ctl", 281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2", 299: "recvmmsg",
            307: "sendmmsg", 202: "futex", 96: "gettimeofday", 201: "time", 230: "clock_nanosleep"}
READS = {"read", "readv", "recvfrom", "recvmsg"}
WRITES = {"write", "writev", "sendto", "sendmsg"}
WAITS = {"epoll_wait", "epoll_pwait", "epoll_pwait2"}
EAGAIN = -11


def load(path):
    with open(path) as f:
        return json.load(f)


def med(values):
    return statistics.median(values) if values else float("nan")


def cpu_table(out, rounds, rates):
    print("| scenario | offered msgs/s | server | msgs/s | server CPU us/msg (median) | min..max "
          "| CPU/msg / edgews, in-round: median [rounds] | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for sc in "abc":
        for s in SERVERS:
            rs, ratios = [], []
            for r in range(1, rounds + 1):
                try:
                    mine, base = load("%s/cpu-%s-%s-%d.json" % (out, sc, s, r)), load(
                        "%s/cpu-%s-edgews-%d.json" % (out, sc, r))
                except FileNotFoundError:
                    continue
                rs.append(mine)
                ratios.append(mine["server"]["cpu_us_per_msg"] / base["server"]["cpu_us_per_msg"])
            if not rs:
                continue
            cpu = [r["server"]["cpu_us_per_msg"] for r in rs]
            print("| %s | %d | %s | %.0f | %.2f | %.2f..%.2f | %.3f [%s] | %d |" % (
                NAMES[sc], rates[sc], s, med([r["messages_per_s"] for r in rs]), med(cpu), min(cpu), max(cpu),
                med(ratios), " ".join("%.3f" % x for x in ratios), sum(r["errors_total"] for r in rs)))


def syscall_table(out, window):
    print("\nSystem calls per message (every exit in a %g s window, `perf record -e raw_syscalls:sys_exit`):\n" % window)
    print("| scenario | server | messages | reads | writes | epoll_wait | other calls | events per wait "
          "| bytes per read | reads ending EAGAIN | reads per turn | writes per turn (turns with one) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for sc in "abc":
        for s in SERVERS:
            path = "%s/sys-%s-%s.txt" % (out, sc, s)
            if not os.path.exists(path):
                continue
            msgs = load("%s/sys-%s-%s.json" % (out, sc, s))["messages_per_s"] * window
            calls = []
            with open(path) as f:
                for line in f:
                    m = re.search(r"NR (\d+) = (-?\d+)", line)
                    if m:
                        calls.append((SYSCALLS.get(int(m.group(1)), "nr%s" % m.group(1)), int(m.group(2))))
            kinds = Counter(name for name, _ in calls)
            reads = [ret for name, ret in calls if name in READS]
            waits = [ret for name, ret in calls if name in WAITS]
            turns, cur = [], None
            for name, _ in calls:
                if name in WAITS:
                    if cur is not None:
                        turns.append(cur)
                    cur = [0, 0]
                elif cur is not None and name in READS:
                    cur[0] += 1
                elif cur is not None and name in WRITES:
                    cur[1] += 1
            writing = [t[1] for t in turns if t[1]]
            n_reads = sum(kinds[k] for k in READS)
            n_writes = sum(kinds[k] for k in WRITES)
            n_waits = sum(kinds[k] for k in WAITS)
            other = ", ".join("%s %.4f" % (k, v / msgs) for k, v in sorted(kinds.items())
                              if k not in READS | WRITES | WAITS) or "-"
            good = [r for r in reads if r > 0]
            print("| %s | %s | %.0f | %.3f (%s) | %.3f (%s) | %.4f | %s | %.1f | %.0f | %.4f | %.2f | %.2f |" % (
                NAMES[sc], s, msgs, n_reads / msgs, "/".join(k for k in sorted(READS) if kinds[k]) or "-",
                n_writes / msgs, "/".join(k for k in sorted(WRITES) if kinds[k]) or "-", n_waits / msgs, other,
                statistics.mean(waits) if waits else 0, statistics.mean(good) if good else 0,
                sum(1 for r in reads if r == EAGAIN) / msgs,
                statistics.mean(t[0] for t in turns) if turns else 0,
                statistics.mean(writing) if writing else 0))


def callgrind_table(out, window, rates):
    print("\nUser-space work per message under callgrind (simulated caches and branch predictor; rate / 10, "
          "%g s window):\n" % window)
    print("| scenario | server | messages | instructions | / edgews | branches | mispredicted | data reads+writes "
          "| L1 misses (I+D) | last-level misses |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sc in "abc":
        base = None
        for s in SERVERS:
            dumps = [p for p in glob.glob("%s/cg-%s-%s.*" % (out, sc, s)) if re.search(r"\.\d+$", p)]
            if not dumps:
                continue
            events, totals = None, None
            with open(sorted(dumps)[0]) as f:
                for line in f:
                    if line.startswith("events:"):
                        events = line.split()[1:]
                    elif line.startswith("summary:") or line.startswith("totals:"):
                        totals = [int(x) for x in line.split()[1:]]
            if not events or not totals:
                continue
            e = dict(zip(events, totals))
            msgs = load("%s/cg-%s-%s.json" % (out, sc, s))["messages_per_s"] * window
            ir = e.get("Ir", 0) / msgs
            if s == "edgews":
                base = ir
            print("| %s | %s | %.0f | %.0f | %s | %.0f | %.1f | %.0f | %.1f | %.2f |" % (
                NAMES[sc], s, msgs, ir, "%.2f" % (ir / base) if base else "-",
                (e.get("Bc", 0) + e.get("Bi", 0)) / msgs, (e.get("Bcm", 0) + e.get("Bim", 0)) / msgs,
                (e.get("Dr", 0) + e.get("Dw", 0)) / msgs,
                (e.get("I1mr", 0) + e.get("D1mr", 0) + e.get("D1mw", 0)) / msgs,
                (e.get("ILmr", 0) + e.get("DLmr", 0) + e.get("DLmw", 0)) / msgs))


def main():
    out, window, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    rates = dict(zip("abc", (int(x) for x in sys.argv[4:7])))
    cpu_table(out, rounds, rates)
    syscall_table(out, window)
    callgrind_table(out, window, rates)


if __name__ == "__main__":
    main()
