"""Perplexity of one GGUF file computed by slmprof's engine and by llama.cpp (llama-cpp-python),
on the same tokens, windows and scoring (analysis.perplexity: llama.cpp's method), and the
relative difference. The K types' acceptance check: within 1% on every type requantized from
the real SmolLM2.

    python scripts/perplexity_vs_llama_cpp.py --model smollm2-135m:q4_k_m --ctx 512 --max-windows 6
    python scripts/perplexity_vs_llama_cpp.py --model smollm2-135m:q6_k --json
"""
import argparse
import json
import sys

from slmprof.analysis.perplexity import perplexity, stdlib_text
from slmprof.bench.backends import LlamaCppModel
from slmprof.engine import registry
from slmprof.engine.model import Model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m:q4_k_m")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-windows", type=int, default=0, help="0: every window of the text")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    path = registry.resolve(args.model).path
    with Model.load(str(path), threads=args.threads, ctx=args.ctx) as m:
        tokens = m.tokenizer.encode(stdlib_text(), add_bos=False)
        if args.max_windows:
            tokens = tokens[: args.max_windows * args.ctx]
        ours = perplexity(m, tokens, args.ctx)
        ref = LlamaCppModel(path, args.ctx, args.threads, m.tokenizer)
        try:
            theirs = perplexity(ref, tokens, args.ctx)
        finally:
            ref.close()
    rel = ours.perplexity / theirs.perplexity - 1
    out = {"model": args.model, "path": str(path), "ctx": args.ctx, "windows": ours.windows,
           "tokens_scored": ours.tokens, "slmprof": ours.perplexity, "llama_cpp": theirs.perplexity,
           "relative_difference": rel}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model}: slmprof {ours.perplexity:.4f}, llama.cpp {theirs.perplexity:.4f}, "
              f"difference {100 * rel:+.3f}% ({ours.tokens} tokens in {ours.windows} windows of {args.ctx})")
    return 0 if abs(rel) <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
