#!/usr/bin/env python3
"""Where each model's time goes, side by side: reads `layers --ops --json` reports (one per
model, same phase) and prints one markdown table: tokens/s and bytes per token, then the
embedding, the blocks and each operation summed over them (·), and the output layer, each as
ms per token, share of the phase's time and MB moved per token.

    python -m slmprof layers --phase decode --ops --json smollm2.json
    python -m slmprof layers --phase decode --ops --json gemma.json --model gemma3-270m
    python scripts/layers_side_by_side.py smollm2.json gemma.json [--phase decode]
"""
import argparse
import sys

from slmprof import report
from slmprof.engine.model import OP_NAMES


def rows_of(rep, phase):
    """{row label: (ms/token, % of the phase, MB/token)} in table order, and the summary."""
    recs = [r for r in rep["records"] if r["phase"] == phase]
    if not recs:
        raise SystemExit(f"{rep['model'].get('name')}: no {phase} rows in the report")
    n_blocks = sum(1 for r in recs if r["layer"].startswith("block ") and not r["op"])
    out = {}

    def add(label, rs):
        if rs:
            out[label] = (sum(r["ms_per_token"] for r in rs), sum(r["pct"] for r in rs),
                          sum(r["bytes_per_token"] for r in rs) / 1e6)

    add("embedding", [r for r in recs if r["layer"] == "embedding" and not r["op"]])
    add(f"blocks ({n_blocks})", [r for r in recs if r["layer"].startswith("block ") and not r["op"]])
    for op in OP_NAMES:
        add(f"· {op}", [r for r in recs if r["layer"].startswith("block ") and r["op"] == op])
    add("output (norm + LM head)", [r for r in recs if r["layer"] == "output" and not r["op"]])
    add("· lm_head", [r for r in recs if r["layer"] == "output" and r["op"] == "lm_head"])
    return out, rep["summary"][phase]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", help="`layers --ops --json` files")
    p.add_argument("--phase", default="decode", choices=("decode", "prefill"))
    args = p.parse_args(argv)
    reps = [report.read_json(path, kind="layers") for path in args.reports]
    cols = [rows_of(r, args.phase) for r in reps]
    head = [f"{r['model']['name']} ({r['model']['file_type']})" for r in reps]
    threads = {r["settings"].get("threads") for r in reps}
    lines = [f"| {args.phase}, {'/'.join(str(t) for t in sorted(threads))} thread(s) | " + " | ".join(head) + " |",
             "| --- |" + " ---: |" * len(reps)]
    lines.append("| tokens/s | " + " | ".join(f"{s['tokens_per_s']:.1f}" for _, s in cols) + " |")
    lines.append("| ms/token, MB/token | " + " | ".join(
        f"{s['ms_per_token']:.2f} ms, {s['bytes_per_token'] / 1e6:.1f} MB" for _, s in cols) + " |")
    labels = []
    for rows, _ in cols:
        labels += [k for k in rows if k not in labels]
    for label in labels:
        cells = []
        for rows, _ in cols:
            ms, pct, mb = rows.get(label, (None, None, None))
            cells.append("" if ms is None else f"{ms:.3f} ms, {pct:.0f}%, {mb:.1f} MB")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| verdict | " + " | ".join(s["verdict"] for _, s in cols) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
