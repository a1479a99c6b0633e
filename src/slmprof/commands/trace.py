"""`slmprof trace`: record a run's regions and sampled values; export a Perfetto/Chrome trace."""
import sys

from slmprof import report

from slmprof.measure import trace

NAME = "trace"
HELP = "record a run (every layer/op region plus /proc+sysfs samples) and export a Perfetto trace"
DESCRIPTION = (
    "Record a prefill and a greedy decode with every region edge (layer and operation slices on\n"
    "the thread that ran them) and the sampler's /proc and sysfs values, into a compact file\n"
    "(.npz); export it as Chrome trace-event JSON that https://ui.perfetto.dev opens (one track\n"
    "per thread with phase/layer/op slices, a counter track per sampled value).")
EXAMPLES = """examples:
  python -m slmprof trace -o run.npz --chrome run.json       record and export
  python -m slmprof trace --model synth:qwen2.5-0.5b --hz 2000 --gen-tokens 8 -o q.npz
  python -m slmprof trace --from run.npz --chrome run.json   export an earlier recording
"""


def add_arguments(p):
    p.add_argument("--model", default="smollm2-135m",
                   help="registry name or GGUF path (default smollm2-135m; offline: its synthetic twin)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all cores)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--gen-tokens", type=int, default=16)
    p.add_argument("--hz", type=int, default=1000, help="sampling rate, 0 for none (default 1000)")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="compact recording to write (.npz)")
    p.add_argument("--chrome", metavar="FILE", default=None,
                   help="Chrome/Perfetto trace-event JSON to write")
    p.add_argument("--from", dest="source", metavar="FILE", default=None,
                   help="export an existing recording instead of running the model")
    p.add_argument("--quiet", "-q", action="store_true")


def run(args):
    if not (args.output or args.chrome):
        print("slmprof trace: error: give -o FILE (.npz recording) and/or --chrome FILE (JSON)",
              file=sys.stderr)
        return 2
    if args.source and args.output:
        print("slmprof trace: error: --from exports a recording; use --chrome for its output",
              file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1 or args.prompt_tokens < 1 or args.gen_tokens < 0 \
            or not 0 <= args.hz <= 10000:
        print("slmprof trace: error: need --threads >= 1, --prompt-tokens >= 1, --gen-tokens >= 0, "
              "0 <= --hz <= 10000", file=sys.stderr)
        return 2

    def say(text):
        report.say(text, quiet=args.quiet)

    if args.source:
        data = trace.load(args.source)
    else:
        data = trace.record_run(args.model, args.threads, args.prompt_tokens, args.gen_tokens,
                                args.hz, progress=say)
    if args.output:
        trace.save(data, args.output)
        say(f"recording written to {args.output}")
    if args.chrome:
        trace.write_chrome(data, args.chrome)
        say(f"trace written to {args.chrome} (open it in https://ui.perfetto.dev)")
    if not args.quiet:
        print("\n".join(trace.summary_lines(data)))
    return 0
