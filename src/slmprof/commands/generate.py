"""`slmprof generate`: run a prompt through the engine and stream the continuation."""
import dataclasses
import sys

from slmprof import report
from slmprof.commands import _options
from slmprof.engine import workload
from slmprof.engine.model import GenerationStats, Model
from slmprof.engine.sampling import Sampler
from slmprof.errors import ModelFileError, UsageError
from slmprof.files import STDOUT

NAME = "generate"
HELP = "generate text from a prompt (streams tokens; prompt and generation speed at the end)"
DESCRIPTION = (
    "Tokenize the prompt, run it through the engine as one batch (prefill), then decode one\n"
    "token at a time, printing each piece as it arrives. Greedy unless --temperature > 0.\n"
    "Speeds go to stderr: prompt tokens/s (prefill) and generated tokens/s (decode).\n"
    "--json FILE also writes the text and the speeds as JSON; --json alone prints that on\n"
    "standard output instead of the streamed text.")
EXAMPLES = """examples:
  python -m slmprof generate --model smollm2-135m --prompt "The capital of France is"
  python -m slmprof generate --model smollm2-135m --prompt "Once upon a time" \\
      --max-tokens 64 --temperature 0.8 --top-p 0.9 --seed 1 --threads 2
  python -m slmprof generate --model synth:tinyllama-1.1b:q4_0 --prompt "hi"   (random weights)
  python -m slmprof generate --prompt "Hello" --max-tokens 16 --json run.json
"""


DEFAULT_CTX = 2048


def add_arguments(p):
    _options.add_model(p, workload.DEFAULT_MODEL)
    p.add_argument("--prompt", required=True, type=_options.text, help="text to continue")
    p.add_argument("--max-tokens", type=_options.gen_tokens, default=64,
                   help="tokens to generate (default: %(default)s)")
    _options.add_threads(p)
    p.add_argument("--ctx", type=_options.context, default=None,
                   help=f"context length (default: the model's trained context, at most {DEFAULT_CTX})")
    p.add_argument("--temperature", type=_options.number(0), default=0.0,
                   help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=_options.integer(0), default=0,
                   help="sample from the k most likely (0 = all)")
    p.add_argument("--top-p", type=_options.number(0, 1, lo_open=True), default=1.0,
                   help="nucleus sampling threshold, in (0, 1] (1 = off)")
    p.add_argument("--seed", type=_options.integer(0), default=0,
                   help="sampling seed (default: %(default)s)")
    p.add_argument("--no-stop", action="store_true", help="keep going after end-of-sequence")
    report.add_json_argument(p, "the text and the speeds as JSON")


def check(args):
    _options.check_kernel_path()
    try:
        Sampler(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trained = _options.trained_context(args.model)
    if args.ctx is None:
        args.ctx = min(trained or DEFAULT_CTX, DEFAULT_CTX)
    else:
        note = _options.context_note(args.model, args.ctx)
        if note:
            report.say(f"slmprof generate: warning: {note}", args.quiet)


def run(args):
    with Model.load(args.model, threads=args.threads, ctx=args.ctx) as m:
        if m.tokenizer is None:
            raise ModelFileError(f"{m.name} has no tokenizer in its file: it cannot read a prompt")
        n_prompt = len(m.tokenizer.encode(args.prompt, add_bos=True))
        if n_prompt > m.ctx:
            raise UsageError(f"--prompt is {n_prompt} tokens, more than the context of {m.ctx} "
                             f"(raise --ctx)")
        if m.synthetic:
            report.say(f"[{m.name} is synthetic: random weights, the text is noise]", args.quiet)
        # with --json alone standard output carries the JSON document, not the stream
        stream = args.json_file != STDOUT
        out = sys.stdout
        if stream:
            out.write(args.prompt)
            out.flush()
        st = GenerationStats()
        pieces = []
        for _, piece in m.generate(args.prompt, max_tokens=args.max_tokens,
                                   temperature=args.temperature, top_k=args.top_k,
                                   top_p=args.top_p, seed=args.seed, stop_at_eos=not args.no_stop,
                                   stats=st):
            pieces.append(piece)
            if stream:
                out.write(piece)
                out.flush()
        if stream:
            out.write("\n")
            out.flush()
        prompt_speed = st.prompt_tokens / st.prefill_seconds if st.prefill_seconds > 0 else float("inf")
        gen_speed = st.decoded / st.decode_seconds if st.decoded and st.decode_seconds > 0 else float("nan")
        if st.stopped_by == "context full":
            # said even with --quiet: the text ends early for a reason the reader cannot see
            report.say(f"slmprof generate: stopped after {st.generated} of {args.max_tokens} tokens: "
                       f"the context of {m.ctx} positions is full (raise --ctx)")
        report.say(f"prompt: {st.prompt_tokens} tokens in {st.prefill_seconds * 1e3:.1f} ms, "
                   f"{prompt_speed:.1f} tok/s | generation: {st.generated} tokens, {st.decoded} "
                   f"decoded in {st.decode_seconds * 1e3:.1f} ms, {gen_speed:.1f} tok/s | "
                   f"{m.threads} threads | stopped: {st.stopped_by}", args.quiet)
        if args.json_file is not None:
            record = dict(dataclasses.asdict(st), prompt_tok_s=prompt_speed, gen_tok_s=gen_speed)
            rep = report.make_report(
                "generate", [record],
                model={"name": m.name, "path": str(m.description.path),
                       "synthetic": bool(m.synthetic), "file_type": m.description.file_type},
                settings={"threads": m.threads, "ctx": m.ctx, "max_tokens": args.max_tokens,
                          "temperature": args.temperature, "top_k": args.top_k,
                          "top_p": args.top_p, "seed": args.seed, "stop_at_eos": not args.no_stop},
                summary={"prompt": args.prompt, "text": "".join(pieces)})
            report.write_json(rep, args.json_file)
