"""Kernel correctness: reference formats against an independent numpy implementation, the gguf
package as a cross-check, and (below) every SIMD path against the reference."""
import numpy as np
import pytest

from slmprof.engine import quant
from slmprof.errors import ShapeError, UnsupportedError

QK = 32
BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34, "q8_1": 36}


# ---- independent numpy implementation of the ggml formats (written from the format spec) ----

def np_fp16_bits(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16).view(np.uint16)


def np_round_half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))


def np_quantize(x, name):
    """x: (rows, n) float32 -> (rows, row_bytes) uint8, ggml reference rounding."""
    x = np.asarray(x, np.float32)
    rows, n = x.shape
    if name == "f32":
        return x.view(np.uint8).reshape(rows, -1).copy()
    if name == "f16":
        return x.astype(np.float16).view(np.uint8).reshape(rows, -1)
    b = x.reshape(rows, n // QK, QK)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "q4_0":
            idx = np.argmax(np.abs(b), axis=-1)[..., None]   # first index of the largest |x|
            mx = np.take_along_axis(b, idx, axis=-1)
            d = (mx / np.float32(-8)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            q = np.minimum(15, np.trunc((b * inv).astype(np.float32) + np.float32(8.5))).astype(np.uint8)
            qs = q[..., :16] | (q[..., 16:] << 4)
            out = np.concatenate([np_fp16_bits(d).view(np.uint8).reshape(rows, -1, 2), qs], axis=-1)
        elif name == "q4_1":
            mn = b.min(axis=-1, keepdims=True)
            mx = b.max(axis=-1, keepdims=True)
            d = ((mx - mn) / np.float32(15)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            q = np.minimum(15, np.trunc(((b - mn) * inv).astype(np.float32) + np.float32(0.5))).astype(np.uint8)
            qs = q[..., :16] | (q[..., 16:] << 4)
            out = np.concatenate([np_fp16_bits(d).view(np.uint8).reshape(rows, -1, 2),
                                  np_fp16_bits(mn).view(np.uint8).reshape(rows, -1, 2), qs], axis=-1)
        elif name in ("q8_0", "q8_1"):
            amax = np.abs(b).max(axis=-1, keepdims=True)
            d = (amax / np.float32(127)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            q = np_round_half_away((b * inv).astype(np.float32)).astype(np.int8)
            parts = [np_fp16_bits(d).view(np.uint8).reshape(rows, -1, 2)]
            if name == "q8_1":
                s = (q.astype(np.int32).sum(axis=-1, keepdims=True).astype(np.float32) * d).astype(np.float32)
                parts.append(np_fp16_bits(s).view(np.uint8).reshape(rows, -1, 2))
            parts.append(q.view(np.uint8))
            out = np.concatenate(parts, axis=-1)
        else:
            raise AssertionError(name)
    return out.reshape(rows, -1)


def np_dequantize(data, name, n):
    data = np.asarray(data, np.uint8)
    rows = data.shape[0]
    if name == "f32":
        return data.view(np.float32).reshape(rows, n)
    if name == "f16":
        return data.view(np.float16).astype(np.float32).reshape(rows, n)
    blk = data.reshape(rows, n // QK, BLOCK_BYTES[name])
    d = blk[..., 0:2].copy().view(np.float16).astype(np.float32)
    if name in ("q4_0", "q4_1"):
        qs = blk[..., -16:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
        if name == "q4_0":
            return (d * (q - np.float32(8))).astype(np.float32).reshape(rows, n)
        m = blk[..., 2:4].copy().view(np.float16).astype(np.float32)
        return ((d * q).astype(np.float32) + m).astype(np.float32).reshape(rows, n)
    q = blk[..., -32:].copy().view(np.int8).astype(np.float32)
    return (d * q).astype(np.float32).reshape(rows, n)


def weights(rows, n, seed=0, kind="normal"):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((rows, n), dtype=np.float32)
    if kind == "outliers":
        x = rng.standard_normal((rows, n), dtype=np.float32) * 0.02
        x[:, ::37] *= 300
        return x
    if kind == "ties":   # values that land exactly on rounding ties
        return (rng.integers(-254, 255, (rows, n)) / np.float32(2)).astype(np.float32)
    if kind == "constant":
        return np.full((rows, n), 0.75, np.float32)
    if kind == "zeros":
        return np.zeros((rows, n), np.float32)
    raise AssertionError(kind)


ALL = ["f32", "f16", "q4_0", "q4_1", "q8_0", "q8_1"]
KINDS = ["normal", "outliers", "ties", "constant", "zeros"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("kind", KINDS)
def test_reference_quantize_matches_independent_numpy(name, kind):
    x = weights(7, 256, seed=hash(kind) % 1000, kind=kind)
    got = quant.quantize(x, name)
    assert got.shape == (7, quant.row_bytes(name, 256))
    assert np.array_equal(got, np_quantize(x, name))


@pytest.mark.parametrize("name", ALL)
def test_dequantize_is_exact(name):
    rng = np.random.default_rng(1)
    n, rows = 128, 5
    raw = rng.integers(0, 256, (rows, quant.row_bytes(name, n)), dtype=np.uint8)
    if name not in ("f32", "f16"):
        # random but finite fp16 scales
        blk = raw.reshape(rows, n // QK, -1)
        nsc = 2 if name in ("q4_1", "q8_1") else 1
        blk[..., : 2 * nsc] = np_fp16_bits(rng.uniform(-2, 2, (rows, n // QK, nsc))).view(np.uint8)
    elif name == "f16":
        raw = np_fp16_bits(rng.standard_normal((rows, n))).view(np.uint8).reshape(rows, -1)
    else:
        raw = rng.standard_normal((rows, n), dtype=np.float32).view(np.uint8).reshape(rows, -1)
    got = quant.dequantize(raw, name, n)
    assert got.dtype == np.float32 and got.shape == (rows, n)
    assert np.array_equal(got, np_dequantize(raw, name, n))
    one = quant.dequantize(raw[2].copy(), name, n)
    assert one.shape == (n,) and np.array_equal(one, got[2])


# Round-trip RMSE bounds relative to the data's RMS, of the kind ggml's quantize tests use.
ROUND_TRIP_MAX_REL_RMSE = {"f32": 0.0, "f16": 5e-4, "q8_0": 0.01, "q8_1": 0.01, "q4_1": 0.12, "q4_0": 0.15}


@pytest.mark.parametrize("name", ALL)
def test_round_trip_error_bounds(name):
    x = weights(16, 1024, seed=3)
    y = quant.dequantize(quant.quantize(x, name), name, 1024)
    err = y - x
    rel_rmse = float(np.sqrt(np.mean(err.astype(np.float64) ** 2)) / np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert rel_rmse <= ROUND_TRIP_MAX_REL_RMSE[name]
    if name in ("q4_0", "q4_1", "q8_0", "q8_1"):
        # no element is off by more than one quantization step of its block
        b = np.abs(x.reshape(16, -1, QK))
        step = (b.max(-1, keepdims=True) / (127 if name.startswith("q8") else 7.5))
        assert np.all(np.abs(err.reshape(16, -1, QK)) <= step * 1.01 + 1e-7)


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0", "f16", "f32"])
def test_gguf_package_cross_check(name):
    gq = pytest.importorskip("gguf.quants")
    import gguf
    x = weights(8, 512, seed=5)
    qt = getattr(gguf.GGMLQuantizationType, name.upper())
    theirs = np.asarray(gq.quantize(x, qt)).view(np.uint8).reshape(8, -1)
    ours = quant.quantize(x, name)
    assert np.array_equal(ours, theirs)
    back = np.asarray(gq.dequantize(ours, qt), np.float32).reshape(8, 512)
    assert np.array_equal(quant.dequantize(ours, name, 512), back)


def test_type_names_ids_and_sizes():
    ids = {name: quant.TYPES[name].id for name in quant.WEIGHT_TYPES}
    assert ids == {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
                   "q2_k": 10, "q3_k": 11, "q4_k": 12, "q5_k": 13, "q6_k": 14}
    for name, tid in ids.items():
        assert quant.type_name(tid) == name and quant.type_id(name) == tid
    assert quant.row_bytes("q4_0", 64) == 36
    assert quant.row_bytes("q4_1", 576) == 360
    assert quant.row_bytes("q8_0", 32) == 34
    assert quant.row_bytes("q8_1", 32) == 36
    assert quant.row_bytes("f16", 3) == 6
    assert quant.row_bytes(0, 5) == 20


def test_bad_input_is_a_clear_error():
    with pytest.raises(ShapeError, match="multiple of 32"):
        quant.row_bytes("q4_0", 33)
    with pytest.raises(ShapeError):
        quant.quantize(np.zeros((2, 40), np.float32), "q8_0")
    with pytest.raises(UnsupportedError, match="iq2_xxs"):
        quant.type_id("iq2_xxs")
    with pytest.raises(UnsupportedError):
        quant.type_name(16)
    with pytest.raises(ShapeError, match="take 18 bytes"):
        quant.dequantize(np.zeros(17, np.uint8), "q4_0", 32)
    x = np.zeros(32, np.float32)
    x[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        quant.quantize(x, "q4_1")


def test_fp16_conversion_matches_numpy():
    rng = np.random.default_rng(9)
    vals = np.concatenate([rng.standard_normal(2000).astype(np.float32) * 10.0 ** rng.integers(-9, 5, 2000),
                           np.float32([0.0, -0.0, 65504, 65520, 1e-8, 6e-8, -3e-5, np.inf, -np.inf])]).astype(np.float32)
    ours = np.array([quant.fp32_to_fp16_bits(v) for v in vals], np.uint16)
    assert np.array_equal(ours, np_fp16_bits(vals))
    allbits = np.arange(0, 65536, 997, dtype=np.uint16)
    allbits = allbits[(allbits & 0x7C00) != 0x7C00]
    back = np.array([quant.fp16_bits_to_fp32(int(h)) for h in allbits], np.float32)
    assert np.array_equal(back, allbits.view(np.float16).astype(np.float32))


# ---- kernel paths: every path this machine can run, against the reference ----

import os
import subprocess
import sys

from slmprof.errors import UnavailableError

PATHS = quant.available_isas()
WEIGHT_TYPES = ["q4_0", "q4_1", "q8_0", "f16", "f32"]
# Float results: |kernel - float64 reference| <= MATMUL_REL_TOL * sum(|w_i * a_i|) per output
# (fp32 accumulation over a few thousand terms in different orders).
MATMUL_REL_TOL = 2e-6 * 64


def exact_blocks(rng, name, rows, n):
    """Weight bytes with power-of-two scales (1.0) so every float step of a dot is exact."""
    raw = rng.integers(0, 256, (rows, quant.row_bytes(name, n)), dtype=np.uint8)
    blk = raw.reshape(rows, n // QK, -1)
    blk[..., 0:2] = np_fp16_bits(np.ones((rows, n // QK, 1))).view(np.uint8)
    if name == "q4_1":   # small integer mins
        blk[..., 2:4] = np_fp16_bits(rng.integers(-3, 4, (rows, n // QK, 1))).view(np.uint8)
    return raw


def exact_acts(rng, act_name, n_tok, n):
    raw = np.zeros((n_tok, quant.row_bytes(act_name, n)), np.uint8)
    blk = raw.reshape(n_tok, n // QK, -1)
    q = rng.integers(-127, 128, (n_tok, n // QK, QK), dtype=np.int8)   # the quantizer never makes -128
    blk[..., -QK:] = q.view(np.uint8)
    blk[..., 0:2] = np_fp16_bits(np.ones((n_tok, n // QK, 1))).view(np.uint8)
    if act_name == "q8_1":
        blk[..., 2:4] = np_fp16_bits(rng.integers(-40, 41, (n_tok, n // QK, 1))).view(np.uint8)
    return raw


def exact_products(wraw, name, araw, act_name, n):
    """Integer result of every (row, token) product, from the bytes, in int64."""
    rows, n_tok = wraw.shape[0], araw.shape[0]
    wb = wraw.reshape(rows, n // QK, -1)
    ab = araw.reshape(n_tok, n // QK, -1)
    aq = ab[..., -QK:].view(np.int8).astype(np.int64)
    if name in ("q4_0", "q4_1"):
        qs = wb[..., -16:]
        wq = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.int64) - (8 if name == "q4_0" else 0)
    else:
        wq = wb[..., -QK:].view(np.int8).astype(np.int64)
    out = np.einsum("rbk,tbk->tr", wq, aq)
    if name == "q4_1":
        m = wb[..., 2:4].copy().view(np.float16).astype(np.int64)[..., 0]
        s = ab[..., 2:4].copy().view(np.float16).astype(np.int64)[..., 0]
        out += np.einsum("rb,tb->tr", m, s)
    return out


@pytest.mark.parametrize("isa", PATHS)
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_activation_quantizer_is_bit_identical_to_reference(isa, name):
    act = quant.activation_type(name)
    for kind in KINDS:
        x = weights(3, 320, seed=11, kind=kind)
        assert np.array_equal(quant.quantize_activations(x, name, isa=isa), quant.quantize(x, act)), kind


@pytest.mark.parametrize("isa", PATHS)
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_integer_block_dots_are_exact(isa, name):
    rng = np.random.default_rng(21)
    act_name = quant.activation_type(name)
    for rows, n, n_tok in [(9, 256, 1), (13, 224, 6), (64, 96, 9)]:
        wraw = exact_blocks(rng, name, rows, n)
        araw = exact_acts(rng, act_name, n_tok, n)
        expect = exact_products(wraw, name, araw, act_name, n).astype(np.float64)
        for r in range(rows):
            assert quant.vec_dot(name, wraw[r], araw[0], n, isa=isa) == expect[0, r]
        for prepare in (True, False):
            with quant.force_isa(isa):
                w = quant.weight(wraw, name, rows, n, prepare=prepare)
            y = w.matmul_act(araw, quant._isa_id(isa))
            assert np.array_equal(y.astype(np.float64), expect), (rows, n, n_tok, prepare)


@pytest.mark.parametrize("isa", PATHS)
@pytest.mark.parametrize("name", WEIGHT_TYPES)
@pytest.mark.parametrize("rows,cols,n_tok", [(576, 576, 1), (37, 160, 5), (130, 96, 17), (8, 32, 2)])
def test_matmul_float_results_within_tolerance(isa, name, rows, cols, n_tok):
    rng = np.random.default_rng(rows * cols + n_tok)
    wq = quant.quantize(rng.standard_normal((rows, cols), dtype=np.float32), name)
    wd = quant.dequantize(wq, name, cols).astype(np.float64)
    x = rng.standard_normal((n_tok, cols), dtype=np.float32)
    act = quant.quantize_activations(x, name, isa=isa)
    ad = quant.dequantize(act, quant.activation_type(name), cols).reshape(n_tok, cols).astype(np.float64)
    expect = ad @ wd.T
    scale = np.abs(ad) @ np.abs(wd).T
    if name == "q4_1":
        # Q8_1 carries s = fp16(d * sum(q)) per block; the format's product uses s for the min term
        m = wq.reshape(rows, -1, 20)[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]
        s_blk = act.reshape(n_tok, -1, 36)[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]
        wdm = wd - np.repeat(m, QK, axis=1)
        expect = ad @ wdm.T + s_blk @ m.T
        scale = np.abs(ad) @ np.abs(wdm).T + np.abs(s_blk) @ np.abs(m).T
    for prepare in (True, False):
        with quant.force_isa(isa):
            w = quant.weight(wq, name, rows, cols, prepare=prepare)
            y = quant.matmul(w, x)
        assert y.shape == (n_tok, rows)
        assert np.all(np.abs(y - expect) <= MATMUL_REL_TOL * scale + 1e-30), (prepare, float(np.max(np.abs(y - expect) / scale)))
        # row ranges (how the engine splits rows across threads) give the same numbers
        part = w.matmul_act(act, quant._isa_id(isa), 3, rows - 2) if rows > 5 else None
        if part is not None:
            assert np.array_equal(part[:, 3:rows - 2], y[:, 3:rows - 2])


def test_weights_prepared_for_one_path_compute_on_another():
    rng = np.random.default_rng(4)
    wq = quant.quantize(rng.standard_normal((64, 128), dtype=np.float32), "q4_1")
    x = rng.standard_normal((3, 128), dtype=np.float32)
    w = quant.weight(wq, "q4_1", 64, 128, prepare=True)   # packed for the best path
    ref = quant.matmul(quant.weight(wq, "q4_1", 64, 128, prepare=False), x, isa="scalar")
    for isa in PATHS:
        assert np.allclose(quant.matmul(w, x, isa=isa), ref, rtol=1e-4, atol=1e-4)


def test_isa_selection_and_force():
    names = quant.isa_names()
    assert names == ["scalar", "avx2", "neon", "neon-dotprod", "avx512-vnni"]
    assert "scalar" in PATHS and quant.active_isa() in PATHS
    before = quant.active_isa()
    with quant.force_isa("scalar") as name:
        assert name == "scalar" and quant.active_isa() == "scalar"
    assert quant.active_isa() == before
    missing = [n for n in names if n not in PATHS]
    for n in missing:
        with pytest.raises(UnavailableError, match="not available"):
            quant.set_isa(n)
    with pytest.raises(UnsupportedError, match="unknown kernel path"):
        quant.set_isa("sse9")


def _env_isa(value):
    code = "from slmprof.engine import quant\ntry:\n print(quant.active_isa())\nexcept Exception as e:\n print(type(e).__name__, e)"
    env = dict(os.environ, SLMPROF_ISA=value)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


def test_slmprof_isa_env_forces_a_path_or_fails_clearly():
    assert _env_isa("scalar") == "scalar"
    missing = [n for n in quant.isa_names() if n not in PATHS]
    if missing:
        out = _env_isa(missing[0])
        assert out.startswith("UnavailableError") and missing[0] in out
    assert _env_isa("bogus").startswith("UnsupportedError")


def _missing_path():
    missing = [n for n in quant.isa_names() if n not in PATHS]
    if not missing:
        pytest.skip("this machine runs every kernel path: none to refuse")
    return missing[0]


def test_a_refused_slmprof_isa_stays_refused_after_a_forced_section():
    """force_isa puts back SLMPROF_ISA's verdict with the path: a path the CPU lacks must not
    quietly become the best one once a forced section (validate, a test) ends."""
    missing = _missing_path()
    code = ("from slmprof.engine import quant\n"
            "with quant.force_isa('scalar'):\n print(quant.active_isa())\n"
            "try:\n print(quant.active_isa())\nexcept Exception as e:\n print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, SLMPROF_ISA=missing)).stdout.splitlines()
    assert out[0] == "scalar"
    assert out[1].startswith("UnavailableError") and f"SLMPROF_ISA='{missing}'" in out[1], out


@pytest.mark.parametrize("command", [["validate", "--quick"],
                                     ["generate", "--prompt", "hi", "--max-tokens", "1"]])
def test_commands_refuse_a_path_the_cpu_lacks_with_the_reason(command, tiny_model):
    missing = _missing_path()
    if command[0] == "generate":
        command = command + ["--model", str(tiny_model())]
    out = subprocess.run([sys.executable, "-m", "slmprof", *command], capture_output=True,
                         text=True, env=dict(os.environ, SLMPROF_ISA=missing), timeout=300)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"SLMPROF_ISA='{missing}': this CPU or build cannot run it" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "passed" not in out.stdout


def test_corrupt_switch_breaks_exactly_one_path():
    rng = np.random.default_rng(8)
    wq = quant.quantize(rng.standard_normal((16, 64), dtype=np.float32), "q8_0")
    x = rng.standard_normal((1, 64), dtype=np.float32)
    w = quant.weight(wq, "q8_0", 16, 64)
    isa = PATHS[-1]
    good = quant.matmul(w, x, isa=isa)
    act = quant.quantize_activations(x, "q8_0", isa=isa)
    good_dot = quant.vec_dot("q8_0", wq[0], act[0], 64, isa=isa)
    quant.debug_corrupt_kernel("q8_0", isa, True)
    try:
        assert not np.allclose(quant.matmul(w, x, isa=isa), good, rtol=1e-2)
        assert abs(quant.vec_dot("q8_0", wq[0], act[0], 64, isa=isa) - good_dot) > 1e-3
        assert np.allclose(quant.matmul(w, x, isa="scalar"), good, rtol=1e-4, atol=1e-4) or isa == "scalar"
    finally:
        quant.debug_corrupt_kernel("q8_0", isa, False)
    assert np.array_equal(quant.matmul(w, x, isa=isa), good)


def test_kernel_bad_input_is_an_error_not_a_crash():
    wq = quant.quantize(np.ones((4, 64), np.float32), "q4_0")
    with pytest.raises(ShapeError, match="takes 144 bytes"):
        quant.weight(wq[:3], "q4_0", 4, 64)
    w = quant.weight(wq, "q4_0", 4, 64)
    act = quant.quantize_activations(np.ones((2, 64), np.float32), "q4_0")
    with pytest.raises(ValueError, match="invalid argument"):
        w.matmul_act(act, -1, 0, 5)       # rows past the end
    with pytest.raises(ShapeError):
        w.matmul_act(act[:, :30], -1)     # activation rows too short
    with pytest.raises(ShapeError):
        quant.matmul(w, np.ones((1, 32), np.float32))


# ---- NEON paths: cross-compiled C test under qemu as a Pi 4 (cortex-a72) and Pi 5 (cortex-a76) ----

@pytest.mark.arm64
def test_arm64_neon_kernels_under_qemu(tmp_path):
    import shutil
    from pathlib import Path
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64-static") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install gcc-aarch64-linux-gnu qemu-user-static)")
    script = Path(__file__).resolve().parent.parent / "scripts" / "test_arm64_kernels.sh"
    if not script.exists():
        pytest.skip("scripts/test_arm64_kernels.sh is not in this installation (run from a source checkout)")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env=dict(os.environ, OUT=str(tmp_path)), timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # each core dispatched to its own path, and every path passed
    assert "best: neon\nactive: neon" in out.stdout
    assert "best: neon-dotprod\nactive: neon-dotprod" in out.stdout
    assert "PASS neon-dotprod" in out.stdout and "FAIL" not in out.stdout
