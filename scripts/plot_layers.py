#!/usr/bin/env python3
"""Stacked time per token of each layer, split by operation, from `slmprof layers --json`.

    python scripts/plot_layers.py layers.json -o layers.png
"""
import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from slmprof import report  # noqa: E402


def plot(rep, out, phases=None):
    records = rep["records"]
    phases = phases or [p for p in ("prefill", "decode") if any(r["phase"] == p for r in records)]
    if not phases:
        raise SystemExit("plot_layers: no rows in the report")
    fig, axes = plt.subplots(1, len(phases), figsize=(6.5 * len(phases), 7), squeeze=False)
    cmap = plt.get_cmap("tab10")
    all_ops = []
    for r in records:
        if r["op"] and r["op"] not in all_ops:
            all_ops.append(r["op"])
    colors = {op: cmap(i % 10) for i, op in enumerate(all_ops)}
    for ax, ph in zip(axes[0], phases):
        rows = [r for r in records if r["phase"] == ph]
        layer_names = [r["layer"] for r in rows if not r["op"] and r["layer"] != "total"]
        y = range(len(layer_names))
        left = [0.0] * len(layer_names)
        for op in all_ops:
            widths = []
            for name in layer_names:
                match = [r for r in rows if r["layer"] == name and r["op"] == op]
                widths.append(match[0]["ms_per_token"] if match else 0.0)
            if any(widths):
                ax.barh(list(y), widths, left=left, color=colors[op], label=op, height=0.8)
                left = [a + b for a, b in zip(left, widths)]
        # time in the layer outside its operations (edges, barriers between them)
        rest = [max(0.0, r["ms_per_token"] - lf) for r, lf in
                zip([r for r in rows if not r["op"] and r["layer"] != "total"], left)]
        if any(v > 0 for v in rest):
            ax.barh(list(y), rest, left=left, color="lightgray", label="between operations", height=0.8)
        ax.set_yticks(list(y))
        ax.set_yticklabels(layer_names, fontsize=6 if len(layer_names) > 20 else 8)
        ax.invert_yaxis()
        total = [r for r in rows if r["layer"] == "total"]
        ms = total[0]["ms_per_token"] if total else sum(left)
        ax.set_xlabel("ms per token")
        ax.set_title(f"{ph}: {ms:.2f} ms/token", fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    model = (rep.get("model") or {}).get("name", "")
    fig.suptitle(f"{model}: time per layer and operation", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="JSON written by `slmprof layers --json FILE`")
    p.add_argument("-o", "--output", default="layers.png", help="PNG or SVG to write")
    p.add_argument("--phase", choices=("prefill", "decode"), action="append", default=None)
    args = p.parse_args(argv)
    plot(report.read_json(args.report, kind="layers"), args.output, args.phase)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
