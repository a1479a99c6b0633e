"""The one workload every command runs: resolve a model name once, load it, warm it up, prefill a
prompt, decode greedily, and replay the same decode.

    from slmprof.engine import workload
    model, notes = workload.load("smollm2-135m", threads=2, prompt_tokens=64, gen_tokens=32)
    with model:
        prompt = workload.prompt_tokens(model, 64)
        workload.warm_up(model, prompt)
        prefill = workload.prefill(model, prompt)                     # Timed(seconds, logits)
        decode = workload.decode_greedy(model, prefill.logits, 32)    # Decoded(seconds, tokens)

The steps take anything with the engine's stepping methods (`reset()`, `prefill(tokens)`,
`decode(token)`), so the benchmark harness drives its peer engines through the same loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from slmprof.engine import registry
from slmprof.engine.model import Model
from slmprof.errors import ModelNotFoundError

DEFAULT_MODEL = registry.REAL_MODEL
# What the default model falls back to when it cannot be fetched: the same shape and types.
FALLBACK_MODEL = "synth:smollm2-135m"
PROMPT_TEXT = ("The history of computing is a story of machines that became smaller, faster and "
               "cheaper, until a board the size of a credit card could run a language model. ")
# Warm-up: a short prompt pages the weights in and settles the thread pool.
WARM_UP_TOKENS = 16
# Positions a run leaves free past its prompt and generation.
CTX_SLACK = 8


def resolve(name) -> tuple[registry.ResolvedModel, list]:
    """(the model to load, notes). The default real model falls back to its synthetic twin
    when it cannot be fetched (offline), and says so; a synthetic model says what it is."""
    try:
        resolved = registry.resolve(name)
    except ModelNotFoundError as e:
        if name != DEFAULT_MODEL:
            raise
        return registry.resolve(FALLBACK_MODEL), [
            f"{DEFAULT_MODEL} could not be fetched ({e}); using {FALLBACK_MODEL}: random weights "
            "in the same shape and types, so speed figures hold but outputs are meaningless"]
    if resolved.synthetic:
        return resolved, [f"{name}: {resolved.description or 'synthetic, random weights'}"]
    return resolved, []


def load(name: str, threads: Optional[int] = None, ctx: Optional[int] = None,
         prompt_tokens: int = 0, gen_tokens: int = 0, kv_type: Optional[str] = None,
         say: Callable[[str], None] = lambda text: None) -> tuple[Model, list]:
    """Resolve `name` once and load it: (Model, notes). ctx defaults to what the prompt and the
    generation need."""
    resolved, notes = resolve(name)
    say(f"loading {resolved.name}")
    options = {} if kv_type is None else {"kv_type": kv_type}
    model = Model.load(resolved, threads=threads, ctx=ctx or (prompt_tokens + gen_tokens + CTX_SLACK),
                       **options)
    return model, notes


def prompt_tokens(model, n: int) -> list:
    """n prompt tokens: a fixed English text through the model's tokenizer, repeated; token ids
    in order when the model has no tokenizer."""
    tok = model.tokenizer
    if tok is not None:
        ids = list(tok.encode(PROMPT_TEXT * (1 + n // 16), add_bos=True))
        while len(ids) < n:
            ids += list(tok.encode(PROMPT_TEXT, add_bos=False))
        return ids[:n]
    vocab = model.config.vocab
    return [(1 + 7 * i) % vocab for i in range(n)]


def warm_up(engine, prompt) -> None:
    """Page the weights in and settle the threads before anything is timed; leaves the context
    empty."""
    engine.reset()
    engine.prefill(prompt[:WARM_UP_TOKENS])
    engine.decode(prompt[0])
    engine.reset()


@dataclass
class Timed:
    seconds: float
    logits: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass
class Decoded:
    seconds: float                                          # in the decode calls only
    tokens: list = field(default_factory=list)              # the tokens fed, in order
    step_seconds: list = field(default_factory=list)        # per call


def prefill(engine, prompt) -> Timed:
    """The prompt as one call from an empty context."""
    engine.reset()
    t0 = time.perf_counter()
    logits = engine.prefill(prompt)
    return Timed(time.perf_counter() - t0, logits)


def decode_greedy(engine, logits, n: int) -> Decoded:
    """n greedy steps after `logits`: each step feeds the most likely token of the last."""
    out = Decoded(0.0)
    token = int(np.argmax(logits))
    for _ in range(n):
        out.tokens.append(token)
        t0 = time.perf_counter()
        logits = engine.decode(token)
        out.step_seconds.append(time.perf_counter() - t0)
        token = int(np.argmax(logits))
    out.seconds = sum(out.step_seconds)
    return out


def decode_tokens(engine, tokens) -> Decoded:
    """Feed `tokens` one call each from where the context is: a replay of a greedy decode (or
    a benchmark's fixed continuation)."""
    out = Decoded(0.0, list(tokens))
    for token in out.tokens:
        t0 = time.perf_counter()
        engine.decode(token)
        out.step_seconds.append(time.perf_counter() - t0)
    out.seconds = sum(out.step_seconds)
    return out
