"""`slmprof generate`: run a prompt through the engine and stream the continuation."""
import sys

from slmprof.engine.model import GenerationStats, Model
from slmprof.engine.sampling import Sampler

NAME = "generate"
HELP = "generate text from a prompt (streams tokens; prompt and generation speed at the end)"
DESCRIPTION = (
    "Tokenize the prompt, run it through the engine as one batch (prefill), then decode one\n"
    "token at a time, printing each piece as it arrives. Greedy unless --temperature > 0.\n"
    "Speeds go to stderr: prompt tokens/s (prefill) and generated tokens/s (decode).")
EXAMPLES = """examples:
  python -m slmprof generate --model smollm2-135m --prompt "The capital of France is"
  python -m slmprof generate --model smollm2-135m --prompt "Once upon a time" \\
      --max-tokens 64 --temperature 0.8 --top-p 0.9 --seed 1 --threads 2
  python -m slmprof generate --model synth:tinyllama-1.1b:q4_0 --prompt "hi"   (random weights)
"""


def add_arguments(p):
    p.add_argument("--model", default="smollm2-135m", help="registry name or GGUF path (default: %(default)s)")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens to generate (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: every core)")
    p.add_argument("--ctx", type=int, default=2048, help="context length (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k most likely (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--no-stop", action="store_true", help="keep going after end-of-sequence")


def run(args):
    if args.threads is not None and args.threads < 1:
        print("slmprof generate: error: --threads must be at least 1", file=sys.stderr)
        return 2
    if args.max_tokens < 0:
        print("slmprof generate: error: --max-tokens must be >= 0", file=sys.stderr)
        return 2
    try:
        Sampler(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        print(f"slmprof generate: error: {e}", file=sys.stderr)
        return 2
    with Model.load(args.model, threads=args.threads, ctx=args.ctx) as m:
        if m.tokenizer is None:
            print(f"slmprof generate: error: {m.name} has no tokenizer in its file", file=sys.stderr)
            return 2
        if m.synthetic:
            print(f"[{m.name} is synthetic: random weights, the text is noise]", file=sys.stderr)
        out = sys.stdout
        out.write(args.prompt)
        out.flush()
        st = GenerationStats()
        for _, piece in m.generate(args.prompt, max_tokens=args.max_tokens,
                                   temperature=args.temperature, top_k=args.top_k,
                                   top_p=args.top_p, seed=args.seed, stop_at_eos=not args.no_stop,
                                   stats=st):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
        prompt_speed = st.prompt_tokens / st.prefill_seconds if st.prefill_seconds > 0 else float("inf")
        gen_speed = st.decoded / st.decode_seconds if st.decoded and st.decode_seconds > 0 else float("nan")
        print(f"prompt: {st.prompt_tokens} tokens in {st.prefill_seconds * 1e3:.1f} ms, "
              f"{prompt_speed:.1f} tok/s | generation: {st.generated} tokens, {st.decoded} decoded "
              f"in {st.decode_seconds * 1e3:.1f} ms, {gen_speed:.1f} tok/s | {m.threads} threads"
              f" | stopped: {st.stopped_by}", file=sys.stderr)
    return 0
