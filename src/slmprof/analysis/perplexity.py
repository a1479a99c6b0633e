"""Perplexity the way llama.cpp's `perplexity` tool measures it, and the log-probabilities it and
the logit comparisons share.

The text is tokenized once, cut into non-overlapping windows of n_ctx tokens (a partial window at
the end is dropped), each window starts from an empty cache with BOS as its first token, and
only the second half of each window is scored: those tokens have at least n_ctx/2 tokens of
context, so the figure does not depend on how the text happened to be cut.
perplexity = exp(mean negative log-likelihood of the scored tokens).
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import math
import string
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


def log_softmax(x) -> np.ndarray:
    """log softmax over the last axis; float64, stable."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def log_softmax_at(logits, targets) -> np.ndarray:
    """log p(target) for each row of (n, vocab) logits; float64."""
    return log_softmax(logits)[np.arange(len(targets)), np.asarray(targets)]


def stdlib_text() -> str:
    """English prose that ships with every Python: the docstrings of a few standard modules."""
    parts = [m.__doc__ or "" for m in (json, csv, argparse, logging, collections, string, textwrap)]
    return "\n\n".join(textwrap.dedent(p).strip() for p in parts if p)


@dataclass
class Perplexity:
    perplexity: float
    tokens: int                 # scored
    windows: int
    ctx: int
    nll_mean: float
    text_tokens: int
    window_perplexity: list = field(default_factory=list)


def perplexity(model, tokens, n_ctx, progress: Optional[Callable] = None) -> Perplexity:
    """tokens: ids without BOS (each window gets BOS as its first token, as in llama.cpp).
    progress(done, total, running perplexity) after each window."""
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
    return Perplexity(perplexity=math.exp(nll / count), tokens=int(count), windows=n_windows,
                      ctx=int(n_ctx), nll_mean=nll / count, text_tokens=int(len(tokens)),
                      window_perplexity=per_window)
