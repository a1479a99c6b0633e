"""`slmprof perplexity`: how well the model predicts a text file (llama.cpp's method)."""
import json
import sys
import time
from dataclasses import asdict

from slmprof.analysis.perplexity import perplexity
from slmprof.engine.model import Model

NAME = "perplexity"
HELP = "perplexity of a model on a text file, in non-overlapping windows (llama.cpp's method)"
DESCRIPTION = (
    "Tokenize FILE, cut it into non-overlapping windows of --ctx tokens, run each window as one\n"
    "batch from an empty cache, and score the second half of every window (each scored token has\n"
    "at least ctx/2 tokens of context). Prints exp(mean negative log-likelihood). Progress goes to\n"
    "stderr. The same text, ctx and model give the same figure on any thread count.")
EXAMPLES = """examples:
  python -m slmprof perplexity --model smollm2-135m --file wiki.test.raw
  python -m slmprof perplexity --model smollm2-135m --file notes.txt --ctx 256 --threads 2 --json
"""


def add_arguments(p):
    p.add_argument("--model", default="smollm2-135m", help="registry name or GGUF path (default: %(default)s)")
    p.add_argument("--file", required=True, help="UTF-8 text file")
    p.add_argument("--ctx", type=int, default=512, help="window length in tokens (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: every core)")
    p.add_argument("--max-windows", type=int, default=0, help="stop after this many windows (0: all)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args):
    err = None
    if args.threads is not None and args.threads < 1:
        err = "--threads must be at least 1"
    elif args.ctx < 8:
        err = f"--ctx must be at least 8 (got {args.ctx})"
    elif args.max_windows < 0:
        err = "--max-windows must be >= 0"
    if err:
        print(f"slmprof perplexity: error: {err}", file=sys.stderr)
        return 2
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"slmprof perplexity: error: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    with Model.load(args.model, threads=args.threads, ctx=args.ctx) as m:
        if m.tokenizer is None:
            print(f"slmprof perplexity: error: {m.name} has no tokenizer in its file", file=sys.stderr)
            return 2
        tokens = m.tokenizer.encode(text, add_bos=False)
        if args.max_windows:
            tokens = tokens[:args.max_windows * args.ctx]
        n_windows = len(tokens) // args.ctx
        if n_windows == 0:
            print(f"slmprof perplexity: error: {args.file} has {len(tokens)} tokens; need at least "
                  f"--ctx {args.ctx}", file=sys.stderr)
            return 2
        if m.synthetic:
            print(f"[{m.name} is synthetic: random weights]", file=sys.stderr)
        t0 = time.perf_counter()

        def progress(done, total, ppl):
            rate = done * args.ctx / (time.perf_counter() - t0)
            print(f"perplexity: window {done}/{total}  running ppl {ppl:.4f}  ({rate:.0f} tok/s)",
                  file=sys.stderr, flush=True)

        result = asdict(perplexity(m, tokens, args.ctx, progress=progress))
        result.update(model=m.name, synthetic=m.synthetic, threads=m.threads, file=args.file,
                      seconds=round(time.perf_counter() - t0, 3))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"perplexity {result['perplexity']:.4f} over {result['tokens']} scored tokens "
              f"({result['windows']} windows of {args.ctx}) on {m.name}")
    return 0
