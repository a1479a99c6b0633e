"""Quantization formats (ggml-identical blocks) over slmprof's C kernels.

    >>> import numpy as np
    >>> from slmprof.engine import quant
    >>> w = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32)
    >>> q = quant.quantize(w, "q4_1")          # (4, 40) uint8: 2 blocks of 20 bytes per row
    >>> quant.dequantize(q, "q4_1", 64).shape
    (4, 64)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from slmprof import _core
from slmprof.errors import ShapeError, SlmprofError, UnavailableError, UnsupportedError



@dataclass(frozen=True)
class TensorType:
    """One ggml tensor type, as the C core's type table describes it."""
    id: int
    name: str             # "q4_0", "q4_k", "bf16"
    block_elems: int      # elements per block (1 for plain floats)
    block_bytes: int
    activation_only: bool  # a format only activations take (q8_1, q8_k)
    computable: bool      # the engine has kernels for weights of this type
    activation_id: int    # the format its kernels quantize activations to (-1: not computable)


# Every type a GGUF file may carry, by name and by id; the rest of the package asks here.
TYPES = {t.name: t for t in (TensorType(*row) for row in _core.tensor_types())}
TYPES_BY_ID = {t.id: t for t in TYPES.values()}
# Weight types the engine computes with, plain floats first; and the block-quantized ones.
WEIGHT_TYPES = tuple(t.name for t in TYPES.values() if t.computable)
QUANTIZED_TYPES = tuple(n for n in WEIGHT_TYPES if TYPES[n].block_elems > 1)
# Types quantize()/dequantize() take: the weight types and the activation formats.
_KERNEL_TYPES = WEIGHT_TYPES + tuple(t.name for t in TYPES.values() if t.activation_only)


def type_info(type) -> TensorType:
    """Any ggml type, by id (12) or name ("q4_k", "Q4_K"); UnsupportedError if ggml has none."""
    if isinstance(type, str) and type.strip().lower() in TYPES:
        return TYPES[type.strip().lower()]
    if isinstance(type, (int, np.integer)) and not isinstance(type, bool) and int(type) in TYPES_BY_ID:
        return TYPES_BY_ID[int(type)]
    raise UnsupportedError(f"unknown tensor type {type!r} (ggml defines: {', '.join(TYPES)})")


def display_name(type) -> str:
    """"Q4_K" for a known id or name, "type id N" for an id ggml does not define."""
    try:
        return type_info(type).name.upper()
    except UnsupportedError:
        return f"type id {type}"


def type_id(type) -> int:
    """A type this engine's kernels take, by name ("q4_1") or ggml id (3) -> the id;
    UnsupportedError for any other."""
    try:
        t = type_info(type)
    except UnsupportedError:
        t = None
    if t is None or t.name not in _KERNEL_TYPES:
        raise UnsupportedError(f"unsupported tensor type {type!r} (supported: "
                               + ", ".join(f"{n}={TYPES[n].id}" for n in _KERNEL_TYPES) + ")")
    return t.id


def type_name(type) -> str:
    """ggml id or name -> canonical name ("q4_1")."""
    return TYPES_BY_ID[type_id(type)].name


def block_elems(type) -> int:
    """Elements per block: 32 for the quantized types, 1 for f32/f16."""
    return type_info(type).block_elems


def block_bytes(type) -> int:
    return type_info(type).block_bytes


def row_bytes(type, n: int) -> int:
    """Bytes of a row of n elements; ShapeError if n is not a whole number of blocks."""
    t = type_info(type)
    n = int(n)
    if n < 0 or n % t.block_elems:
        raise ShapeError(f"a {t.name} row must hold a multiple of {t.block_elems} elements "
                         f"(got {n})")
    return n // t.block_elems * t.block_bytes


def tensor_bytes(type, shape) -> int:
    """Bytes of a tensor of GGUF shape (ne0, the row length, first)."""
    rows = 1
    for d in shape[1:]:
        rows *= int(d)
    return row_bytes(type, int(shape[0])) * rows


def quantize(x, type) -> np.ndarray:
    """Reference (ggml-identical) quantization of float32 rows.

    x: float array (..., n) with n a multiple of the block size. Returns uint8 (..., row_bytes).
    """
    t = type_id(type)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise ShapeError("quantize needs at least a 1-D array")
    n = x.shape[-1]
    rb = row_bytes(t, n)
    flat = x.reshape(-1, n) if x.size else np.zeros((0, n), np.float32)
    if t not in (0, 1) and not np.all(np.isfinite(flat)):
        bad = int(np.argmin(np.isfinite(flat).reshape(-1)))
        raise ValueError(f"quantize to {type_name(t)}: element {bad} is {flat.reshape(-1)[bad]} "
                         "(NaN/inf cannot be quantized)")
    out = _core._quantize_rows_ref(flat, t)
    return out.reshape(x.shape[:-1] + (rb,))


def dequantize(data, type, n: int) -> np.ndarray:
    """Decode `type` blocks to float32.

    n is the element count. If `data` is 2-D with rows of row_bytes(type, n) bytes, every row is
    decoded and the result is (rows, n); otherwise data must hold exactly n elements and the
    result is (n,).
    """
    t = type_id(type)
    n = int(n)
    rb = row_bytes(t, n)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        arr = np.ascontiguousarray(arr).view(np.uint8)
    if arr.ndim == 2 and arr.shape[1] == rb:
        return _core._dequantize_rows(np.ascontiguousarray(arr), t, n)
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.size != rb:
        raise ShapeError(f"dequantize {type_name(t)}: {n} elements take {rb} bytes, got {flat.size}")
    return _core._dequantize_rows(flat.reshape(1, rb), t, n).reshape(n)


def fp32_to_fp16_bits(f: float) -> int:
    """IEEE half bits of f (round to nearest even), as the C core computes them."""
    return int(_core._fp32_to_fp16_bits(float(f)))


def fp16_bits_to_fp32(h: int) -> float:
    return float(_core._fp16_bits_to_fp32(int(h)))


# ---- kernel paths (ISA dispatch) ----

def isa_names() -> list[str]:
    """Every kernel path slmprof knows: scalar, avx2, neon, neon-dotprod, avx512-vnni."""
    return [_core._isa_name(i) for i in range(_core._isa_count())]


def _isa_id(name) -> int:
    if isinstance(name, (int, np.integer)) and 0 <= int(name) < _core._isa_count():
        return int(name)
    isa = _core._isa_from_name(str(name).strip().lower())
    if isa < 0:
        raise UnsupportedError(f"unknown kernel path {name!r} (known: {', '.join(isa_names())})")
    return isa


def available_isas() -> list[str]:
    """Paths this CPU and this build can run, slowest first."""
    return [n for i, n in enumerate(isa_names()) if _core._isa_available(i)]


def _check_env():
    st = _core._isa_env_status()
    if st == 0:
        return
    env = os.environ.get("SLMPROF_ISA", "")
    if _core._isa_from_name(env.strip().lower()) < 0:
        raise UnsupportedError(f"SLMPROF_ISA={env!r} is not a kernel path (known: {', '.join(isa_names())})")
    raise UnavailableError(f"SLMPROF_ISA={env!r}: this CPU or build cannot run it "
                           f"(available: {', '.join(available_isas())})")


def active_isa() -> str:
    """The path the kernels use now; raises if SLMPROF_ISA forces one this machine lacks."""
    _check_env()
    return _core._isa_name(_core._isa_active())


def best_isa() -> str:
    return _core._isa_name(_core._isa_best())


def set_isa(name) -> None:
    """Use kernel path `name` from now on (UnavailableError if this CPU cannot run it)."""
    isa = _isa_id(name)
    if not _core._isa_available(isa):
        raise UnavailableError(f"kernel path {isa_names()[isa]!r} is not available on this machine "
                               f"(available: {', '.join(available_isas())})")
    _core._isa_set(isa)


class force_isa:
    """Context manager: run the enclosed code on one kernel path, then restore the previous one.

    Weights prepared (repacked) for another path still compute correctly: kernels fall back to the
    plain GGUF rows when a packed layout is not theirs."""

    def __init__(self, name):
        self.isa = _isa_id(name)

    def __enter__(self):
        self._prev = _core._isa_active()
        self._prev_env = _core._isa_env_status()
        set_isa(self.isa)
        return isa_names()[self.isa]

    def __exit__(self, *exc):
        # the path and SLMPROF_ISA's verdict both: a path the CPU lacks stays refused after
        _core._isa_restore(self._prev, self._prev_env)
        return False


def _isa_or_active(isa) -> int:
    if isa is None:
        _check_env()
        return _core._isa_active()
    return _isa_id(isa)


def activation_type(weight_type) -> str:
    """Format the kernels quantize activations to for a weight type (q8_0, q8_1 or f32)."""
    t = TYPES_BY_ID[type_id(weight_type)]
    if not t.computable:
        raise UnsupportedError(f"{t.name} is not a weight type")
    return TYPES_BY_ID[t.activation_id].name


def quantize_activations(x, weight_type, isa=None) -> np.ndarray:
    """float32 (n_tok, cols) -> uint8 (n_tok, act_row_bytes) as the kernels of `isa` do it."""
    t = type_id(weight_type)
    if not TYPES_BY_ID[t].computable:
        raise UnsupportedError(f"{type_name(t)} is not a weight type")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    row_bytes(t, x.shape[-1])
    return _core._quantize_activations(x, t, _isa_or_active(isa))


def vec_dot(weight_type, w_row, act_row, n: int, isa=None) -> float:
    """One weight row . one quantized activation row on path `isa` (the type's vec_dot kernel)."""
    t = type_id(weight_type)
    w = np.ascontiguousarray(w_row).view(np.uint8).reshape(-1)
    a = np.ascontiguousarray(act_row).view(np.uint8).reshape(-1)
    if w.size != row_bytes(t, n) or a.size != row_bytes(activation_type(t), n):
        raise ShapeError(f"vec_dot {type_name(t)}: {n} elements need {row_bytes(t, n)} weight and "
                         f"{row_bytes(activation_type(t), n)} activation bytes, got {w.size} and {a.size}")
    return float(_core._vec_dot(t, _isa_or_active(isa), w, a, n))


def weight(data, type, rows: int, cols: int, prepare: bool = True):
    """A kernel-ready weight matrix over `data` (rows x row_bytes bytes), repacked for the active
    path when `prepare` (as the engine does at load)."""
    return _core.Weight(data, type_id(type), int(rows), int(cols), bool(prepare))


def repacked_types() -> tuple:
    """Weight types the active path copies into its own layout at load (in huge pages,
    csrc/quant/pack.c); the others are read where they are, in the mapped file."""
    out = []
    for name in QUANTIZED_TYPES:
        t = TYPES[name]
        rows, cols = 8, 2 * t.block_elems
        try:
            w = weight(np.zeros(rows * row_bytes(name, cols), np.uint8), name, rows, cols)
        except SlmprofError:
            continue
        if w.layout != 0:
            out.append(name)
    return tuple(out)


def matmul(w, x, isa=None) -> np.ndarray:
    """y = x @ W.T through the kernels: w from weight(), x float32 (n_tok, cols) -> (n_tok, rows).

    Activations are quantized on the same path, as the engine does."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.shape[1] != w.cols:
        raise ShapeError(f"matmul: x has {x.shape[1]} columns, the weight has {w.cols}")
    isa_id = _isa_or_active(isa)
    act = _core._quantize_activations(x, w.type, isa_id)
    return w.matmul_act(act, isa_id)


def debug_corrupt_kernel(type, isa, on: bool = True) -> None:
    """Test-only: make one (type, path) kernel deliberately wrong, so validation can show it fails."""
    _core._debug_corrupt_kernel(type_id(type), _isa_id(isa), on)


def attend(q, k, v, scale: float, isa=None) -> np.ndarray:
    """One query head's attention as the forward pass runs it, on path `isa`:
    out = softmax(scale * k @ q) @ v[:, :head_dim]. q (head_dim,); k, v (n_pos, kv_stride) with
    kv_stride >= head_dim, both float16 (an fp16 cache) or both float32."""
    q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1)
    k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
    if k.dtype != v.dtype or k.dtype not in (np.float16, np.float32):
        raise ShapeError(f"attend: k and v must both be float16 or float32, got {k.dtype} and {v.dtype}")
    if k.ndim != 2 or k.shape != v.shape or k.shape[0] < 1 or k.shape[1] < q.size:
        raise ShapeError(f"attend: k and v must be (n_pos >= 1, kv_stride >= {q.size}), "
                         f"got {k.shape} and {v.shape}")
    return _core._attend(q, k, v, float(scale), k.dtype == np.float16, _isa_or_active(isa))
