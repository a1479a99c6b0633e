"""`slmprof validate`: the checks pass on this CPU's paths, fail loudly on a corrupted kernel, and
the references themselves are right."""
import importlib.util

import numpy as np
import pytest

from slmprof import cli, report

from slmprof.engine import quant

from slmprof.analysis import validate

needs_engine = pytest.mark.skipif(importlib.util.find_spec("slmprof.engine.model") is None,
                                  reason="slmprof.engine.model (the engine) is not in this build")


@pytest.mark.parametrize("type", ["q4_0", "q4_1", "q8_0"])
def test_block_decoder_matches_a_hand_made_block(type):
    # One block with scale 0.5 (fp16 0x3800), min -1.0 (0xBC00) for q4_1, quants 0..15 / -16..15.
    if type == "q8_0":
        qs = np.arange(-16, 16, dtype=np.int8)
        block = np.concatenate([np.frombuffer(np.float16(0.5).tobytes(), np.uint8), qs.view(np.uint8)])
        want = 0.5 * qs.astype(np.float32)
    else:
        lo, hi = np.arange(16), 15 - np.arange(16)
        packed = (lo | (hi << 4)).astype(np.uint8)
        q = np.concatenate([lo, hi]).astype(np.float32)
        head = np.float16(0.5).tobytes() + (np.float16(-1.0).tobytes() if type == "q4_1" else b"")
        block = np.concatenate([np.frombuffer(head, np.uint8), packed])
        want = 0.5 * q - 1.0 if type == "q4_1" else 0.5 * (q - 8)
    np.testing.assert_array_equal(validate.decode_blocks(block, type, 32), want)
    np.testing.assert_array_equal(quant.dequantize(block, type, 32), want)


def test_exact_block_dot_against_float():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 256)).astype(np.float32)
    x = rng.standard_normal((1, 256)).astype(np.float32)
    for wt, at in (("q4_0", "q8_0"), ("q4_1", "q8_1"), ("q8_0", "q8_0")):
        wq, aq = quant.quantize(w, wt)[0], quant.quantize(x, at)[0]
        exact, scale = validate.exact_block_dot(wq, wt, aq, at, 256)
        floats = validate.decode_blocks(wq, wt, 256).astype(np.float64) @ \
            validate.decode_blocks(aq, at, 256).astype(np.float64)
        # q8_1's s is d*sum(q) rounded to fp16, so q4_1 differs from the float dot by that rounding.
        assert exact == pytest.approx(floats, abs=(1e-3 if wt == "q4_1" else 1e-12) * scale)


def test_logits_agreement():
    ref = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    same = validate.logits_agreement(ref, ref)
    assert same["kl"] == pytest.approx(0.0, abs=1e-12) and same["top1"] == 1.0
    other = validate.logits_agreement(ref, ref[:, ::-1])
    assert other["kl"] > 0.5 and other["top1"] == 0.0


def _run(tmp_path, *argv):
    out = tmp_path / "v.json"
    code = cli.main(["validate", "--quiet", "--json", str(out), "-o", str(tmp_path / "v.md"), *argv])
    return code, report.read_json(out) if out.exists() else None


def test_every_path_passes_without_a_model(tmp_path):
    code, rep = _run(tmp_path, "--model", "none", "--quick")
    table = (tmp_path / "v.md").read_text()
    assert code == 0, table
    paths = {r["path"] for r in rep["records"]}
    assert paths == {"ref", *quant.available_isas()}
    assert {r["type"] for r in rep["records"]} == set(validate.DEFAULT_TYPES)
    assert all(r["result"] == "pass" for r in rep["records"])
    assert "| type" in table and "threshold" in table and "0 failed" in table


@pytest.mark.parametrize("isa", quant.available_isas())
def test_a_corrupted_kernel_is_caught(tmp_path, isa):
    quant.debug_corrupt_kernel("q4_0", isa, True)
    try:
        code, rep = _run(tmp_path, "--model", "none", "--quick", "--types", "q4_0,q8_0")
    finally:
        quant.debug_corrupt_kernel("q4_0", isa, False)
    assert code == 1
    failed = [r for r in rep["records"] if r["result"] != "pass"]
    assert failed and all(r["type"] == "q4_0" and r["path"] == isa for r in failed)
    assert any("exact integer sums" in r["check"] for r in failed)
    assert "FAILED: q4_0 " + isa in (tmp_path / "v.md").read_text()
    # With the switch off again everything passes.
    assert _run(tmp_path, "--model", "none", "--quick", "--types", "q4_0", "--isa", isa)[0] == 0


@needs_engine
def test_model_logits_on_every_path(tmp_path, tiny_model):
    code, rep = _run(tmp_path, "--model", str(tiny_model(type="q8_0")), "--quick", "--types", "q8_0")
    assert code == 0, (tmp_path / "v.md").read_text()
    model_rows = [r for r in rep["records"] if r["check"].startswith("model vs")]
    assert {r["path"] for r in model_rows} == set(quant.available_isas())
    assert any(r["check"] == "model vs float reference" for r in model_rows)


def test_per_tensor_report(tmp_path, tiny_model):
    code, rep = _run(tmp_path, "--model", str(tiny_model(type="q4_1")), "--tensors", "--types", "q4_0,q8_0")
    assert code == 0
    names = {r["tensor"] for r in rep["records"]}
    assert "blk.0.ffn_up.weight" in names and "token_embd.weight" in names
    for r in rep["records"]:
        assert r["rel_rmse_q4_0"] > r["rel_rmse_q8_0"] >= 0


@needs_engine
@pytest.mark.parametrize("kw", [dict(type="q4_0"), dict(type="q4_1", arch="qwen2"),
                                dict(type="f16", tied=False, tokenizer="spm"),
                                dict(type="q8_0", rope_freqs=True)])
def test_float_forward_matches_the_engine(tiny_model, kw):
    from slmprof.engine.model import Model
    from slmprof.engine.reference import float_forward
    path = tiny_model(**kw)
    toks = [1, 5, 9, 33, 2, 7]
    with Model.load(str(path), threads=1, ctx=64) as m:
        got = np.asarray(m.prefill(toks, all_logits=True), np.float64)
    ref = float_forward(path, toks)
    a = validate.logits_agreement(ref, got)
    assert a["kl"] < validate.MODEL_KL_VS_FLOAT and a["top1"] >= validate.MODEL_TOP1_VS_FLOAT


@pytest.mark.parametrize("argv,code", [(["--isa", "sparc"], 2), (["--types", "iq4_nl"], 2)])
def test_bad_arguments(argv, code):
    assert cli.main(["validate", "--model", "none", "--quiet", *argv]) == code


def test_a_path_this_cpu_lacks_is_unavailable():
    missing = [i for i in quant.isa_names() if i not in quant.available_isas()]
    if not missing:
        pytest.skip("this CPU runs every kernel path")
    assert cli.main(["validate", "--model", "none", "--quiet", "--isa", missing[0]]) == 3
