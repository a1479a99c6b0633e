"""`slmprof plot`: each picture is drawn (Agg, into tmp_path) from small real outputs (a `layers`
report and a trace of a tiny synthetic model run by the engine, `plan` reports of the reference
devices, a `bench` run), and the test checks what it holds: axes, labels, series, legend
entries, and no overlapping text where overlap was the defect."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("slmprof.engine.model", reason="the engine (slmprof.engine.model) is not in this build")
pytest.importorskip("slmprof.measure.profiler", reason="the region profiler is not in this build")

from matplotlib.collections import PolyCollection  # noqa: E402

from slmprof.measure import calibrate, trace  # noqa: E402

from slmprof.analysis import devices, layers, plan as planner  # noqa: E402
from slmprof.analysis import roofline as rf  # noqa: E402

from slmprof import cli, report  # noqa: E402
from slmprof.analysis import plots  # noqa: E402
from slmprof.report import chrome  # noqa: E402

TINY = "synth:tiny-llama"


@pytest.fixture(scope="module")
def layers_json(tmp_path_factory):
    profile = calibrate.measure(threads_max=1, seconds_per_step=0.01, array_bytes=16 << 20)
    rep = layers.profile_layers(TINY, threads=1, prompt_tokens=8, gen_tokens=4, profile=profile,
                                events=[]).to_report()
    path = tmp_path_factory.mktemp("plots") / "layers.json"
    report.write_json(rep, path)
    return path


@pytest.fixture(scope="module")
def trace_npz(tmp_path_factory):
    data = trace.record_run(TINY, threads=1, prompt_tokens=8, gen_tokens=4, hz=500)
    path = tmp_path_factory.mktemp("plots") / "run.npz"
    trace.save(data, path)
    return path


@pytest.fixture(scope="module")
def plan_jsons(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    paths = []
    for name in ("pi4-4gb", "pi5-8gb"):
        dev = devices.builtin_profile(name)
        eff = planner.default_efficiency()
        preds = planner.plan(["smollm2-135m", "qwen2.5-0.5b", "tinyllama-1.1b"], device=dev,
                             types=["q4_0", "q4_1", "q8_0", "f16"], ctx=2048, efficiency=eff,
                             min_tok_s=10)
        rep = planner.make_plan_report(preds, dev, eff, settings={"device": name, "min_tok_s": 10})
        paths.append(folder / f"{name}.json")
        report.write_json(rep, paths[-1])
    return paths


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    model = str(tiny_model(type="q8_0"))
    proc = subprocess.run([sys.executable, "-m", "slmprof", "bench", "--model", model, "-p", "8",
                           "-n", "4", "-r", "2", "--threads", "1", "--no-cold", "--no-bandwidth",
                           "--format", "json", "--output", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def is_png(path):
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def texts_of(fig):
    """Every piece of text the figure shows: titles, labels, tick labels, legends, annotations."""
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible())]
    return [t for t in out if t]


def legend_texts(fig):
    legends = [a for a in fig.findobj(lambda a: type(a).__name__ == "Legend")]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def overlapping(boxes):
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].overlaps(boxes[j]) and boxes[i].width and boxes[j].width]


def annotation_boxes(ax):
    renderer = ax.figure.canvas.get_renderer()
    anns = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    return anns, [plots.text_box(a, renderer) for a in anns]


def tick_label_boxes(axis):
    renderer = axis.figure.canvas.get_renderer()
    labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
    lo, hi = axis.axes.get_xlim() if axis.axis_name == "x" else axis.axes.get_ylim()
    shown = [t for t in labels
             if min(lo, hi) <= (t.get_position()[0] if axis.axis_name == "x" else t.get_position()[1]) <= max(lo, hi)]
    return shown, [t.get_window_extent(renderer) for t in shown]


# ------------------------------------------------------------------------------------------
# roofline


@pytest.mark.parametrize("ops", [False, True])
def test_roofline_draws_every_ceiling_and_labels_without_overlap(layers_json, tmp_path, ops):
    rep = report.read_json(layers_json, kind="layers")
    fig = plots.roofline(rep, tmp_path / "roofline.png", ops=ops)
    assert is_png(tmp_path / "roofline.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "operations per byte" in ax.get_xlabel() and "GOP/s" in ax.get_ylabel()
    title = ax.get_title(loc="left")
    assert rep["model"]["name"] in title and "1 thread" in title
    assert plots.machine_text(rep["machine"]) in title
    # a line per ceiling, each named in the legend with its figure
    ceilings = rf.Ceilings.from_report(rep["ceilings"])
    names = legend_texts(fig)
    assert any(n.startswith("read bandwidth") for n in names)
    assert any("FMA" in n for n in names)
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert {ln.get_label() for ln in lines} <= set(names)
    # the points: one colour per verdict in the rows, each verdict in the legend
    rows = [r for r in rep["records"] if r["layer"] != "total" and bool(r["op"]) == ops
            and r.get("gop_per_s") and r.get("intensity")]
    assert {r["verdict"] for r in rows} <= set(names)
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(offsets) == len(rows)
    # the legends sit outside the data, and the whole of them is in the picture
    renderer = fig.canvas.get_renderer()
    legends = [a for a in fig.findobj(lambda a: type(a).__name__ == "Legend")]
    assert len(legends) == 2
    for lg in legends:
        assert not lg.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        assert not lg.get_clip_on() or (lg.get_clip_path() is None and lg.get_clip_box() is None)
    # labels: one per group of points, none overlapping another
    anns, boxes = annotation_boxes(ax)
    assert anns and not overlapping(boxes)
    assert not overlapping(tick_label_boxes(ax.xaxis)[1])
    if ops:
        assert any(a.get_text().startswith("gate_up") for a in anns)
    # the attention ceiling colours the attention operation's points, so it is drawn
    if ceilings.attention:
        att = [ln for ln in lines if ln.get_label().startswith("attention")]
        assert len(att) == 1
        x, y = att[0].get_data()
        at_calibration = np.interp(np.log(ceilings.attention_ops_per_kv_byte), np.log(x), y)
        # by the verdicts' own rule the curve passes through the calibrated figure
        # (its kernel ceiling: attention in cache; its memory: the KV cache's pages)
        assert at_calibration == pytest.approx(min(ceilings.peak("attention"), ceilings.attention_ops_per_kv_byte
                                                   * ceilings.kv_bandwidth) / 1e9, rel=0.03)


def test_roofline_svg_one_phase(layers_json, tmp_path):
    out = tmp_path / "roofline.svg"
    assert cli.main(["plot", "roofline", str(layers_json), "-o", str(out), "--phase", "decode", "-q"]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert "decode" in out.read_text() and "(prefill)" not in out.read_text()


def test_labels_never_overlap_even_when_points_coincide():
    fig = plots.new_figure(5, 4)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    plots.freeze_layout(fig)
    anchors = [(5, 5)] * 12 + [(5.1, 5.1)] * 6
    placed, left_out = plots.place_labels(ax, anchors, [f"label number {i}" for i in range(18)])
    assert len(placed) + len(left_out) == 18 and len(placed) >= 12
    renderer = fig.canvas.get_renderer()
    assert not overlapping([plots.text_box(a, renderer) for a in placed])


# ------------------------------------------------------------------------------------------
# layers


def test_layers_stacks_each_layer_by_operation(layers_json, tmp_path):
    rep = report.read_json(layers_json, kind="layers")
    out = tmp_path / "layers.png"
    assert cli.main(["plot", "layers", str(layers_json), "-o", str(out), "-q"]) == 0
    assert is_png(out)
    fig = plots.layers(rep, tmp_path / "again.png")
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_title(loc="left").split()[0] for ax in axes] == ["prefill", "decode"]
    assert all(ax.get_xlabel() == "ms per token" for ax in axes)
    assert rep["model"]["name"] in fig._suptitle.get_text()
    # every operation colour is in the legend, once, under its name
    names = legend_texts(fig)
    ops = [op for op in plots.OP_COLOURS if any(r["op"] == op for r in rep["records"])]
    assert [n for n in names if n in plots.OP_COLOURS] == ops
    for ax, ph in zip(axes, ("prefill", "decode")):
        layer_rows = [r for r in rep["records"] if r["phase"] == ph and not r["op"] and r["layer"] != "total"]
        assert [t.get_text() for t in ax.get_yticklabels()] == [r["layer"] for r in layer_rows]
        # the bars of a layer add up to the layer's time
        ends = {}
        for bar in ax.patches:
            y = round(bar.get_y() + bar.get_height() / 2)
            ends[y] = max(ends.get(y, 0.0), bar.get_x() + bar.get_width())
        for i, r in enumerate(layer_rows):
            ops_ms = sum(o["ms_per_token"] for o in rep["records"]
                         if o["phase"] == ph and o["layer"] == r["layer"] and o["op"])
            # the layer's time; its operations' when their edges run past the layer's own
            assert ends[i] == pytest.approx(max(r["ms_per_token"], ops_ms), rel=1e-9)
        # every bar colour is a legend entry's
        colours = {tuple(np.round(b.get_facecolor()[:3], 3)) for b in ax.patches}
        legend_colours = {tuple(np.round(h.get_facecolor()[:3], 3))
                          for h in fig.legends[0].legend_handles}
        assert colours <= legend_colours


# ------------------------------------------------------------------------------------------
# timeline


def test_timeline_draws_panels_with_data_and_names_every_colour(trace_npz, tmp_path):
    data = trace.load(trace_npz)
    out = tmp_path / "timeline.png"
    fig = plots.timeline(data, out)
    assert is_png(out)
    series = trace.counter_series(data["samples"])
    drawn = [s for s in series if len(s[1]) >= plots.MIN_SERIES_POINTS][:6]
    panels = fig.axes[:-1]
    assert [ax.get_title(loc="left") for ax in panels] == [name for name, _, _ in drawn]
    for ax, (_, t, v) in zip(panels, drawn):
        assert len(ax.get_lines()[0].get_xdata()) == len(t) >= plots.MIN_SERIES_POINTS
    # a sampled value with too few readings is named under the picture, with the reason
    skipped = [name for name, t, _ in series if len(t) < plots.MIN_SERIES_POINTS]
    text = "\n".join(texts_of(fig))
    for name in skipped:
        assert name in text and "read less often" in text
    # the regions: one collection per row (not one artist per slice), every slice drawn
    band = fig.axes[-1]
    collections = [c for c in band.collections if isinstance(c, PolyCollection)]
    assert len(collections) == 2
    n_slices = len([s for s in trace.slices(data) if str(s[2]) not in data["meta"]["phases"]])
    assert sum(len(c.get_paths()) for c in collections) == n_slices
    assert "ms" in band.get_xlabel() or "(s)" in band.get_xlabel()
    # every colour drawn is named in the legend, and no two names share a colour
    legend = band.get_legend()
    handles = legend.legend_handles
    names = [t.get_text() for t in legend.get_texts()]
    assert "lm_head" in names and "embed" in names and "head layer (output norm + LM head)" in names
    legend_colours = {}
    for h, name in zip(handles, names):
        for patch in (h if isinstance(h, tuple) else [h]):
            rgb = tuple(np.round(patch.get_facecolor()[:3], 3))
            assert legend_colours.setdefault(rgb, name) == name, f"{name} and {legend_colours[rgb]}"
    # (the blocks' entry shows both shades side by side)
    from matplotlib.patches import Rectangle
    shown = {tuple(np.round(r.get_facecolor()[:3], 3)) for r in legend.findobj(Rectangle)
             if r is not legend.legendPatch}
    drawn_colours = {tuple(np.round(c[:3], 3)) for coll in collections for c in coll.get_facecolors()}
    assert drawn_colours <= shown
    title = fig._suptitle.get_text()
    assert data["meta"]["model"]["name"] in title and "1 thread" in title
    assert plots.machine_text(data["meta"]["machine"]) in title


def test_timeline_of_a_trace_without_samples_says_so(tmp_path):
    data = trace.record_run(TINY, threads=1, prompt_tokens=4, gen_tokens=2, hz=0)
    fig = plots.timeline(data, tmp_path / "t.png")
    assert len(fig.axes) == 1
    assert any("no sampled values" in t for t in texts_of(fig))


# ------------------------------------------------------------------------------------------
# plan


def test_plan_panels_ticks_and_units(plan_jsons, tmp_path):
    out = tmp_path / "plan.png"
    assert cli.main(["plot", "plan", *map(str, plan_jsons), "-o", str(out), "-q"]) == 0
    assert is_png(out)
    reps = [report.read_json(p, kind="plan") for p in plan_jsons]
    fig = plots.plan(reps, tmp_path / "again.png")
    axes = fig.axes
    assert len(axes) == 2
    for ax, rep in zip(axes, reps):
        assert ax.get_title(loc="left").startswith(rep["device"]["name"])
        assert "not measured here" in ax.get_title(loc="left")
        # x tick labels readable: none overlaps its neighbour
        labels, boxes = tick_label_boxes(ax.xaxis)
        assert len(labels) >= 3 and not overlapping(boxes)
        assert all(re.fullmatch(r"[\d.]+ (MiB|GiB)", t.get_text()) for t in labels)
        # the usable memory, in GiB as plan's text gives it
        usable = rep["ceilings"]["usable_bytes"]
        assert any(t == f"usable memory\n{usable / 2**30:.2f} GiB" for t in texts_of(ax))
        assert ax.get_lines()[-1].get_xdata()[0] == usable or any(
            ln.get_xdata()[0] == usable for ln in ax.get_lines())
        # one point per candidate
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(rep["records"])
    # one memory convention: no decimal GB/MB anywhere in the picture
    assert not [t for t in texts_of(fig) if re.search(r"\b[GM]B\b", t)]
    names = legend_texts(fig)
    for model in ("smollm2-135m", "qwen2.5-0.5b", "tinyllama-1.1b"):
        assert model in names
    for t in ("q4_0", "q4_1", "q8_0", "f16"):
        assert t in names
    assert any(n.startswith("decode target 10") for n in names)
    assert axes[0].get_ylabel() == "decode tokens/s"
    # the legend sits beside the panels, clear of the title and of the data
    renderer = fig.canvas.get_renderer()
    box = fig.legends[0].get_window_extent(renderer)
    assert not box.overlaps(fig._suptitle.get_window_extent(renderer))
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes)


# ------------------------------------------------------------------------------------------
# bench


def test_bench_bars_per_backend(bench_json, tmp_path):
    rep = report.read_json(bench_json, kind="bench")
    fig = plots.bench(rep, tmp_path / "bench.png")
    assert is_png(tmp_path / "bench.png")
    assert [ax.get_title(loc="left").split()[0] for ax in fig.axes] == ["prefill", "decode"]
    for ax, test in zip(fig.axes, ("prefill", "decode")):
        rec = [r for r in rep["records"] if r["test"] == test][0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["slmprof"]
        assert ax.patches[0].get_width() == pytest.approx(rec["tok_s_mean"])
        dots = ax.collections[-1].get_offsets()
        assert sorted(dots[:, 0]) == pytest.approx(sorted(rec["tok_s_samples"]))
        assert "tokens/s" in ax.get_xlabel()
    assert "1 thread" in fig._suptitle.get_text()


def ladder_report(tmp_path):
    """A compare report of three rungs, the way `compare --ladder --json` writes it."""
    rows = [("smollm2-135m", "Q4_1", 98.4e6, 31.9, 90.0, 23.0),
            ("smollm2-135m:q8_0", "Q8_0", 144.8e6, 31.1, 43.5, 9.6),
            ("smollm2-135m:q2_k", "Q4_0", 88.2e6, 41.2, 62.6, 11.6)]
    records = [{"model": m, "type": t, "synthetic": False, "file_bytes": int(size), "perplexity": ppl,
                "prefill_tok_s": pre, "prefill_tok_s_std": 1.0, "decode_tok_s": dec,
                "decode_tok_s_std": 0.5} for m, t, size, ppl, pre, dec in rows]
    records.append({"model": "smollm2-135m:q9", "error": "UnsupportedError: no such type"})
    path = tmp_path / "ladder.json"
    report.write_json(report.make_report("compare", records, settings={"threads": 2, "ppl_ctx": 128,
                                                                         "ppl_windows": 4}), path)
    return path


def test_ladder_size_against_quality_and_speed(tmp_path):
    rep = report.read_json(ladder_report(tmp_path), kind="compare")
    fig = plots.ladder(rep, tmp_path / "ladder.png")
    assert is_png(tmp_path / "ladder.png")
    quality, speed = fig.axes[:2]
    assert quality.get_title(loc="left") == "size against quality"
    pts = quality.collections[0].get_offsets()
    assert sorted(pts[:, 1]) == pytest.approx([31.1, 31.9, 41.2])
    assert sorted(pts[:, 0]) == pytest.approx(sorted(b / 2**20 for b in (98.4e6, 144.8e6, 88.2e6)))
    shown = texts_of(fig)
    for label in ("Q4_1 (source)", "Q8_0", "Q2_K"):
        assert label in shown
    assert "Q9" not in shown     # a model that failed is not a point
    assert {"prefill tokens/s", "decode tokens/s"} <= set(legend_texts(fig))
    assert "size on disk (MiB)" in speed.get_xlabel()
    assert "2 threads" in fig._suptitle.get_text()


def test_ladder_command_reads_a_compare_report(tmp_path, layers_json, capsys):
    assert cli.main(["plot", "ladder", str(ladder_report(tmp_path)), "-o", str(tmp_path / "l.png"), "-q"]) == 0
    assert is_png(tmp_path / "l.png")
    assert cli.main(["plot", "ladder", str(layers_json), "-o", str(tmp_path / "x.png")]) == 2
    assert "expected 'compare'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# the command


def test_wrong_input_is_a_usage_error(layers_json, plan_jsons, tmp_path, capsys):
    assert cli.main(["plot", "plan", str(layers_json), "-o", str(tmp_path / "p.png")]) == 2
    assert "a 'layers' report, expected 'plan'" in capsys.readouterr().err
    assert cli.main(["plot", "roofline", str(layers_json), str(layers_json)]) == 2
    assert cli.main(["plot", "layers", str(layers_json), "--ops"]) == 2
    assert cli.main(["plot", "layers", str(layers_json), "-o", str(tmp_path / "x.txt")]) == 2
    assert cli.main(["plot", "timeline", str(layers_json), "-o", str(tmp_path / "t.png")]) == 2
    assert not list(tmp_path.iterdir())


def test_without_matplotlib_the_command_says_how_to_install_it(layers_json, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "slmprof.analysis.plots")
    assert cli.main(["plot", "roofline", str(layers_json), "-o", str(tmp_path / "r.png")]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'slmprof[plots]'" in err


# ------------------------------------------------------------------------------------------
# the recordings the timeline reads


def test_trace_roundtrip_and_chrome_export(trace_npz, tmp_path):
    data = trace.load(trace_npz)
    sl = trace.slices(data)
    phases = {data["meta"]["phases"][str(r)] for _, _, r, _ in sl if str(r) in data["meta"]["phases"]}
    assert phases == {"prefill", "decode"}
    totals = trace.region_totals(data)
    assert all(ns > 0 and n > 0 for ns, n in totals.values())
    out = chrome.write_recording(data, tmp_path / "t.json")
    doc = json.loads(out.read_text())
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(sl)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    assert {e["name"] for e in xs} >= {"prefill", "decode", "gate_up", "lm_head"}


def test_bad_trace_files_are_refused(tmp_path):
    from slmprof.errors import ModelFileError
    with pytest.raises(ModelFileError, match="no such file"):
        trace.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not an slmprof trace"):
        trace.load(bad)
