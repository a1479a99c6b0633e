"""`python -m slmprof compare`: models x quantization types in one table (size, speed, memory,
accuracy): the trade-offs between model size, accuracy and resource use."""
from __future__ import annotations

import os

from slmprof import report
from slmprof.analysis import perplexity
from slmprof.report import Column

NAME = "compare"
HELP = "compare models and quantization types: size, bytes/token, peak RSS, speed, perplexity, KL"
DESCRIPTION = """\
One row per model: size on disk, weight bytes streamed per token, peak RSS of a process running
it, prefill and decode tokens/s (slmprof's engine, each model in its own process), and for real
models the perplexity on a standard-library text and the KL divergence of the next-token
distribution against a float reference (the original model's dequantized weights run in float64
numpy). The default set is the real SmolLM2-135M in its own Q4_1, the same model requantized to
Q8_0 and Q4_0, and synthetic models in the shapes of larger SLMs (speed and memory only)."""
EXAMPLES = """\
examples:
  python -m slmprof compare
  python -m slmprof compare --models smollm2-135m,smollm2-135m:q8_0 --format csv -o compare.csv
  python -m slmprof compare --no-quality --json compare.json
"""

DEFAULT_MODELS = ("smollm2-135m", "smollm2-135m:q8_0", "smollm2-135m:q4_0",
                  "synth:smollm2-360m:q4_0", "synth:qwen2.5-0.5b:q4_0")


def add_arguments(p):
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated model names or paths (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: usable cores)")
    p.add_argument("--prompt-tokens", "-p", type=int, default=64, help="prefill length (default 64)")
    p.add_argument("--gen-tokens", "-n", type=int, default=32, help="decoded tokens (default 32)")
    p.add_argument("--reps", "-r", type=int, default=3, help="repetitions after a warm-up (default 3)")
    p.add_argument("--ppl-ctx", type=int, default=128,
                   help="perplexity window in tokens; the second half of each is scored (default 128)")
    p.add_argument("--ppl-windows", type=int, default=4, help="perplexity windows (default 4)")
    p.add_argument("--kl-tokens", type=int, default=48,
                   help="tokens of text for the KL divergence against float (default 48)")
    p.add_argument("--no-quality", action="store_true", help="skip perplexity and KL")
    report.add_output_arguments(p)


def _quality(resolved, base_path, args, cache):
    """Perplexity and KL against the float reference of `base_path` for one real model."""
    import numpy as np
    from slmprof.engine.model import Model
    from slmprof.engine.reference import float_forward
    from slmprof.analysis.validate import logits_agreement
    out = {}
    with Model.load(str(resolved.path), threads=args.threads,
                    ctx=max(args.ppl_ctx, args.kl_tokens) + 8) as model:
        if "tokens" not in cache:
            text = perplexity.stdlib_text()
            cache["tokens"] = model.tokenizer.encode(text, add_bos=False)
            cache["kl_tokens"] = model.tokenizer.encode(text, add_bos=True)[:args.kl_tokens]
        ppl = perplexity.perplexity(model, cache["tokens"][:args.ppl_ctx * args.ppl_windows],
                                    args.ppl_ctx)
        out["perplexity"] = ppl.perplexity
        out["ppl_tokens"] = ppl.tokens
        kl_toks = cache["kl_tokens"]
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
    from slmprof.engine import registry
    if name.split(":")[0] == registry.REAL_MODEL and not resolved.synthetic:
        return registry.resolve(registry.REAL_MODEL).path
    return resolved.path


def run(args):
    from slmprof.bench.backends import BackendError, Worker
    from slmprof.commands.bench import _default_threads, _model_facts, _tokens, _ctx_for
    from slmprof.engine.registry import resolve

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        report.say("slmprof compare: error: no models given", False)
        return 2
    args.threads = args.threads or _default_threads()
    P, G = args.prompt_tokens, args.gen_tokens
    records, notes, cache = [], [], {}
    steps = len(names) * (args.reps + 2 + (0 if args.no_quality else 1))
    with report.Progress(total=steps, what="compare", quiet=args.quiet) as bar:
        for name in names:
            bar.set_status(f"{name}: preparing")
            rec = {"model": name}
            try:
                resolved = resolve(name)
            except Exception as e:  # noqa: BLE001  (one model's problem; the others go on)
                rec["error"] = f"{type(e).__name__}: {e}"
                records.append(rec)
                notes.append(f"{name}: {rec['error']}")
                bar.advance(args.reps + 2)
                continue
            facts = _model_facts(resolved.path)
            rec.update({"synthetic": resolved.synthetic, "type": facts["file_type"].split(" ")[0],
                        "file_type": facts["file_type"],
                        "file_bytes": os.path.getsize(resolved.path),
                        "bytes_per_token": facts["bytes_per_token"], "threads": args.threads})
            bar.advance()
            try:
                with Worker("slmprof") as w:
                    ctx = _ctx_for(P, G)
                    w.load(resolved.path, args.threads, ctx, max(P, 1))
                    prompt = _tokens(1, P, facts["vocab"])
                    gen = _tokens(2, G, facts["vocab"])
                    w.run(prompt, gen)                      # warm-up
                    bar.advance()
                    pre, dec = [], []
                    for _ in range(args.reps):
                        o = w.run(prompt, gen)
                        if o["prefill_s"]:
                            pre.append(P / o["prefill_s"])
                        if o["decode_s"]:
                            dec.append(G / sum(o["decode_s"]))
                        bar.advance()
                    rec["peak_rss_bytes"] = w.stats()["peak_rss"]
                rec["prefill_tok_s"], rec["prefill_tok_s_std"] = report.mean_std(pre)
                rec["decode_tok_s"], rec["decode_tok_s_std"] = report.mean_std(dec)
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
    if args.json_file:
        report.write_json(rep, args.json_file)
    report.emit(rep, args.format, args.output, columns=COLUMNS)
    return 0 if any("error" not in r for r in records) else 1


def _mb(v, rec=None):
    return "" if v is None else f"{v / 1e6:.1f}"


COLUMNS = [
    Column("model", align="left"), Column("type", align="left"),
    Column("synthetic", "synth"), Column("file_bytes", "size MB", _mb),
    Column("bytes_per_token", "MB/token", _mb), Column("peak_rss_bytes", "peak RSS MB", _mb),
    Column("prefill_tok_s", "prefill t/s", ".1f"), Column("decode_tok_s", "decode t/s", ".1f"),
    Column("decode_GBps", "GB/s", ".2f"), Column("perplexity", "PPL", ".2f"),
    Column("kl_vs_float", "KL vs float", ".4f"), Column("top1_vs_float", "top-1", ".2f"),
    Column("error", align="left"),
]
