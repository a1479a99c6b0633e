"""The analysis scripts render from small real outputs (a `layers` report and a trace of a
tiny synthetic model run by the engine), with the Agg backend."""
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("slmprof.engine.model", reason="the engine (slmprof.engine.model) is not in this build")
pytest.importorskip("slmprof.measure.profiler", reason="the region profiler is not in this build")

from slmprof.measure import calibrate, trace  # noqa: E402

from slmprof.analysis import layers

from slmprof import report
from slmprof.report import chrome

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TINY = "synth:tiny-llama"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def is_png(path):
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("ops", [False, True])
def test_plot_roofline(layers_json, tmp_path, ops):
    out = tmp_path / "roofline.png"
    assert load_script("plot_roofline").main([str(layers_json), "-o", str(out)] + (["--ops"] if ops else [])) == 0
    assert is_png(out)


def test_plot_roofline_svg_one_phase(layers_json, tmp_path):
    out = tmp_path / "roofline.svg"
    load_script("plot_roofline").main([str(layers_json), "-o", str(out), "--phase", "decode"])
    assert out.read_text().lstrip().startswith("<?xml")


def test_plot_layers(layers_json, tmp_path):
    out = tmp_path / "layers.png"
    assert load_script("plot_layers").main([str(layers_json), "-o", str(out)]) == 0
    assert is_png(out)


def test_plot_timeline(trace_npz, tmp_path):
    out = tmp_path / "timeline.png"
    assert load_script("plot_timeline").main([str(trace_npz), "-o", str(out)]) == 0
    assert is_png(out)


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
