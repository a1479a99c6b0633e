"""Quantization formats (ggml-identical blocks) over slmprof's C kernels.

    >>> import numpy as np
    >>> from slmprof import quant
    >>> w = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32)
    >>> q = quant.quantize(w, "q4_1")          # (4, 40) uint8: 2 blocks of 20 bytes per row
    >>> quant.dequantize(q, "q4_1", 64).shape
    (4, 64)
"""
from __future__ import annotations

import numpy as np

from slmprof import _core
from slmprof.errors import ShapeError, UnsupportedError

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
