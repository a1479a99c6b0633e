"""`slmprof perplexity`: how well the model predicts a text file (llama.cpp's method)."""
import time
from dataclasses import asdict

from slmprof import report
from slmprof.analysis.perplexity import perplexity
from slmprof.commands import _options
from slmprof.engine import workload
from slmprof.engine.model import Model
from slmprof.errors import ModelFileError, UsageError

NAME = "perplexity"
HELP = "perplexity of a model on a text file, in non-overlapping windows (llama.cpp's method)"
DESCRIPTION = (
    "Tokenize FILE, cut it into non-overlapping windows of --ctx tokens, run each window as one\n"
    "batch from an empty cache, and score the second half of every window (each scored token has\n"
    "at least ctx/2 tokens of context). Prints exp(mean negative log-likelihood). Progress goes to\n"
    "stderr. The same text, ctx and model give the same figure on any thread count.")
EXAMPLES = """examples:
  python -m slmprof perplexity --model smollm2-135m --file wiki.test.raw
  python -m slmprof perplexity --model smollm2-135m --file notes.txt --ctx 256 --threads 2 --json ppl.json
"""


def add_arguments(p):
    _options.add_model(p, workload.DEFAULT_MODEL)
    p.add_argument("--file", required=True, type=_options.input_file, help="UTF-8 text file")
    p.add_argument("--ctx", type=_options.integer(8, _options.MAX_CTX), default=512,
                   help="window length in tokens, at least 8 (default: %(default)s)")
    _options.add_threads(p)
    p.add_argument("--max-windows", type=_options.integer(0), default=0,
                   help="stop after this many windows (0: all)")
    report.add_output_arguments(p, formats=None)


def check(args):
    _options.check_kernel_path()
    _options.check_positions(args.model, args.ctx, "--ctx")
    try:
        with open(args.file, encoding="utf-8") as f:
            args.text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"--file {args.file}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def run(args):
    with Model.load(args.model, threads=args.threads, ctx=args.ctx) as m:
        if m.tokenizer is None:
            raise ModelFileError(f"{m.name} has no tokenizer in its file: it cannot read a text")
        tokens = m.tokenizer.encode(args.text, add_bos=False)
        if args.max_windows:
            tokens = tokens[:args.max_windows * args.ctx]
        if len(tokens) // args.ctx == 0:
            raise UsageError(f"--file {args.file} has {len(tokens)} tokens; it needs at least "
                             f"--ctx {args.ctx}")
        if m.synthetic:
            report.say(f"[{m.name} is synthetic: random weights]", args.quiet)
        t0 = time.perf_counter()

        def progress(done, total, ppl):
            rate = done * args.ctx / (time.perf_counter() - t0)
            report.say(f"perplexity: window {done}/{total}  running ppl {ppl:.4f}  ({rate:.0f} tok/s)",
                       args.quiet)

        result = asdict(perplexity(m, tokens, args.ctx, progress=progress))
        seconds = round(time.perf_counter() - t0, 3)
        windows = result.pop("window_perplexity")
        rep = report.make_report(
            "perplexity", [{"window": i, "perplexity": p} for i, p in enumerate(windows)],
            model={"name": m.name, "synthetic": m.synthetic},
            settings={"file": args.file, "ctx": args.ctx, "threads": m.threads,
                      "max_windows": args.max_windows},
            summary=dict(result, seconds=seconds))
    text = (f"perplexity {result['perplexity']:.4f} over {result['tokens']} scored tokens "
            f"({result['windows']} windows of {args.ctx}) on {m.name}\n")
    report.emit_output(text, args, rep)
