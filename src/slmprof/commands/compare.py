"""`python -m slmprof compare`: models x quantization types in one table (size, speed, memory,
accuracy): the trade-offs between model size, accuracy and resource use."""
from __future__ import annotations

import os

import numpy as np

from slmprof import report
from slmprof.analysis import perplexity
from slmprof.analysis.validate import logits_agreement
from slmprof.bench import harness
from slmprof.bench.backends import BackendError
from slmprof.commands import _options
from slmprof.engine import registry
from slmprof.engine.model import Model, default_threads
from slmprof.engine.reference import float_forward
from slmprof.errors import CheckFailed, SlmprofError, UsageError
from slmprof.report import Column
from slmprof.report.units import mb

NAME = "compare"
HELP = "compare models and quantization types: size, bytes/token, peak RSS, speed, perplexity, KL"
DESCRIPTION = """\
One row per model: size on disk, weight bytes streamed per token, peak RSS of a process running
it, prefill and decode tokens/s (slmprof's engine, each model in its own process), and for real
models the perplexity on a standard-library text and the KL divergence of the next-token
distribution against a float reference (the original model's dequantized weights run in float64
numpy). The default set is the real SmolLM2-135M in its own Q4_1, the same model requantized to
Q8_0 and Q4_0, and synthetic models in the shapes of larger SLMs (speed and memory only).
--ladder compares the real SmolLM2 across every quantization slmprof writes, from Q8_0 down to
Q2_K (its own Q4_1 first, the reference), requantizing into the cache what is not there yet;
`slmprof plot ladder` draws such a report."""
EXAMPLES = """\
examples:
  python -m slmprof compare
  python -m slmprof compare --models smollm2-135m,smollm2-135m:q8_0 --format csv -o compare.csv
  python -m slmprof compare --no-quality --json compare.json
  python -m slmprof compare --ladder --json ladder.json && python -m slmprof plot ladder ladder.json
"""

DEFAULT_MODELS = ("smollm2-135m", "smollm2-135m:q8_0", "smollm2-135m:q4_0",
                  "synth:smollm2-360m:q4_0", "synth:qwen2.5-0.5b:q4_0")
# The real model's quantization ladder, largest first (its own Q4_1 is the reference).
LADDER_TYPES = ("q8_0", "q6_k", "q5_k_m", "q5_k", "q5_1", "q5_0", "q4_k_m", "q4_k", "q4_0",
                "q3_k", "q2_k")


def add_arguments(p):
    p.add_argument("--models", default=None,
                   help=f"comma-separated model names or paths (default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--ladder", action="store_true",
                   help=f"the real {registry.REAL_MODEL} in its own type and requantized to "
                        f"{', '.join(LADDER_TYPES)}")
    _options.add_threads(p, short=True)
    p.add_argument("--prompt-tokens", "-p", type=_options.prompt_tokens, default=64,
                   help="prefill length (default 64)")
    p.add_argument("--gen-tokens", "-n", type=_options.gen_tokens, default=32,
                   help="decoded tokens (default 32)")
    p.add_argument("--reps", "-r", type=_options.integer(1, 10000), default=3,
                   help="repetitions after a warm-up (default 3)")
    p.add_argument("--ppl-ctx", type=_options.integer(8, _options.MAX_CTX), default=128,
                   help="perplexity window in tokens; the second half of each is scored (default 128)")
    p.add_argument("--ppl-windows", type=_options.integer(1, 100000), default=4,
                   help="perplexity windows (default 4)")
    p.add_argument("--kl-tokens", type=_options.integer(2, 100000), default=48,
                   help="tokens of text for the KL divergence against float (default 48)")
    p.add_argument("--no-quality", action="store_true", help="skip perplexity and KL")
    report.add_output_arguments(p)


def _quality(resolved, base_path, args, cache):
    """Perplexity and KL against the float reference of `base_path` for one real model."""
    out = {}
    with Model.load(str(resolved.path), threads=args.threads,
                    ctx=max(args.ppl_ctx, args.kl_tokens) + 8) as model:
        # the text in this model's own tokens: shared with its requantized variants only
        tokens_key = ("tokens", str(base_path))
        if tokens_key not in cache:
            text = perplexity.stdlib_text()
            cache[tokens_key] = (model.tokenizer.encode(text, add_bos=False),
                                 model.tokenizer.encode(text, add_bos=True)[:args.kl_tokens])
        ppl_toks, kl_toks = cache[tokens_key]
        ppl = perplexity.perplexity(model, ppl_toks[:args.ppl_ctx * args.ppl_windows], args.ppl_ctx)
        out["perplexity"] = ppl.perplexity
        out["ppl_tokens"] = ppl.tokens
        model.reset()
        got = np.asarray(model.prefill(kl_toks, all_logits=True), np.float64)
    key = ("float", str(base_path))
    if key not in cache:
        cache[key] = float_forward(base_path, kl_toks)
    agree = logits_agreement(cache[key], got)
    out["kl_vs_float"] = agree["kl"]
    out["top1_vs_float"] = agree["top1"]
    return out


def _base_of(name, resolved):
    """The file whose float weights are the reference: the registry's real model for its
    requantized variants, else the file itself."""
    real = name.split(":")[0]
    if real in registry.REAL_MODELS and not resolved.synthetic:
        return registry.resolve(real).path
    return resolved.path


def check(args):
    _options.check_kernel_path()
    if args.ladder and args.models is not None:
        raise UsageError("--ladder is a set of models of its own: give it or --models, not both")
    if args.ladder:
        args.models = ",".join([registry.REAL_MODEL] + [f"{registry.REAL_MODEL}:{t}" for t in LADDER_TYPES])
    elif args.models is None:
        args.models = ",".join(DEFAULT_MODELS)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        raise UsageError("--models: no models given")
    for name in args.models:
        _options.model(name)
        _options.check_positions(name, args.prompt_tokens + args.gen_tokens,
                                 "--prompt-tokens + --gen-tokens")


def run(args):
    names = args.models
    args.threads = args.threads or default_threads()
    P, G = args.prompt_tokens, args.gen_tokens
    records, notes, cache = [], [], {}
    steps = len(names) * (args.reps + 2 + (0 if args.no_quality else 1))
    with report.Progress(total=steps, what="compare", quiet=args.quiet) as bar:
        for name in names:
            bar.set_status(f"{name}: preparing")
            rec = {"model": name}
            try:
                resolved = registry.resolve(name)
            except SlmprofError as e:   # one model's problem; the others go on
                rec["error"] = f"{type(e).__name__}: {e}"
                records.append(rec)
                notes.append(f"{name}: {rec['error']}")
                bar.advance(args.reps + 2)
                continue
            facts = harness.model_facts(resolved.path)
            rec.update({"synthetic": resolved.synthetic, "type": facts["file_type"].split(" ")[0],
                        "file_type": facts["file_type"],
                        "file_bytes": os.path.getsize(resolved.path),
                        "bytes_per_token": facts["bytes_per_token"], "threads": args.threads})
            bar.advance()
            try:
                speed = harness.time_engine(resolved.path, args.threads, P, G, args.reps,
                                            on_step=bar.advance)
                rec["peak_rss_bytes"] = speed["peak_rss_bytes"]
                rec["prefill_tok_s"], rec["prefill_tok_s_std"] = report.mean_std(speed["prefill_tok_s"])
                rec["decode_tok_s"], rec["decode_tok_s_std"] = report.mean_std(speed["decode_tok_s"])
                rec["decode_GBps"] = rec["decode_tok_s"] * facts["bytes_per_token"] / 1e9
            except BackendError as e:
                rec["error"] = e.reason
                notes.append(f"{name}: {e.reason}")
            if not args.no_quality:
                if resolved.synthetic:
                    rec["quality_note"] = "synthetic weights: no perplexity"
                elif "error" not in rec:
                    bar.set_status(f"{name}: perplexity and KL")
                    rec.update(_quality(resolved, _base_of(name, resolved), args, cache))
                bar.advance()
            records.append(rec)
    if not args.no_quality:
        notes.append("perplexity: the docstrings of json, csv, argparse, logging, collections, "
                     f"string and textwrap, windows of {args.ppl_ctx} tokens, second half scored; "
                     "KL: next-token distributions against the original model's dequantized "
                     f"weights in float64 numpy, over {args.kl_tokens} tokens")
    if any(r.get("synthetic") for r in records):
        notes.append("synthetic models have random weights in the shape of the named model: "
                     "their speed and memory are meaningful, their text is not")
    rep = report.make_report(
        "compare", records,
        settings={"threads": args.threads, "prompt_tokens": P, "gen_tokens": G, "reps": args.reps,
                  "models": names, "ppl_ctx": args.ppl_ctx, "ppl_windows": args.ppl_windows,
                  "kl_tokens": args.kl_tokens},
        notes=notes)
    report.emit_output(report.render(rep, report.stdout_format(args), columns=COLUMNS), args, rep)
    if all("error" in r for r in records):
        raise CheckFailed("no model could be compared: " + "; ".join(
            f"{r['model']}: {r['error']}" for r in records))


COLUMNS = [
    Column("model", align="left"), Column("type", align="left"),
    Column("synthetic", "synth"), Column("file_bytes", "size MB", mb),
    Column("bytes_per_token", "MB/token", mb), Column("peak_rss_bytes", "peak RSS MB", mb),
    Column("prefill_tok_s", "prefill t/s", ".1f"), Column("decode_tok_s", "decode t/s", ".1f"),
    Column("decode_GBps", "GB/s", ".2f"), Column("perplexity", "PPL", ".2f"),
    Column("kl_vs_float", "KL vs float", ".4f"), Column("top1_vs_float", "top-1", ".2f"),
    Column("error", align="left"),
]
