#!/usr/bin/env python3
"""Summarizes Autobahn TestSuite fuzzingclient reports (OUT/index.json; several are one run in parts): a table
of cases by result, for the protocol behavior and for the closing behavior, then every case that is not OK.
Exits 1 when a case is FAILED or NON-STRICT, or its closing behavior is another failure of the suite's (UNCLEAN,
WRONG CODE, FAILED BY CLIENT), or the reports hold no case; 0 otherwise: INFORMATIONAL and UNIMPLEMENTED are
reported only.

    summarize.py [--markdown] OUT/index.json...
"""
import json
import sys

RESULTS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PASSING = {"OK", "INFORMATIONAL", "UNIMPLEMENTED"}


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def main(argv):
    markdown = "--markdown" in argv[1:]
    files = [a for a in argv[1:] if a != "--markdown"]
    if not files:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    index = {}
    for name in files:
        try:
            with open(name) as f:
                for agent, cases in json.load(f).items():
                    index.setdefault(agent, {}).update(cases)
        except (OSError, ValueError) as e:
            print(f"summarize: cannot read the report {name}: {e} (did wstest run?)", file=sys.stderr)
            return 1
    status = 0
    for agent, cases in sorted(index.items()):
        if not cases:
            print(f"summarize: agent {agent} has no case in {' '.join(files)}", file=sys.stderr)
            status = 1
            continue
        counts = {column: {r: 0 for r in RESULTS} for column in ("behavior", "behaviorClose")}
        unusual = []
        for case_id in sorted(cases, key=case_key):
            case = cases[case_id]
            for column in counts:
                result = case.get(column, "missing")
                counts[column][result] = counts[column].get(result, 0) + 1
            if case.get("behavior") != "OK" or case.get("behaviorClose") != "OK":
                unusual.append((case_id, case.get("behavior"), case.get("behaviorClose"), case.get("remoteCloseCode")))
            if case.get("behavior") not in PASSING or case.get("behaviorClose") not in PASSING:
                status = 1
        results = RESULTS + sorted((set(counts["behavior"]) | set(counts["behaviorClose"])) - set(RESULTS))
        if markdown:
            print(f"| {agent}: {len(cases)} cases | behavior | behaviorClose |")
            print("|---|---|---|")
            for r in results:
                print(f"| {r} | {counts['behavior'].get(r, 0)} | {counts['behaviorClose'].get(r, 0)} |")
        else:
            print(f"{agent}: {len(cases)} cases")
            print(f"  {'result':<14} {'behavior':>9} {'behaviorClose':>14}")
            for r in results:
                print(f"  {r:<14} {counts['behavior'].get(r, 0):>9} {counts['behaviorClose'].get(r, 0):>14}")
        # Unimplemented cases come in whole sections (12 and 13 without permessage-deflate): one line each.
        unimplemented = {}
        for case_id, behavior, close, code in unusual:
            if behavior == "UNIMPLEMENTED" and close == "OK":
                section = case_id.split(".")[0]
                unimplemented[section] = unimplemented.get(section, 0) + 1
            else:
                print(f"  case {case_id}: behavior {behavior}, behaviorClose {close}, server's close code {code}")
        for section, n in sorted(unimplemented.items(), key=lambda item: int(item[0])):
            print(f"  section {section}: {n} cases UNIMPLEMENTED (an extension the server did not negotiate)")
    if status:
        print("summarize: failing cases above; index.html beside each index.json links the report of "
              "each case", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
