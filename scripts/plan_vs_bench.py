#!/usr/bin/env python3
"""Proof of `plan`: predict with `plan --device this`, then measure with `bench`, and report the
prediction error per model x type (targets: decode within 20%, prefill within 30%).

The prediction must not see the measurement it is judged against. On this machine `calibrate`
measures the engine's own kernels (its one-token product streaming each weight type from memory
in the engine's work units, its decode attention, its blocked product), so plan's bound is made
of them. What they leave out (the many small steps of a forward pass: norms, RoPE, activation
quantization, waits) is learnt as the engine efficiency (measured / bound, per phase) from
*reference* runs that are not in the evaluation set (`--reference`, default three models of
three sizes and types): each reference is benched right after a calibration and learnt with
`plan --learn` (the runs make a curve over model size). `--reference none` learns nothing: the
prediction is the bound itself, from the calibration alone. Then, for every evaluated model: `calibrate --force` (the ceilings as the machine is now:
on a shared machine bandwidth moves by tens of percent from minute to minute), `plan --device
this --json` (the prediction), `bench` (the measurement; the median of its repetitions), and
`calibrate --force` + `plan` once more: the prediction is the geometric mean of the plans made with
the ceilings just before and just after the run.
Everything runs through the command line, as a user would.

    python scripts/plan_vs_bench.py                                # the default set, 2 threads
    python scripts/plan_vs_bench.py --models synth:smollm2-360m:q4_0,synth:tinyllama-1.1b:q8_0 \\
        --reference synth:qwen2.5-0.5b:q4_1 --threads 2 --reps 3 --out results/
Writes DIR/plan-vs-bench.json (a report of kind "plan_vs_bench") and prints a markdown table.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_REFERENCE = "synth:smollm2-135m:q4_0,synth:qwen2.5-0.5b:q4_1,synth:llama-3.2-1b:q8_0"
DEFAULT_MODELS = ("smollm2-135m,synth:smollm2-135m:q8_0,synth:smollm2-360m:q4_0,synth:smollm2-360m:q8_0,"
                  "synth:qwen2.5-0.5b:q4_0,synth:qwen2.5-0.5b:q8_0,synth:tinyllama-1.1b:q4_0,"
                  "synth:tinyllama-1.1b:q4_1,synth:tinyllama-1.1b:q8_0,synth:llama-3.2-1b:q4_0")
TARGET = {"decode": 0.20, "prefill": 0.30}


def slug(model):
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in model)


def slmprof(*args, capture=True):
    cmd = [sys.executable, "-m", "slmprof", *map(str, args)]
    print("$ " + " ".join(["python -m slmprof", *map(str, args)]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=capture, text=True)
    if out.returncode != 0:
        raise SystemExit(f"plan_vs_bench: `{' '.join(cmd[1:])}` failed ({out.returncode}):\n"
                         f"{out.stderr if capture else ''}")
    return out


def bench(model, args, out_dir, fresh=False):
    path = out_dir / f"bench-{slug(model)}.json"
    if args.reuse and path.exists() and not fresh:
        return path
    slmprof("bench", "--model", model, "--threads", args.threads, "--prompt-tokens", args.prompt_tokens,
            "--gen-tokens", args.gen_tokens, "--reps", args.reps, "--backend", "slmprof", "--no-cold",
            "--quiet", "--format", "json", "-o", path)
    return path


def bench_peak_rss(rep):
    for rec in rep["records"]:
        if rec.get("backend") == "slmprof" and rec.get("peak_rss_bytes"):
            return rec["peak_rss_bytes"]
    return None


def predict(model, args, out_dir, tag=""):
    """`plan --device this` on the very file bench will run (so its tensor types are planned as
    they are), set up as bench runs it: same threads, prompt, and the decode figure taken at the
    middle of the generated tokens."""
    from slmprof.engine import registry
    model_file = registry.resolve(model).path
    path = out_dir / f"plan-{slug(model)}{'-' + tag if tag else ''}.json"
    ctx = args.prompt_tokens + args.gen_tokens + 1
    slmprof("plan", "--model", model_file, "--device", "this", "--threads", args.threads,
            "--ctx", ctx, "--prompt-tokens", args.prompt_tokens,
            "--decode-at", args.prompt_tokens + args.gen_tokens // 2, "--ceilings", args.ceilings,
            "--quiet", "--json", "-o", path)
    return json.loads(path.read_text())


def measured(bench_path, which="median"):
    """tok/s per phase: the median run, or the fastest with --ceilings best (as `plan --learn`
    takes it), and the spread."""
    rep = json.loads(Path(bench_path).read_text())
    out = {}
    for rec in rep["records"]:
        if rec.get("backend") == "slmprof" and rec.get("tok_s_mean"):
            samples = rec.get("tok_s_samples") or [rec["tok_s_mean"]]
            if which == "best":
                value = max(samples)
            else:
                value = statistics.median(samples) if len(samples) >= 3 else rec["tok_s_mean"]
            out[rec["test"]] = (value, rec.get("tok_s_std") or 0.0)
    return out, rep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated models to evaluate")
    p.add_argument("--reference", default=DEFAULT_REFERENCE,
                   help="comma-separated models whose bench results teach plan the engine efficiency "
                        f"(not evaluated; default {DEFAULT_REFERENCE}), or 'none': predict from the "
                        "calibration alone")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="plan-vs-bench", help="directory for the JSON files")
    p.add_argument("--reuse", action="store_true", help="reuse bench JSON files already in --out")
    p.add_argument("--ceilings", choices=("median", "best"), default="best",
                   help="best (default): best-pass ceilings against each run's fastest repetition, "
                        "both estimates of the machine undisturbed (what a shared machine allows); "
                        "median: median pass against the median repetition")
    p.add_argument("--anchor", default=None, metavar="MODEL[,MODEL2]",
                   help="for a busy shared machine: before every evaluated model, bench an anchor "
                        "model (the one of the same weight type if several are given) and learn the "
                        "engine efficiency from it alone, so the prediction and the measurement see "
                        "the same share of the machine; the references are then not used")
    p.add_argument("--keep-calibration", action="store_true",
                   help="use the cached calibration instead of measuring the ceilings again now")
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    refs = [m.strip() for m in args.reference.split(",") if m.strip() and m.strip() != "none"]
    overlap = set(models) & set(refs)
    if overlap:
        raise SystemExit(f"plan_vs_bench: {', '.join(sorted(overlap))} cannot be both reference and evaluated")

    started = time.time()
    started_load = os.getloadavg()[0]

    def calibrate():
        # The ceilings as the machine is right now: on a shared machine, memory bandwidth moves
        # by tens of percent from minute to minute, so each prediction gets a fresh calibration
        # taken just before its bench run (on a dedicated board the cached one would do).
        if not args.keep_calibration:
            slmprof("calibrate", "--quiet", "--force", "--keep-busy", "--threads", args.threads)

    from slmprof.analysis import plan as planner

    def learn(ref_models):
        """Learn the engine efficiency from bench runs of `ref_models` only, each right after a
        calibration; the runs make a curve of measured / bound over model size."""
        planner.forget_efficiency()
        for model in ref_models:
            calibrate()
            slmprof("plan", "--learn", bench(model, args, out_dir, fresh=bool(args.anchor)),
                    "--ceilings", args.ceilings, "--quiet")
        learnt = planner.stored_efficiency()
        print(f"engine efficiency: {learnt.source}", file=sys.stderr)
        return learnt

    # 1. the engine efficiency, from the reference runs only (or, with --anchor, from the
    #    anchor run made just before each evaluated model)
    anchors = [m.strip() for m in (args.anchor or "").split(",") if m.strip()]

    def anchor_for(model):
        kind = model.rsplit(":", 1)[-1] if ":" in model else "q4_1"     # the real smollm2-135m is Q4_1
        same = [a for a in anchors if a.rsplit(":", 1)[-1] == kind]
        four_bit = [a for a in anchors if kind.startswith("q4") and a.rsplit(":", 1)[-1].startswith("q4")]
        return (same or four_bit or anchors)[0]

    if anchors:
        refs = anchors
        if set(anchors) & set(models):
            raise SystemExit("plan_vs_bench: an anchor cannot be evaluated too")
    else:
        learnt = learn(refs)     # with no references: forgets what was learnt, predicts from ceilings
    anchor_points = []

    # 2. for each model: predict (fresh calibration x the learnt efficiency), then measure
    rows = []
    for model in models:
        if anchors:
            learnt = learn([anchor_for(model)])      # calibrates, benches the anchor, learns
            anchor_points.extend(learnt.points)
        else:
            calibrate()
        before = predict(model, args, out_dir, "before")
        load = os.getloadavg()[0]           # what else ran: the 1-minute load just before the run
        got, bench_rep = measured(bench(model, args, out_dir), args.ceilings)
        if args.keep_calibration or args.anchor:
            pred = before
        else:
            # the ceilings again right after the run; the prediction is the geometric mean of the
            # two, so drift of the machine during the run does not favour either side
            calibrate()
            after = predict(model, args, out_dir, "after")
            pred = before
            for key in ("decode_bound_tok_s", "decode_expected_tok_s",
                        "prefill_bound_tok_s", "prefill_expected_tok_s"):
                pred["records"][0][key] = math.sqrt(before["records"][0][key] * after["records"][0][key])
        rec = pred["records"][0]
        for phase in ("prefill", "decode"):
            if phase not in got:
                continue
            mean, std = got[phase]
            expected = rec[f"{phase}_expected_tok_s"]
            rows.append({"model": model, "type": rec["type"].split(" ")[0], "phase": phase,
                         "threads": args.threads,
                         "bound_tok_s": rec[f"{phase}_bound_tok_s"], "predicted_tok_s": expected,
                         "measured_tok_s": mean, "measured_std": std,
                         "error": expected / mean - 1.0, "load_1min": load,
                         "within_target": abs(expected / mean - 1.0) <= TARGET[phase],
                         "achieved_of_bound": mean / rec[f"{phase}_bound_tok_s"],
                         "predicted_memory_bytes": rec["memory_bytes"],
                         "measured_peak_rss_bytes": bench_peak_rss(bench_rep),
                         "synthetic": bool((bench_rep.get("model") or {}).get("synthetic"))})
    if args.anchor:
        learnt = planner.efficiency_from_points(anchor_points, what=f"{len(models)} runs of the anchor")
    eff = {"decode": learnt.decode, "prefill": learnt.prefill}
    summary = {}
    for phase in ("decode", "prefill"):
        errs = [abs(r["error"]) for r in rows if r["phase"] == phase]
        if errs:
            summary[phase] = {"n": len(errs), "mean_abs_error": sum(errs) / len(errs),
                              "max_abs_error": max(errs), "target": TARGET[phase],
                              "within_target": sum(abs(e) <= TARGET[phase] for e in errs)}
    from slmprof import report
    rep = report.make_report("plan_vs_bench", rows, settings={
        "threads": args.threads, "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
        "reps": args.reps, "reference": refs, "models": models, "ceilings": args.ceilings},
        summary=summary, notes=[f"engine efficiency: {learnt.source}; points: " + "; ".join(
                                    f"{p['model']} {p['phase']} {p['ratio']:.2f}" for p in learnt.points),
                                f"wall time {time.time() - started:.0f} s"])
    report.write_json(rep, out_dir / "plan-vs-bench.json")

    if refs:
        how = (f"efficiency learnt from {', '.join(refs)} "
               f"(median {', '.join(f'{k} {v:.2f}' for k, v in eff.items())} of the bound"
               + (f"; learnt afresh from a run of an anchor ({', '.join(anchors)}; the one of the "
                  f"model's weight type) just before each model)" if anchors else ", a curve over model size)"))
    else:
        how = "nothing learnt: predictions from the calibration alone (the engine's own kernels)"
    lines = [f"plan --device this vs bench: {args.threads} threads, prompt {args.prompt_tokens}, "
             f"gen {args.gen_tokens}, {args.reps} reps, {args.ceilings}-pass ceilings; {how}"
             + ("" if anchors or args.keep_calibration else
                "; each prediction from calibrations just before and after its run"), "",
             f"| model | type | phase | bound | predicted | measured ({'fastest' if args.ceilings == 'best' else 'median'} of reps; ± std) | error | within target | load |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['type']} | {r['phase']} | {r['bound_tok_s']:.1f} | "
                     f"{r['predicted_tok_s']:.1f} | {r['measured_tok_s']:.1f} ± {r['measured_std']:.1f} | "
                     f"{r['error']:+.0%} | {'yes' if r['within_target'] else 'no'} "
                     f"(±{TARGET[r['phase']]:.0%}) | {r['load_1min']:.1f} |")
    lines.append("")
    for phase, s in summary.items():
        lines.append(f"{phase}: {s['within_target']}/{s['n']} within ±{s['target']:.0%}; mean |error| "
                     f"{s['mean_abs_error']:.0%}, max {s['max_abs_error']:.0%}")
    lines.append(f"load average (1 min) {started_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
                 f"(2 cores; the runs' own calibrations and benches add up to their thread count, so "
                 f"load beyond that is other work); wall time {time.time() - started:.0f} s")
    text = "\n".join(lines) + "\n"
    (out_dir / "plan-vs-bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
