"""`plan`: memory, roofline bounds and expected speeds from shapes and device profiles."""
import json
import subprocess
import sys

import pytest

from slmprof import report
from slmprof.analysis import devices, plan, roofline
from slmprof.errors import ContextOverflowError, ModelNotFoundError, ShapeError


def _one(model, type_, device="pi5-8gb", **kw):
    preds = plan.plan([model], device=devices.builtin_profile(device), types=[type_], **kw)
    assert len(preds) == 1
    return preds[0]


def test_memory_parts_follow_the_shape():
    from slmprof.engine.registry import SHAPES
    shape = SHAPES["tinyllama-1.1b"]
    p = _one("tinyllama-1.1b", "q8_0", ctx=1024)
    # weights: every tensor, 2-D in Q8_0 (34 bytes per 32), norms in F32
    n2d = sum(s[0] * s[1] for s in shape.tensor_shapes().values() if len(s) == 2)
    n1d = sum(s[0] for s in shape.tensor_shapes().values() if len(s) == 1)
    assert p.weights_bytes == n2d // 32 * 34 + 4 * n1d
    # KV cache: keys and values of every layer, f32, for 1024 positions
    assert p.kv_bytes == 2 * 22 * 1024 * (4 * 64) * 4
    assert p.memory_bytes == p.weights_bytes + p.kv_bytes + p.work_bytes
    assert p.work_bytes > plan.RUNTIME_BYTES


def test_decode_is_memory_bound_and_follows_bytes_per_token():
    dev = devices.builtin_profile("pi5-8gb")
    p4, p8, p16 = (_one("qwen2.5-0.5b", t, ctx=256, decode_at=0) for t in ("q4_0", "q8_0", "f16"))
    for p in (p4, p8, p16):
        assert p.decode_bound_by == "memory"
        # the bound is the bandwidth over the bytes a token streams (within the tiny compute terms)
        assert p.decode_bound_tok_s == pytest.approx(dev.bandwidth_GBps(4) * 1e9 / p.decode_bytes_per_token,
                                                     rel=0.05)
    assert p4.decode_bound_tok_s > p8.decode_bound_tok_s > p16.decode_bound_tok_s
    # the default efficiency scales the bound and says it is a default
    assert p8.decode_expected_tok_s == pytest.approx(p8.decode_bound_tok_s * plan.DEFAULT_EFFICIENCY["decode"])


def test_prefill_is_compute_bound_and_uses_the_int8_ceiling():
    p = _one("tinyllama-1.1b", "q8_0", prefill_tokens=128)
    assert p.prefill_bound_by == "compute"
    assert p.prefill_bound_tok_s > p.decode_bound_tok_s
    # matmul operations dominate: 2 ops per weight per token at the int8 ceiling
    dev = devices.builtin_profile("pi5-8gb")
    from slmprof.engine.registry import SHAPES
    s = SHAPES["tinyllama-1.1b"]
    matmul_params = s.n_layer * (s.dim * (s.n_head + 2 * s.n_kv_head) * s.head_dim
                                 + s.n_head * s.head_dim * s.dim + 3 * s.dim * s.ffn)
    only_matmuls = dev.int8_GOPs_at(4) * 1e9 / (2 * matmul_params)
    assert 0.8 * only_matmuls < p.prefill_bound_tok_s < only_matmuls


def test_longer_context_costs_memory_and_decode_speed():
    short = _one("smollm2-135m", "q4_0", ctx=512)
    long = _one("smollm2-135m", "q4_0", ctx=8192)
    assert long.kv_bytes == 16 * short.kv_bytes
    assert long.decode_bound_tok_s < short.decode_bound_tok_s


@pytest.mark.parametrize("name", devices.BUILTIN_NAMES)
def test_reference_profiles_are_consistent_with_the_published_figures(name):
    """A measured speed cannot beat the roofline: every published tokens/s figure a profile
    carries must sit under the bound the profile implies (5% slack for run-to-run noise), and
    not absurdly far under it (the ceilings would then be wrong)."""
    dev = devices.builtin_profile(name)
    checked = 0
    for pub in dev.published:
        if pub["type"] not in plan.PLAN_TYPES:
            continue
        p = plan.plan([pub["model"]], device=dev, types=[pub["type"]], ctx=512, decode_at=64,
                      prefill_tokens=128)[0]
        bound = p.decode_bound_tok_s if pub["test"] == "decode" else p.prefill_bound_tok_s
        assert pub["tok_s"] <= 1.05 * bound, (pub, bound)
        assert pub["tok_s"] >= 0.3 * bound, (pub, bound)
        checked += 1
    assert checked >= 3


def test_memory_verdicts():
    assert plan.memory_verdict(50, 100) == plan.FITS
    assert plan.memory_verdict(90, 100) == plan.TIGHT
    assert plan.memory_verdict(101, 100) == plan.NO_FIT
    small = _one("tinyllama-1.1b", "q4_0", device="pi4-4gb", ctx=2048)
    assert small.memory_verdict == plan.FITS
    # Llama-3.2-1B in f16 with a 32k context: 2.5 GB of weights plus 4.3 GB of f32 KV cache
    big = _one("llama-3.2-1b", "f16", device="pi4-4gb", ctx=32768, prefill_tokens=128)
    assert big.memory_verdict == plan.NO_FIT
    assert not big.meets_target and "does not fit" in big.why_not
    assert _one("llama-3.2-1b", "f16", device="pi5-8gb", ctx=32768).memory_verdict != plan.NO_FIT


def test_targets_sort_what_meets_them_first():
    dev = devices.builtin_profile("pi4-4gb")
    preds = plan.plan(["smollm2-135m", "tinyllama-1.1b"], device=dev, types=["q4_0", "q8_0"],
                      min_tok_s=10, max_mem=1_000_000_000)
    flags = [p.meets_target for p in preds]
    assert flags == sorted(flags, reverse=True)
    assert any(flags) and not all(flags)
    for p in preds:
        if p.meets_target:
            assert p.decode_expected_tok_s >= 10 and p.memory_bytes <= 1_000_000_000
        else:
            assert p.why_not


def test_load_time_and_energy_come_from_the_profile():
    dev = devices.builtin_profile("pi5-8gb")
    p = _one("qwen2.5-0.5b", "q8_0")
    assert p.load_s == pytest.approx(p.weights_bytes / (dev.storage_read_MBps * 1e6))
    assert p.energy_J_per_token == pytest.approx(dev.power_W / p.decode_expected_tok_s)
    faster = plan.plan(["qwen2.5-0.5b"], device=dev, types=["q8_0"], storage_MBps=900)[0]
    assert faster.load_s == pytest.approx(p.load_s / 10)


def test_shape_by_hand_matches_the_registry_shape():
    from slmprof.engine.registry import SHAPES
    s = SHAPES["smollm2-135m"]
    spec = (f"n_layer={s.n_layer},dim={s.dim},ffn={s.ffn},n_head={s.n_head},n_kv_head={s.n_kv_head},"
            f"vocab={s.vocab},ctx={s.ctx}")
    dev = devices.builtin_profile("pi5-4gb")
    by_hand = plan.plan([], device=dev, types=["q4_1"], shape_specs=[spec])[0]
    named = plan.plan(["smollm2-135m"], device=dev, types=["q4_1"])[0]
    assert by_hand.model == "shape"
    for key in ("weights_bytes", "kv_bytes", "work_bytes", "decode_bound_tok_s", "prefill_bound_tok_s"):
        assert getattr(by_hand, key) == pytest.approx(getattr(named, key)), key


@pytest.mark.parametrize("spec, message", [
    ("n_layer=2,dim=64", "missing ffn"),
    ("n_layer=2,dim=64,ffn=96,n_head=4,vocab=384,wings=2", "unknown key 'wings'"),
    ("n_layer=2,dim=60,ffn=96,n_head=4,vocab=384", "multiple of 32"),
    ("n_layer=x,dim=64,ffn=96,n_head=4,vocab=384", "not an integer"),
    ("n_layer=2,dim=64,ffn=96,n_head=4,n_kv_head=3,vocab=384", "multiple of n_kv_head"),
])
def test_bad_shapes_are_clear_errors(spec, message):
    with pytest.raises(ShapeError, match=message):
        plan.parse_shape_spec(spec)


def test_context_past_the_model_maximum_is_an_error():
    with pytest.raises(ContextOverflowError, match="maximum of 2048"):
        _one("tinyllama-1.1b", "q4_0", ctx=4096)


def test_unresolvable_model_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError):
        plan.candidates_for("no-such-model-7b")
    with pytest.raises(ModelNotFoundError):
        plan.candidates_for(str(tmp_path / "missing.gguf"))


def test_a_gguf_file_is_planned_at_its_own_types(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path))
    from slmprof.engine import registry
    from slmprof.engine.gguf import open_model
    path = registry.resolve("synth:tiny-llama:q8_0").path
    gf, desc = open_model(path)
    file_weights = desc.weight_bytes()
    gf.close()
    dev = devices.builtin_profile("pi5-8gb")
    own = plan.plan([str(path)], device=dev, ctx=64, prefill_tokens=16)
    assert len(own) == 1 and own[0].type.startswith("q8_0")
    assert own[0].weights_bytes == file_weights
    # planning the same shape as Q8_0 by name gives the same bytes: the planner's sizes are the file's
    named = plan.plan(["tiny-llama"], device=dev, types=["q8_0"], ctx=64, prefill_tokens=16)[0]
    assert named.weights_bytes == file_weights
    assert named.decode_bound_tok_s == pytest.approx(own[0].decode_bound_tok_s)
    # and a GGUF can be planned at other types too
    other = plan.plan([str(path)], device=dev, types=["q4_0", "f16"], ctx=64, prefill_tokens=16)
    assert {p.type for p in other} == {"q4_0", "f16"}


def _bench_report(points):
    from slmprof import report
    recs = [{"backend": "slmprof", "model": m, "threads": 4, "test": phase, "tokens": 64,
             "tok_s_mean": v} for m, phase, v in points]
    recs.append({"backend": "llama.cpp", "model": "smollm2-135m", "threads": 4, "test": "decode",
                 "tokens": 64, "tok_s_mean": 1e6})           # another engine: ignored
    return report.make_report("bench", recs, model=None,
                              settings={"threads": 4, "prompt_tokens": 64, "gen_tokens": 64})


def test_efficiency_is_learnt_from_bench_results():
    dev = devices.builtin_profile("pi5-8gb")
    at = dict(ctx=256, decode_at=64 + 32, prefill_tokens=64)
    bound = {m: _one(m, "q4_0", **at) for m in ("smollm2-135m", "smollm2-360m")}
    rep = _bench_report([
        ("synth:smollm2-135m:q4_0", "decode", 0.5 * bound["smollm2-135m"].decode_bound_tok_s),
        ("synth:smollm2-360m:q4_0", "decode", 0.7 * bound["smollm2-360m"].decode_bound_tok_s),
        ("synth:smollm2-360m:q4_0", "decode", 0.6 * bound["smollm2-360m"].decode_bound_tok_s),
        ("synth:smollm2-135m:q4_0", "prefill", 0.4 * bound["smollm2-135m"].prefill_bound_tok_s),
    ])
    eff = plan.learn_efficiency([rep], dev)
    assert eff.measured
    assert eff.decode == pytest.approx(0.6, rel=1e-6)       # median of 0.5, 0.7, 0.6
    assert eff.prefill == pytest.approx(0.4, rel=1e-6)
    assert "measured on this machine" in eff.source
    # the curve over model size: each size gets the median of its own runs ...
    small = plan.plan(["smollm2-135m"], device=dev, types=["q4_0"], efficiency=eff, **at)[0]
    assert small.decode_expected_tok_s == pytest.approx(0.5 * small.decode_bound_tok_s)
    mid = plan.plan(["smollm2-360m"], device=dev, types=["q4_0"], efficiency=eff, **at)[0]
    assert mid.decode_expected_tok_s == pytest.approx(0.65 * mid.decode_bound_tok_s)
    # ... sizes between are interpolated in log(size), and a phase with one size is constant
    between = plan.plan(["smollm2-135m"], device=dev, types=["q8_0"], efficiency=eff, **at)[0]
    assert 0.5 < between.decode_expected_tok_s / between.decode_bound_tok_s < 0.65
    assert between.prefill_expected_tok_s == pytest.approx(0.4 * between.prefill_bound_tok_s)
    # learning more runs adds to what was learnt; the same run measured again replaces it
    again = _bench_report([("synth:smollm2-135m:q4_0", "decode",
                            0.55 * bound["smollm2-135m"].decode_bound_tok_s)])
    more = plan.learn_efficiency([again], dev, previous=eff)
    assert len(more.points) == len(eff.points)
    assert more.value("decode", small.weights_bytes) == pytest.approx(0.55)


def test_efficiency_prefers_runs_of_the_same_weight_type():
    dev = devices.builtin_profile("pi5-8gb")
    at = dict(ctx=256, decode_at=64 + 32, prefill_tokens=64)
    b4 = _one("smollm2-360m", "q4_0", **at).prefill_bound_tok_s
    b8 = _one("smollm2-360m", "q8_0", **at).prefill_bound_tok_s
    eff = plan.learn_efficiency([_bench_report([("synth:smollm2-360m:q4_0", "prefill", 0.9 * b4),
                                                ("synth:smollm2-360m:q8_0", "prefill", 0.45 * b8)])], dev)
    for t, want in (("q4_0", 0.9), ("q8_0", 0.45)):
        p = plan.plan(["tinyllama-1.1b"], device=dev, types=[t], efficiency=eff, **at)[0]
        assert p.prefill_expected_tok_s == pytest.approx(want * p.prefill_bound_tok_s)
    # a type with no run of its own uses all runs
    p = plan.plan(["tinyllama-1.1b"], device=dev, types=["f16"], efficiency=eff, **at)[0]
    assert p.prefill_expected_tok_s / p.prefill_bound_tok_s == pytest.approx(0.45)  # nearest size


def test_best_pass_learning_takes_the_fastest_repetition():
    dev = devices.builtin_profile("pi5-8gb")
    at = dict(ctx=256, decode_at=64 + 32, prefill_tokens=64)
    bound = _one("smollm2-135m", "q4_0", **at).decode_bound_tok_s
    rep = _bench_report([("synth:smollm2-135m:q4_0", "decode", 0.5 * bound)])
    rep["records"][0]["tok_s_samples"] = [0.3 * bound, 0.5 * bound, 0.7 * bound]
    assert plan.learn_efficiency([rep], dev).decode == pytest.approx(0.5)
    assert plan.learn_efficiency([rep], dev, which="best").decode == pytest.approx(0.7)


def test_efficiency_needs_slmprof_records():
    from slmprof.errors import SlmprofError
    with pytest.raises(SlmprofError, match="no slmprof decode or prefill records"):
        plan.learn_efficiency([_bench_report([])], devices.builtin_profile("pi5-8gb"))


def _cli(*args, cache=None):
    import os
    env = dict(os.environ)
    if cache:
        env["SLMPROF_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "slmprof", "plan", *args], capture_output=True,
                          text=True, env=env)


def test_cli_table_and_json(tmp_path):
    out = _cli("--model", "smollm2-135m,qwen2.5-0.5b", "--device", "pi4-4gb", "--min-tok-s", "5",
               cache=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "NOT measured by this installation" in out.stdout
    assert "| smollm2-135m" in out.stdout and "qwen2.5-0.5b" in out.stdout
    assert "default, not measured" in out.stdout
    out = _cli("--model", "tinyllama-1.1b", "--types", "q4_0,q8_0", "--device", "pi5-8gb", "--json",
               cache=tmp_path)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["kind"] == "plan" and rep["schema"].startswith("slmprof/")
    assert [r["type"] for r in rep["records"]] == ["q4_0", "q8_0"]
    assert rep["device"]["measured_by_this_installation"] is False
    assert rep["device"]["sources"]["read_GBps.4"]


@pytest.mark.parametrize("args, message", [
    (["--model", "smollm2-135m", "--device", "pi9-1gb"], "unknown device"),
    (["--model", "tinyllama-1.1b", "--device", "pi5-8gb", "--ctx", "100000"], "past the model's maximum"),
    (["--model", "no-such-model", "--device", "pi5-8gb"], "no-such-model"),
    (["--model", "smollm2-135m", "--device", "pi5-8gb", "--types", "iq2_xxs"], "unknown type"),
    (["--device", "pi5-8gb"], "give --model"),
])
def test_cli_errors(tmp_path, args, message):
    out = _cli(*args, cache=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_newer_device_schema(tmp_path):
    doc = devices.builtin_profile("pi5-8gb").to_dict()
    doc["schema"] = f"{report.SCHEMA_FAMILY}{report.SCHEMA_VERSION + 1}"
    path = tmp_path / "future.json"
    path.write_text(json.dumps(doc))
    out = _cli("--model", "smollm2-135m", "--device", str(path), cache=tmp_path)
    assert out.returncode == 2 and "newer than this slmprof" in out.stderr


def test_plot_renders(tmp_path):
    pytest.importorskip("matplotlib")
    reports = []
    for dev in ("pi4-4gb", "pi5-8gb"):
        path = tmp_path / f"{dev}.json"
        out = _cli("--model", "smollm2-135m,tinyllama-1.1b", "--types", "q4_0,q8_0", "--device", dev,
                   "--min-tok-s", "8", "--json", "-o", str(path), cache=tmp_path)
        assert out.returncode == 0, out.stderr
        reports.append(str(path))
    png = tmp_path / "plan.png"
    out = subprocess.run([sys.executable, "-m", "slmprof", "plot", "plan", *reports, "-o", str(png)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_lists_devices(tmp_path):
    out = _cli("--list-devices", cache=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in devices.BUILTIN_NAMES:
        assert name in out.stdout
    assert "calibrate --export" in out.stdout


def test_a_mixed_file_is_planned_with_the_engines_own_kernels():
    """A Q4_K_M file holds several tensor types: its bound is made of the engine's figures when
    every one of them was calibrated, else it is a plain roofline."""
    c = roofline.Ceilings(threads=2, bandwidth=20e9, fma=100e9, stream={"q5_0": 10e9, "q4_k": 8e9, "q8_0": 12e9},
                          gemm={"q5_0": 1e11, "q4_k": 1e11, "q8_0": 1e11}, attention=5e9)
    mix = {"q5_0", "q4_k", "q8_0", "f32"}
    assert plan.ceilings_kind(c, "decode", mix) == plan.ENGINE
    assert plan.ceilings_kind(c, "prefill", mix) == plan.ENGINE
    assert plan.ceilings_kind(c, "decode", mix | {"q6_k"}) == plan.ROOFLINE
