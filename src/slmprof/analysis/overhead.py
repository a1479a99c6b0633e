"""What profiling costs: decode time with region hooks off, at layer edges only, and at every
operation edge with every span kept (what `layers` attaches), measured on the same tokens at the
same positions.

    from slmprof.analysis.overhead import profiling_cost
    cost = profiling_cost(model, prompt_tokens=64, gen_tokens=32, reps=15)
    cost.median_ratio["ops"]      # decode time with per-operation regions / without
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmprof.analysis.layers import make_profiler, span_capacity
from slmprof.engine import workload

CONFIGS = ("off", "layers", "ops")


@dataclass
class ProfilingCost:
    runs: dict                  # config -> [seconds per repetition]
    ratios: dict                # config -> [repetition / the same repetition off]
    median_ratio: dict          # config -> median of ratios
    median_token_ratio: dict    # config -> median over single tokens (robust to a preemption)
    coverage: dict              # "layers" | "ops" -> layer regions' time / measured time
    counters_note: object       # why the counter columns are empty, or None
    region_errors: int
    tokens: int


def _layer_seconds(prof, model):
    """Time in the layer regions since the last reset (their critical-path tiles where the
    engine handed over per-thread spans, else their wall time between edges)."""
    total = 0
    for rid, _, op in model.region_names():
        st = prof.table.get(rid) if op == "layer" else None
        total += (st["span_ns"] if st["span_count"] else st["wall_ns"]) if st else 0
    return total * 1e-9


def profiling_cost(model, prompt_tokens=64, gen_tokens=32, reps=15, events=None) -> ProfilingCost:
    """Decode time of a loaded Model under each configuration (events as for `layers`).

    The prompt is prefilled once and its greedy continuation decoded once; each repetition then
    decodes exactly those tokens from the same positions (the cache rewound), each token once
    under every configuration back to back, the order rotating, so a change in the machine's
    load touches all of them alike."""
    prompt = workload.prompt_tokens(model, prompt_tokens)
    pre = workload.prefill(model, prompt)
    tokens = workload.decode_greedy(model, pre.logits, gen_tokens).tokens
    start = len(prompt)
    # one table per profiled configuration, so each one's layer regions can be set against
    # that configuration's own measured time
    made = {c: make_profiler(events) for c in ("layers", "ops")}
    profs = {c: p for c, (p, _) in made.items()}
    # as `layers` attaches them: every span kept, with each thread's run-queue wait per token
    profs["ops"].table.keep_spans(span_capacity(model.config, model.threads, 0, reps * len(tokens) + 8))
    attach = {"off": lambda: model.set_profiler(None),
              "layers": lambda: model.set_profiler(profs["layers"].table, ops=False),
              "ops": lambda: model.set_profiler(profs["ops"].table)}

    def decode_at(pos, token):
        model.engine.set_n_past(pos)
        return workload.decode_tokens(model, [token]).seconds

    runs = {c: [] for c in CONFIGS}
    per_token = {c: [] for c in CONFIGS}  # [rep * n + i] seconds
    try:
        for c in CONFIGS:  # warm every path once
            attach[c]()
            if c in profs:
                profs[c].attach_threads()
            for i in range(min(4, len(tokens))):
                decode_at(start + i, tokens[i])
        for p in profs.values():
            p.reset()
        k = 0
        for _ in range(reps):
            spent = dict.fromkeys(CONFIGS, 0.0)
            for i, token in enumerate(tokens):
                order = CONFIGS[k % 3:] + CONFIGS[:k % 3]
                k += 1
                for c in order:
                    attach[c]()
                    s = decode_at(start + i, token)
                    spent[c] += s
                    per_token[c].append(s)
            for c in CONFIGS:
                runs[c].append(spent[c])
        model.set_profiler(None)
        coverage = {c: _layer_seconds(profs[c], model) / sum(runs[c]) for c in profs}
        errors = sum(p.errors for p in profs.values())
    finally:
        model.set_profiler(None)
        for p in profs.values():
            p.close()
    ratios = {c: [a / b for a, b in zip(runs[c], runs["off"])] for c in CONFIGS}
    token_ratio = {c: float(np.median(np.array(per_token[c]) / np.array(per_token["off"])))
                   for c in CONFIGS}
    return ProfilingCost(runs=runs, ratios=ratios,
                         median_ratio={c: float(np.median(r)) for c, r in ratios.items()},
                         median_token_ratio=token_ratio, coverage=coverage,
                         counters_note=made["ops"][1], region_errors=errors, tokens=len(tokens))
