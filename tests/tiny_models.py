"""Tiny llama/qwen2/qwen3/gemma3 GGUF files for the tests, written with slmprof's own writer.

`write_synthetic_tiny` makes the `tiny_model` fixture's files through the registry's synthetic
writer (any weight type, either tokenizer). `write_tiny_model` makes the forward-pass tests'
files and returns the float32 weights they were made from: random with std 1/sqrt(fan_in) so
activations stay O(1) through the layers, the way a trained model's do; norms are 1 plus noise;
an SPM vocabulary (tokenizer model "llama" with byte fallback), which GGML loaders accept.
"""
from __future__ import annotations

import numpy as np

from slmprof.engine import quant
from slmprof.engine.gguf import GGUFWriter, ModelShape
from slmprof.engine.registry import write_synthetic
from slmprof.engine.tokenizer import synthetic_vocab


def tiny_shape(arch="llama", tied=True, n_layer=2, dim=64, ffn=96, n_head=4, n_kv_head=2,
               head_dim=None, vocab=384, ctx=128, rope_base=None, rms_eps=1e-5, rope_freqs=False,
               sliding_window=None, sliding_window_pattern=2, rope_base_swa=10000.0,
               logit_softcap=0.0):
    """A small ModelShape for tests (defaults: 2 layers, dim 64, 4 heads of 16, 2 KV heads;
    gemma3: a window of 8 positions on every other layer, RoPE base 1e6 / 10000)."""
    if arch not in ("llama", "qwen2", "qwen3", "gemma3"):
        raise ValueError(f"tiny models are llama, qwen2, qwen3 or gemma3, not {arch!r}")
    if sliding_window is None:
        sliding_window = 8 if arch == "gemma3" else 0
    window = dict(sliding_window=sliding_window, sliding_window_pattern=sliding_window_pattern,
                  rope_base_swa=rope_base_swa) if sliding_window else {}
    return ModelShape(arch=arch, n_layer=n_layer, dim=dim, ffn=ffn, n_head=n_head,
                      n_kv_head=n_kv_head, head_dim=head_dim or dim // n_head, vocab=vocab,
                      ctx=ctx, tied=tied,
                      rope_base=rope_base or (10000.0 if arch == "llama" else 1e6),
                      rms_eps=rms_eps, rope_freqs=rope_freqs, logit_softcap=logit_softcap,
                      **window)


def write_synthetic_tiny(path, arch="llama", type="q4_0", tokenizer="gpt2", tied=True,
                     head_type=None, embd_type=None, seed=0, version=3, **shape_kw):
    """A tiny synthetic model for tests. All 2-D weights are `type` unless head_type (LM head)
    or embd_type (untied token_embd) say otherwise. tokenizer: "gpt2" (byte-level BPE; smollm
    pre-tokenizer for llama, qwen2 for qwen2) or "spm". Returns the path."""
    shape = tiny_shape(arch=arch, tied=tied, **shape_kw)
    if tokenizer == "gpt2":
        tok = ("gpt2", "qwen2" if arch == "qwen2" else "smollm")
    elif tokenizer in ("spm", "llama"):
        tok = ("llama", None)
    else:
        raise ValueError(f"tokenizer must be 'gpt2' or 'spm', not {tokenizer!r}")
    return write_synthetic(shape, type, path, seed=seed, name=f"tiny {arch} {type}",
                           tokenizer=tok, head_type=head_type or type,
                           embd_type=embd_type or type, version=version)


def tiny(arch="llama", dim=64, ffn=128, n_head=4, n_kv_head=2, tied=True, rope_freqs=False,
         **kw):
    """The forward-pass tests' shape: 2 layers, a 320-token vocabulary, RoPE base 10000."""
    return tiny_shape(arch=arch, dim=dim, ffn=ffn, n_head=n_head, n_kv_head=n_kv_head, tied=tied,
                      vocab=320, ctx=256, rope_base=10000.0, rope_freqs=rope_freqs, **kw)


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
        if shape.qk_norm:
            w[b + "attn_q_norm.weight"] = norm(hd)
            w[b + "attn_k_norm.weight"] = norm(hd)
        w[b + "attn_output.weight"] = mat(d, q)
        if shape.post_norms:
            w[b + "post_attention_norm.weight"] = norm(d)
        w[b + "ffn_norm.weight"] = norm(d)
        w[b + "ffn_gate.weight"] = mat(f, d)
        w[b + "ffn_up.weight"] = mat(f, d)
        w[b + "ffn_down.weight"] = mat(d, f)
        if shape.post_norms:
            w[b + "post_ffw_norm.weight"] = norm(d)
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
