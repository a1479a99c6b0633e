"""`slmprof trace`: record a run's regions and sampled values; export a Perfetto/Chrome trace."""
from slmprof import report
from slmprof.commands import _options
from slmprof.engine import workload
from slmprof.errors import UsageError
from slmprof.measure import trace
from slmprof.report import chrome

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
    _options.add_model(p, workload.DEFAULT_MODEL,
                       help=f"registry name or GGUF path (default {workload.DEFAULT_MODEL}; "
                            "offline: its synthetic twin)")
    _options.add_threads(p)
    p.add_argument("--prompt-tokens", type=_options.prompt_tokens, default=32,
                   help="prompt length (default 32)")
    p.add_argument("--gen-tokens", type=_options.gen_tokens, default=16,
                   help="tokens decoded after it (default 16)")
    p.add_argument("--hz", type=_options.sample_rate, default=1000,
                   help="sampling rate, 0 for none (default 1000)")
    p.add_argument("-o", "--output", metavar="FILE", type=_options.output_file, default=None,
                   help="compact recording to write (.npz)")
    p.add_argument("--chrome", metavar="FILE", type=_options.output_file, default=None,
                   help="Chrome/Perfetto trace-event JSON to write")
    p.add_argument("--from", dest="source", metavar="FILE", type=_options.input_file, default=None,
                   help="export an existing recording instead of running the model")


def check(args):
    if not (args.output or args.chrome):
        raise UsageError("give -o FILE (.npz recording) and/or --chrome FILE (JSON)")
    if args.source and args.output:
        raise UsageError("--from exports a recording; use --chrome for its output")
    if not args.source:
        _options.check_kernel_path()
        _options.check_positions(args.model, args.prompt_tokens + args.gen_tokens,
                                 "--prompt-tokens + --gen-tokens")


def run(args):
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
        chrome.write_recording(data, args.chrome)
        say(f"trace written to {args.chrome} (open it in https://ui.perfetto.dev)")
    if not args.quiet:
        print("\n".join(trace.summary_lines(data)))
