#!/usr/bin/env python3
"""Sampled values over time (RSS, CPU busy, faults, frequency, temperature ...) with the run's
phases and layer/operation slices as bands, from a trace written by `slmprof trace` (.npz).

    python scripts/plot_timeline.py run.slmtrace.npz -o timeline.png
"""
import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slmprof.measure import trace as tr  # noqa: E402


def plot(data, out, max_series=5):
    sl = tr.slices(data)
    series = tr.counter_series(data["samples"])[:max_series]
    if not sl and not series:
        raise SystemExit("plot_timeline: the trace has neither slices nor samples")
    starts = [s[0] for s in sl] + [int(t[0]) for _, t, _ in series]
    origin = min(starts)
    n = max(1, len(series))
    fig, axes = plt.subplots(n + 1, 1, figsize=(10, 1.8 * n + 2.2), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [1.0] * n + [1.4]})
    axes = axes[:, 0]
    phases = data["meta"].get("phases", {})
    phase_slices = [s for s in sl if str(s[2]) in phases]
    for ax, (title, t, v) in zip(axes[:-1], series):
        ax.plot((t - origin) / 1e9, v, lw=0.8)
        ax.set_ylabel(title, fontsize=7)
        ax.grid(True, alpha=0.3)
    if not series:
        axes[0].text(0.5, 0.5, "no sampled values in this trace (record with --hz)",
                     ha="center", va="center", transform=axes[0].transAxes, fontsize=9)
        axes[0].set_yticks([])
    for ax in axes:
        for i, (t0, t1, region, _) in enumerate(phase_slices):
            ax.axvspan((t0 - origin) / 1e9, (t1 - origin) / 1e9, alpha=0.08,
                       color=("tab:orange", "tab:green", "tab:purple")[i % 3])
    # bands: one row for layers, one for operations, colored by name
    band = axes[-1]
    names = data["meta"].get("region_names", {})
    cmap = plt.get_cmap("tab10")
    op_colors, rows = {}, {"layer": 1, "op": 0}
    for t0, t1, region, _ in sl:
        if str(region) in phases:
            continue
        layer, op = names.get(str(region), (str(region), "layer"))
        kind = "layer" if op == "layer" else "op"
        key = op if kind == "op" else ("block" if layer.startswith("blk") else layer)
        if key not in op_colors:
            op_colors[key] = cmap(len(op_colors) % 10)
        band.broken_barh([((t0 - origin) / 1e9, (t1 - t0) / 1e9)], (rows[kind] + 0.1, 0.8),
                         color=op_colors[key], lw=0)
    for t0, t1, region, _ in phase_slices:
        band.text((t0 - origin) / 1e9, 2.05, phases[str(region)], fontsize=7, va="bottom")
    band.set_yticks([0.5, 1.5])
    band.set_yticklabels(["operations", "layers"], fontsize=7)
    band.set_ylim(0, 2.5)
    band.set_xlabel("seconds")
    if op_colors:
        from matplotlib.patches import Patch
        band.legend(handles=[Patch(color=col, label=key) for key, col in list(op_colors.items())[:12]],
                    fontsize=6, ncol=6, loc="upper right")
    meta = data["meta"]
    fig.suptitle(f"{(meta.get('model') or {}).get('name', '')}: sampled values and regions",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", help="compact trace (.npz) written by `slmprof trace`")
    p.add_argument("-o", "--output", default="timeline.png", help="PNG or SVG to write")
    args = p.parse_args(argv)
    plot(tr.load(args.trace), args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
