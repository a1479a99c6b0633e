"""Rewrite a model with its 2-D weights in another supported type, so one model can be compared
across quantizations (e.g. the real SmolLM2 Q4_1 as Q8_0 and Q4_0).

Weights are dequantized with slmprof.engine.quant and quantized again with its reference quantizer;
norms, biases and rope_freqs stay F32. token_embd.weight keeps its type unless `embd_type` is
given (in SmolLM2 it is the tied LM head, already Q8_0). Requantizing from a 4-bit source adds
the new type's rounding on top of the old one: the result is the old model seen through the new
format, not a fresh quantization of the original float weights.
"""
from pathlib import Path

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import FILE_TYPES, GGUFWriter, open_model
from slmprof.errors import UnsupportedError

REQUANT_TYPES = quant.WEIGHT_TYPES


def _convert_chunks(tensor, dst_type, rows_per_chunk=None):
    """A callable yielding `tensor` converted to dst_type, a block of rows at a time."""
    row_len = tensor.shape[0]
    n_rows = tensor.n_elements // row_len
    src_row_bytes = tensor.nbytes // n_rows
    if rows_per_chunk is None:
        rows_per_chunk = max(1, (4 << 20) // row_len)

    def chunks():
        rows = tensor.data.reshape(n_rows, src_row_bytes)       # (rows, bytes per row)
        for r0 in range(0, n_rows, rows_per_chunk):
            x = quant.dequantize(rows[r0:r0 + rows_per_chunk], tensor.type, row_len)  # (r, ne0)
            if dst_type == 0:
                yield x
            elif dst_type == 1:
                yield x.astype(np.float16)
            else:
                yield quant.quantize(x, dst_type)
    return chunks


def requantize(src, dst, type, embd_type=None, progress=None):
    """Write `src` to `dst` with every 2-D weight in `type` (see the module docstring).
    Returns the destination path. The file appears only when complete. progress(what, done,
    total): called as the file is written."""
    type_name = str(type).lower()
    if type_name not in REQUANT_TYPES:
        raise UnsupportedError(f"cannot requantize to {type!r} (supported: "
                               f"{', '.join(REQUANT_TYPES)})")
    dst_id = quant.type_id(type_name)
    embd_id = quant.type_id(embd_type) if embd_type else None
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"requantize: source and destination are the same file ({src})")
    gf, desc = open_model(src)
    with gf:
        w = GGUFWriter(dst, gf.arch, version=3, alignment=gf.alignment)
        for key, value in gf.metadata.items():
            if key in ("general.architecture", "general.alignment"):
                continue
            vtype = gf.value_types[key]
            if isinstance(vtype, tuple):
                w.add(key, value, vtype[0], vtype[1])
            else:
                w.add(key, value, vtype)
        w.add("general.file_type", FILE_TYPES[type_name], "uint32")
        w.add("slmprof.requantized_from", f"{src.name} ({desc.file_type})")
        for name, t in gf.tensors.items():
            if len(t.shape) == 1:           # norms, biases, rope_freqs
                target = t.type
            elif name == "token_embd.weight":
                target = embd_id if embd_id is not None else t.type
            else:
                target = dst_id
            if target == t.type:
                w.add_tensor(name, t.data, t.type, t.shape)
            else:
                w.add_tensor(name, _convert_chunks(t, target), target, t.shape)
        w.write(progress=progress, what=f"writing {dst.name} ({quant.display_name(dst_id)})")
    return dst
