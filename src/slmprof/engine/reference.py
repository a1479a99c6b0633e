"""An independent forward pass in numpy (float64) over a GGUF file's dequantized weights.

Written from the maths, not from the C engine: whole-sequence causal attention with a mask
(and a band for sliding-window layers), RoPE as a complex rotation, GQA by repeating K/V
heads; qwen3's and gemma3's per-head q/k norms, gemma3's scaled embeddings, post-norms and
GELU gate. It is what `validate` and `compare`
measure the engine against, and what the tests check the engine's forward pass with.

With `quantize_activations=True` every matmul input is rounded the way the GGUF formats define
(Q8_0 for Q4_0/Q8_0 weights, Q8_1 for Q4_1; f32/f16 weights read f32 activations), so what is
left between it and the engine is only float32-vs-float64 arithmetic. Q8_1 carries
s = fp16(d * sum(q)) per block and the Q4_1 dot product uses it for the weights' offset term
(m * s); the reference does the same. With `False` it is the pure float model.

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
    """(d, m_or_s, q) of `rows` rows of n elements in a GGUF block type, read from the block
    layout: d and the second scale (m of Q4_1, s of Q8_1; None for Q4_0/Q8_0) float64
    (rows, blocks), q int64 (rows, blocks, 32) with Q4_0's offset of 8 taken off.
    rows=None: `data` is one row and the leading axis is dropped."""
    bb, nb = quant.row_bytes(type, 32), n // 32
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(1 if rows is None else rows, -1)
    blocks = raw[:, : nb * bb].reshape(len(raw), nb, bb)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    second = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    if type in ("q4_0", "q4_1"):
        qs = blocks[..., 2:18] if type == "q4_0" else blocks[..., 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int64)
        if type == "q4_0":
            q -= 8
    else:
        q = blocks[..., (2 if type == "q8_0" else 4):][..., :32].view(np.int8).astype(np.int64)
    second = second if type in ("q4_1", "q8_1") else None
    if rows is None:
        return d[0], None if second is None else second[0], q[0]
    return d, second, q


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
                m = block_parts(raw[rows], "q4_1", w.shape[1], rows=len(w))[1]   # (rows, blocks)
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
