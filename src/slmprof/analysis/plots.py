"""Pictures of slmprof's results, drawn with matplotlib in one style (`slmprof plot`).

    roofline(layers_report, out)   each layer or operation on this machine's roofline
    layers(layers_report, out)     time per token of each layer, split by operation
    timeline(trace, out)           sampled values and the layer/operation regions over one run
    plan(plan_reports, out)        decode speed against memory, one panel per device
    bench(bench_report, out)       tokens/s of each backend, every repetition shown
    ladder(compare_report, out)    a model's quantization ladder: size against perplexity and
                                   against tokens/s

Each returns the matplotlib Figure it saved (PNG, SVG or PDF, by the file's extension), so a
caller can look at what it holds. Figures are made without pyplot: no global state, no
interactive backend, safe to call from any thread or notebook.

One style for all of them:
  - titles say what was measured and where: model, machine, threads;
  - units on every axis; memory sizes in binary units (MiB, GiB: what RAM is counted in and
    what `plan` prints), rates in decimal ones (GB/s, GOP/s, tokens/s: what calibrate measures);
  - a legend names every colour and marker; a colour means one thing in a picture, and an
    operation has the same colour in every picture (OP_COLOURS);
  - text labels never overlap one another (place_labels), legends sit outside the data.

matplotlib is an optional extra (`pip install 'slmprof[plots]'`); only the plot command imports
this module. It reads reports and traces at the top of the import chain, so it may use the
analysis layer's own rules (roofline.Ceilings draws the ceilings the verdicts were taken against).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from slmprof.analysis import roofline as rf
from slmprof.engine.model import OP_NAMES
from slmprof.errors import SlmprofError
from slmprof.files import atomic_write
from slmprof.measure import trace as tr

MiB, GiB = 2**20, 2**30

STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "legend.title_fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "figure.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "svg.fonttype": "none",
}
DPI = 130

# One colour per engine operation, in every picture (no grey: grey marks what is not an operation).
OP_COLOURS = {
    "embed": "#8c564b", "attn_norm": "#c5b0d5", "qkv": "#1f77b4", "rope_attn": "#17becf",
    "attn_out": "#9467bd", "ffn_norm": "#ffbb78", "gate_up": "#2ca02c", "down": "#d62728",
    "output_norm": "#bcbd22", "lm_head": "#ff7f0e",
    # Gemma 3 and Qwen 3
    "qk_norm": "#9edae5", "attn_post_norm": "#e377c2", "gelu": "#98df8a", "ffn_post_norm": "#aec7e8",
}
assert set(OP_COLOURS) == set(OP_NAMES) - {"layer"}, "a colour for every engine operation"
BETWEEN_OPS_COLOUR = "#dedede"       # time in a layer outside its operations
# the timeline's layer row: greys and a slate, apart from every operation colour
LAYER_COLOURS = {"embed": "#111111", "block": ("#7a7a7a", "#b5b5b5"), "head": "#3b4a6b"}
LAYER_LABELS = {"embed": "embedding layer", "block": "blocks (alternate shades)",
                "head": "head layer (output norm + LM head)"}
PHASE_COLOURS = {"prefill": "#f5deb3", "decode": "#d5e8d4"}
VERDICT_COLOURS = {"memory-bound": "#1f77b4", "compute-bound": "#d62728",
                   "overhead-bound": "#8a8a8a"}
PHASE_MARKERS = {"prefill": "s", "decode": "o"}
TYPE_MARKERS = {"q4_0": "o", "q4_1": "s", "q8_0": "D", "f16": "^", "f32": "v"}
EXTRA_MARKERS = ("P", "X", "h", "*", "p", "<", ">")
SERIES_COLOUR = "#1f4e79"
MIN_SERIES_POINTS = 3   # a sampled value read fewer times than this in a run is listed, not drawn


class PlotError(SlmprofError, ValueError):
    """A report or trace that holds nothing to draw (says what is missing)."""


# ------------------------------------------------------------------------------------------
# Shared pieces


def new_figure(width, height):
    """A figure whose layout makes room for titles, labels and legends outside the axes."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)        # a renderer for measuring text while placing labels
    return fig


def freeze_layout(fig):
    """Lay the figure out now and keep it so: text placed afterwards is measured against the
    final axes, and saving does not move them again."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def save(fig, output):
    """Write the picture whole (files.atomic_write), in the format its extension names."""
    fmt = Path(output).suffix.lstrip(".").lower() or "png"
    with atomic_write(output, binary=True) as f:
        fig.savefig(f, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    return fig


def _short_cpu(name):
    if not name:
        return None
    for junk in ("(R)", "(TM)", "(tm)", " CPU", " Processor"):
        name = name.replace(junk, "")
    return " ".join(name.split())


def machine_text(machine):
    """'Intel Xeon (x86_64, 2 cores)' or the board's name, from a report's machine record."""
    machine = machine or {}
    name = (machine.get("board") or _short_cpu(machine.get("cpu_model") or machine.get("model"))
            or machine.get("arch") or "unknown machine")
    details = [d for d in (machine.get("arch"), machine.get("cores") and
                           f"{machine['cores']} core{'s' if machine['cores'] != 1 else ''}") if d]
    return f"{name} ({', '.join(details)})" if details else name


def threads_text(n):
    return f"{n} thread{'s' if n != 1 else ''}" if n else "threads unknown"


def model_text(model):
    model = model or {}
    name = model.get("name") or "unknown model"
    extra = [x for x in (model.get("file_type"), "synthetic weights" if model.get("synthetic") else None) if x]
    return ", ".join([name] + extra)


def measured_on(rep):
    """', 2026-01-31': the day a report was made, for titles."""
    created = rep.get("created") or ""
    return f", {created[:10]}" if created else ""


def _plain_number(v, _=None):
    if v >= 1:
        return f"{v:,.0f}"
    return np.format_float_positional(v, precision=3, unique=False, fractional=False, trim="-")


def plain_log_axis(axis, subs=(1.0,)):
    """Log-scale ticks as plain numbers (0.5, 1, 2, 10, 1,000), at `subs` x powers of ten."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(_plain_number))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
    axis.set_minor_formatter(ticker.NullFormatter())


def _boxes_overlap(a, b, pad=1.0):
    return not (a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0 or b.y1 + pad <= a.y0)


def _offset_candidates():
    """(dx, dy) in points: close to the point first, then further out in 16 directions."""
    out = []
    for r in (7, 16, 28, 42, 60, 85, 115):
        for k in range(16):
            a = 2 * math.pi * k / 16
            dx, dy = round(r * math.cos(a), 1), round(0.8 * r * math.sin(a), 1)
            out.append((0.0 if abs(dx) < 1e-6 else dx, 0.0 if abs(dy) < 1e-6 else dy))
    return out


def text_box(text, renderer):
    """Where a text (or an annotation's text, without its leader line) is drawn, in pixels."""
    if hasattr(text, "update_positions"):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def place_labels(ax, anchors, texts, fontsize=7.5, avoid_points=None):
    """Annotate each (x, y) data anchor with its text where the text overlaps no other label,
    stays inside the axes and, when it can, covers none of `avoid_points` (data coordinates).
    Labels far from their point get a thin leader line. Returns (placed annotations, texts that
    found no free place). The figure's layout must be final before this is called."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    points = []
    if avoid_points is not None and len(avoid_points):
        xy = ax.transData.transform(np.asarray(avoid_points, dtype=float))
        r = 4.0 * fig.dpi / 72
        points = [Bbox([[x - r, y - r], [x + r, y + r]]) for x, y in xy]
    placed, boxes, left_out = [], [], []
    for (x, y), text in zip(anchors, texts):
        chosen = None
        for strict in (True, False):
            for dx, dy in _offset_candidates():
                ha = "left" if dx > 2 else "right" if dx < -2 else "center"
                va = "bottom" if dy > 2 else "top" if dy < -2 else "center"
                far = abs(dx) > 10 or abs(dy) > 10
                ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                                  ha=ha, va=va, fontsize=fontsize, annotation_clip=False,
                                  bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.75),
                                  arrowprops=dict(arrowstyle="-", lw=0.5, color="#555555",
                                                  shrinkA=0, shrinkB=3) if far else None)
                box = text_box(ann, renderer)
                inside = (box.x0 >= area.x0 and box.x1 <= area.x1 and box.y0 >= area.y0
                          and box.y1 <= area.y1)
                clear = inside and not any(_boxes_overlap(box, b) for b in boxes)
                if clear and strict:
                    clear = not any(_boxes_overlap(box, p, pad=0) for p in points)
                if clear:
                    chosen = (ann, box)
                    break
                ann.remove()
            if chosen:
                break
        if chosen:
            placed.append(chosen[0])
            boxes.append(chosen[1])
        else:
            left_out.append(text)
    return placed, left_out


def footnote(ax, lines, below=None):
    """Small text under an axes (under `below`, an artist such as a legend, when given): what
    was left out of the picture and why."""
    if lines:
        text = "\n".join(textwrap.fill(line, 150, subsequent_indent="    ") for line in lines)
        ax.annotate(text, (0, 0), xycoords=("axes fraction", below or ax.xaxis.label),
                    xytext=(0, -6), textcoords="offset points", ha="left", va="top",
                    fontsize=7.5, color="#444444", annotation_clip=False)


# ------------------------------------------------------------------------------------------
# Roofline (a `layers` report)


def _layer_group(layer):
    return "blocks" if layer.startswith("block ") else layer


def _roofline_rows(rep, phase, ops):
    return [r for r in rep["records"] if r["layer"] != "total"
            and (phase is None or r["phase"] == phase) and bool(r["op"]) == ops
            and r.get("gop_per_s") and r.get("intensity") and math.isfinite(r["intensity"])]


def _matmul_types(rep, rows):
    """Weight types of the matrix products shown (the LM head's only when it is shown)."""
    wt = (rep.get("model") or {}).get("weight_types") or {}
    keys = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
    if any(r["layer"] == "output" for r in rows):
        keys.add("output")
    return sorted({wt[k] for k in keys if wt.get(k)})


def roofline_ceilings(ceilings, phases, weight_types):
    """[(label, kind, peak or None, phase)] the points of `phases` were judged against: the
    engine's matrix product per weight type (kind: the type) and phase, the attention, and f32
    FMA for the rest. Ceilings of the same height are one line whose label names them all (a
    type without a calibrated product of its own falls back to the FMA peak)."""
    flat = []
    for ph in phases:
        n_tok = 1 if ph == "decode" else 2
        for t in weight_types:
            peak = ceilings.peak("matmul", t, n_tok)
            if peak and math.isfinite(peak):
                flat.append((t, peak, ph))
    if math.isfinite(ceilings.fma):
        flat.append(("fma", ceilings.fma, None))
    by_peak = {}
    for kind, peak, ph in flat:
        by_peak.setdefault(peak, {}).setdefault(kind, []).append(ph)
    out = []
    for peak, kinds in by_peak.items():
        names = [f"matmul {k}, {' and '.join(phs)}" for k, phs in kinds.items() if k != "fma"]
        if "fma" in kinds:
            names.append("f32 FMA (norms, element-wise ops" + ("" if ceilings.attention else ", attention") + ")")
        # the FMA's own colour and style when it is one of them: that is the figure used
        kind, ph = ("fma", None) if "fma" in kinds else next((k, phs[0]) for k, phs in kinds.items())
        label = textwrap.fill(f"{' = '.join(names)}: {peak / 1e9:.0f} GOP/s", 52, subsequent_indent="  ")
        out.append((label, kind, peak, ph))
    if ceilings.attention:
        cached = (f"{ceilings.attention_cached / 1e9:.0f} GOP/s in cache, " if ceilings.attention_cached else "")
        at = (f" at {ceilings.attention_ops_per_kv_byte:.1f} op/B" if ceilings.attention_ops_per_kv_byte else "")
        out.append((textwrap.fill(f"attention: {cached}{ceilings.attention / 1e9:.0f} GOP/s{at} "
                                  "from memory", 52, subsequent_indent="  "), "attention", None, None))
    return out


def attention_roof(ceilings, intensity):
    """Attainable GOP/s of the engine's attention at these intensities, by the rule its
    verdicts use (roofline.Ceilings.times on an attention cost that reads its KV cache)."""
    kv_bytes = 1 << 20
    out = []
    for x in intensity:
        c = rf.OpCost(0, "", "rope_attn", 0, 0, kv_bytes, 0, int(x * kv_bytes), "attention")
        out.append(c.ops / max(ceilings.times(c)) / 1e9)
    return np.array(out)


# ceiling lines: a colour per weight type (solid: decode, dashed: prefill), attention, FMA;
# none of them a verdict colour
CEILING_COLOURS = {"q4_0": "#2ca02c", "q4_1": "#9467bd", "q8_0": "#8c564b", "f16": "#e377c2",
                   "f32": "#bcbd22", "attention": "#17becf", "fma": "#ff7f0e"}
EXTRA_CEILING_COLOURS = ("#3969ac", "#11a579", "#f2b701", "#7f3c8d", "#e73f74", "#80ba5a",
                         "#008695", "#cf1c90")   # for the other weight types, in order
CEILING_LINESTYLES = {"decode": "-", "prefill": "--", "attention": "-.", "fma": ":"}


def roofline(rep, output, phase=None, ops=False, title=None):
    c = rep.get("ceilings") or {}
    if not c.get("bandwidth_bytes_per_s"):
        raise PlotError("the report has no calibrated ceilings (bandwidth_bytes_per_s); "
                        "run `slmprof layers` with a machine profile")
    rows = _roofline_rows(rep, phase, ops)
    if not rows:
        raise PlotError("no measured rows with operations to draw"
                        + (f" in phase {phase}" if phase else ""))
    ceilings = rf.Ceilings.from_report(c)
    phases = [p for p in ("prefill", "decode") if any(r["phase"] == p for r in rows)]
    xs = np.array([r["intensity"] for r in rows])
    ys = np.array([r["gop_per_s"] for r in rows])
    lines = roofline_ceilings(ceilings, phases, _matmul_types(rep, rows))
    peaks = [p for _, _, p, _ in lines if p] or [ceilings.bandwidth * xs.max() * 4]
    x_lo = 10 ** math.floor(math.log10(max(xs.min() / 3, 1e-4)))
    x_hi = 10 ** math.ceil(math.log10(max(xs.max() * 3, 3 * max(peaks) / ceilings.bandwidth)))
    y_lo = 10 ** math.floor(math.log10(min(ys.min(), x_lo * ceilings.bandwidth / 1e9) / 1.5))
    y_hi = 10 ** math.ceil(math.log10(max(max(peaks) / 1e9, ys.max()) * 1.5))

    with matplotlib.rc_context(STYLE):
        fig = new_figure(11, 6.2)
        ax = fig.add_subplot(1, 1, 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        x = np.logspace(math.log10(x_lo), math.log10(x_hi), 300)
        roof_handles = [ax.plot(x, x * ceilings.bandwidth / 1e9, color="black", lw=1.4,
                                label=f"read bandwidth: {ceilings.bandwidth / 1e9:.1f} GB/s")[0]]
        others = [k for k in dict.fromkeys(k for _, k, _, _ in lines) if k not in CEILING_COLOURS]
        colours = dict(CEILING_COLOURS, **{k: EXTRA_CEILING_COLOURS[i % len(EXTRA_CEILING_COLOURS)]
                                           for i, k in enumerate(others)})
        for label, kind, peak, ph in lines:
            colour = colours[kind]
            ls = CEILING_LINESTYLES.get(ph or kind, "-")
            y = attention_roof(ceilings, x) if kind == "attention" else \
                np.minimum(x * ceilings.bandwidth, peak) / 1e9
            roof_handles.append(ax.plot(x, y, color=colour, ls=ls, lw=1.3, label=label)[0])
        # points: one scatter per verdict x phase x flagged; a row the report flags (its time
        # cannot be trusted as measured) is drawn hollow
        verdicts = [v for v in VERDICT_COLOURS if any(r["verdict"] == v for r in rows)]
        flagged = [r for r in rows if r.get("flags")]
        for v in verdicts:
            for ph in phases:
                for hollow in (False, True):
                    sel = [(r["intensity"], r["gop_per_s"]) for r in rows if r["verdict"] == v
                           and r["phase"] == ph and bool(r.get("flags")) == hollow]
                    if sel:
                        a = np.array(sel)
                        ax.scatter(a[:, 0], a[:, 1], s=30, marker=PHASE_MARKERS[ph], zorder=3,
                                   facecolor="white" if hollow else VERDICT_COLOURS[v],
                                   edgecolor=VERDICT_COLOURS[v] if hollow else "black",
                                   lw=1.0 if hollow else 0.4)
        ax.set_xlabel("arithmetic intensity (operations per byte of weights and KV cache moved)")
        ax.set_ylabel("achieved GOP/s (10⁹ operations per second)")
        plain_log_axis(ax.xaxis)
        plain_log_axis(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
        ax.grid(True, which="minor", alpha=0.08)

        legend1 = ax.legend(handles=roof_handles, title=f"ceilings at {threads_text(ceilings.threads)}",
                            loc="upper left", bbox_to_anchor=(1.01, 1.0), alignment="left")
        ax.add_artist(legend1)
        legend1.set_clip_on(False)      # add_artist clips to the axes; this legend sits outside
        point_handles = [Line2D([], [], ls="", marker="o", color=VERDICT_COLOURS[v], mec="black",
                                mew=0.4, label=v) for v in verdicts]
        point_handles += [Line2D([], [], ls="", marker=PHASE_MARKERS[ph], mfc="white", mec="black",
                                 label=ph) for ph in phases]
        if flagged:
            point_handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="#555555",
                                        label=f"hollow: flagged by the report ({len(flagged)} rows)"))
        ax.legend(handles=point_handles, title=f"{'operations' if ops else 'layers'}: verdict, phase",
                  loc="lower left", bbox_to_anchor=(1.01, 0.0), alignment="left")

        model, machine = rep.get("model") or {}, machine_text(rep.get("machine"))
        where = "calibrated here" if c.get("measured", True) else "REFERENCE ceilings, not measured here"
        ax.set_title(title or (
            f"{model_text(model)}: each {'operation' if ops else 'layer'} on the roofline"
            f"{', ' + phase if phase else ''}\n"
            f"{machine}, {threads_text((rep.get('settings') or {}).get('threads'))}, "
            f"{(rep.get('settings') or {}).get('isa') or '?'} kernels{measured_on(rep)}; ceilings {where}"),
            loc="left")
        freeze_layout(fig)

        # one label per group of points: an operation (or blocks/embedding/output) in a phase
        groups = {}
        for r in rows:
            key = (r["phase"], r["op"] if ops else _layer_group(r["layer"]))
            groups.setdefault(key, []).append(r)
        order = sorted(groups, key=lambda k: -sum(r["ms_per_token"] for r in groups[k]))
        anchors, texts = [], []
        for ph, name in order:
            g = groups[(ph, name)]
            if name == "blocks":
                nums = sorted(int(r["layer"].split()[1]) for r in g)
                name = f"blocks {nums[0]}-{nums[-1]}" if len(nums) > 1 else f"block {nums[0]}"
            anchors.append((float(np.median([r["intensity"] for r in g])),
                            float(np.median([r["gop_per_s"] for r in g]))))
            texts.append(name if len(phases) == 1 else f"{name} ({ph})")
        _, left_out = place_labels(ax, anchors, texts, avoid_points=np.column_stack([xs, ys]))
        if left_out:
            footnote(ax, ["not labelled (no free space): " + ", ".join(left_out)])
        return save(fig, output)


# ------------------------------------------------------------------------------------------
# Layers (a `layers` report)


def layers(rep, output, phases=None, title=None):
    records = rep["records"]
    phases = phases or [p for p in ("prefill", "decode") if any(r["phase"] == p for r in records)]
    if not any(r["phase"] in phases and r["layer"] != "total" for r in records):
        raise PlotError("no layer rows in the report" + (f" for {', '.join(phases)}" if phases else ""))
    ops = [op for op in OP_COLOURS if any(r["op"] == op for r in records)]
    layer_rows = {ph: [r for r in records if r["phase"] == ph and not r["op"] and r["layer"] != "total"]
                  for ph in phases}
    n = max(len(v) for v in layer_rows.values())
    settings, model = rep.get("settings") or {}, rep.get("model") or {}
    used = set()
    with matplotlib.rc_context(STYLE):
        fig = new_figure(6.0 * len(phases) + 0.5, 1.9 + 0.2 * n)
        axes = fig.subplots(1, len(phases), squeeze=False)[0]
        for ax, ph in zip(axes, phases):
            rows = layer_rows[ph]
            names = [r["layer"] for r in rows]
            y = np.arange(len(names))
            by_key = {(r["layer"], r["op"]): r["ms_per_token"] for r in records if r["phase"] == ph}
            left = np.zeros(len(names))
            for op in ops:
                w = np.array([by_key.get((name, op), 0.0) for name in names])
                if w.any():
                    ax.barh(y, w, left=left, height=0.78, color=OP_COLOURS[op], lw=0)
                    left += w
                    used.add(op)
            rest = np.maximum(0.0, np.array([r["ms_per_token"] for r in rows]) - left)
            if (rest > 0).any():
                ax.barh(y, rest, left=left, height=0.78, color=BETWEEN_OPS_COLOUR, lw=0)
                used.add("between")
            ax.set_xlim(0, max(float((left + rest).max()), 1e-9) * 1.04)
            ax.set_yticks(y)
            ax.set_yticklabels(names, fontsize=7 if len(names) > 20 else 8)
            ax.set_ylim(len(names) - 0.4, -0.6)
            ax.grid(True, axis="x")
            ax.grid(False, axis="y")
            ax.set_xlabel("ms per token")
            total = [r for r in records if r["phase"] == ph and r["layer"] == "total"]
            ms = total[0]["ms_per_token"] if total else float(left.sum() + rest.sum())
            tokens = settings.get("prompt_tokens" if ph == "prefill" else "gen_tokens")
            ax.set_title(f"{ph}{f' of {tokens} tokens' if tokens else ''}: {ms:.2f} ms/token "
                         f"({1e3 / ms:.0f} tokens/s)" if ms else ph, loc="left")
        handles = [Patch(color=OP_COLOURS[op], label=op) for op in ops if op in used]
        if "between" in used:
            handles.append(Patch(color=BETWEEN_OPS_COLOUR, label="in the layer, between operations"))
        fig.suptitle(title or (f"{model_text(model)}: time per token in each layer, by operation\n"
                               f"{machine_text(rep.get('machine'))}, {threads_text(settings.get('threads'))}, "
                               f"{settings.get('isa') or '?'} kernels{measured_on(rep)}"), x=0.01, ha="left")
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)),
                   title="operation")
        return save(fig, output)


# ------------------------------------------------------------------------------------------
# Timeline (a trace from `slmprof trace` or `layers --trace FILE.npz`)


def _region_key(layer, op):
    """(row, colour key) of a region: layers coloured by kind, operations by name."""
    if op == "layer":
        return "layers", "block" if layer.startswith("blk.") else layer
    return "operations", op


def _rect_collection(x0, x1, y0, height, colours):
    verts = np.empty((len(x0), 4, 2))
    verts[:, 0, 0] = verts[:, 1, 0] = x0
    verts[:, 2, 0] = verts[:, 3, 0] = x1
    verts[:, [0, 3], 1] = y0
    verts[:, [1, 2], 1] = y0 + height
    return PolyCollection(verts, facecolors=colours, linewidths=0, antialiased=False)


def timeline(data, output, max_series=6, title=None):
    meta = data["meta"]
    sl = tr.slices(data)
    series = tr.counter_series(data["samples"])
    if not sl and not series:
        raise PlotError("the trace holds neither region slices nor sampled values")
    phases = meta.get("phases", {})
    names = meta.get("region_names", {})
    t_all = [s[0] for s in sl[:1]] + [int(t[0]) for _, t, _ in series]
    origin = min(t_all)
    end = max([s[1] for s in sl] + [int(t[-1]) for _, t, _ in series])
    span_s = (end - origin) / 1e9
    unit, scale = ("ms", 1e3) if span_s < 2 else ("s", 1.0)

    def at(t_ns):
        return (np.asarray(t_ns, dtype=np.float64) - origin) / 1e9 * scale

    shown, skipped = [], []
    for name, t, v in series:
        if len(t) >= MIN_SERIES_POINTS and len(shown) < max_series:
            shown.append((name, t, v))
        elif len(t) < MIN_SERIES_POINTS:
            skipped.append(f"{name}: {len(t)} value{'s' if len(t) != 1 else ''} in {span_s:.2f} s "
                           f"(its source is read less often than that)")
        else:
            skipped.append(f"{name}: beyond the {max_series} panels")
    notes = []
    if not series:
        notes.append("no sampled values in this trace (recorded with --hz 0, or no source readable)")
    if skipped:
        notes.append("sampled but not drawn: " + "; ".join(skipped))
    phase_slices = [(t0, t1, phases[str(r)]) for t0, t1, r, _ in sl if str(r) in phases]
    region_slices = [s for s in sl if str(s[2]) not in phases]

    settings, model = meta.get("settings") or {}, meta.get("model") or {}
    with matplotlib.rc_context(STYLE):
        n = len(shown)
        fig = new_figure(11, 1.45 * n + 2.4)
        axes = fig.subplots(n + 1, 1, sharex=True, squeeze=False,
                            gridspec_kw={"height_ratios": [1.0] * n + [1.2]})[:, 0]
        for ax, (name, t, v) in zip(axes[:-1], shown):
            ax.plot(at(t), v, color=SERIES_COLOUR, lw=0.9, marker="o" if len(t) < 40 else None, ms=2.5)
            ax.set_title(name, loc="left", fontsize=8, pad=2)
            ax.margins(y=0.15)
        for ax in axes:
            for t0, t1, ph in phase_slices:
                ax.axvspan(at(t0), at(t1), color=PHASE_COLOURS.get(ph, "#eeeeee"), alpha=0.55, lw=0, zorder=0)
        band = axes[-1]
        rows = {"operations": 0.0, "layers": 1.0}
        used, block_index = {"layers": [], "operations": []}, {}
        for row in rows:
            x0, x1, colours = [], [], []
            for t0, t1, region, _ in region_slices:
                layer, op = names.get(str(region), (f"region {region}", "layer"))
                r, key = _region_key(layer, op)
                if r != row:
                    continue
                if key == "block":
                    i = block_index.setdefault(layer, len(block_index))
                    colour = LAYER_COLOURS["block"][i % 2]
                elif row == "layers":
                    colour = LAYER_COLOURS.get(key, "#000000")
                else:
                    colour = OP_COLOURS.get(key, "#000000")
                if key not in used[row]:
                    used[row].append(key)
                x0.append(t0)
                x1.append(t1)
                colours.append(colour)
            if x0:
                band.add_collection(_rect_collection(at(x0), at(x1), rows[row] + 0.1, 0.8, colours))
        band.set_yticks([0.5, 1.5])
        band.set_yticklabels(["operations", "layers"])
        band.set_ylim(0, 2)
        band.grid(False, axis="y")
        band.set_xlim(0, at(end))
        band.set_xlabel(f"time since the recording started ({unit})")
        for t0, t1, ph in phase_slices:
            band.annotate(ph, (at(t0), 2.0), xytext=(2, 2), textcoords="offset points", fontsize=8,
                          va="bottom", annotation_clip=False)

        entries = [(Patch(color=PHASE_COLOURS.get(ph, "#eeeeee"), alpha=0.55), f"{ph} (background)")
                   for ph in dict.fromkeys(p for _, _, p in phase_slices)]
        for key in used["layers"]:
            shades = LAYER_COLOURS.get(key, "#000000")
            handle = (tuple(Patch(color=c) for c in shades) if isinstance(shades, tuple)
                      else Patch(color=shades))
            entries.append((handle, LAYER_LABELS.get(key, key)))
        for key in sorted(used["operations"], key=lambda k: list(OP_COLOURS).index(k) if k in OP_COLOURS else 99):
            entries.append((Patch(color=OP_COLOURS.get(key, "#000000")), key))
        legend = band.legend([h for h, _ in entries], [t for _, t in entries], loc="upper center",
                             bbox_to_anchor=(0.5, -0.45), ncol=5,
                             handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})
        threads = settings.get("threads")
        run = ", ".join(x for x in (
            threads and threads_text(threads),
            settings.get("prompt_tokens") and f"prefill {settings['prompt_tokens']} tokens",
            settings.get("gen_tokens") and f"decode {settings['gen_tokens']} tokens",
            settings.get("hz") and f"sampled at {settings['hz']} Hz") if x)
        fig.suptitle(title or (f"{model_text(model)}: sampled values and the regions of one run\n"
                               f"{machine_text(meta.get('machine'))}" + (f", {run}" if run else "")),
                     x=0.01, ha="left")
        footnote(band, notes, below=legend)
        return save(fig, output)


# ------------------------------------------------------------------------------------------
# Plan (one or more `plan` reports, one per device)


def _type_marker(t, extra):
    base = t.split()[0]
    if base in TYPE_MARKERS:
        return TYPE_MARKERS[base]
    return extra.setdefault(base, EXTRA_MARKERS[len(extra) % len(EXTRA_MARKERS)])


def _memory_tick(v, _):
    if v <= 0:
        return ""
    return f"{v / GiB:g} GiB" if v >= GiB else f"{v / MiB:g} MiB"


def _device_title(rep):
    dev = rep.get("device") or {}
    threads = (rep.get("ceilings") or {}).get("threads")
    name = dev.get("name") or "device"
    title = dev.get("title") or ""
    total = (dev.get("memory") or {}).get("total_bytes")
    if name == "this":
        title = f"this machine: {machine_text(rep.get('machine'))}"
    else:
        # the product name without its memory in decimal units; the memory in this convention
        title = (f"{name}: {title.split(',')[0].split(' (')[0]}" if title else name) + (
            f", {total / GiB:g} GiB" if total else "")
    how = ("calibrated here" if dev.get("measured_by_this_installation")
           else "reference profile, not measured here")
    return f"{title}\n{threads_text(threads)}; {how}"


def plan(reports, output, title=None, min_tok_s=None):
    if not reports:
        raise PlotError("no plan reports given")
    if not any(rep["records"] for rep in reports):
        raise PlotError("the plan reports hold no candidates")
    models = list(dict.fromkeys(r["model"] for rep in reports for r in rep["records"]))
    types = list(dict.fromkeys(r["type"].split()[0] for rep in reports for r in rep["records"]))
    palette = matplotlib.colormaps["tab10"].colors
    colours = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    extra_markers = {}
    markers = {t: _type_marker(t, extra_markers) for t in types}
    mem = [r["memory_bytes"] for rep in reports for r in rep["records"]]
    mem += [rep["ceilings"]["usable_bytes"] for rep in reports if (rep.get("ceilings") or {}).get("usable_bytes")]
    speeds = [v for rep in reports for r in rep["records"]
              for v in (r.get("decode_expected_tok_s"), r.get("decode_bound_tok_s")) if v]
    targets = {min_tok_s} if min_tok_s else {(rep.get("settings") or {}).get("min_tok_s") for rep in reports}
    targets = sorted(t for t in targets if t)
    speeds += targets
    verdicts = set()
    with matplotlib.rc_context(STYLE):
        fig = new_figure(min(4.2 * len(reports) + 2.6, 16), 5.4)
        axes = fig.subplots(1, len(reports), sharey=True, sharex=True, squeeze=False)[0]
        for ax, rep in zip(axes, reports):
            for r in rep["records"]:
                x, y, bound = r["memory_bytes"], r.get("decode_expected_tok_s"), r.get("decode_bound_tok_s")
                if not y:
                    continue
                colour, verdict = colours[r["model"]], r.get("memory_verdict", "fits")
                verdicts.add(verdict)
                alpha = 0.35 if verdict == "does not fit" else 1.0
                if bound and bound > y:
                    ax.plot([x, x], [y, bound], color=colour, lw=0.9, alpha=0.5 * alpha)
                ax.scatter([x], [y], s=40, marker=markers[r["type"].split()[0]], zorder=3,
                           facecolors=colour if verdict == "fits" else "white",
                           edgecolors=colour, linewidths=1.3, alpha=alpha)
            usable = (rep.get("ceilings") or {}).get("usable_bytes")
            if usable:
                ax.axvline(usable, color="black", ls="--", lw=1.1)
                ax.annotate(f"usable memory\n{usable / GiB:.2f} GiB", (usable, 1.0),
                            xycoords=("data", "axes fraction"), xytext=(-3, -3),
                            textcoords="offset points", ha="right", va="top", fontsize=7.5)
            for t in targets:
                ax.axhline(t, color="#555555", ls=":", lw=1.0)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=2, numticks=12))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(_memory_tick))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            plain_log_axis(ax.yaxis, subs=(1.0, 2.0, 5.0))
            ax.set_title(_device_title(rep), loc="left")
            ax.set_xlabel("memory needed\n(weights + KV cache + working buffers)")
        axes[0].set_xlim(min(mem) / 1.4, max(mem) * 1.4)
        axes[0].set_ylim(min(speeds) / 1.5, max(speeds) * 1.5)
        axes[0].set_ylabel("decode tokens/s")
        handles = [Patch(color=colours[m], label=m) for m in models]
        handles += [Line2D([], [], ls="", marker=markers[t], mfc="#666666", mec="#666666", label=t)
                    for t in types]
        fit_marks = {"fits": ("#666666", 1.0), "tight": ("white", 1.0), "does not fit": ("white", 0.35)}
        fit_words = {"fits": "filled marker: fits in memory", "tight": "hollow marker: tight",
                     "does not fit": "faded marker: does not fit"}
        handles += [Line2D([], [], ls="", marker="o", mfc=fit_marks[v][0], mec="#666666",
                           alpha=fit_marks[v][1], label=fit_words[v])
                    for v in fit_marks if v in verdicts]
        handles.append(Line2D([], [], color="#666666", lw=0.9, alpha=0.6,
                              label="marker: expected; line: up to the roofline bound"))
        handles.append(Line2D([], [], color="black", ls="--", lw=1.1,
                              label="usable memory (total less OS headroom)"))
        if targets:
            handles.append(Line2D([], [], color="#555555", ls=":", lw=1.0,
                                  label=f"decode target {', '.join(f'{t:g}' for t in targets)} tokens/s"))
        fig.legend(handles=handles, loc="outside right center", title="model, type", alignment="left")
        ctx = sorted({r.get("ctx") for rep in reports for r in rep["records"]} - {None})
        fig.suptitle(title or ("plan: expected decode speed against the memory each candidate needs"
                               + (f", {'/'.join(map(str, ctx))}-token context" if ctx else "")),
                     x=0.01, ha="left")
        return save(fig, output)


# ------------------------------------------------------------------------------------------
# Bench (a `bench` report)


def bench(rep, output, title=None):
    records = [r for r in rep["records"] if r.get("tok_s_mean") is not None]
    failed = [r for r in rep["records"] if r.get("tok_s_mean") is None]
    if not records:
        raise PlotError("the bench report holds no measured run" + (
            ": " + "; ".join(f"{r['backend']}: {r.get('error')}" for r in failed) if failed else ""))
    tests = [t for t in ("prefill", "decode") if any(r["test"] == t for r in records)]
    backends = list(dict.fromkeys(r["backend"] for r in rep["records"]))
    palette = matplotlib.colormaps["tab10"].colors
    colours = {b: palette[i % len(palette)] for i, b in enumerate(backends)}
    settings, model = rep.get("settings") or {}, rep.get("model") or {}
    with matplotlib.rc_context(STYLE):
        fig = new_figure(5.2 * len(tests) + 0.6, 1.7 + 0.45 * len(backends))
        axes = fig.subplots(1, len(tests), squeeze=False)[0]
        for ax, test in zip(axes, tests):
            y = np.arange(len(backends))
            for i, b in enumerate(backends):
                r = next((r for r in records if r["backend"] == b and r["test"] == test), None)
                if r is None:
                    ax.text(0, i, "  no result", va="center", fontsize=8, color="#aa0000")
                    continue
                ax.barh(i, r["tok_s_mean"], height=0.6, color=colours[b], alpha=0.85,
                        xerr=r.get("tok_s_std") or 0, error_kw={"lw": 0.9, "capsize": 3})
                samples = r.get("tok_s_samples") or []
                ax.scatter(samples, np.full(len(samples), i), s=12, color="black", zorder=3)
                ratio = f", x{r['ratio']:.2f}" if r.get("ratio") is not None and i else ""
                ax.annotate(f"{r['tok_s_mean']:.1f}{ratio}", (r["tok_s_mean"] + (r.get("tok_s_std") or 0), i),
                            xytext=(5, 0), textcoords="offset points", va="center", fontsize=8)
            ax.set_yticks(y)
            ax.set_yticklabels(backends)
            ax.set_ylim(len(backends) - 0.5, -0.5)
            ax.grid(False, axis="y")
            ax.margins(x=0.22)
            ax.set_xlim(left=0)
            tokens = settings.get("prompt_tokens" if test == "prefill" else "gen_tokens")
            ax.set_title(f"{test}{f' of {tokens} tokens' if tokens else ''}", loc="left")
            ax.set_xlabel("tokens/s (bar: mean, line: ± std, dots: each repetition)")
        fig.suptitle(title or (f"{model_text(model)}: tokens/s of each engine "
                               f"(x: ratio to {backends[0]})\n"
                               f"{machine_text(rep.get('machine'))}, {threads_text(settings.get('threads'))}"
                               + (f", {settings['reps']} repetitions" if settings.get("reps") else "")
                               + measured_on(rep)),
                     x=0.01, ha="left")
        if failed:
            footnote(axes[0], [f"{r['backend']} {r['test']}: no result ({r.get('error')})" for r in failed])
        return save(fig, output)


def _ladder_label(rec):
    """A ladder point's name: the requantization it is (model:type), else the file's own type."""
    name = rec["model"]
    return name.rsplit(":", 1)[1].upper() if ":" in name and not name.startswith("synth:") else \
        f"{rec.get('type') or name} (source)"


def ladder(rep, output, title=None):
    """A `compare` report's models as a quantization ladder: size on disk against perplexity
    (quality), and against prefill and decode tokens/s (speed), each point named by its type."""
    records = [r for r in rep["records"] if r.get("file_bytes") and "error" not in r]
    if not records:
        raise PlotError("the compare report holds no measured model")
    quality = [r for r in records if r.get("perplexity") is not None]
    speed = [r for r in records if r.get("decode_tok_s") is not None]
    settings = rep.get("settings") or {}
    panels = [p for p, rows in (("quality", quality), ("speed", speed)) if rows]
    with matplotlib.rc_context(STYLE):
        fig = new_figure(5.0 * len(panels) + 0.6, 4.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        placements = []
        for ax, panel in zip(axes, panels):
            rows = quality if panel == "quality" else speed
            size = np.array([r["file_bytes"] / MiB for r in rows])
            labels = [_ladder_label(r) for r in rows]
            if panel == "quality":
                ppl = np.array([r["perplexity"] for r in rows])
                ax.scatter(size, ppl, s=26, color=SERIES_COLOUR, zorder=3, label="perplexity")
                ax.set_ylabel("perplexity (lower is better)")
                ax.set_title("size against quality", loc="left")
                placements.append((ax, list(zip(size, ppl)), labels))
            else:
                for test, colour in (("prefill", "#ff7f0e"), ("decode", SERIES_COLOUR)):
                    ys = np.array([r.get(f"{test}_tok_s") or np.nan for r in rows])
                    errs = np.array([r.get(f"{test}_tok_s_std") or 0 for r in rows])
                    ax.errorbar(size, ys, yerr=errs, fmt=PHASE_MARKERS[test], ms=5, color=colour,
                                lw=0, elinewidth=0.9, capsize=2, zorder=3, label=f"{test} tokens/s")
                dec = np.array([r["decode_tok_s"] for r in rows])
                ax.set_yscale("log")
                plain_log_axis(ax.yaxis, subs=(1.0, 2.0, 5.0))
                ax.set_ylabel("tokens/s (mean ± std, log scale)")
                ax.set_title("size against speed", loc="left")
                ax.legend(loc="upper right")
                placements.append((ax, list(zip(size, dec)), labels))
            ax.set_xlabel("size on disk (MiB)")
            ax.margins(x=0.12, y=0.12)
        first = records[0]
        fig.suptitle(title or (f"quantization ladder of {first['model'].split(':')[0]}: "
                               f"{len(records)} files\n"
                               f"{machine_text(rep.get('machine'))}, {threads_text(settings.get('threads'))}"
                               + (f", perplexity over {settings['ppl_windows']} window(s) of "
                                  f"{settings['ppl_ctx']} tokens" if quality and settings.get("ppl_ctx") else "")
                               + measured_on(rep)),
                     x=0.01, ha="left")
        freeze_layout(fig)
        for ax, anchors, labels in placements:
            place_labels(ax, anchors, labels, avoid_points=np.array(anchors))
        return save(fig, output)
