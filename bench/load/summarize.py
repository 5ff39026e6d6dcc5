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


def in_round_ratios(out, scenario, x_server, y_server, rounds):
    """x / y of msgs/s and of server CPU per message, one pair per round in which both ran."""
    ratio_rate, ratio_cpu = [], []
    for r in range(1, rounds + 1):
        try:
            x = load(os.path.join(out, "%s-%s-%d.json" % (scenario, x_server, r)))
            y = load(os.path.join(out, "%s-%s-%d.json" % (scenario, y_server, r)))
        except FileNotFoundError:
            continue
        if y["messages_per_s"] > 0:
            ratio_rate.append(x["messages_per_s"] / y["messages_per_s"])
        if y["server"]["cpu_us_per_msg"] > 0:
            ratio_cpu.append(x["server"]["cpu_us_per_msg"] / y["server"]["cpu_us_per_msg"])
    return ratio_rate, ratio_cpu


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    names = {"a": "(a) 100 conns, 16 B, 1 in flight", "b": "(b) 100 conns, 16 B, 16 in flight",
             "c": "(c) 10 conns, 64 KiB binary", "f": "(f) scenario (b), edgews 1 vs 2 threads"}
    print("| scenario | server | msgs/s (median) | min..max | server CPU us/msg | client CPU us/msg | p50 us | p99 us "
          "| p99.9 us | errors | ratio msgs/s | ratio CPU/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    pairs = [("a", ("edgews", "floor")), ("b", ("edgews", "floor")), ("c", ("edgews", "floor")),
             ("f", ("edgews1", "edgews2"))]
    # BASELINE=... (an older edgews in the same rounds): edgews / baseline, rows labelled "edgews vs baseline".
    pairs += [(s, ("edgews", "baseline")) for s in "abc" if glob.glob(os.path.join(out, "%s-baseline-*.json" % s))]
    for s, pair in pairs:
        runs = {}
        for server in pair:
            runs[server] = [load(p) for p in sorted(glob.glob(os.path.join(out, "%s-%s-*.json" % (s, server))))]
        if not all(runs.values()):
            continue
        # Ratios within the same round: first server / second server.
        ratio_rate, ratio_cpu = in_round_ratios(out, s, pair[0], pair[1], rounds)
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


def peers(out, rounds, results, servers):
    """Peer comparison (bench/load/peers.sh): one table per scenario, ratios to edgews within each round, and
    peers.dat for peers.gp (one row per server: msgs/s and server CPU us/msg per scenario). Scenario (e) is (a)
    and (b) over wss:// ("ea", "eb" in file names), against edgews over wss:// in the same round."""
    scenarios = ("a", "b", "c", "ea", "eb")
    names = {"a": "(a) 100 conns, 16 B, 1 in flight", "b": "(b) 100 conns, 16 B, 16 in flight",
             "c": "(c) 10 conns, 64 KiB binary", "ea": "(e) = (a) over TLS", "eb": "(e) = (b) over TLS"}
    lines = ["| scenario | server | msgs/s (median) | min..max | server CPU us/msg | p50 us | p99 us | errors "
             "| msgs/s / edgews | CPU/msg / edgews |", "|---|---|---|---|---|---|---|---|---|---|"]
    dat = {s: {} for s in servers}
    best = {}  # (e): the TLS peer with the most msgs/s and the one with the least CPU/msg, by median
    for sc in scenarios:
        for server in servers:
            rs = [load(p) for p in sorted(glob.glob(os.path.join(out, "%s-%s-*.json" % (sc, server))))]
            if not rs:
                continue
            ratio_rate, ratio_cpu = in_round_ratios(out, sc, server, "edgews", rounds)
            rate = [r["messages_per_s"] for r in rs]
            cpu = med([r["server"]["cpu_us_per_msg"] for r in rs])
            dat[server][sc] = (med(rate), cpu)
            if sc.startswith("e") and server != "edgews":
                b = best.setdefault(sc, {})
                if "rate" not in b or med(ratio_rate) > b["rate"][1]:
                    b["rate"] = (server, med(ratio_rate))
                if "cpu" not in b or med(ratio_cpu) < b["cpu"][1]:
                    b["cpu"] = (server, med(ratio_cpu))
            lines.append("| %s | %s | %.0f | %.0f..%.0f | %.2f | %.1f | %.1f | %d | %.3f | %.3f |" % (
                names[sc], server, med(rate), min(rate), max(rate), cpu,
                med([r["latency_us"]["p50"] for r in rs]), med([r["latency_us"]["p99"] for r in rs]),
                sum(r["errors_total"] for r in rs), med(ratio_rate), med(ratio_cpu)))
    if best:
        lines.append("")
        for sc in ("ea", "eb"):
            b = best.get(sc)
            if not b:
                continue
            lines.append("%s, edgews against the best TLS peer (target: at least 1.5x): msgs/s %.2fx %s; CPU per "
                         "message: %s costs %.2fx edgews'." % (names[sc], 1 / b["rate"][1], b["rate"][0],
                                                              b["cpu"][0], b["cpu"][1]))
    lines += paired_peer_lines(out, servers, names)
    tls = []
    for server in servers:
        path = os.path.join(out, "tls-%s.txt" % server)
        if os.path.exists(path):
            with open(path) as f:
                tls.append("%s %s" % (server, f.read().strip() or "(openssl s_client saw nothing)"))
    if tls:
        lines += ["", "TLS negotiated with an OpenSSL 3 client offering its defaults: " + "; ".join(tls) + "."]
    lines += ["", "| (d) idle connections | server | open | RSS before KiB | RSS after KiB | bytes per connection "
              "| / edgews |", "|---|---|---|---|---|---|---|"]
    base = None
    for server in servers:
        path = os.path.join(out, "d10000-%s.json" % server)
        if not os.path.exists(path):
            continue
        r = load(path)
        per = r["server"]["rss_bytes_per_connection"]
        if server == "edgews":
            base = per
        lines.append("| 10000 | %s | %d | %d | %d | %.0f | %s |" % (
            server, r["open"], r["server"]["rss_kib_before"], r["server"]["rss_kib"], per,
            "%.2f" % (per / base) if base else ""))
    checks = []
    for server in servers:
        for prefix, what in (("check-", ""), ("check-tls-", " TLS")):
            for mode in ("text", "binary"):
                path = os.path.join(out, "%s%s--%s.json" % (prefix, server, mode))
                if os.path.exists(path):
                    r = load(path)
                    if r["errors_total"] or r["messages_per_s"] <= 0:
                        checks.append("%s failed the%s %s echo check (%d errors)" % (server, what, mode,
                                                                                   r["errors_total"]))
                elif not what:
                    checks.append("%s: no %s echo check" % (server, mode))
    tls_checked = [s for s in servers if os.path.exists(os.path.join(out, "check-tls-%s--text.json" % s))]
    lines += ["", "Echo checks (text and binary, before measuring; over TLS too for %s): %s." % (
        ", ".join(tls_checked) or "none", "; ".join(checks) or "all passed")]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(results, "peers.md"), "w") as f:
        f.write(text)
    with open(os.path.join(results, "peers.dat"), "w") as f:
        f.write("# server %s %s (medians; msgs/s and server CPU us/msg; nan: not run)\n" % (
            " ".join(sc + "_msgs" for sc in scenarios), " ".join(sc + "_cpu" for sc in scenarios)))
        for server in servers:
            d = dat[server]
            f.write("%s %s %s\n" % (server, " ".join("%.1f" % d.get(sc, (float("nan"), 0))[0] for sc in scenarios),
                                    " ".join("%.3f" % d.get(sc, (0, float("nan")))[1] for sc in scenarios)))


def paired(out, rounds, reference="floor"):
    """bench/load/paired.sh: edgews and the reference (the floor, or uWS over TLS) (and a baseline) loaded at once at
    the same rate, per round."""
    names = {"a": "(a) 100 conns, 16 B, 1 in flight", "b": "(b) 100 conns, 16 B, 16 in flight",
             "c": "(c) 10 conns, 64 KiB binary"}
    scenarios = [s for s in "abc" if glob.glob(os.path.join(out, "%s-edgews-*.json" % s))]
    print("| scenario | offered msgs/s | server | msgs/s (median) | server CPU us/msg (median) | min..max | p99 us "
          "| errors | CPU/msg / %s, in-round: median [rounds] |" % reference)
    print("|---|---|---|---|---|---|---|---|---|")
    for s in scenarios:
        for server in ("edgews", reference, "baseline"):
            rs = [load(p) for p in sorted(glob.glob(os.path.join(out, "%s-%s-*.json" % (s, server))))]
            if not rs:
                continue
            cpu = [r["server"]["cpu_us_per_msg"] for r in rs]
            ratio = ""
            if server != reference:
                _, ratio_cpu = in_round_ratios(out, s, server, reference, rounds)
                ratio = "%.3f [%s]" % (med(ratio_cpu), " ".join("%.3f" % x for x in ratio_cpu))
            print("| %s | %.0f | %s | %.0f | %.2f | %.2f..%.2f | %.1f | %d | %s |" % (
                names[s], rs[0]["rate"], server, med([r["messages_per_s"] for r in rs]), med(cpu), min(cpu),
                max(cpu), med([r["latency_us"]["p99"] for r in rs]), sum(r["errors_total"] for r in rs), ratio))
    if glob.glob(os.path.join(out, "a-baseline-*.json")):
        print()
        print("| scenario | CPU/msg edgews / baseline, in-round: median [rounds] |")
        print("|---|---|")
        for s in scenarios:
            _, ratio_cpu = in_round_ratios(out, s, "edgews", "baseline", rounds)
            print("| %s | %.3f [%s] |" % (names[s], med(ratio_cpu), " ".join("%.3f" % x for x in ratio_cpu)))


def pair_rate(out, scenario, server, default):
    """The fixed rate for edgews and `server` loaded together: the scenario's default, or half the slower one's
    closed-loop median msgs/s in the same run, whichever is lower (both must fit on one core together)."""
    rates = []
    for name in (server, "edgews"):
        rs = [load(p)["messages_per_s"] for p in glob.glob(os.path.join(out, "%s-%s-*.json" % (scenario, name)))]
        if rs:
            rates.append(med(rs))
    rate = int(min([default] + [r / 2 for r in rates]))
    if rate < 200:  # edgews load needs at least 2 messages/s per connection; 0 would mean closed loop
        print("summarize.py: %s managed only %s msgs/s closed loop in (%s); pairing it at 200 msgs/s" % (
            server, " / ".join("%.0f" % r for r in rates), scenario), file=sys.stderr)
        rate = 200
    return rate


def paired_peer_lines(out, servers, names):
    """peers.sh's paired section: edgews and one peer loaded at the same time at the same rate; the peer's server
    CPU per message over edgews' in each round."""
    lines = ["", "Paired at equal offered load (edgews and one other server loaded at the same time, the same fixed "
             "rate for both, each by its own load generator on core 1; ratios within each round):", "",
             "| scenario | server | offered msgs/s | edgews CPU us/msg | server CPU us/msg | CPU/msg / edgews: median "
             "[rounds] | p99 us edgews / server | errors |", "|---|---|---|---|---|---|---|---|"]
    found = False
    for sc in ("a", "b", "c", "ea", "eb"):
        for server in servers:
            ratios, mine, theirs, errors, rate, p99 = [], [], [], 0, None, ([], [])
            for path in sorted(glob.glob(os.path.join(out, "p%s-%s-%s-*.json" % (sc, server, server)))):
                other = load(path)
                try:
                    edgews = load(path.replace("-%s-%s-" % (server, server), "-%s-edgews-" % server))
                except FileNotFoundError:
                    continue
                rate = other["rate"]
                errors += other["errors_total"] + edgews["errors_total"]
                e, o = edgews["server"]["cpu_us_per_msg"], other["server"]["cpu_us_per_msg"]
                mine.append(e)
                theirs.append(o)
                p99[0].append(edgews["latency_us"]["p99"])
                p99[1].append(other["latency_us"]["p99"])
                if e > 0:
                    ratios.append(o / e)
            if not ratios:
                continue
            found = True
            lines.append("| %s | %s | %.0f | %.2f | %.2f | %.3f [%s] | %.0f / %.0f | %d |" % (
                names[sc], server, rate, med(mine), med(theirs), med(ratios), " ".join("%.3f" % x for x in ratios),
                med(p99[0]), med(p99[1]), errors))
    return lines if found else []


if __name__ == "__main__":
    if sys.argv[1] == "--peers":
        peers(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif sys.argv[1] == "--pair-rate":
        print(pair_rate(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    elif sys.argv[1] == "--paired":
        paired(sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
    else:
        main()
