"""`python -m slmprof validate`: prove the quantization kernels right on this CPU."""
from __future__ import annotations

import dataclasses
import time

from slmprof import report
from slmprof.analysis import validate as v
from slmprof.commands import _options
from slmprof.engine import quant, workload
from slmprof.engine.gguf import GGUFFile
from slmprof.errors import CheckFailed, UsageError
from slmprof.report import Column

NAME = "validate"
HELP = "check every quantization kernel path on this CPU against references, and the whole model"
DESCRIPTION = """\
For every weight type and every kernel path this CPU can execute: dequantization exactly against
an independent decoding of the block layout; quantization error (RMSE, worst element) on random
and real weight rows against named thresholds (ggml's test-quantize-fns ones among them); the
path's activation quantization against the reference; quantized dot products against exact
integer block sums; matrix-vector and matrix-matrix products against float64 on random shapes
and the model's own; and the whole model's logits on each path against the scalar path and
against a float reference on the dequantized weights (KL divergence, top-1 agreement, max logit
difference). Prints one pass/fail table and exits 1 if any check fails.

--tensors instead lists every weight tensor of the model with the error that requantizing it
to each type would add (rows the K types' 256-element blocks do not divide take llama-quantize's
fallback type, marked with *), ranked worst first across all the types: which layers suffer
most from fewer bits."""
EXAMPLES = """\
examples:
  python -m slmprof validate --quick                     # about a minute on a Pi-class CPU
  python -m slmprof validate --isa scalar --types q4_0,q8_0 --json validate.json
  python -m slmprof validate --model smollm2-135m --tensors
"""

DEFAULT_MODEL = workload.DEFAULT_MODEL


def add_arguments(p):
    _options.add_model(p, DEFAULT_MODEL, short=True,
                       help=f"model name or GGUF path (default {DEFAULT_MODEL}, or its synthetic "
                            "twin when it cannot be fetched); 'none' skips the model checks")
    p.add_argument("--types", default=None,
                   help="comma-separated weight types (default: every quantized type and f16)")
    p.add_argument("--isa", default="all", metavar="PATH",
                   help="all (every path this CPU runs; default), scalar, avx2, avx512-vnni, neon or neon-dotprod")
    p.add_argument("--quick", action="store_true", help="fewer shapes and a shorter text")
    p.add_argument("--tensors", action="store_true",
                   help="per-tensor requantization error report for the model instead")
    report.add_output_arguments(p)


CHECK_COLUMNS = [
    Column("type", align="left"), Column("path", align="left"), Column("check", align="left"),
    Column("metric", align="left"), Column("value", fmt=lambda v, r: _num(v), align="right"),
    Column("threshold", fmt=lambda v, r: f"{r['op']} {_num(v)}", align="right"),
    Column("result", align="left"),
]


def _num(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if 0.999 <= v < 1:
            return f"{v:.7f}"
        if 1e-3 <= abs(v) < 1e4:
            return f"{v:.4g}"
        return f"{v:.2e}"
    return str(v)


def check(args):
    args.types = [t.strip().lower() for t in (args.types or ",".join(v.DEFAULT_TYPES)).split(",")
                  if t.strip()]
    bad = [t for t in args.types if t not in v.DEFAULT_TYPES]
    if bad or not args.types:
        raise UsageError(f"--types: unknown type(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(v.DEFAULT_TYPES)}")
    try:
        args.paths = v.kernel_paths(args.isa)
    except ValueError as e:
        raise UsageError(f"--isa: {e}") from None
    # each check forces its own path, so without this they would all pass while every other
    # command fails
    _options.check_kernel_path()
    args.no_model = args.model.lower() == "none"
    if args.tensors and args.no_model:
        raise UsageError("--tensors needs a model (--model)")


def run(args):
    types, paths = args.types, args.paths
    model, notes = (None, []) if args.no_model else workload.resolve(args.model)
    for n in notes:
        report.say(f"slmprof validate: {n}", args.quiet)
    if args.tensors:
        return _run_tensors(args, model, types, notes)

    plan = v.Plan(types=types, paths=paths, quick=args.quick, seed=0,
                  text_tokens=12 if args.quick else 32)
    if model is not None:
        plan.model_path = str(model.path)
        plan.model_name = model.name
        plan.model_shapes = v.model_matrix_shapes(model.path, limit=2 if args.quick else 4)
        if model.synthetic:
            notes.append(f"{model.name} is synthetic (random weights): its logits check the kernels, "
                         "not the model's quality")
    est = v.estimate_seconds(plan, model is not None)
    report.say(f"slmprof validate: {len(types)} type(s) x {len(paths)} path(s) ({', '.join(paths)})"
               + (f" + the whole model {model.name}" if model else "")
               + f"; this will take about {_dur(est)}"
               + ("" if args.quick else
                  f" (--quick: about {_dur(v.estimate_seconds(_quick(plan), model is not None))})"),
               args.quiet)

    t0 = time.monotonic()
    steps = v.count_steps(plan, model is not None)
    with report.Progress(total=steps, what="validate", quiet=args.quiet) as bar:
        checks = v.run_checks(plan, with_model=model is not None,
                              progress=lambda what: bar.advance(status=what))
    elapsed = time.monotonic() - t0
    records = [c.record() for c in checks]
    failed = [r for r in records if r["result"] != "pass"]
    summary = {"checks": len(records), "failed": len(failed), "passed": len(records) - len(failed),
               "seconds": elapsed, "paths": paths, "types": types,
               "active_path": quant.active_isa()}
    rep = report.make_report(
        "validate", records,
        model=None if model is None else {"name": model.name, "path": str(model.path),
                                          "synthetic": model.synthetic},
        settings={"types": types, "isa": args.isa, "quick": args.quick}, summary=summary,
        notes=notes)
    fmt = report.stdout_format(args)
    if fmt in ("md", "plain"):
        text = report.format_table(records, CHECK_COLUMNS, style=fmt)
        text += (f"\n{len(records) - len(failed)} passed, {len(failed)} failed "
                 f"({len(types)} types x {len(paths)} paths, {elapsed:.1f} s)\n")
        for r in failed:
            text += (f"FAILED: {r['type']} {r['path']} {r['check']}: {r['metric']} = {_num(r['value'])}"
                     f" (needs {r['op']} {_num(r['threshold'])})\n")
        for n in notes:
            text += f"note: {n}\n"
    else:
        text = report.render(rep, fmt)
    report.emit_output(text, args, rep)
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(records)} checks failed (listed above)")


def _quick(plan):
    q = dataclasses.replace(plan, quick=True, text_tokens=12)
    q.model_shapes = list(plan.model_shapes)[:2]
    return q


def _dur(s):
    return f"{max(1, round(s))} s" if s < 90 else f"{s / 60:.1f} min"


def _run_tensors(args, model, types, notes):
    with GGUFFile(model.path) as gf:
        n = sum(1 for t in gf.tensors.values() if len(t.shape) == 2)
    with report.Progress(total=n, what="requantizing", quiet=args.quiet) as bar:
        records = v.tensor_errors(model.path, types, progress=lambda name: bar.advance(status=name))
    cols = [Column("rank"), Column("tensor", align="left"), Column("type", align="left"),
            Column("rows"), Column("cols"), Column("score", fmt=lambda x, r: f"{x:.2f}")]

    def cell(t):
        return lambda x, r: "" if x is None else f"{x:.2e}" + ("*" if r.get(f"as_{t}") else "")
    cols += [Column(f"rel_rmse_{t}", f"{t} rel RMSE", fmt=cell(t)) for t in types]
    worst = {}
    for t in types:
        key = f"rel_rmse_{t}"
        vals = [r for r in records if r.get(key) is not None]
        if vals:
            w = max(vals, key=lambda r: r[key])
            worst[t] = {"tensor": w["tensor"], "rel_rmse": w[key],
                        "mean": sum(r[key] for r in vals) / len(vals)}
    rep = report.make_report(
        "validate-tensors", records,
        model={"name": model.name, "path": str(model.path), "synthetic": model.synthetic},
        settings={"types": types}, summary={"worst": worst}, notes=notes)
    fmt = report.stdout_format(args)
    if fmt in ("md", "plain"):
        text = report.format_table(records, cols, style=fmt)
        text += ("\nrel RMSE: the tensor as stored against the same tensor requantized to the type; "
                 "* = written as llama-quantize's fallback type (rows not a multiple of 256).\n"
                 "score: the mean over types of the error over that type's median; worst first.\n")
        for t, w in worst.items():
            text += (f"{t}: worst {w['tensor']} ({w['rel_rmse']:.2e}), mean over tensors "
                     f"{w['mean']:.2e}\n")
        for n_ in notes:
            text += f"note: {n_}\n"
    else:
        text = report.render(rep, fmt)
    report.emit_output(text, args, rep)
