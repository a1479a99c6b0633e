"""Tiny llama/qwen2 GGUF files for the forward-pass tests, written with slmprof's own writer.

Weights are random with std 1/sqrt(fan_in) so activations stay O(1) through the layers, the way a
trained model's do; norms are 1 plus noise. The vocabulary is an SPM one (tokenizer model
"llama" with byte fallback), which GGML loaders accept.
"""
from __future__ import annotations

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import GGUFWriter, ModelShape
from slmprof.engine.registry import tiny_shape
from slmprof.engine.tokenizer import synthetic_vocab


def tiny(arch="llama", dim=64, ffn=128, n_head=4, n_kv_head=2, tied=True, rope_freqs=False):
    """The forward-pass tests' shape: 2 layers, a 320-token vocabulary, RoPE base 10000."""
    return tiny_shape(arch=arch, dim=dim, ffn=ffn, n_head=n_head, n_kv_head=n_kv_head, tied=tied,
                      vocab=320, ctx=256, rope_base=10000.0, rope_freqs=rope_freqs)


def random_weights(shape: ModelShape, seed=0):
    """name -> float32 array, numpy (rows, cols) order (1-D for vectors)."""
    rng = np.random.default_rng(seed)
    d, f, hd = shape.dim, shape.ffn, shape.head_dim
    q, kv = shape.n_head * hd, shape.n_kv_head * hd

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((shape.vocab, d)).astype(np.float32)}
    if shape.rope_freqs:
        w["rope_freqs.weight"] = (1.0 + rng.random(hd // 2) * 3).astype(np.float32)
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        w[b + "attn_norm.weight"] = norm(d)
        w[b + "attn_q.weight"] = mat(q, d)
        w[b + "attn_k.weight"] = mat(kv, d)
        w[b + "attn_v.weight"] = mat(kv, d)
        if shape.arch == "qwen2":
            w[b + "attn_q.bias"] = (0.5 * rng.standard_normal(q)).astype(np.float32)
            w[b + "attn_k.bias"] = (0.5 * rng.standard_normal(kv)).astype(np.float32)
            w[b + "attn_v.bias"] = (0.5 * rng.standard_normal(kv)).astype(np.float32)
        w[b + "attn_output.weight"] = mat(d, q)
        w[b + "ffn_norm.weight"] = norm(d)
        w[b + "ffn_gate.weight"] = mat(f, d)
        w[b + "ffn_up.weight"] = mat(f, d)
        w[b + "ffn_down.weight"] = mat(d, f)
    w["output_norm.weight"] = norm(d)
    if not shape.tied:
        w["output.weight"] = mat(shape.vocab, d) * 4
    return w


def encode_tensor(x, type_name):
    """A float32 array as the bytes of a GGUF tensor of that type."""
    if x.ndim == 1 or type_name == "f32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if type_name == "f16":
        return np.ascontiguousarray(x, dtype=np.float16)
    return quant.quantize(x, type_name)


def write_tiny_model(path, shape: ModelShape, type_name="q8_0", seed=0, embd_type=None):
    """Write the model; returns the float32 weights it was made from."""
    weights = random_weights(shape, seed)
    g = GGUFWriter(path, shape.arch)
    g.add("general.name", f"tiny-{shape.arch}-{type_name}")
    g.add_hyperparameters(shape)
    for key, value in synthetic_vocab("llama", shape.vocab).items():
        g.add(key, value)
    for name, x in weights.items():
        t = embd_type if (name == "token_embd.weight" and embd_type) else type_name
        t = "f32" if x.ndim == 1 else t
        g.add_tensor(name, encode_tensor(x, t), t, tuple(reversed(x.shape)))
    g.write()
    return weights
