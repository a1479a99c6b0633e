"""Perplexity the way llama.cpp's `perplexity` tool measures it.

The text is tokenized once, cut into non-overlapping windows of n_ctx tokens (a partial window at
the end is dropped), each window starts from an empty cache with BOS as its first token, and
only the second half of each window is scored: those tokens have at least n_ctx/2 tokens of
context, so the figure does not depend on how the text happened to be cut.
perplexity = exp(mean negative log-likelihood of the scored tokens).
"""
from __future__ import annotations

import math

import numpy as np


def log_softmax_at(logits, targets):
    """log p(target) for each row; float64, stable."""
    z = logits.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return z[np.arange(len(targets)), targets] - lse


def perplexity(model, tokens, n_ctx, progress=None):
    """dict(perplexity, tokens scored, windows, nll, ...). tokens: ids without BOS."""
    if n_ctx < 8:
        raise ValueError(f"ctx must be at least 8 tokens for perplexity (got {n_ctx})")
    if n_ctx > model.ctx:
        raise ValueError(f"ctx {n_ctx} exceeds the context the model was loaded with ({model.ctx})")
    tokens = np.asarray(tokens, dtype=np.int64)
    n_windows = len(tokens) // n_ctx
    if n_windows == 0:
        raise ValueError(f"the text has {len(tokens)} tokens; perplexity needs at least one "
                         f"window of {n_ctx}")
    bos = model.tokenizer.bos_id if model.tokenizer is not None else None
    first = n_ctx // 2
    nll, count, per_window = 0.0, 0, []
    for w in range(n_windows):
        window = tokens[w * n_ctx:(w + 1) * n_ctx].copy()
        if bos is not None:
            window[0] = bos        # as llama.cpp: each window starts like a document
        model.reset()
        # logits of tokens first .. n_ctx-1 only; logits[i] predicts window[first + i + 1]
        logits = model.prefill(window, last=n_ctx - first)
        lp = log_softmax_at(logits[:-1], window[first + 1:])
        nll -= float(lp.sum())
        count += len(lp)
        per_window.append(math.exp(-float(lp.mean())))
        if progress:
            progress(w + 1, n_windows, math.exp(nll / count))
    return {"perplexity": math.exp(nll / count), "tokens": int(count), "windows": n_windows,
            "ctx": int(n_ctx), "nll_mean": nll / count, "window_perplexity": per_window,
            "text_tokens": int(len(tokens))}
