#!/usr/bin/env python3
"""Tokens/s against memory for the candidates of one or more `plan --json` reports.

Each candidate (model x type) is a point at (memory needed, expected decode tok/s), with a thin
line up to its roofline bound; each device's usable memory (total less OS headroom) is a
vertical line, and a --min-tok-s target a horizontal one. Several reports (one per device)
share the axes, one colour per device.

    python -m slmprof plan --model smollm2-135m,qwen2.5-0.5b,tinyllama-1.1b --device pi4-4gb --json -o pi4.json
    python -m slmprof plan --model smollm2-135m,qwen2.5-0.5b,tinyllama-1.1b --device pi5-8gb --json -o pi5.json
    python scripts/plot_plan.py pi4.json pi5.json -o plan.png
"""
import argparse
import sys


def plot(reports, output, title=None, min_tok_s=None):
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {"q4_0": "o", "q4_1": "s", "q8_0": "D", "f16": "^"}
    for i, rep in enumerate(reports):
        colour = colours[i % len(colours)]
        dev = rep["device"]
        label = dev["name"] + ("" if dev["measured_by_this_installation"] else " (reference)")
        for r in rep["records"]:
            x = r["memory_bytes"] / 1e9
            y, bound = r["decode_expected_tok_s"], r["decode_bound_tok_s"]
            marker = markers.get(r["type"].split()[0], "x")
            ax.plot([x, x], [y, bound], color=colour, linewidth=0.8, alpha=0.5)
            ax.scatter([x], [y], color=colour, marker=marker, s=36,
                       edgecolors="black" if r["memory_verdict"] != "does not fit" else colour,
                       facecolors=colour if r["memory_verdict"] == "fits" else "none", zorder=3)
            ax.annotate(f"{r['model']} {r['type'].split()[0]}", (x, y), fontsize=7,
                        xytext=(4, 2), textcoords="offset points", color=colour)
        usable = rep["ceilings"]["usable_bytes"] / 1e9
        ax.axvline(usable, color=colour, linestyle="--", linewidth=1.2,
                   label=f"{label}: usable memory {usable:.1f} GB")
        target = min_tok_s if min_tok_s is not None else rep.get("settings", {}).get("min_tok_s")
        if target:
            ax.axhline(target, color="grey", linestyle=":", linewidth=1.0)
    if min_tok_s is not None or any(r.get("settings", {}).get("min_tok_s") for r in reports):
        ax.plot([], [], color="grey", linestyle=":", label="decode target")
    for t, m in markers.items():
        ax.scatter([], [], marker=m, color="grey", label=t)
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter
    for axis in (ax.xaxis, ax.yaxis):          # plain numbers, not powers of ten
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("memory needed (weights + KV cache + buffers), GB")
    ax.set_ylabel("decode tokens/s (expected; line up to the roofline bound)")
    ax.set_title(title or "slmprof plan: speed against memory "
                 "(filled: fits, hollow: tight or does not fit)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", help="JSON reports written by `slmprof plan --json`")
    p.add_argument("-o", "--output", default="plan.png", help="PNG or SVG to write (default plan.png)")
    p.add_argument("--title", default=None)
    p.add_argument("--min-tok-s", type=float, default=None, help="draw this decode target")
    args = p.parse_args(argv)
    from slmprof import report
    try:
        reports = [report.read_json(path, kind="plan") for path in args.reports]
    except report.ReportError as e:
        print(f"plot_plan: error: {e}", file=sys.stderr)
        return 2
    plot(reports, args.output, args.title, args.min_tok_s)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
