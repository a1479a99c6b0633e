"""Rewrite a model with its 2-D weights in another type, so one model can be compared across
quantizations (e.g. the real SmolLM2 Q4_1 as Q8_0, Q4_K_M or Q6_K).

Weights are dequantized with slmprof.engine.quant and quantized again with its reference
quantizers (ggml's, bit for bit); norms, biases and rope_freqs stay F32. Requantizing from a
4-bit source adds the new type's rounding on top of the old one: the result is the old model
seen through the new format, not a fresh quantization of the original float weights.

Which tensor gets which type:
- q4_0, q4_1, q8_0, f16, f32: every 2-D weight but token_embd.weight, which keeps its type
  unless `embd_type` is given (in SmolLM2 it is the tied LM head, already Q8_0).
- The K types, q5_0, q5_1 and the mixes follow llama.cpp's llama-quantize (src/llama-quant.cpp,
  llama_tensor_get_type) for the file type each names (FTYPES below: q4_k is its Q4_K_S, q3_k
  its Q3_K_S, q5_k its Q5_K_S), without an importance matrix, for llama-family models:
    the LM head (output.weight, or token_embd.weight when the embeddings are tied): Q6_K, or
      Q8_0 when its rows are not a whole number of the file type's blocks;
    attn_v: Q2_K -> Q3_K (Q4_K when n_head/n_head_kv >= 4); Q4_K_S -> Q5_K in the first 4
      layers; Q4_K_M and Q5_K_M -> Q6_K in the layers use_more_bits picks (the first and last
      eighth, and every third layer between);
    ffn_down: Q2_K -> Q3_K; Q4_K_S -> Q5_K in the first eighth; Q4_K_M and Q5_K_M -> Q6_K
      where use_more_bits;
    attn_output: Q2_K -> Q3_K;
  then every tensor whose rows are not a multiple of its type's block falls back as
  llama-quantize does (FALLBACK: Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0;
  F16 when even that does not fit). `requantize` returns every fallback it made.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import FILE_TYPES, GGUFWriter, open_model
from slmprof.errors import UnsupportedError

# File types that follow llama-quantize's recipe: name -> (default tensor type, the file type
# as llama.cpp names it in general.file_type).
FTYPES = {
    "q5_0": ("q5_0", "q5_0"), "q5_1": ("q5_1", "q5_1"),
    "q2_k": ("q2_k", "q2_k"), "q3_k": ("q3_k", "q3_k_s"), "q4_k": ("q4_k", "q4_k_s"),
    "q5_k": ("q5_k", "q5_k_s"), "q6_k": ("q6_k", "q6_k"),
    "q4_k_m": ("q4_k", "q4_k_m"), "q5_k_m": ("q5_k", "q5_k_m"),
}
# Types every 2-D weight but token_embd takes as they are.
PLAIN_TYPES = ("f32", "f16", "q4_0", "q4_1", "q8_0")
REQUANT_TYPES = PLAIN_TYPES + tuple(FTYPES)

# llama-quantize's fallback for rows that are not a whole number of a type's blocks.
FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}


def fallback_type(type_name: str, cols: int) -> str:
    """The type a row of `cols` elements takes when `type_name` does not fit it (itself if it does)."""
    if cols % quant.block_elems(type_name) == 0:
        return type_name
    fb = FALLBACK.get(type_name, "f16")
    return fb if cols % quant.block_elems(fb) == 0 else "f16"


def use_more_bits(i_layer: int, n_layer: int) -> bool:
    """llama.cpp's choice of layers that get more bits: the first and last eighth, every third between."""
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


def _layer(name):
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() else -1


@dataclass
class Choice:
    tensor: str
    cols: int
    type: str              # what it is written as
    wanted: str            # what the recipe asked for, before any fallback

    @property
    def fell_back(self) -> bool:
        return self.type != self.wanted


def plan_types(tensors: dict, ftype: str, n_layer: int, n_gqa: float) -> dict:
    """{name: Choice} for the 2-D weights of a llama-family model under one of FTYPES.
    `tensors` maps names to GGUF shapes (row length first)."""
    default, _ = FTYPES[ftype]
    tied = "output.weight" not in tensors
    out = {}
    i_attn_v = 0
    # llama.cpp walks the tensors by layer, then by name: its per-layer counters are layer indices
    for name in sorted(tensors, key=lambda n: (_layer(n), n)):
        shape = tensors[name]
        if len(shape) < 2 or not name.endswith("weight") or name.endswith("_norm.weight"):
            continue
        cols, t = int(shape[0]), default
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            t = "q8_0" if cols % quant.block_elems(default) else t if t == "q8_0" else "q6_k"
        elif name == "token_embd.weight":
            pass
        elif "attn_v.weight" in name:
            if ftype == "q2_k":
                t = "q4_k" if n_gqa >= 4 else "q3_k"
            elif ftype in ("q4_k_m", "q5_k_m") and use_more_bits(i_attn_v, _count(tensors, "attn_v.weight")):
                t = "q6_k"
            elif ftype == "q4_k" and i_attn_v < 4:
                t = "q5_k"
            i_attn_v += 1
        elif "ffn_down" in name:
            i = _layer(name)
            if ftype == "q2_k":
                t = "q3_k"
            elif ftype in ("q4_k_m", "q5_k_m") and use_more_bits(i, n_layer):
                t = "q6_k"
            elif ftype == "q4_k" and i < n_layer // 8:
                t = "q5_k"
        elif "attn_output.weight" in name:
            if ftype == "q2_k":
                t = "q3_k"
        out[name] = Choice(name, cols, fallback_type(t, cols), t)
    return out


def _choose(gf, desc, type_name):
    """({name: Choice} for the tensors to convert, general.file_type) of a model under a type."""
    if type_name in FTYPES:
        shape = desc.shape
        choices = plan_types({n: t.shape for n, t in gf.tensors.items()}, type_name, shape.n_layer,
                             shape.n_head / shape.n_kv_head)
        return choices, FILE_TYPES[FTYPES[type_name][1]]
    choices = {name: Choice(name, int(t.shape[0]), type_name, type_name) for name, t in gf.tensors.items()
               if len(t.shape) >= 2 and name != "token_embd.weight"}
    return choices, FILE_TYPES[type_name]


def planned_types(src, type) -> dict:
    """{name: Choice} that requantizing `src` to `type` makes, without writing anything."""
    type_name = str(type).lower()
    if type_name not in REQUANT_TYPES:
        raise UnsupportedError(f"cannot requantize to {type!r} (supported: {', '.join(REQUANT_TYPES)})")
    gf, desc = open_model(src)
    with gf:
        return _choose(gf, desc, type_name)[0]


def _count(tensors, part):
    return sum(1 for n in tensors if part in n)


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


def requantize(src, dst, type, embd_type=None, progress=None) -> Path:
    """Write `src` to `dst` with its 2-D weights in `type` (see the module docstring). Returns
    the destination path. The file appears only when complete. progress(what, done, total):
    called as the file is written."""
    path, _ = requantize_with_report(src, dst, type, embd_type=embd_type, progress=progress)
    return path


def requantize_with_report(src, dst, type, embd_type=None, progress=None):
    """As requantize; returns (path, [Choice of every tensor that fell back])."""
    type_name = str(type).lower()
    if type_name not in REQUANT_TYPES:
        raise UnsupportedError(f"cannot requantize to {type!r} (supported: "
                               f"{', '.join(REQUANT_TYPES)})")
    embd_id = quant.type_id(embd_type) if embd_type else None
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"requantize: source and destination are the same file ({src})")
    gf, desc = open_model(src)
    with gf:
        choices, file_type = _choose(gf, desc, type_name)
        if embd_id is not None and "token_embd.weight" in gf.tensors:
            t = gf.tensors["token_embd.weight"]
            e = quant.type_name(embd_id)
            choices["token_embd.weight"] = Choice("token_embd.weight", int(t.shape[0]), e, e)
        w = GGUFWriter(dst, gf.arch, version=3, alignment=gf.alignment)
        for key, value in gf.metadata.items():
            if key in ("general.architecture", "general.alignment"):
                continue
            vtype = gf.value_types[key]
            if isinstance(vtype, tuple):
                w.add(key, value, vtype[0], vtype[1])
            else:
                w.add(key, value, vtype)
        w.add("general.file_type", file_type, "uint32")
        w.add("slmprof.requantized_from", f"{src.name} ({desc.file_type})")
        for name, t in gf.tensors.items():
            c = choices.get(name)
            target = t.type if c is None else quant.type_id(c.type)
            if target == t.type:
                w.add_tensor(name, t.data, t.type, t.shape)
            else:
                w.add_tensor(name, _convert_chunks(t, target), target, t.shape)
        label = type_name.upper() if type_name in FTYPES else quant.display_name(type_name)
        w.write(progress=progress, what=f"writing {dst.name} ({label})")
    return dst, [c for c in choices.values() if c.fell_back]
