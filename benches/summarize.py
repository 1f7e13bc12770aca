#!/usr/bin/env python3
"""Medians and zabd/ZooKeeper ratios of benches/compare.sh's results.tsv, with the targets of
issue 8. usage: summarize.py results.tsv [floor.json]"""
import json
import re
import statistics
import sys
from collections import defaultdict


def target(topo, fig):
    """(comparison, bound) for figures the issue sets a target on, else None. The Java
    generator's figures have none: they check that the ranking does not depend on zabd's own
    generator (the Java client itself caps what it can send)."""
    if fig.startswith("java "):
        return None
    if fig.endswith("ops/s") and " 8x100" in fig or fig.endswith("ops/s") and " 9x100" in fig:
        if "90%" in fig:
            return (">=", 2.5)
        if "getData" in fig:
            return (">=", 2.0)
        return (">=", 3.0)
    if "1x1" in fig and fig.endswith("p99 us"):
        return ("<=", 0.5)
    if fig.endswith("p99.9 us") and ("x100" in fig or "open loop" in fig):
        return ("<=", 1.0)
    if fig.startswith("memory per znode"):
        return ("<=", 1 / 3)
    if fig.startswith("restart"):
        return ("<=", 0.25)
    if fig.startswith("failover"):
        return ("<=", 0.25)
    return None


def main():
    values = defaultdict(lambda: defaultdict(list))
    order = []
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            _, system, topo, fig, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            key = (topo, fig)
            if key not in order:
                order.append(key)
            values[key][system].append(v)
    rows = []
    met = missed = 0
    for key in order:
        topo, fig = key
        zk = values[key].get("zookeeper", [])
        zb = values[key].get("zabd", [])
        mz = statistics.median(zk) if zk else None
        mb = statistics.median(zb) if zb else None
        ratio = mb / mz if mz and mb is not None else None
        t = target(topo, fig)
        verdict = ""
        if t and ratio is not None:
            ok = ratio >= t[1] if t[0] == ">=" else ratio <= t[1]
            verdict = "met" if ok else "MISSED"
            met += ok
            missed += not ok
        tgt = f"{t[0]} {t[1]:.2g}" if t else ""
        fmt = lambda x: "-" if x is None else (f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}")
        rows.append((topo, fig, fmt(mz), fmt(mb), "-" if ratio is None else f"{ratio:.2f}",
                     tgt, verdict, f"{len(zk)}/{len(zb)}"))
    head = ("setup", "figure", "ZooKeeper", "zabd", "zabd/ZK", "target", "", "runs")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print(f"\ntargets met: {met}, missed: {missed} (medians; ratios are zabd / ZooKeeper)")
    if len(sys.argv) > 2:
        try:
            with open(sys.argv[2]) as f:
                for line in f:
                    p = json.loads(line)
                    print(f"floor: {p['probe']} p50 {p['p50_us']} us, p99 {p['p99_us']} us")
        except (OSError, ValueError) as e:
            print(f"floor: unreadable ({e})")


if __name__ == "__main__":
    main()
