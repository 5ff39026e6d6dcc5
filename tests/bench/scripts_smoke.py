#!/usr/bin/env python3
"""Short, bounded runs of the load benchmark commands, so that they keep working from a clean checkout:

    tests/bench/scripts_smoke.py BUILD_DIR

bench/load/paired.sh (plain, and with TLS=1 against uWebSockets' TLS build), bench/load/run.sh, bench/load/peers.sh,
bench/load/tls_race.sh and bench/load/client_engine.sh each run with one round of one second
(bench/load/tls_syscalls.sh with one second of handshakes) into a temporary directory (the committed results are
not touched); bench/overload/run.py runs a few
seconds of a small hostile mix against edgews and websocketpp (built by peers.sh); bench/memory/idle_after_message.py
runs with 20 connections watched for a second. Each must exit 0 and print its whole table: every scenario and server
present, every run error-free, every echo check passed. Figures are printed, never judged.
peers.sh installs the peers' Debian and npm packages and builds them into BUILD_DIR (EDGEWS_BUILD_PEERS=ON).
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHORT = {"ROUNDS": "1", "PAIRED_ROUNDS": "1", "DURATION": "1", "WARMUP": "0"}
failures = []


def run(script, build, tmp, timeout, **env):
    print("== %s" % script, flush=True)
    e = dict(os.environ, **SHORT, OUT=os.path.join(tmp, os.path.basename(script) + ".out"), **env)
    # Its own process group: on a timeout the servers it started go too, not only the script.
    p = subprocess.Popen([os.path.join(ROOT, script), build], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        failures.append("%s did not finish within %d s" % (script, timeout))
    print(out[-6000:], flush=True)
    if p.returncode != 0:
        failures.append("%s exited with %d" % (script, p.returncode))
    if "errors counted" in out:
        failures.append("%s: a load run counted errors" % script)
    return out


def rows(text):
    """Table rows as lists of cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| (")]


def expect_rows(script, text, pairs, errors_column, number_columns=()):
    """Every (scenario prefix, server) pair has a row, every row's errors cell is 0, and the given columns hold
    numbers wherever they are filled (a ratio that could not be taken prints nan)."""
    table = rows(text)
    for prefix, server in pairs:
        if not any(r[0].startswith(prefix) and server in r[1:3] for r in table):
            failures.append("%s: no row for %s %s" % (script, prefix, server))
    for r in table:
        if len(r) > errors_column and r[errors_column] not in ("0", ""):
            failures.append("%s: errors in row %s" % (script, " | ".join(r[:3])))
        for c in number_columns:
            cell = r[c].split()[0] if len(r) > c and r[c] else ""
            if cell and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", cell):
                failures.append("%s: column %d of row %s is %r, not a number" % (script, c, " | ".join(r[:3]),
                                                                               r[c]))


def main():
    build = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        out = run("bench/load/paired.sh", build, tmp, 300)
        expect_rows("paired.sh", out, [(s, n) for s in ("(a)", "(b)", "(c)") for n in ("edgews", "floor")], 7,
                    (3, 4, 8))

        out = run("bench/load/run.sh", build, tmp, 600)
        expect_rows("run.sh", out, [(s, n) for s in ("(a)", "(b)", "(c)") for n in ("edgews", "floor")] +
                    [("(f)", "edgews1"), ("(f)", "edgews2")], 9, (2, 4, 10, 11))
        for n in ("10000", "19000"):
            for server in ("edgews", "floor"):
                if not re.search(r"^\| %s \| %s \| %s \|" % (n, server, n), out, re.M):
                    failures.append("run.sh: (d) %s idle connections not all open for %s" % (n, server))

        results = os.path.join(tmp, "peer-tables")
        run("bench/load/peers.sh", build, tmp, 1500, RESULTS=results)
        try:
            with open(os.path.join(results, "peers.md")) as f:
                md = f.read()
        except FileNotFoundError:
            md = ""
            failures.append("peers.sh wrote no peers.md")
        servers = ("edgews", "floor", "uws", "beast", "websocketpp", "lws", "node_ws", "python")
        tls = [s for s in servers if s != "floor"]
        closed, paired = md.split("Paired at equal offered load")[0], md.partition("Paired at equal offered load")[2]
        expect_rows("peers.sh", closed, [(s, n) for s in ("(a)", "(b)", "(c)") for n in servers] +
                    [("(e) = (a)", n) for n in tls] + [("(e) = (b)", n) for n in tls], 7, (2, 4, 8, 9))
        expect_rows("peers.sh paired", paired.split("TLS negotiated")[0],
                    [(s, n) for s in ("(a)", "(b)", "(c)") for n in servers if n != "edgews"] +
                    [(s, n) for s in ("(e) = (a)", "(e) = (b)") for n in tls if n != "edgews"], 7, (3, 4, 5))
        for server in servers:
            if not re.search(r"^\| 10000 \| %s \| 10000 \|" % server, md, re.M):
                failures.append("peers.sh: (d) 10000 idle connections not all open for %s" % server)
        if "Echo checks" not in md or "all passed" not in md.split("Echo checks")[-1]:
            failures.append("peers.sh: echo checks did not all pass")
        if not os.path.exists(os.path.join(results, "peers.svg")):
            failures.append("peers.sh drew no plot")

        # uws_echo_tls was built by peers.sh above.
        out = run("bench/load/tls_race.sh", build, tmp, 120, HS_TIME="1", IDLE="200", SETTLE_MS="300")
        for server in ("edgews", "uws"):
            if not re.search(r"^%s: New, TLSv1\.3, .*; key exchange X25519.*; 2 session tickets$" % server, out, re.M):
                failures.append("tls_race.sh: %s did not settle on TLS 1.3, X25519 and two tickets" % server)
        if not re.search(r"^\| 1 \| .* \| 0, 0 \|$", out, re.M):
            failures.append("tls_race.sh: no round row, or handshakes failed or idle connections did not all open")

        out = run("bench/load/paired.sh", build, tmp, 300, TLS="1")
        expect_rows("paired.sh TLS=1", out, [(s, n) for s in ("(a)", "(b)", "(c)") for n in ("edgews", "uws")], 7,
                    (3, 4, 8))

        out = run("bench/load/tls_syscalls.sh", build, tmp, 120, HS_TIME="1")
        for server in ("edgews", "uws"):
            row = r"^\| %s \| [1-9][0-9]* \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \([0-9.]+\) \|$" % server
            if not re.search(row, out, re.M):
                failures.append("tls_syscalls.sh: no row of handshakes counted for %s" % server)

        out = run("bench/load/client_engine.sh", build, tmp, 180)
        table = rows(out)
        for scenario in ("(a)", "(b)", "(c)", "(e)", "(f)"):
            row = [r for r in table if r[0].startswith(scenario)]
            if len(row) != 1 or len(row[0]) != 10:
                failures.append("client_engine.sh: no row for %s" % scenario)
                continue
            r = row[0]
            numbers = r[1:4] + r[5:8]
            if (r[8] != "1, 1" or r[9] != "0" or not all(re.fullmatch(r"[0-9]+(\.[0-9]+)?", c) for c in numbers) or
                    not re.fullmatch(r"[0-9.]+ \([0-9.]+-[0-9.]+\)", r[4])):
                failures.append("client_engine.sh: row %s is not one error-free run of each engine" % " | ".join(r))

        print("== bench/overload/run.py", flush=True)
        cmd = [os.path.join(ROOT, "bench/overload/run.py"), build, "--servers", "edgews,websocketpp", "--duration", "4",
               "--baseline", "2", "--after", "2", "--rate", "2000", "--slowloris", "50", "--huge", "10", "--garbage",
               "10", "--reset", "10", "--flood", "5", "--out", os.path.join(tmp, "overload")]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            failures.append("bench/overload/run.py did not finish within 180 s")
        print(out[-6000:], flush=True)
        if p.returncode != 0:
            failures.append("bench/overload/run.py exited with %d" % p.returncode)
        for server in ("edgews", "websocketpp"):
            section = out.partition("### %s" % server)[2].split("### ")[0]
            for row in ("| with the mix |", "| RSS |", "| open descriptors |", "flood_no_read"):
                if row not in section:
                    failures.append("bench/overload/run.py: no %r for %s" % (row, server))

    print("== bench/memory/idle_after_message.py", flush=True)
    try:
        p = subprocess.run([os.path.join(ROOT, "bench/memory/idle_after_message.py"),
                            os.path.join(build, "tools/edgews"), "--connections", "20", "--wait", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        print(p.stdout[-3000:], flush=True)
        if p.returncode != 0:
            failures.append("idle_after_message.py exited with %d" % p.returncode)
        if p.stdout.count("| 1 s later |") != 2:
            failures.append("idle_after_message.py did not print both tables")
    except subprocess.TimeoutExpired:
        failures.append("idle_after_message.py did not finish within 120 s")

    for f in failures:
        print("FAILED:", f)
    print("bench scripts: %s" % ("%d failures" % len(failures) if failures else "all ran and printed their tables"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
