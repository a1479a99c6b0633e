"""The 5-bit and K types (Q5_0, Q5_1, Q2_K .. Q6_K with Q8_K activations): the reference formats
against the independent numpy reader (engine.reference), against ggml's own quantizers and
dequantizers (llama-cpp-python's libggml, when installed) and the gguf package; every kernel
path's exact integer dots and products; llama-quantize's mix recipe and fallbacks; and a
requantized model that llama.cpp reads to the same logits."""
import ctypes
import glob
import importlib.util
import os

import numpy as np
import pytest

from slmprof import cli
from slmprof.analysis import validate
from slmprof.engine import quant
from slmprof.engine.gguf import open_model
from slmprof.engine.reference import K_TYPES, block_parts, k_values, kblock_parts
from slmprof.engine.requantize import FALLBACK, planned_types, plan_types, requantize_with_report, use_more_bits

NEW = ("q5_0", "q5_1") + K_TYPES
GGML_NAMES = {"q5_0": "q5_0", "q5_1": "q5_1", "q2_k": "q2_K", "q3_k": "q3_K", "q4_k": "q4_K",
              "q5_k": "q5_K", "q6_k": "q6_K", "q8_k": "q8_K"}


def rows(n_rows, n, seed, kind="normal"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n)).astype(np.float32)
    if kind == "scaled":       # super-blocks of very different magnitudes
        x *= rng.uniform(1e-3, 1e2, (n_rows, n // 256, 1)).repeat(256, axis=1).reshape(n_rows, n).astype(np.float32)
    elif kind == "positive":   # no negative values: the fitted mins are 0
        x = np.abs(x) + 0.3
    elif kind == "sparse":     # zero groups and zero super-blocks
        x[rng.random(x.shape) < 0.6] = 0
        x[:, :256] = 0
    return x


def numpy_values(data, type, n):
    """float32 values of rows of `type` from the numpy reader, rounded as ggml rounds them."""
    data = np.asarray(data, np.uint8)
    if type in K_TYPES:
        return k_values(kblock_parts(data, type, n, rows=len(data)))
    d, m, q = block_parts(data, type, n, rows=len(data))
    v = q.astype(np.float32) * d.astype(np.float32)[..., None]
    if m is not None:
        v = v + m.astype(np.float32)[..., None]
    return v.reshape(len(data), n)


@pytest.mark.parametrize("type", NEW)
@pytest.mark.parametrize("kind", ["normal", "scaled", "positive", "sparse"])
def test_dequantize_bit_identical_to_the_numpy_reader(type, kind):
    x = rows(6, 768, seed=hash(kind) % 100, kind=kind)
    q = quant.quantize(x, type)
    assert q.shape == (6, quant.row_bytes(type, 768))
    got = quant.dequantize(q, type, 768)
    assert np.array_equal(got.view(np.uint32), numpy_values(q, type, 768).view(np.uint32))
    # and on scrambled blocks (every code and integer scale value), fp16 fields kept
    bb = quant.block_bytes(type)
    keep = validate.FP16_FIELDS.get(type, (0, 2) if type == "q5_0" else (0, 4))
    blocks = q.reshape(-1, bb).copy()
    rnd = np.random.default_rng(3).integers(0, 256, blocks.shape, dtype=np.uint8)
    rnd[:, keep[0]:keep[1]] = blocks[:, keep[0]:keep[1]]
    rnd = rnd.reshape(q.shape)
    assert np.array_equal(quant.dequantize(rnd, type, 768).view(np.uint32),
                          numpy_values(rnd, type, 768).view(np.uint32))


@pytest.mark.parametrize("type", NEW)
def test_round_trip_error_within_the_named_bounds(type):
    x = rows(32, 4096, seed=1)
    back = quant.dequantize(quant.quantize(x, type), type, 4096)
    assert validate.rel_rmse(x, back) <= validate.REL_RMSE[type]
    # ggml's total error on its cosine signal
    t = validate.ggml_test_data(4096, 0.0)
    td = quant.dequantize(quant.quantize(t, type), type, 4096)
    total = float(np.sqrt(np.sum((t.astype(np.float64) - td) ** 2)) / t.size)
    assert total < validate.GGML_TOTAL_ERROR.get(type, validate.GGML_TOTAL_ERROR_DEFAULT)


def test_q8_k_activations():
    x = rows(3, 512, seed=2)
    x[1, :256] = 0
    a = quant.quantize(x, "q8_k")
    p = kblock_parts(a, "q8_k", 512, rows=3)
    assert np.array_equal(p["q"].reshape(3, 2, 16, 16).sum(-1), p["bsums"])      # bsums are sums of 16
    assert np.all(p["d"][1, 0] == 0) and not np.any(p["q"][1, 0])
    # the extreme of each super-block is -127 (d carries its sign), rounding half to even
    idx = np.abs(x.reshape(3, 2, 256)).argmax(-1)
    assert np.all(np.take_along_axis(p["q"], idx[..., None], -1)[[0, 2]] == -127)
    assert np.allclose(p["d"][..., None] * p["q"], x.reshape(3, 2, 256), atol=np.abs(x).max() / 254 * 1.001)


def _ggml():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install slmprof[peers])")
    import llama_cpp
    libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so*"))
    if not libs:
        pytest.skip("llama-cpp-python has no libggml-base here")
    return ctypes.CDLL(sorted(libs)[0])


@pytest.mark.peers
@pytest.mark.parametrize("type", NEW + ("q8_k",))
def test_bit_identical_to_ggml(type):
    """ggml's own quantize_row_*_ref and dequantize_row_*, from llama-cpp-python's libggml."""
    lib = _ggml()
    qf = getattr(lib, f"quantize_row_{GGML_NAMES[type]}_ref")
    df = getattr(lib, f"dequantize_row_{GGML_NAMES[type]}")
    for kind in ("normal", "scaled", "positive"):
        x = np.ascontiguousarray(rows(4, 1024, seed=5, kind=kind).reshape(-1))
        ours = quant.quantize(x, type)
        theirs = np.zeros_like(ours)
        qf(x.ctypes.data_as(ctypes.c_void_p), theirs.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
        assert np.array_equal(ours, theirs), f"{type} {kind}: blocks differ from ggml's quantizer"
        back = np.zeros(x.size, np.float32)
        df(ours.ctypes.data_as(ctypes.c_void_p), back.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
        assert np.array_equal(quant.dequantize(ours, type, x.size).view(np.uint32), back.view(np.uint32))


@pytest.mark.parametrize("type", [t for t in NEW if t != "q5_1"])
def test_gguf_package_dequantizes_alike(type):
    gq = pytest.importorskip("gguf.quants")
    import gguf
    x = rows(4, 512, seed=6)
    q = quant.quantize(x, type)
    theirs = np.asarray(gq.dequantize(q, getattr(gguf.GGMLQuantizationType, type.upper())), np.float32)
    np.testing.assert_allclose(quant.dequantize(q, type, 512), theirs.reshape(4, 512), rtol=1e-6, atol=1e-6)


# ---- kernel paths ----

@pytest.mark.parametrize("isa", quant.available_isas())
@pytest.mark.parametrize("type", NEW)
def test_dots_and_products_on_every_path(isa, type):
    rng = np.random.default_rng(7)
    n, r = 1024, 37
    w = (rng.standard_normal((r, n)) / 32).astype(np.float32)
    wq = quant.quantize(w, type)
    wd = quant.dequantize(wq, type, n).astype(np.float64)
    at = quant.activation_type(type)
    assert at == ("q8_k" if type in K_TYPES else "q8_1" if type == "q5_1" else "q8_0")
    with quant.force_isa(isa):
        x = rng.standard_normal((5, n)).astype(np.float32)
        act = np.asarray(quant.quantize_activations(x, type)).reshape(5, -1)
        assert np.array_equal(act, quant.quantize(x, at))            # bit-identical activations
        for t in range(5):
            for i in (0, 17, 36):
                exact, scale = validate.exact_block_dot(wq[i], type, act[t], at, n)
                assert abs(quant.vec_dot(type, wq[i], act[t], n) - exact) <= validate.BLOCK_DOT_REL * scale
        for prepare in (False, True):
            weight = quant.weight(wq, type, r, n, prepare=prepare)
            for n_tok in (1, 3, 5):
                y = np.asarray(weight.matmul_act(np.ascontiguousarray(act[:n_tok]), quant._isa_id(isa)), np.float64)
                for t in range(n_tok):
                    for i in range(r):
                        exact, scale = validate.exact_block_dot(wq[i], type, act[t], at, n)
                        assert abs(y[t, i] - exact) <= validate.BLOCK_DOT_REL * scale, (prepare, n_tok, t, i)
        y = np.asarray(quant.matmul(quant.weight(wq, type, r, n), x), np.float64)
        assert validate.rel_rmse(x.astype(np.float64) @ wd.T, y) <= validate.MATMUL_REL[type]


def test_validate_covers_every_new_type_and_path(tmp_path):
    from slmprof import report
    out = tmp_path / "v.json"
    code = cli.main(["validate", "--quiet", "--model", "none", "--quick", "--types", ",".join(NEW),
                     "--json", str(out), "-o", str(tmp_path / "v.md")])
    rep = report.read_json(out)
    assert code == 0, (tmp_path / "v.md").read_text()
    seen = {(r["type"], r["path"]) for r in rep["records"]}
    assert seen == {(t, p) for t in NEW for p in ["ref", *quant.available_isas()]}


@pytest.mark.parametrize("isa", quant.available_isas())
def test_validate_catches_a_corrupted_k_kernel(tmp_path, isa):
    quant.debug_corrupt_kernel("q4_k", isa, True)
    try:
        code = cli.main(["validate", "--quiet", "--model", "none", "--quick", "--types", "q4_k",
                         "--isa", isa, "-o", str(tmp_path / "v.md")])
    finally:
        quant.debug_corrupt_kernel("q4_k", isa, False)
    assert code == 1 and "FAILED: q4_k " + isa in (tmp_path / "v.md").read_text()


# ---- llama-quantize's recipe ----

def smollm2_like():
    """GGUF shapes (row length first) of a SmolLM2-135M-shaped model: 30 layers, width 576."""
    t = {"token_embd.weight": (576, 49152), "output_norm.weight": (576,)}
    for i in range(30):
        b = f"blk.{i}."
        t.update({b + "attn_q.weight": (576, 576), b + "attn_k.weight": (576, 192),
                  b + "attn_v.weight": (576, 192), b + "attn_output.weight": (576, 576),
                  b + "ffn_gate.weight": (576, 1536), b + "ffn_up.weight": (576, 1536),
                  b + "ffn_down.weight": (1536, 576), b + "attn_norm.weight": (576,),
                  b + "ffn_norm.weight": (576,)})
    return t


def test_use_more_bits_is_llama_cpps():
    # 30 layers: the first 3, the last 4 (26..29) and every third from layer 5
    assert [i for i in range(30) if use_more_bits(i, 30)] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]


def test_q4_k_m_recipe_on_smollm2_shapes():
    c = plan_types(smollm2_like(), "q4_k_m", n_layer=30, n_gqa=3)
    assert "blk.0.attn_norm.weight" not in c
    assert c["token_embd.weight"].type == "q8_0" and not c["token_embd.weight"].fell_back   # tied LM head
    more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29}
    for i in range(30):
        down, v = c[f"blk.{i}.ffn_down.weight"], c[f"blk.{i}.attn_v.weight"]
        assert down.type == ("q6_k" if i in more else "q4_k") and not down.fell_back     # 1536 = 6 x 256
        assert v.wanted == ("q6_k" if i in more else "q4_k")
        assert v.type == ("q8_0" if i in more else "q5_0") and v.fell_back               # 576 columns
        for p in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            assert c[f"blk.{i}.{p}.weight"].type == "q5_0"
    assert sum(x.fell_back for x in c.values()) == 180


@pytest.mark.parametrize("ftype,rules", [
    ("q2_k", {"attn_v": "q3_k", "ffn_down": "q3_k", "attn_output": "q3_k", "attn_q": "q2_k"}),
    ("q3_k", {"attn_v": "q3_k", "ffn_down": "q3_k", "attn_output": "q3_k"}),
    ("q5_k", {"attn_v": "q5_k", "ffn_down": "q5_k"}),
    ("q6_k", {"attn_v": "q6_k", "ffn_down": "q6_k", "ffn_up": "q6_k"}),
    ("q5_0", {"attn_v": "q5_0", "ffn_down": "q5_0"}),
])
def test_recipes_and_fallbacks(ftype, rules):
    shapes = {k: ((1536,) + v[1:] if len(v) == 2 and k != "token_embd.weight" else v)
              for k, v in smollm2_like().items()}                 # every row 1536 wide: no fallback
    c = plan_types(shapes, ftype, n_layer=30, n_gqa=3)
    for part, t in rules.items():
        assert c[f"blk.12.{part}.weight"].type == t
    assert c["token_embd.weight"].type == "q8_0"                   # the tied head: 576 wide
    narrow = plan_types(smollm2_like(), ftype, n_layer=30, n_gqa=3)
    for ch in narrow.values():
        if ch.cols == 576 and ch.wanted in FALLBACK:
            assert ch.type == FALLBACK[ch.wanted] and ch.fell_back
    gqa4 = plan_types(shapes, "q2_k", n_layer=30, n_gqa=4)
    assert gqa4["blk.3.attn_v.weight"].type == "q4_k"


@pytest.mark.parametrize("ftype", ["q4_k_m", "q6_k", "q2_k", "q5_1"])
def test_requantized_model_runs_and_matches_the_reference(tiny_model, tmp_path, ftype):
    from slmprof.engine.gguf import open_model
    from slmprof.engine.model import Model
    from slmprof.engine.reference import ReferenceModel
    src = tiny_model(type="f16", dim=256, ffn=512, n_head=4, n_kv_head=2, vocab=320)
    dst, fallbacks = requantize_with_report(src, tmp_path / f"{ftype}.gguf", ftype)
    gf, desc = open_model(dst)
    with gf:
        types = {quant.type_name(t.type) for t in gf.tensors.values() if len(t.shape) == 2}
    assert fallbacks == [] and types <= set(quant.WEIGHT_TYPES)
    toks = [1, 5, 9, 33, 2, 7, 100, 3]
    with Model.load(str(dst), threads=2, ctx=64) as m:
        got = np.asarray(m.prefill(toks, all_logits=True), np.float64)
    with ReferenceModel(dst) as ref:
        want = ref.forward(toks)
    a = validate.logits_agreement(want, got)
    assert a["kl"] < 1e-3 and a["top1"] == 1.0, a


def test_requantize_command_lists_every_fallback(tiny_model, tmp_path, capsys):
    src = tiny_model(type="f16", dim=256, ffn=320, n_head=4, n_kv_head=2)   # ffn_down rows: 320
    out = tmp_path / "m.gguf"
    assert cli.main(["requantize", "--model", str(src), "--type", "q4_k_m", "-o", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out)
    fb = [ln for ln in lines if ln.startswith("fallback:")]
    planned = [c for c in planned_types(src, "q4_k_m").values() if c.fell_back]
    assert len(fb) == len(planned) == 2                                   # ffn_down of both layers
    assert "blk.0.ffn_down.weight: 320 columns" in fb[0] and "Q4_K" in fb[0] and fb[0].endswith("Q5_0")
    assert "blk.1.ffn_down.weight" in fb[1] and "Q6_K" in fb[1] and fb[1].endswith("Q8_0")  # use_more_bits
    gf, desc = open_model(out)
    with gf:     # a mix is known by its name (general.file_type), then its types, most bytes first
        assert desc.file_type.startswith("Q4_K_M (Q4_K, ") and "Q5_0" in desc.file_type


@pytest.mark.peers
@pytest.mark.parametrize("ftype", ["q4_k_m", "q6_k", "q3_k", "q5_1"])
def test_llama_cpp_reads_a_requantized_file_alike(tiny_model, tmp_path, ftype):
    """llama.cpp computes the same logits from the file (its own kernels and float order, and an
    f16 KV cache: on random weights that alone moves the KL to about 1e-3)."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install slmprof[peers])")
    import llama_cpp
    from slmprof.engine.model import Model
    src = tiny_model(type="f16", dim=256, ffn=512, n_head=4, n_kv_head=2, vocab=320)
    dst, _ = requantize_with_report(src, tmp_path / f"{ftype}.gguf", ftype)
    toks = [1, 5, 9, 33, 2, 7, 100, 3]
    llm = llama_cpp.Llama(model_path=str(dst), n_ctx=64, n_threads=2, logits_all=True, verbose=False)
    llm.eval(toks)
    theirs = np.asarray(llm.scores[:len(toks)], np.float64)
    llm.close()
    with Model.load(str(dst), threads=2, ctx=64) as m:
        ours = np.asarray(m.prefill(toks, all_logits=True), np.float64)
    a = validate.logits_agreement(theirs, ours)
    assert a["kl"] < 5e-3 and a["top1"] >= 0.85, a
