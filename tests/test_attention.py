"""Attention, one query head at a time, on every kernel path this machine runs (AVX2 on x86; NEON
on Arm, which scripts/arm64/run_tests.sh checks on emulated Cortex-A72 and A76) against a float64
numpy reference and against the portable C path; and the sliding window of gemma3 through a whole
model with Gemma's head size, each path against the portable one.

Tolerances: the paths sum q . k and the weighted values in float32 in different orders and the
vector exponential is a polynomial (relative error < 2e-7), so outputs agree with float64 to a
few float32 roundings of the largest value summed: 2e-5 of the largest |v|.
"""
import numpy as np
import pytest

from slmprof.engine import quant
from slmprof.engine.model import Model
from slmprof.engine.reference import ReferenceModel
from slmprof.errors import ShapeError
from tiny_models import tiny, write_tiny_model

PATHS = quant.available_isas()
HEAD_DIMS = [64, 128, 256, 80, 16, 6]   # SmolLM2, Qwen 3, Gemma 3, others; 6 takes the portable path
N_POS = [1, 3, 17, 130]                 # one position, under a vector, over several


def reference(q, k, v, scale):
    hd = q.size
    s = k[:, :hd].astype(np.float64) @ q.astype(np.float64) * scale
    w = np.exp(s - s.max())
    return (w / w.sum()) @ v[:, :hd].astype(np.float64)


@pytest.mark.parametrize("kv_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("isa", PATHS)
def test_attention_matches_float64_and_the_portable_path(isa, head_dim, kv_dtype):
    rng = np.random.default_rng(head_dim)
    for n_pos in N_POS:
        # each row holds this head's head_dim elements, then another KV head's: kv_stride > head_dim
        stride = 2 * head_dim
        q = rng.standard_normal(head_dim).astype(np.float32)
        k = (rng.standard_normal((n_pos, stride)) * 0.5).astype(kv_dtype)
        v = rng.standard_normal((n_pos, stride)).astype(kv_dtype)
        scale = 1.0 / np.sqrt(head_dim)
        got = quant.attend(q, k, v, scale, isa)
        want = reference(q, k, v, scale)
        tol = 2e-5 * np.abs(v[:, :head_dim].astype(np.float64)).max()
        assert np.abs(got - want).max() <= tol, (isa, head_dim, n_pos)
        portable = quant.attend(q, k, v, scale, "scalar")
        assert np.abs(got - portable).max() <= tol, (isa, head_dim, n_pos)


def test_attention_input_errors():
    q = np.zeros(64, np.float32)
    with pytest.raises(ShapeError):
        quant.attend(q, np.zeros((4, 32), np.float32), np.zeros((4, 32), np.float32), 1.0)
    with pytest.raises(ShapeError):
        quant.attend(q, np.zeros((4, 64), np.float16), np.zeros((4, 64), np.float32), 1.0)
    with pytest.raises(ShapeError):
        quant.attend(q, np.zeros((0, 64), np.float32), np.zeros((0, 64), np.float32), 1.0)


@pytest.mark.parametrize("head_dim", [128, 256])
def test_sliding_window_decode_on_each_path_matches_the_portable_path(tmp_path, head_dim):
    """gemma3 with a window of 8 on layer 0 (full attention on layer 1), 4 query heads over one
    KV head of `head_dim`: 24 tokens decoded one at a time slide past the window, on every path
    and on the portable one, both against the float64 reference."""
    shape = tiny(arch="gemma3", dim=128, n_head=4, n_kv_head=1, head_dim=head_dim)
    path = tmp_path / f"gemma3-{head_dim}.gguf"
    write_tiny_model(path, shape, "f32")
    seq = np.random.default_rng(5).integers(0, 320, 24)
    with ReferenceModel(path, quantize_activations=False) as ref:
        want = ref.forward(seq)
    std = want.std()
    runs = {}
    for isa in PATHS:
        with quant.force_isa(isa), Model.load(path, threads=2, ctx=64, kv_type="f32") as m:
            runs[isa] = np.stack([m.decode(int(t)) for t in seq]).astype(np.float64)
        assert np.abs(runs[isa] - want).max() <= 1e-4 * std, isa
    for isa in PATHS:
        assert np.abs(runs[isa] - runs["scalar"]).max() <= 1e-4 * std, isa
