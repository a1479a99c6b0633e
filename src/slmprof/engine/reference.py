"""An independent forward pass in numpy (float64) over a GGUF file's dequantized weights.

Written from the maths, not from the C engine: whole-sequence causal attention with a mask
(and a band for sliding-window layers), RoPE as a complex rotation, GQA by repeating K/V
heads; qwen3's and gemma3's per-head q/k norms, gemma3's scaled embeddings, post-norms and
GELU gate. It is what `validate` and `compare`
measure the engine against, and what the tests check the engine's forward pass with.

With `quantize_activations=True` every matmul input is rounded the way the GGUF formats define
(Q8_0 for Q4_0/Q5_0/Q8_0 weights, Q8_1 for Q4_1/Q5_1, Q8_K for the K types; f32/f16 weights
read f32 activations), so what is left between it and the engine is only float32-vs-float64
arithmetic. Q8_1 carries s = fp16(d * sum(q)) per block and the Q4_1/Q5_1 dot products use it
for the weights' offset term (m * s); the reference does the same. With `False` it is the pure
float model.

Weights are dequantized when used and not kept, a block of rows at a time, so a real model needs
a few hundred MB beside the mapped file (Gemma 3's 262144 x 640 LM head would take 1.3 GB in
float64 at once), not a float copy of everything.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import GGUFFile, describe_model

# Rows of a matrix dequantized at a time.
ROW_CHUNK = 16384


def block_parts(data, type: str, n: int, rows=None):
    """(d, m_or_s, q) of `rows` rows of n elements in a 32-element GGUF block type, read from
    the block layout: d and the second scale (m of Q4_1/Q5_1, s of Q8_1; None for Q4_0, Q5_0,
    Q8_0) float64 (rows, blocks), q int64 (rows, blocks, 32) with Q4_0's offset of 8 and Q5_0's
    of 16 taken off. rows=None: `data` is one row and the leading axis is dropped."""
    bb, nb = quant.row_bytes(type, 32), n // 32
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(1 if rows is None else rows, -1)
    blocks = raw[:, : nb * bb].reshape(len(raw), nb, bb)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    second = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    if type in ("q4_0", "q4_1", "q5_0", "q5_1"):
        qs = blocks[..., -16:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int64)
        if type in ("q5_0", "q5_1"):
            o = 2 if type == "q5_0" else 4                       # qh: 32 bits, bit j for element j
            qh = blocks[..., o:o + 4].astype(np.int64)
            h = qh[..., 0] | qh[..., 1] << 8 | qh[..., 2] << 16 | qh[..., 3] << 24
            q |= ((h[..., None] >> np.arange(32)) & 1) << 4
        q -= {"q4_0": 8, "q5_0": 16}.get(type, 0)
    else:
        q = blocks[..., (2 if type == "q8_0" else 4):][..., :32].view(np.int8).astype(np.int64)
    second = second if type in ("q4_1", "q5_1", "q8_1") else None
    if rows is None:
        return d[0], None if second is None else second[0], q[0]
    return d, second, q


K_TYPES = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")


def kblock_parts(data, type: str, n: int, rows: int = 1) -> dict:
    """The parts of `rows` rows of n elements in a K type (256-element super-blocks), read from
    the block layout, each element's value being d*sc*q - dmin*mn:
      d, dmin  float64 (rows, sb)      (dmin 0 for Q3_K/Q6_K)
      sc, mn   int64 (rows, sb, 16)    the integer scale and min of each group of 16
      q        int64 (rows, sb, 256)   values with the offsets taken off (Q3_K -4..3, Q6_K -32..31)
    Q8_K (activations): d float64 (fp32 in the file), q, and bsums int64 (rows, sb, 16)."""
    bb, nsb = quant.row_bytes(type, 256), n // 256
    b = np.ascontiguousarray(data, dtype=np.uint8).reshape(rows, -1)[:, : nsb * bb].reshape(rows, nsb, bb)
    e = np.arange(256)
    f16 = lambda lo: b[..., lo:lo + 2].copy().view(np.float16)[..., 0].astype(np.float64)
    zeros = np.zeros((rows, nsb), np.float64)
    if type == "q8_k":
        return {"d": b[..., 0:4].copy().view(np.float32)[..., 0].astype(np.float64),
                "q": b[..., 4:260].view(np.int8).astype(np.int64),
                "bsums": b[..., 260:292].copy().view(np.int16).astype(np.int64)}
    if type in ("q2_k", "q3_k"):                    # low 2 bits: byte 32*(e/128) + e%32, shift 2*((e%128)/32)
        qs = b[..., 16:80] if type == "q2_k" else b[..., 32:96]
        q = (qs[..., 32 * (e // 128) + e % 32].astype(np.int64) >> (2 * ((e % 128) // 32))) & 3
    if type == "q2_k":                              # scales[16]: scale low nibble, min high nibble
        sc = (b[..., 0:16] & 15).astype(np.int64)
        return {"d": f16(80), "dmin": f16(82), "sc": sc, "mn": (b[..., 0:16] >> 4).astype(np.int64), "q": q}
    if type == "q3_k":                              # hmask[32] (bit e/32 of byte e%32), scales[12], d
        high = (b[..., e % 32].astype(np.int64) >> (e // 32)) & 1
        s = b[..., 96:108].astype(np.int64)
        j = np.arange(16)
        lo = np.where(j < 8, s[..., j % 8] & 15, s[..., j % 8] >> 4)
        sc = (lo | ((s[..., 8 + j % 4] >> (2 * (j // 4))) & 3) << 4) - 32
        return {"d": f16(108), "dmin": zeros, "sc": sc, "mn": np.zeros_like(sc), "q": q - 4 * (1 - high)}
    if type in ("q4_k", "q5_k"):                    # d, dmin, scales[12], [qh[32]], qs[128]
        s = b[..., 4:16].astype(np.int64)
        j = np.arange(8)
        sc8 = np.where(j < 4, s[..., j % 4] & 63, (s[..., (j + 4) % 12] & 15) | (s[..., (j - 4) % 12] >> 6) << 4)
        mn8 = np.where(j < 4, s[..., (j + 4) % 12] & 63, (s[..., (j + 4) % 12] >> 4) | (s[..., j % 12] >> 6) << 4)
        qs = b[..., 48:176] if type == "q5_k" else b[..., 16:144]
        byte = qs[..., 32 * (e // 64) + e % 32].astype(np.int64)
        q = np.where(e % 64 < 32, byte & 15, byte >> 4)
        if type == "q5_k":
            q = q | ((b[..., 16 + e % 32].astype(np.int64) >> (e // 32)) & 1) << 4
        return {"d": f16(0), "dmin": f16(2), "sc": np.repeat(sc8, 2, axis=-1), "mn": np.repeat(mn8, 2, axis=-1),
                "q": q}
    if type == "q6_k":                              # ql[128], qh[64], scales[16] int8, d
        h, c, l = e // 128, (e % 128) // 32, e % 32
        lb = b[..., 64 * h + 32 * (c & 1) + l].astype(np.int64)
        low = np.where(c < 2, lb & 15, lb >> 4)
        high = (b[..., 128 + 32 * h + l].astype(np.int64) >> (2 * c)) & 3
        sc = b[..., 192:208].view(np.int8).astype(np.int64)
        return {"d": f16(208), "dmin": zeros, "sc": sc, "mn": np.zeros_like(sc), "q": (low | high << 4) - 32}
    raise ValueError(f"{type} is not a K type")


def k_values(parts: dict) -> np.ndarray:
    """float32 (rows, n) values of a K type as ggml's dequantizer rounds them:
    (d*sc)*q - dmin*mn, each product rounded to float32 (Q3_K/Q6_K: (d*sc)*q)."""
    f = np.float32
    g = np.arange(256) // 16
    dl = (parts["d"].astype(f)[..., None] * parts["sc"].astype(f))[..., g]      # (rows, sb, 256)
    ml = (parts["dmin"].astype(f)[..., None] * parts["mn"].astype(f))[..., g]
    v = dl * parts["q"].astype(f)
    if np.any(parts["mn"]):
        v = v - ml
    return v.reshape(len(v), -1)


class ReferenceModel:
    """`ReferenceModel(path).forward(tokens)` -> logits (n, vocab), float64. Keeps the file
    mapped until `close()` (or the end of a `with` block)."""

    def __init__(self, path, quantize_activations=True):
        self.file = GGUFFile(path)
        try:
            self.shape = describe_model(self.file).shape
        except Exception:
            self.file.close()
            raise
        self.tensors = self.file.tensors
        self.quantize_activations = quantize_activations

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _raw_rows(self, name):
        """A matrix's bytes as (rows, row bytes); a vector as one row."""
        t = self.tensors[name]
        rows = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
        return np.asarray(t.data).reshape(rows, -1)

    def _weight(self, name, rows=None) -> np.ndarray:
        """A tensor dequantized, in numpy order: (rows, cols) for matrices (`rows`: a slice or
        index array of them), (n,) for vectors."""
        t = self.tensors[name]
        cols = t.shape[0]
        raw = self._raw_rows(name)
        if rows is not None:
            raw = raw[rows]
        x = quant.dequantize(raw, t.type, cols)
        return x.reshape(len(raw), cols) if len(t.shape) > 1 else x.reshape(cols)

    def _matmul(self, x, name):
        """x (n, cols) @ W.T, with x rounded to the weight type's activation format; W
        dequantized ROW_CHUNK rows at a time."""
        t = self.tensors[name]
        raw = self._raw_rows(name)
        fmt = quant.activation_type(t.type) if self.quantize_activations else None
        if fmt not in (None, "f32"):
            xq = quant.quantize(x.astype(np.float32), fmt)
            x = quant.dequantize(xq, fmt, x.shape[-1]).astype(np.float64)
        elif self.quantize_activations:
            x = x.astype(np.float32).astype(np.float64)
        out = np.empty((len(x), len(raw)))
        for r0 in range(0, len(raw), ROW_CHUNK):
            rows = slice(r0, min(len(raw), r0 + ROW_CHUNK))
            w = self._weight(name, rows).astype(np.float64)          # (chunk rows, cols)
            out[:, rows] = x @ w.T
            if fmt == "q8_1":
                # sum_b m_b * s_b replaces sum_b m_b * d_b * sum(q_b) inside W . x
                d, s, q = block_parts(xq, "q8_1", x.shape[-1], rows=len(x))
                m = block_parts(raw[rows], quant.type_name(t.type), w.shape[1], rows=len(w))[1]   # (rows, blocks)
                out[:, rows] += (s - d * q.sum(axis=2)) @ m.T
        return out

    def _vec(self, name):
        return self._weight(name).astype(np.float64)

    def _rmsnorm(self, x, name):
        """RMSNorm over the last axis (a row, or one head), times the stored weight (gemma's
        converter stores 1 + w, so the weight is used as it is)."""
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.shape.rms_eps) * self._vec(name)

    def _rope(self, x, positions, base):
        """x (n, heads, head_dim) rotated by position; llama pairs (2i, 2i+1), the others
        (i, i+d/2)."""
        s = self.shape
        hd = s.head_dim
        inv_freq = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        if "rope_freqs.weight" in self.tensors:
            inv_freq = inv_freq / self._vec("rope_freqs.weight")
        rot = np.exp(1j * positions[:, None] * inv_freq[None, :])[:, None, :]  # (n, 1, hd/2)
        if s.rope_neox:
            z = (x[..., :hd // 2] + 1j * x[..., hd // 2:]) * rot
            return np.concatenate([z.real, z.imag], axis=-1)
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
        return out

    def forward(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits (n, vocab) of every token of a sequence that starts at position 0."""
        s = self.shape
        tokens = np.asarray(tokens, dtype=np.int64)
        n, hd = len(tokens), s.head_dim
        positions = np.arange(n, dtype=np.float64)
        x = self._weight("token_embd.weight", tokens).astype(np.float64)   # (n, dim)
        x = x * np.float32(s.embed_scale)       # the engine scales in float32, as llama.cpp
        causal = np.triu(np.full((n, n), -np.inf), k=1)
        for layer in range(s.n_layer):
            b = f"blk.{layer}."
            mask = causal
            window = s.layer_window(layer)
            if window:      # token t sees positions t - window + 1 .. t
                mask = causal + np.tril(np.full((n, n), -np.inf), k=-window)
            h = self._rmsnorm(x, b + "attn_norm.weight")
            q, k, v = (self._matmul(h, b + f"attn_{p}.weight") for p in "qkv")
            if b + "attn_q.bias" in self.tensors:
                q, k, v = (t + self._vec(b + f"attn_{p}.bias") for t, p in zip((q, k, v), "qkv"))
            q, k = q.reshape(n, s.n_head, hd), k.reshape(n, s.n_kv_head, hd)
            if s.qk_norm:
                q, k = self._rmsnorm(q, b + "attn_q_norm.weight"), self._rmsnorm(k, b + "attn_k_norm.weight")
            base = s.layer_rope_base(layer)
            q, k = self._rope(q, positions, base), self._rope(k, positions, base)
            v = v.reshape(n, s.n_kv_head, hd)
            group = s.n_head // s.n_kv_head
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)   # (n, n_head, hd)
            scores = np.einsum("thd,shd->hts", q, k) * s.attn_scale + mask     # (n_head, n, n)
            p = np.exp(scores - scores.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            att = np.einsum("hts,shd->thd", p, v).reshape(n, s.n_head * hd)
            out = self._matmul(att, b + "attn_output.weight")
            if s.post_norms:
                out = self._rmsnorm(out, b + "post_attention_norm.weight")
            x = x + out
            h = self._rmsnorm(x, b + "ffn_norm.weight")
            gate, up = self._matmul(h, b + "ffn_gate.weight"), self._matmul(h, b + "ffn_up.weight")
            if s.ffn_act == "gelu":
                act = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate ** 3)))
            else:
                act = gate / (1 + np.exp(-gate))
            out = self._matmul(act * up, b + "ffn_down.weight")
            if s.post_norms:
                out = self._rmsnorm(out, b + "post_ffw_norm.weight")
            x = x + out
        h = self._rmsnorm(x, "output_norm.weight")
        logits = self._matmul(h, "output.weight" if "output.weight" in self.tensors
                              else "token_embd.weight")
        if s.logit_softcap:
            logits = s.logit_softcap * np.tanh(logits / s.logit_softcap)
        return logits


def float_forward(model_path, tokens: Sequence[int]) -> np.ndarray:
    """Logits (n_tok, vocab) of a GGUF model in float64 on its dequantized weights,
    activations unrounded: the float model the quantized engine approximates."""
    with ReferenceModel(model_path, quantize_activations=False) as ref:
        return ref.forward(tokens)
