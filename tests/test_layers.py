"""`layers`: rows, sums, verdicts and outputs on a small synthetic model run by the engine."""
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from slmprof import report
from slmprof.analysis import layers, overhead, roofline
from slmprof.commands import layers as layers_command
from slmprof.engine import registry, workload
from slmprof.engine.model import Model, block_ops
from slmprof.errors import ModelNotFoundError
from slmprof.measure.contention import Load
from slmprof.measure import calibrate

TINY = "synth:tiny-llama"


@pytest.fixture(scope="module")
def profile():
    return calibrate.measure(threads_max=1, seconds_per_step=0.01, array_bytes=16 << 20)


@pytest.fixture(scope="module")
def result(profile):
    return layers.profile_layers(TINY, threads=1, prompt_tokens=8, gen_tokens=4,
                                 profile=profile, events=[])


@pytest.fixture(scope="module")
def rep(result):
    return result.to_report()


def test_one_row_per_layer_and_operation_and_a_total(rep):
    n_layer = rep["model"]["n_layer"]
    for ph in ("prefill", "decode"):
        rows = [r for r in rep["records"] if r["phase"] == ph]
        layer_rows = [r["layer"] for r in rows if not r["op"]]
        assert layer_rows == ["embedding"] + [f"block {i}" for i in range(n_layer)] + ["output", "total"]
        ops = [r["op"] for r in rows if r["layer"] == "block 0" and r["op"]]
        assert ops == list(block_ops(rep["model"]["arch"]))
        for r in rows:
            assert r["verdict"] in roofline.VERDICTS, r
            assert r["ms_per_token"] > 0


def test_layer_times_are_their_operations_and_sum_below_the_measured_total(rep):
    for ph in ("prefill", "decode"):
        rows = [r for r in rep["records"] if r["phase"] == ph]
        total = [r for r in rows if r["layer"] == "total"][0]
        layer_sum = sum(r["ms_per_token"] for r in rows if not r["op"] and r["layer"] != "total")
        # a tiny-model token is ~10 us of work, about what the Python call around it costs
        # (the real shape's coverage is checked by the slow fidelity test)
        assert 0.05 * total["ms_per_token"] < layer_sum <= total["ms_per_token"] * 1.001
        s = rep["summary"][ph]
        assert s["regions_coverage"] == pytest.approx(layer_sum / total["ms_per_token"])
        block = [r for r in rows if r["layer"] == "block 0"]
        ops_sum = sum(r["ms_per_token"] for r in block if r["op"])
        assert ops_sum <= block[0]["ms_per_token"] * 1.001


def test_bytes_per_token_follow_the_cost_model(rep):
    dec = [r for r in rep["records"] if r["phase"] == "decode"]
    total = [r for r in dec if r["layer"] == "total"][0]
    wb = rep["model"]["weight_bytes_per_token"]
    assert total["weight_bytes_per_token"] == pytest.approx(wb, rel=1e-9)
    assert total["kv_bytes_per_token"] > 0
    for r in dec:
        if r["ms_per_token"] > 0 and r["layer"] != "total":
            assert r["gb_per_s"] == pytest.approx(r["bytes_per_token"] / (r["ms_per_token"] * 1e-3) / 1e9)


def test_decode_is_also_timed_without_regions(rep):
    d = rep["summary"]["decode"]
    assert d["unprofiled_ms_per_token"] > 0
    assert d["profiling_overhead"] == pytest.approx(d["ms_per_token"] / d["unprofiled_ms_per_token"] - 1)


def test_summary_names_the_bottleneck(rep):
    # on a busy machine the sentence first says so (its own test); the verdict follows
    text = rep["summary"]["bottleneck"]
    assert text.startswith(("Decode ", "The machine was busy: ")) and re.search(r"(^|\. )Decode ", text)
    assert rep["summary"]["decode"]["ideal_tokens_per_s"] > 0
    assert rep["notes"]  # synthetic model and missing counters are stated


def test_report_is_the_shared_schema_and_renders(result, rep, tmp_path):
    path = tmp_path / "layers.json"
    report.write_json(rep, path)
    back = report.read_json(path, kind="layers")
    assert back["records"][0]["phase"] == "prefill"
    assert back["records"] == json.loads(json.dumps(result.records()))
    text = layers_command.render_text(result, show_ops=True)
    assert "block 1" in text and "gate_up" in text and "bottleneck:" in text
    # notes are kept apart by what they are about, not by their wording
    assert "model note: " in text and result.notes_of("model")
    assert report.to_csv(back["records"]).splitlines()[0].startswith("phase,layer,op")


@pytest.mark.parametrize("arch", ["gemma3", "qwen3"])
def test_gemma3_and_qwen3_operations_are_measured_regions(profile, tiny_model, arch):
    """Every operation the engine runs for the architecture is a row with a time, bytes from
    the cost model and a verdict; their times sum within their layer's."""
    path = tiny_model(arch=arch, type="q8_0", n_layer=3, ffn=128)
    rep = layers.profile_layers(str(path), threads=2, prompt_tokens=12, gen_tokens=4,
                                profile=profile, events=[]).to_report()
    assert rep["model"]["arch"] == arch
    for ph in ("prefill", "decode"):
        rows = [r for r in rep["records"] if r["phase"] == ph]
        for b in range(3):
            block = [r for r in rows if r["layer"] == f"block {b}"]
            assert [r["op"] for r in block if r["op"]] == list(block_ops(arch))
            assert all(r["ms_per_token"] > 0 and r["verdict"] in roofline.VERDICTS for r in block)
            assert sum(r["ms_per_token"] for r in block if r["op"]) <= block[0]["ms_per_token"] * 1.001


def test_an_f16_kv_cache_is_costed_as_f16(profile):
    kv_bytes = {}
    for kv_type in ("f32", "f16"):
        with Model.load(TINY, threads=1, ctx=32, kv_type=kv_type) as m:
            result = layers.profile_layers(loaded_model=m, prompt_tokens=8, gen_tokens=2,
                                           profile=profile, events=[])
        assert result.model["kv_type"] == kv_type
        total = [r for r in result.rows if r.phase == "decode" and r.layer == "total"][0]
        kv_bytes[kv_type] = total.kv_bytes_per_token
    assert kv_bytes["f16"] == pytest.approx(kv_bytes["f32"] / 2)


def test_phase_choice(profile):
    result = layers.profile_layers(TINY, threads=1, prompt_tokens=4, gen_tokens=2, phase="decode",
                                   profile=profile, events=[])
    assert {r.phase for r in result.rows} == {"decode"} and set(result.phases) == {"decode"}
    with pytest.raises(ValueError):
        layers.profile_layers(TINY, phase="both-ways", profile=profile)


def test_offline_default_falls_back_to_the_synthetic_twin(monkeypatch):
    real = registry.resolve

    def offline(name, *a, **k):
        if name == workload.DEFAULT_MODEL:
            raise ModelNotFoundError("no network")
        return real(name, *a, **k)
    monkeypatch.setattr(registry, "resolve", offline)
    resolved, notes = workload.resolve(workload.DEFAULT_MODEL)
    assert resolved.name.startswith(workload.FALLBACK_MODEL) and "could not be fetched" in notes[0]

    def always_offline(name, *a, **k):
        raise ModelNotFoundError("no network")
    monkeypatch.setattr(registry, "resolve", always_offline)
    with pytest.raises(ModelNotFoundError):  # only the default has a twin to fall back to
        workload.resolve("some-other-model")


def test_command_outputs_and_usage_errors(tmp_path, profile, monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path))
    calibrate.save_profile(profile)
    env = {**__import__("os").environ, "SLMPROF_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "slmprof", "layers", "--model", TINY, "--threads", "1",
                          "--prompt-tokens", "4", "--gen-tokens", "2", "--ops", "--events", "none",
                          "--quiet", "--json", str(tmp_path / "l.json"), "--csv", str(tmp_path / "l.csv"),
                          "--trace", str(tmp_path / "t.json")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "| layer" in out.stdout and "bottleneck:" in out.stdout and out.stderr == ""
    assert json.loads((tmp_path / "l.json").read_text())["kind"] == "layers"
    assert (tmp_path / "l.csv").read_text().startswith("phase,")
    tr = json.loads((tmp_path / "t.json").read_text())
    assert any(e.get("name") == "decode" and e["ph"] == "X" for e in tr["traceEvents"])
    for bad in (["--prompt-tokens", "0"], ["--threads", "0"], ["--hz", "20000"]):
        r = subprocess.run([sys.executable, "-m", "slmprof", "layers", "--model", TINY, *bad],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 2, (bad, r.stderr)


@pytest.mark.slow
def test_fidelity_on_the_smollm2_shape(profile):
    """Per-layer times sum to the measured time per token within 5% (decode, real shape), and
    per-op regions cost under 3% of decode time (on vs off, interleaved), with two engine
    threads. Timing on a shared machine is noisy: scripts/bench_profiling_overhead.py gives
    the figure with the load it was measured under."""
    prof_machine, _ = calibrate.get_profile()
    result = layers.profile_layers("synth:smollm2-135m", threads=2, prompt_tokens=32, gen_tokens=32,
                                   profile=prof_machine, events=[])
    cov = result.phases["decode"].regions_coverage
    print(f"decode regions cover {100 * cov:.2f}% of measured time per token")
    assert 0.95 <= cov <= 1.0

    with Model.load("synth:smollm2-135m", threads=2, ctx=128) as m:
        cost = overhead.profiling_cost(m, prompt_tokens=32, gen_tokens=32, reps=9, events=[])
    ratio = cost.median_ratio["ops"]
    print(f"decode with per-op regions / without (median of 9 interleaved runs): {ratio:.4f}")
    assert cost.region_errors == 0
    assert 0.95 <= cost.coverage["ops"] <= 1.0
    assert ratio < 1.03


def test_first_run_says_up_front_what_it_does_once(isolated_cache, tmp_path, monkeypatch):
    text = layers.first_run_notice(workload.DEFAULT_MODEL, calibrating=True)
    assert re.search(r"calibrates this machine once \(about \d+ (s|min); best on an idle machine", text)
    assert f"downloads {registry.REAL_MODEL} once ({registry.SMOLLM2.download})" in text
    assert str(isolated_cache) in text
    assert "download" not in layers.first_run_notice(TINY, calibrating=True)
    assert "calibrat" not in layers.first_run_notice(f"{registry.REAL_MODEL}:q8_0", calibrating=False)
    assert layers.first_run_notice(TINY, calibrating=False) is None
    # once the model is there (at its size), nothing is said about it
    registry.real_model_path().parent.mkdir(parents=True)
    with open(registry.real_model_path(), "wb") as f:
        f.truncate(registry.REAL_SIZE - 1)
        assert "downloading it once" in layers.first_run_notice(workload.DEFAULT_MODEL, False)
        f.truncate(registry.REAL_SIZE)
    assert layers.first_run_notice(workload.DEFAULT_MODEL, calibrating=False) is None
    # the cache under the home directory is shown as ~/...
    monkeypatch.setenv("HOME", str(tmp_path))
    assert f"~{str(isolated_cache)[len(str(tmp_path)):]}" in layers.first_run_notice(TINY, True)


def test_calibration_time_is_expected_from_its_steps_and_arrays():
    one = calibrate.expected_seconds(threads_max=1, array_bytes=64 << 20)
    assert 5 < one < calibrate.expected_seconds(threads_max=4, array_bytes=64 << 20)
    assert one < calibrate.expected_seconds(threads_max=1, array_bytes=256 << 20)
    assert calibrate.expected_seconds(threads_max=1, seconds_per_step=0.5, array_bytes=64 << 20) > one


def test_first_run_notice_comes_before_the_calibration(isolated_cache, monkeypatch):
    said = []

    def stop(**kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(calibrate, "measure", stop)
    with pytest.raises(KeyboardInterrupt):
        layers.profile_layers(TINY, threads=1, prompt_tokens=8, gen_tokens=4, events=[],
                              progress=said.append)
    assert said and said[0].startswith("first run: slmprof calibrates this machine once")


def test_the_calibrations_age_and_load_are_said_and_a_beaten_roofline_calls_it_stale():
    busy = Load(seconds=30.0, threads=2, run_delay_s=25.0, contention=0.42, others_cores=1.8,
                steal=None, cores=2, own_cpu_s=50.0)
    calib = {"measured": True, "created": "2026-12-04T09:00:00Z", "age_s": 3 * 3600,
             "load": busy.to_dict()}     # as calibrate stores it
    notes = layers.calibration_notes(calib, {"decode": SimpleNamespace(roofline_efficiency=1.3)})
    assert "3 hours ago" in notes[0] and "while the machine was busy" in notes[0] and "42%" in notes[0]
    assert any(n.startswith("the calibration looks stale: decode ran at 130%") for n in notes)
    busy.run_delay_s, busy.contention, busy.others_cores = 0.0, 0.0, 0.1
    quiet = dict(calib, load=busy.to_dict())
    notes = layers.calibration_notes(quiet, {"decode": SimpleNamespace(roofline_efficiency=0.8)})
    assert len(notes) == 1 and "on a quiet machine" in notes[0]
