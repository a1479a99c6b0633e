"""Choosing the next token from logits: greedy, or temperature / top-k / top-p with a seed.

    >>> import numpy as np
    >>> from slmprof.engine.sampling import Sampler
    >>> Sampler().sample(np.array([0.1, 2.0, -1.0], dtype=np.float32))    # greedy
    1
"""
from __future__ import annotations

import numpy as np

from slmprof.errors import NumericalError


class Sampler:
    """temperature <= 0 is greedy (argmax; ties go to the lowest id). Otherwise the logits are
    divided by the temperature, cut to the top_k most likely (0: all) and then to the smallest
    set whose probability reaches top_p, and a token is drawn with a generator seeded by seed."""

    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
        if not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, 0 for greedy (got {temperature})")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (got {top_k}; 0 keeps every token)")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (got {top_p})")
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.rng = np.random.default_rng(seed)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def sample(self, logits) -> int:
        logits = np.asarray(logits, dtype=np.float32)
        if not np.isfinite(logits).all():       # -inf masks a token; NaN and +inf mean nothing
            bad = int(np.count_nonzero(np.isnan(logits) | (logits == np.inf)))
            if bad:
                raise NumericalError(f"{bad} of {logits.size} logits are NaN or +infinity: the "
                                     f"model's weights hold NaN or infinite values, or its "
                                     f"activations overflow")
        if self.greedy:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / self.temperature
        if 0 < self.top_k < z.size:
            ids = np.argpartition(-z, self.top_k - 1)[:self.top_k]
        else:
            ids = np.arange(z.size)
        # most likely first; stable so equal logits keep id order (reproducible draws)
        ids = ids[np.argsort(-z[ids], kind="stable")]
        p = np.exp(z[ids] - z[ids[0]])
        p /= p.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), self.top_p)) + 1
            ids, p = ids[:keep], p[:keep] / p[:keep].sum()
        return int(ids[self.rng.choice(ids.size, p=p)])
