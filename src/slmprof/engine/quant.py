"""Quantization formats (ggml-identical blocks) over slmprof's C kernels.

    >>> import numpy as np
    >>> from slmprof.engine import quant
    >>> w = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32)
    >>> q = quant.quantize(w, "q4_1")          # (4, 40) uint8: 2 blocks of 20 bytes per row
    >>> quant.dequantize(q, "q4_1", 64).shape
    (4, 64)
"""
from __future__ import annotations

import numpy as np

from slmprof import _core
from slmprof.errors import ShapeError, UnavailableError, UnsupportedError

# Weight types computed natively (GGUF ggml type ids).
TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 8}
# Activation-only formats: quantize/dequantize accept them, model files never hold them.
ACTIVATION_TYPE_IDS = {"q8_1": 9}
_ALL_IDS = {**TYPE_IDS, **ACTIVATION_TYPE_IDS}
_NAMES = {v: k for k, v in _ALL_IDS.items()}


def type_id(type) -> int:
    """A type name ("q4_1") or ggml id (3) -> the id; UnsupportedError for anything else."""
    if isinstance(type, str):
        key = type.strip().lower()
        if key in _ALL_IDS:
            return _ALL_IDS[key]
        raise UnsupportedError(f"unknown tensor type {type!r} (supported: {', '.join(_ALL_IDS)})")
    if isinstance(type, (int, np.integer)) and int(type) in _NAMES:
        return int(type)
    raise UnsupportedError(f"unsupported tensor type id {type!r} (supported: "
                           + ", ".join(f"{n}={i}" for n, i in _ALL_IDS.items()) + ")")


def type_name(type) -> str:
    """ggml id or name -> canonical name ("q4_1")."""
    return _NAMES[type_id(type)]


def block_elems(type) -> int:
    """Elements per block: 32 for the quantized types, 1 for f32/f16."""
    return int(_core._block_elems(type_id(type)))


def block_bytes(type) -> int:
    return int(_core._block_bytes(type_id(type)))


def row_bytes(type, n: int) -> int:
    """Bytes of a row of n elements; ShapeError if n is not a whole number of blocks."""
    t = type_id(type)
    n = int(n)
    rb = int(_core._row_bytes(t, n))
    if rb < 0:
        raise ShapeError(f"a {type_name(t)} row must hold a multiple of {block_elems(t)} elements "
                         f"(got {n})")
    return rb


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
    """Every kernel path slmprof knows: scalar, avx2, neon, neon-dotprod."""
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
    import os
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
        _core._isa_set(self._prev)
        return False


def _isa_or_active(isa) -> int:
    if isa is None:
        _check_env()
        return _core._isa_active()
    return _isa_id(isa)


def activation_type(weight_type) -> str:
    """Format the activations are quantized to for a weight type (q8_0, q8_1 or f32)."""
    tr = {"f32": "f32", "f16": "f32", "q4_0": "q8_0", "q4_1": "q8_1", "q8_0": "q8_0"}
    return tr[type_name(weight_type)]


def quantize_activations(x, weight_type, isa=None) -> np.ndarray:
    """float32 (n_tok, cols) -> uint8 (n_tok, act_row_bytes) as the kernels of `isa` do it."""
    t = type_id(weight_type)
    if t not in TYPE_IDS.values():
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
