"""`slmprof generate`: run a prompt through the engine and stream the continuation."""
import sys
import time

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
    from slmprof.engine.model import Model
    from slmprof.engine.sampling import Sampler

    if args.threads is not None and args.threads < 1:
        print("slmprof generate: error: --threads must be at least 1", file=sys.stderr)
        return 2
    if args.max_tokens < 0:
        print("slmprof generate: error: --max-tokens must be >= 0", file=sys.stderr)
        return 2
    try:
        sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        print(f"slmprof generate: error: {e}", file=sys.stderr)
        return 2
    with Model.load(args.model, threads=args.threads, ctx=args.ctx) as m:
        if m.tokenizer is None:
            print(f"slmprof generate: error: {m.name} has no tokenizer in its file", file=sys.stderr)
            return 2
        if m.synthetic:
            print(f"[{m.name} is synthetic: random weights, the text is noise]", file=sys.stderr)
        tokens = m.tokenizer.encode(args.prompt, add_bos=True)
        out = sys.stdout
        out.write(args.prompt)
        out.flush()
        t0 = time.perf_counter()
        logits = m.prefill(tokens)
        t_prompt = time.perf_counter() - t0
        eos = None if args.no_stop else m.tokenizer.eos_id
        generated, text, n_run = [], "", 0
        t1 = time.perf_counter()
        for i in range(args.max_tokens):
            token = sampler.sample(logits)
            if token == eos:
                break
            generated.append(token)
            full = m.tokenizer.decode(generated)
            if not full.endswith("\ufffd"):
                out.write(full[len(text):])
                out.flush()
                text = full
            if i + 1 == args.max_tokens or m.n_past >= m.ctx:
                break
            logits = m.decode(token)
            n_run += 1
        t_gen = time.perf_counter() - t1
        out.write("\n")
        out.flush()
        prompt_speed = len(tokens) / t_prompt if t_prompt > 0 else float("inf")
        gen_speed = n_run / t_gen if n_run and t_gen > 0 else float("nan")
        print(f"prompt: {len(tokens)} tokens in {t_prompt * 1e3:.1f} ms, {prompt_speed:.1f} tok/s | "
              f"generation: {len(generated)} tokens, {n_run} decoded in {t_gen * 1e3:.1f} ms, "
              f"{gen_speed:.1f} tok/s | {m.threads} threads", file=sys.stderr)
    return 0
