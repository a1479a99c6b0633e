"""`slmprof plot`: pictures of the reports and traces the other commands write."""
import importlib
import os

from slmprof import report
from slmprof.commands import _options
from slmprof.errors import UnavailableError, UsageError
from slmprof.measure import trace

NAME = "plot"
HELP = "draw a report or trace as a picture: roofline, layers, timeline, plan, bench, ladder (matplotlib)"
DESCRIPTION = (
    "Draw one picture (PNG, SVG or PDF, by the output's extension) from what another command\n"
    "wrote:\n"
    "  roofline  each layer (--ops: operation) of a `layers --json FILE` report on this\n"
    "            machine's roofline, under the ceilings its verdicts were taken against\n"
    "  layers    time per token of each layer of a `layers` report, split by operation\n"
    "  timeline  the sampled /proc and sysfs values and the layer and operation regions of a\n"
    "            recording from `trace -o FILE.npz` (or `layers --trace FILE.npz`)\n"
    "  plan      decode tokens/s against memory from one or more `plan --json` reports, a\n"
    "            panel per device\n"
    "  bench     tokens/s of each engine from a `bench --json FILE` report\n"
    "  ladder    size on disk against perplexity and against tokens/s of the models of a\n"
    "            `compare --json FILE` report (a quantization ladder: `compare --ladder`)\n"
    "Needs matplotlib: pip install 'slmprof[plots]'.")
EXAMPLES = """examples:
  python -m slmprof layers --json run.json && python -m slmprof plot roofline run.json
  python -m slmprof plot roofline run.json --ops --phase decode -o decode-ops.svg
  python -m slmprof plot layers run.json -o layers.png
  python -m slmprof trace -o run.npz && python -m slmprof plot timeline run.npz
  python -m slmprof plot plan pi4.json pi5.json -o plan.png
  python -m slmprof plot bench bench.json
  python -m slmprof compare --ladder --json ladder.json && python -m slmprof plot ladder ladder.json
"""

# picture -> (report kind it reads, or "trace"; how many inputs it takes)
PICTURES = {"roofline": ("layers", 1), "layers": ("layers", 1), "timeline": ("trace", 1),
            "plan": ("plan", None), "bench": ("bench", 1), "ladder": ("compare", 1)}
EXTENSIONS = (".png", ".svg", ".pdf")


def add_arguments(p):
    p.add_argument("picture", choices=list(PICTURES), help="which picture to draw")
    p.add_argument("inputs", nargs="+", metavar="FILE", type=_options.input_file,
                   help="the report (JSON) or recording (.npz) to draw; plan takes several")
    p.add_argument("-o", "--output", metavar="FILE", type=_options.output_file, default=None,
                   help="picture to write: .png, .svg or .pdf (default PICTURE.png)")
    p.add_argument("--phase", choices=("prefill", "decode"), default=None,
                   help="roofline, layers: one phase only")
    p.add_argument("--ops", action="store_true",
                   help="roofline: one point per operation instead of per layer")
    p.add_argument("--min-tok-s", type=_options.number(0, lo_open=True), default=None, metavar="N",
                   help="plan: draw this decode target (default: the reports' own --min-tok-s)")
    p.add_argument("--title", type=_options.text, default=None,
                   help="a title of your own instead of the usual one")


def check(args):
    kind, count = PICTURES[args.picture]
    if count is not None and len(args.inputs) != count:
        raise UsageError(f"plot {args.picture} draws one file; got {len(args.inputs)}")
    if args.phase and args.picture not in ("roofline", "layers"):
        raise UsageError("--phase applies to the roofline and layers pictures")
    if args.ops and args.picture != "roofline":
        raise UsageError("--ops applies to the roofline picture")
    if args.min_tok_s is not None and args.picture != "plan":
        raise UsageError("--min-tok-s applies to the plan picture")
    if args.output is None:
        args.output = _options.output_file(f"{args.picture}.png")
        _options.check_outputs(args)
    if os.path.splitext(args.output)[1].lower() not in EXTENSIONS:
        raise UsageError(f"{args.output}: give a picture file ending in {', '.join(EXTENSIONS)}")


def drawing_module():
    """analysis.plots, imported only when a picture is drawn: matplotlib is an optional extra
    and every other command must start without it."""
    try:
        return importlib.import_module("slmprof.analysis.plots")
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "matplotlib":
            raise
        raise UnavailableError("drawing needs matplotlib, which is not installed: "
                               "pip install 'slmprof[plots]'") from None


def run(args):
    output = args.output
    plots = drawing_module()
    kind, _ = PICTURES[args.picture]
    if kind == "trace":
        source = trace.load(args.inputs[0])
    else:
        reports = [report.read_json(path, kind=kind) for path in args.inputs]
        source = reports[0]
    if args.picture == "roofline":
        plots.roofline(source, output, phase=args.phase, ops=args.ops, title=args.title)
    elif args.picture == "layers":
        plots.layers(source, output, phases=[args.phase] if args.phase else None, title=args.title)
    elif args.picture == "timeline":
        plots.timeline(source, output, title=args.title)
    elif args.picture == "plan":
        plots.plan(reports, output, title=args.title, min_tok_s=args.min_tok_s)
    elif args.picture == "ladder":
        plots.ladder(source, output, title=args.title)
    else:
        plots.bench(source, output, title=args.title)
    report.say(f"picture written to {output}", quiet=args.quiet)
