"""Proof, on this CPU, that every quantization kernel path computes what it should.

Each check compares one kernel path against an independent reference and yields one row:
type x path x check, with a metric, its threshold and pass/fail. The references:

- format decoding written here in numpy from the block layouts (dequantization must be exact);
- exact integer block sums in numpy (int64) for the quantized dot products;
- float64 numpy products of the dequantized weights (matrix-vector and matrix-matrix);
- a float numpy forward pass of the whole model on its dequantized weights
  (`slmprof.engine.reference.float_forward`).

Thresholds are named; the quantization-error ones follow ggml's tests/test-quantize-fns
(total error sqrt(sum d^2)/n on 0.1 + 2 cos(i + offset) data, dot-product error |dot - ref|/n).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from slmprof.analysis.perplexity import log_softmax
from slmprof.engine import quant
from slmprof.engine.gguf import describe_model, GGUFFile
from slmprof.engine.model import Model
from slmprof.engine.reference import K_TYPES, block_parts, float_forward, k_values, kblock_parts
from slmprof.engine.requantize import FALLBACK, fallback_type
from slmprof.errors import UnavailableError

DEFAULT_TYPES = quant.QUANTIZED_TYPES + ("f16",)
QUANTIZED = quant.QUANTIZED_TYPES

# --- named thresholds --------------------------------------------------------------------------
# ggml tests/test-quantize-fns: MAX_QUANTIZATION_TOTAL_ERROR (_2BITS for q2_k, _3BITS for
# q3_k) and MAX_DOT_PRODUCT_ERROR (_LOWBIT for q2_k).
GGML_TOTAL_ERROR = {"q2_k": 0.0075, "q3_k": 0.0040}
GGML_TOTAL_ERROR_DEFAULT = 0.002
GGML_DOT_ERROR = {"q2_k": 0.04}
GGML_DOT_ERROR_DEFAULT = 0.02
# Relative RMSE of quantizing Gaussian rows (the formats give ~0.11, ~0.09, ~0.006 and ~3e-4;
# q5_0 0.045, q5_1 0.041, q2_k 0.29, q3_k 0.15, q4_k 0.07, q5_k 0.035, q6_k 0.017).
REL_RMSE = {"q4_0": 0.14, "q4_1": 0.12, "q8_0": 0.008, "f16": 5e-4, "q5_0": 0.06, "q5_1": 0.055,
            "q2_k": 0.34, "q3_k": 0.18, "q4_k": 0.085, "q5_k": 0.045, "q6_k": 0.022}
# Worst element error as a fraction of its block's scale: half a quantization step, plus the
# fp16 rounding of the block's scale (q4_1 step = range/15, q8_0 absmax/127). q4_0 maps the
# signed extreme to -8, so the other side ends at 7/8 of it: a full step, 1/8, at worst (q5_0:
# 1/16). f16: half an ulp, relative to the value (or to the smallest normal half, 2^-14).
# K types, against the super-block's largest |x|: their fitted scales trade the extremes for the
# bulk, and a group's scale is itself rounded to 4-8 bits, so the bounds are measured ones
# (worst seen on 128k Gaussian values, with a third more room).
MAX_ERR_PER_BLOCK = {"q4_0": 1 / 8 + 0.004, "q4_1": 0.5 / 15 + 0.004, "q8_0": 0.5 / 127 + 0.001,
                     "f16": 2.0 ** -11, "q5_0": 1 / 16 + 0.004, "q5_1": 0.5 / 31 + 0.004,
                     "q2_k": 0.40, "q3_k": 0.25, "q4_k": 0.12, "q5_k": 0.06, "q6_k": 0.03}
# Quantized dot products against exact integer block sums: float32 accumulation only.
BLOCK_DOT_REL = 2e-6
# Products against float64 on the dequantized weights: activations are quantized to 8 bits
# (q8_0/q8_1 per 32, q8_k per 256: ~0.5-1% relative error) except for f16 weights, whose
# activations stay f32.
MATMUL_REL = {"q4_0": 0.012, "q4_1": 0.012, "q8_0": 0.012, "f16": 1e-5, "q5_0": 0.012, "q5_1": 0.012,
              **{t: 0.02 for t in K_TYPES}}
MATMUL_COSINE = {"q4_0": 0.9999, "q4_1": 0.9999, "q8_0": 0.9999, "f16": 0.9999999, "q5_0": 0.9999,
                 "q5_1": 0.9999, **{t: 0.9998 for t in K_TYPES}}
# Whole model.
# Paths differ in float summation order only; a different rounding of one activation then
# moves the next layer's 8-bit codes, so two correct paths drift apart by about as much as
# either drifts from float (KL ~0.01 over 32 tokens of SmolLM2-135M, max logit difference ~0.5
# std). A wrong kernel is far beyond that (a 6% error in one type's dot product: KL ~0.5).
MODEL_KL_VS_FLOAT = 0.05        # nats per token, mean
MODEL_TOP1_VS_FLOAT = 0.80
MODEL_KL_VS_SCALAR = 0.05
MODEL_TOP1_VS_SCALAR = 0.80
MODEL_MAXDIFF_VS_SCALAR = 1.5   # max |logit difference| / std of the reference logits
MODEL_KL_RATIO_VS_SCALAR = 1.5  # a path's KL to float over the scalar path's (+ 0.002 slack)

# A short real text to run the whole model on (the Python standard library's own words).
REAL_TEXT = ("Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
             "than complex. Complex is better than complicated. Flat is better than nested. "
             "Sparse is better than dense. Readability counts. Special cases aren't special enough "
             "to break the rules. Although practicality beats purity. Errors should never pass "
             "silently. Unless explicitly silenced.")


@dataclass
class Check:
    type: str
    path: str            # kernel path ("ref" for the reference quantizers themselves)
    check: str
    metric: str
    value: float
    threshold: float
    op: str = "<="       # how value must compare with threshold: "<=", ">=" or "=="
    detail: str = ""

    @property
    def passed(self) -> bool:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        if self.op == "<=":
            return v <= self.threshold
        if self.op == ">=":
            return v >= self.threshold
        return v == self.threshold

    def record(self) -> dict:
        return {"type": self.type, "path": self.path, "check": self.check, "metric": self.metric,
                "value": self.value, "op": self.op, "threshold": self.threshold,
                "result": "pass" if self.passed else "FAIL", "detail": self.detail}


# The fp16 scale fields of the K types' blocks (byte range): kept when the rest is scrambled.
FP16_FIELDS = {"q2_k": (80, 84), "q3_k": (108, 110), "q4_k": (0, 4), "q5_k": (0, 4), "q6_k": (208, 210)}


# --- independent decoding of the block formats ---------------------------------------------------
def decode_blocks(data: np.ndarray, type: str, n: int) -> np.ndarray:
    """float32 values of one row of n elements, decoded from the GGUF block layout with numpy."""
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if type == "f32":
        return raw.view(np.float32)[:n].copy()
    if type == "f16":
        return raw.view(np.float16)[:n].astype(np.float32)
    if type in K_TYPES:
        return k_values(kblock_parts(raw, type, n))[0]
    if type == "q8_k":
        p = kblock_parts(raw, type, n)
        return (p["d"].astype(np.float32)[..., None] * p["q"].astype(np.float32)).reshape(-1)
    d, second, q = block_parts(raw, type, n)                   # (nb,), (nb,) or None, (nb, 32)
    out = q.astype(np.float32) * d.astype(np.float32)[:, None]
    if type in ("q4_1", "q5_1"):
        out = out + second.astype(np.float32)[:, None]          # m; Q8_1's s is not a value
    return out.reshape(-1).astype(np.float32)


def exact_block_dot(w_row: np.ndarray, w_type: str, act_row: np.ndarray, act_type: str,
                    n: int) -> tuple:
    """sum over blocks of d_w d_a sum(q_w q_a) (+ m_w s_a for q4_1/q5_1; K types per
    super-block d_a (d sum_g sc_g sum q_w q_a - dmin sum_g mn_g bsum_g)), in exact integers and
    float64; also the sum of |terms| to scale the tolerance by."""
    if w_type in K_TYPES:
        w, a = kblock_parts(w_row, w_type, n), kblock_parts(act_row, act_type, n)
        groups = (w["q"] * a["q"]).reshape(1, -1, 16, 16).sum(axis=-1)          # (1, sb, 16)
        sumi = (w["sc"] * groups).sum(axis=-1)
        summ = (w["mn"] * a["bsums"]).sum(axis=-1)
        t1, t2 = a["d"] * w["d"] * sumi, a["d"] * w["dmin"] * summ
        return float((t1 - t2).sum()), float((np.abs(t1) + np.abs(t2)).sum())
    dw, mw, qw = block_parts(w_row, w_type, n)
    da, sa, qa = block_parts(act_row, act_type, n)
    isum = (qw * qa).sum(axis=1)                       # exact int64 per block
    terms = dw * da * isum.astype(np.float64)
    if w_type in ("q4_1", "q5_1"):
        terms = terms + mw * sa
    return float(terms.sum()), float(np.abs(terms).sum())


# --- statistics --------------------------------------------------------------------------------

def rel_rmse(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    denom = math.sqrt(float(np.mean(ref * ref))) or 1.0
    return math.sqrt(float(np.mean((ref - got) ** 2))) / denom


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def logits_agreement(ref: np.ndarray, got: np.ndarray) -> dict:
    """KL(ref || got) mean per position, top-1 agreement, max |diff| over the ref logits' std."""
    lp, lq = log_softmax(ref), log_softmax(got)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    top1 = float(np.mean(np.argmax(ref, -1) == np.argmax(got, -1)))
    maxdiff = float(np.max(np.abs(np.asarray(ref, np.float64) - got)))
    scale = float(np.std(ref)) or 1.0
    return {"kl": float(np.mean(kl)), "kl_max": float(np.max(kl)), "top1": top1,
            "maxdiff_rel": maxdiff / scale}


def ggml_test_data(n: int, offset: float) -> np.ndarray:
    """ggml's quantization test signal: 0.1 + 2 cos(i + offset)."""
    return (0.1 + 2 * np.cos(np.arange(n, dtype=np.float64) + offset)).astype(np.float32)


# --- kernel access -------------------------------------------------------------------------------

def kernel_paths(requested: str = "all") -> list:
    """The kernel paths to validate: every one this CPU can run, or the one asked for."""
    available = list(quant.available_isas())
    if requested in (None, "all"):
        return available
    if requested not in quant.isa_names():
        raise ValueError(f"unknown kernel path {requested!r}; choose all or one of "
                         f"{', '.join(quant.isa_names())}")
    if requested not in available:
        raise UnavailableError(f"kernel path {requested} cannot run on this CPU or build "
                               f"(available here: {', '.join(available)})")
    return [requested]


def _weight(wq: np.ndarray, type: str, cols: int):
    """A kernel-ready weight, prepared (repacked) for the active path as the engine does."""
    wq = np.ascontiguousarray(wq, dtype=np.uint8)
    return quant.weight(wq, type, wq.shape[0], cols, prepare=True)


def _matmul(wq: np.ndarray, type: str, x: np.ndarray) -> np.ndarray:
    """y (n_tok, rows) = x W^T on the active kernel path; activations quantized by the kernels."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.asarray(quant.matmul(_weight(wq, type, x.shape[1]), x), dtype=np.float64)


def _activations(x: np.ndarray, type: str):
    """The active path's own activation quantization of x (n_tok, cols): (bytes, format name)."""
    return quant.quantize_activations(x, type), quant.activation_type(type)


def _matmul_quantized(wq: np.ndarray, type: str, act: np.ndarray, cols: int) -> np.ndarray:
    """The (repacked) matrix product on already-quantized activations, on the active path."""
    w = _weight(wq, type, cols)
    return np.asarray(w.matmul_act(np.ascontiguousarray(act), quant._isa_id(quant.active_isa())),
                      dtype=np.float64)


# --- the checks ----------------------------------------------------------------------------------

@dataclass
class Plan:
    types: Sequence[str]
    paths: Sequence[str]
    quick: bool = False
    model_path: Optional[str] = None
    model_name: Optional[str] = None
    model_shapes: Sequence[tuple] = ()    # (rows, cols) of the model's weight matrices
    text_tokens: int = 32
    seed: int = 0
    notes: list = field(default_factory=list)

    @property
    def random_shapes(self):
        base = [(64, 256), (96, 544), (40, 512)]
        return base if self.quick else base + [(256, 1024), (33, 2048)]

    @property
    def n_tok_mm(self):
        return (1, 7) if self.quick else (1, 7, 33)

    def matmul_shapes(self, type=None):
        """(rows, cols) to multiply; for a type, those whose rows hold whole blocks of it."""
        shapes = list(self.random_shapes)
        for s in self.model_shapes:
            if s not in shapes:
                shapes.append(s)
        be = quant.block_elems(type) if type else 1
        return [(r, c) for r, c in shapes if c % be == 0]

    def work_units(self) -> dict:
        """Rough operation counts of what the run will do, to estimate its duration."""
        rows_elems = 0
        for rows, cols in self.matmul_shapes():
            rows_elems += rows * cols * sum(self.n_tok_mm)
        kernel = rows_elems * len(self.types) * len(self.paths)
        quant = (32 * 128 * 8 + 64 * 4096) * len(self.types)
        return {"kernel_ops": kernel, "quant_elems": quant}


def _rng(seed, *salt):
    # crc32, not hash(): str hashes change from one process to the next.
    import zlib
    return np.random.default_rng([seed, *[zlib.crc32(str(s).encode()) for s in salt]])


def reference_checks(type: str, seed: int, real_rows: Optional[np.ndarray] = None) -> list:
    """Checks of the reference quantizer and dequantizer (path "ref")."""
    out = []
    rng = _rng(seed, "ref", type)
    n = 4096
    # Dequantization: random valid blocks decoded by C and by numpy must agree bit for bit.
    if type in QUANTIZED:
        x = rng.standard_normal((16, n)).astype(np.float32) * rng.uniform(0.01, 10, (16, 1)).astype(np.float32)
        data = quant.quantize(x, type)
        # Scramble the quants and the integer scales (keep the fp16 scales) so that every code
        # value appears.
        bb = quant.block_bytes(type)
        blocks = data.reshape(-1, bb).copy()
        keep = FP16_FIELDS.get(type, (0, 2) if type in ("q4_0", "q8_0", "q5_0") else (0, 4))
        scrambled = rng.integers(0, 256, blocks.shape, dtype=np.uint8)
        scrambled[:, keep[0]:keep[1]] = blocks[:, keep[0]:keep[1]]
        data = scrambled.reshape(data.shape)
    else:
        x = rng.standard_normal((16, n)).astype(np.float32)
        data = x.astype(np.float16).view(np.uint8).reshape(16, -1)
    got = quant.dequantize(data, type, n)
    want = np.stack([decode_blocks(row, type, n) for row in data])
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.shape == want.shape else float("inf")
    out.append(Check(type, "ref", "dequantize = block decode", "max |diff|", diff, 0.0, "==",
                     f"{data.shape[0]} rows x {n} random codes"))

    # Quantization error on Gaussian rows (and on the model's own rows when given).
    x = rng.standard_normal((32, n)).astype(np.float32)
    deq = quant.dequantize(quant.quantize(x, type), type, n)
    out.append(Check(type, "ref", "quantize gaussian", "rel RMSE", rel_rmse(x, deq),
                     REL_RMSE[type], detail=f"32 x {n}"))
    be = max(quant.block_elems(type), 32)
    blocks_x = x.reshape(-1, be).astype(np.float64)
    err = np.abs(blocks_x - deq.reshape(-1, be))
    if type in ("q4_1", "q5_1"):
        scale = blocks_x.max(1) - blocks_x.min(1)
    elif type == "f16":
        scale = None
    else:
        scale = np.abs(blocks_x).max(1)
    if scale is None:
        worst = float(np.max(err / np.maximum(np.abs(blocks_x), 2.0 ** -14)))
        metric = "max rel err"
    else:
        worst = float(np.max(err.max(1) / np.maximum(scale, 1e-30)))
        metric = "max err / block scale"
    out.append(Check(type, "ref", "quantize worst element", metric, worst, MAX_ERR_PER_BLOCK[type]))
    if real_rows is not None and len(real_rows) and real_rows.shape[1] % quant.block_elems(type) == 0:
        r = np.ascontiguousarray(real_rows, np.float32)
        rd = quant.dequantize(quant.quantize(r, type), type, r.shape[1])
        out.append(Check(type, "ref", "quantize model rows", "rel RMSE", rel_rmse(r, rd),
                         REL_RMSE[type], detail=f"{r.shape[0]} x {r.shape[1]} from the model"))
    # ggml's total quantization error on its cosine signal.
    t = ggml_test_data(32 * 128, 0.0)
    td = quant.dequantize(quant.quantize(t, type), type, t.size)
    total = math.sqrt(float(np.sum((t.astype(np.float64) - td) ** 2))) / t.size
    out.append(Check(type, "ref", "ggml total error", "sqrt(sum d^2)/n", total,
                     GGML_TOTAL_ERROR.get(type, GGML_TOTAL_ERROR_DEFAULT)))
    return out


def path_checks(type: str, path: str, plan: Plan, progress: Optional[Callable] = None) -> list:
    """Checks of one kernel path for one weight type: dot products and products vs references."""
    out = []
    rng = _rng(plan.seed, path, type)
    with quant.force_isa(path):
        # Block dot products exactly, on the path's own activation quantization.
        if type in QUANTIZED:
            n = 1024
            w = rng.standard_normal((8, n)).astype(np.float32)
            x = rng.standard_normal((3, n)).astype(np.float32)
            wq = quant.quantize(w, type)
            act_bytes, act_type = _activations(x, type)
            act_bytes = np.asarray(act_bytes).reshape(3, -1)
            ref_act = quant.quantize(x, act_type)
            # The path's activation quantizer against the reference one.
            a_got = np.stack([decode_blocks(r, act_type, n) for r in act_bytes])
            a_ref = np.stack([decode_blocks(r, act_type, n) for r in ref_act])
            differ = float(np.mean(a_got != a_ref))
            out.append(Check(type, path, f"activations ({act_type}) = reference",
                             "share of values differing", differ, 0.0, "==", "3 x 1024"))
            exact = np.zeros((3, 8))
            scale = np.zeros((3, 8))
            for t_i in range(3):
                for r_i in range(8):
                    exact[t_i, r_i], scale[t_i, r_i] = exact_block_dot(wq[r_i], type, act_bytes[t_i],
                                                                       act_type, n)
            dots = np.array([[quant.vec_dot(type, wq[r_i], act_bytes[t_i], n) for r_i in range(8)]
                             for t_i in range(3)])
            out.append(Check(type, path, "vec_dot = exact integer sums", "max |err| / sum|terms|",
                             float(np.max(np.abs(dots - exact) / np.maximum(scale, 1e-30))),
                             BLOCK_DOT_REL, detail="8 rows x 3 tokens x 1024"))
            y = _matmul_quantized(wq, type, act_bytes, n)           # (3, 8)
            out.append(Check(type, path, "matmul (packed) = exact integer sums",
                             "max |err| / sum|terms|",
                             float(np.max(np.abs(y - exact) / np.maximum(scale, 1e-30))),
                             BLOCK_DOT_REL, detail="8 rows x 3 tokens x 1024"))
            # ggml's dot-product error: quantized dot against the float dot of the signals.
            t1 = ggml_test_data(32 * 128, 1.0)
            t2 = ggml_test_data(32 * 128, 2.0)
            y = _matmul(quant.quantize(t1[None, :], type), type, t2[None, :])
            derr = abs(float(y.reshape(-1)[0]) - float(t1.astype(np.float64) @ t2)) / t1.size
            out.append(Check(type, path, "ggml dot error", "|dot - ref|/n", derr,
                             GGML_DOT_ERROR.get(type, GGML_DOT_ERROR_DEFAULT)))
        if progress:
            progress()
        # Matrix-vector and matrix-matrix against float64 on the dequantized weights.
        for rows, cols in plan.matmul_shapes(type):
            w = (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)
            wq = quant.quantize(w, type)
            wd = quant.dequantize(wq, type, cols).astype(np.float64)
            for n_tok in plan.n_tok_mm:
                x = rng.standard_normal((n_tok, cols)).astype(np.float32)
                ref = x.astype(np.float64) @ wd.T
                got = _matmul(wq, type, x)                     # (n_tok, rows)
                what = "matvec" if n_tok == 1 else f"matmul {n_tok} tok"
                denom = float(np.max(np.abs(ref))) or 1.0
                out.append(Check(type, path, f"{what} {rows}x{cols}", "rel RMSE",
                                 rel_rmse(ref, got), MATMUL_REL[type],
                                 detail=f"max err/max|y| {float(np.max(np.abs(ref - got))) / denom:.2e}, "
                                        f"cos {cosine(ref, got):.6f}"))
                out.append(Check(type, path, f"{what} {rows}x{cols}", "cosine", cosine(ref, got),
                                 MATMUL_COSINE[type], ">="))
            if progress:
                progress()
    return out


# --- the whole model -----------------------------------------------------------------------------

def model_tokens(model, n: int) -> list:
    toks = model.tokenizer.encode(REAL_TEXT, add_bos=True)
    return list(toks[:n])


def model_checks(plan: Plan, progress: Optional[Callable] = None) -> list:
    """Logits of each kernel path against the scalar path and against the float reference."""
    out = []
    logits = {}
    type_label = None
    tokens = None
    paths = list(plan.paths)
    if "scalar" not in paths:
        paths = ["scalar"] + paths
    for path in paths:
        with quant.force_isa(path):
            model = Model.load(plan.model_path, threads=None, ctx=max(64, plan.text_tokens + 8))
            try:
                if tokens is None:
                    tokens = model_tokens(model, plan.text_tokens)
                    type_label = _model_type_label(plan.model_path)
                model.reset()
                logits[path] = np.asarray(model.prefill(tokens, all_logits=True), np.float64)
            finally:
                model.close()
        if progress:
            progress()
    ref = float_forward(plan.model_path, tokens)
    if progress:
        progress()
    for path in plan.paths:
        got = logits[path]
        a = logits_agreement(ref, got)
        out.append(Check(type_label, path, "model vs float reference", "KL mean", a["kl"],
                         MODEL_KL_VS_FLOAT, detail=f"{len(tokens)} tokens, KL max {a['kl_max']:.2e}"))
        out.append(Check(type_label, path, "model vs float reference", "top-1 agreement", a["top1"],
                         MODEL_TOP1_VS_FLOAT, ">="))
        if path != "scalar":
            s = logits_agreement(logits["scalar"], got)
            out.append(Check(type_label, path, "model vs scalar path", "KL mean", s["kl"],
                             MODEL_KL_VS_SCALAR))
            out.append(Check(type_label, path, "model vs scalar path", "top-1 agreement", s["top1"],
                             MODEL_TOP1_VS_SCALAR, ">="))
            out.append(Check(type_label, path, "model vs scalar path", "max |dlogit|/std",
                             s["maxdiff_rel"], MODEL_MAXDIFF_VS_SCALAR))
            scalar_kl = logits_agreement(ref, logits["scalar"])["kl"]
            out.append(Check(type_label, path, "no further from float than scalar",
                             "KL / scalar's KL", a["kl"] / (scalar_kl + 0.002),
                             MODEL_KL_RATIO_VS_SCALAR, detail=f"scalar KL {scalar_kl:.2e}"))
    return out


def _model_type_label(path) -> str:
    with GGUFFile(path) as gf:
        return "model " + describe_model(gf).file_type.split(" ")[0].lower()


def model_matrix_shapes(path, limit: int = 4) -> list:
    """Distinct (rows, cols) of the model's 2-D weights (the LM head capped to 4096 rows)."""
    shapes = []
    with GGUFFile(path) as gf:
        for t in gf.tensors.values():
            if len(t.shape) == 2:
                s = (min(int(t.shape[1]), 4096), int(t.shape[0]))
                if s not in shapes and s[1] % 32 == 0:
                    shapes.append(s)
    return shapes[:limit]


def model_sample_rows(path, max_rows: int = 64) -> Optional[np.ndarray]:
    """Some dequantized weight rows of the model (its first FFN up-projection)."""
    with GGUFFile(path) as gf:
        for name in ("blk.0.ffn_up.weight", "blk.0.attn_q.weight"):
            t = gf.tensors.get(name)
            if t is not None:
                cols = t.shape[0]
                data = np.asarray(t.data).reshape(int(t.shape[1]), -1)[:max_rows]
                return quant.dequantize(np.ascontiguousarray(data), t.type, cols)
    return None


# --- per-tensor requantization report ------------------------------------------------------------

def tensor_errors(model_path, types: Sequence[str] = DEFAULT_TYPES,
                  progress: Optional[Callable] = None) -> list:
    """For every 2-D weight: the relative RMSE that requantizing it to each type would add
    (against its current dequantized values), worst tensors first. A row length that a type's
    blocks do not divide takes the type llama-quantize falls back to (`as_<type>` names it).
    Tensors are ranked by `score`: the mean over the types of the tensor's error divided by that
    type's median error over all tensors, so every type counts alike."""
    records = []
    with GGUFFile(model_path) as gf:
        names = [n for n, t in gf.tensors.items() if len(t.shape) == 2]
        for name in names:
            t = gf.tensors[name]
            cols, rows = int(t.shape[0]), int(t.shape[1])
            x = quant.dequantize(np.asarray(t.data).reshape(rows, -1), t.type, cols)
            rec = {"tensor": name, "type": quant.type_name(t.type), "rows": rows, "cols": cols,
                   "bytes": int(t.nbytes)}
            for ty in types:
                as_ty = fallback_type(ty, cols) if ty in FALLBACK else ty
                if cols % quant.block_elems(as_ty):
                    rec[f"rel_rmse_{ty}"] = None
                    continue
                if as_ty != ty:
                    rec[f"as_{ty}"] = as_ty
                if as_ty == "f16":
                    back = x.astype(np.float16).astype(np.float32)
                elif as_ty == "f32":
                    back = x
                else:
                    back = quant.dequantize(quant.quantize(x, as_ty), as_ty, cols)
                rec[f"rel_rmse_{ty}"] = rel_rmse(x, back)
            records.append(rec)
            if progress:
                progress(name)
    medians = {}
    for ty in types:
        vals = [r[f"rel_rmse_{ty}"] for r in records if r.get(f"rel_rmse_{ty}")]
        if vals:
            medians[ty] = float(np.median(vals))
    for r in records:
        parts = [r[f"rel_rmse_{ty}"] / m for ty, m in medians.items() if r.get(f"rel_rmse_{ty}") is not None and m > 0]
        r["score"] = float(np.mean(parts)) if parts else 0.0
    records.sort(key=lambda r: -r["score"])
    for i, r in enumerate(records, 1):
        r["rank"] = i
    return records


# --- planning and running ----------------------------------------------------------------------

def estimate_seconds(plan: Plan, with_model: bool) -> float:
    """Time the run will take, from a short measurement of this machine's kernel speed."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((128, 1024)).astype(np.float32)
    x = rng.standard_normal((1, 1024)).astype(np.float32)
    t0 = time.perf_counter()
    wq = quant.quantize(w, "q4_0")
    try:
        with quant.force_isa("scalar"):
            _matmul(wq, "q4_0", x)
    except UnavailableError:
        pass
    unit = max(time.perf_counter() - t0, 1e-4) / (128 * 1024)   # seconds per element touched
    work = plan.work_units()
    # numpy references and quantization cost several times the kernel itself.
    secs = unit * work["kernel_ops"] + 2 * unit * work["quant_elems"] + 0.3 * len(plan.types)
    if with_model and plan.model_path:
        import os
        size = os.path.getsize(plan.model_path)
        # one load + prefill per path, and the float reference (dequantize + float64 products)
        secs += (len(plan.paths) + 1) * (0.5 + size / 400e6) + size / 25e6 * (plan.text_tokens / 16 + 1)
    return secs


def run_checks(plan: Plan, with_model: bool = True, progress: Optional[Callable] = None) -> list:
    checks = []
    real_rows = model_sample_rows(plan.model_path) if plan.model_path else None
    for ty in plan.types:
        checks.extend(reference_checks(ty, plan.seed, real_rows))
        if progress:
            progress(f"{ty} reference")
        for path in plan.paths:
            checks.extend(path_checks(ty, path, plan, (lambda: progress(f"{ty} {path}")) if progress else None))
    if with_model and plan.model_path:
        checks.extend(model_checks(plan, (lambda: progress("model")) if progress else None))
    return checks


def count_steps(plan: Plan, with_model: bool) -> int:
    steps = sum(1 + len(plan.paths) * (1 + len(plan.matmul_shapes(t))) for t in plan.types)
    if with_model and plan.model_path:
        steps += len(set(plan.paths) | {"scalar"}) + 1
    return steps
