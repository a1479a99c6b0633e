#!/usr/bin/env python3
"""Each layer (or operation) of a `slmprof layers --json` report as a point on this machine's
roofline: achieved GOP/s against arithmetic intensity (operations per byte), under the
calibrated bandwidth slope and compute ceilings.

    python scripts/plot_roofline.py layers.json -o roofline.png [--ops] [--phase decode]
"""
import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slmprof import report  # noqa: E402

VERDICT_COLORS = {"memory-bound": "tab:blue", "compute-bound": "tab:red",
                  "overhead-bound": "tab:gray", "not measured": "white"}
PHASE_MARKERS = {"prefill": "s", "decode": "o"}


def points(rep, phase=None, ops=False):
    rows = [r for r in rep["records"] if r["layer"] != "total"
            and (phase is None or r["phase"] == phase) and bool(r["op"]) == ops
            and r.get("gop_per_s") and r.get("intensity") and np.isfinite(r["intensity"])]
    return rows


def plot(rep, out, phase=None, ops=False, title=None):
    c = rep.get("ceilings") or {}
    bw = c.get("bandwidth_bytes_per_s")
    if not bw:
        raise SystemExit("plot_roofline: the report has no calibrated ceilings")
    rows = points(rep, phase, ops)
    if not rows:
        raise SystemExit("plot_roofline: no measured rows to plot")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = np.array([r["intensity"] for r in rows])
    lo, hi = max(min(xs.min() / 4, 0.05), 1e-3), max(xs.max() * 4, 100.0)
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    peaks = {f"matmul {t}, 1 token": v for t, v in sorted((c.get("matvec_ops_per_s") or {}).items())}
    peaks.update({f"matmul {t}, prefill": v for t, v in sorted((c.get("gemm_ops_per_s") or {}).items())})
    if not peaks:
        peaks = {f"int8 dot {t}": v for t, v in sorted((c.get("dot_ops_per_s") or {}).items())}
    if c.get("fma_ops_per_s") and np.isfinite(c["fma_ops_per_s"]):
        peaks["f32 FMA"] = c["fma_ops_per_s"]
    for i, (name, peak) in enumerate(peaks.items()):
        ax.plot(x, np.minimum(x * bw, peak) / 1e9, lw=1.2, ls="-" if i == 0 else "--",
                label=f"{name}: {peak / 1e9:.0f} GOP/s")
    if not peaks:
        ax.plot(x, x * bw / 1e9, lw=1.2, label="bandwidth")
    for r in rows:
        ax.scatter(r["intensity"], r["gop_per_s"], s=28, marker=PHASE_MARKERS.get(r["phase"], "o"),
                   color=VERDICT_COLORS.get(r["verdict"], "black"), edgecolor="black", lw=0.4,
                   zorder=3)
    # label the heaviest few points
    for r in sorted(rows, key=lambda r: -r["ms_per_token"])[:5]:
        ax.annotate(f"{r['layer']}{'/' + r['op'] if r['op'] else ''}",
                    (r["intensity"], r["gop_per_s"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    for v, col in VERDICT_COLORS.items():
        if any(r["verdict"] == v for r in rows):
            ax.scatter([], [], color=col, edgecolor="black", lw=0.4, label=v)
    for ph, mk in PHASE_MARKERS.items():
        if any(r["phase"] == ph for r in rows):
            ax.scatter([], [], marker=mk, color="white", edgecolor="black", label=ph)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (operations per byte of weights + KV cache)")
    ax.set_ylabel("achieved GOP/s")
    model = (rep.get("model") or {}).get("name", "")
    n = c.get("threads")
    ax.set_title(title or f"{model}: roofline at {n} thread{'s' if n != 1 else ''}, "
                          f"{bw / 1e9:.1f} GB/s read bandwidth"
                 + ("" if c.get("measured", True) else " (reference ceilings)"), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="JSON written by `slmprof layers --json FILE`")
    p.add_argument("-o", "--output", default="roofline.png", help="PNG or SVG to write")
    p.add_argument("--phase", choices=("prefill", "decode"), default=None, help="one phase only")
    p.add_argument("--ops", action="store_true", help="one point per operation instead of per layer")
    args = p.parse_args(argv)
    rep = report.read_json(args.report, kind="layers")
    plot(rep, args.output, args.phase, args.ops)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
