"""`slmprof requantize`: write a copy of a model with its weights in another type."""
from pathlib import Path

from slmprof import report
from slmprof.commands import _options
from slmprof.engine import registry
from slmprof.engine.requantize import REQUANT_TYPES, requantize
from slmprof.files import STDOUT

NAME = "requantize"
HELP = "write a copy of a model with its 2-D weights in another type (q4_0, q4_1, q8_0, f16, f32)"
DESCRIPTION = (
    "Dequantize every 2-D weight and quantize it again in --type, so the same model can be\n"
    "compared across quantizations. Norms stay F32; token_embd keeps its type unless\n"
    "--embd-type is given. From a 4-bit source the result carries both roundings. Without\n"
    "--output the file goes to the cache, where `--model smollm2-135m:<type>` finds it.")
EXAMPLES = """examples:
  python -m slmprof requantize --model smollm2-135m --type q8_0
  python -m slmprof requantize --model smollm2-135m --type q4_0 --output smollm2-q4_0.gguf
  python -m slmprof generate --model smollm2-135m:q8_0 --prompt "The capital of France is"
"""


def add_arguments(p):
    _options.add_model(p, registry.REAL_MODEL, short=True)
    p.add_argument("--type", "-t", required=True, choices=REQUANT_TYPES, help="new weight type")
    p.add_argument("--embd-type", choices=REQUANT_TYPES, default=None,
                   help="also convert token_embd.weight to this type")
    p.add_argument("--output", "-o", metavar="FILE", type=_options.output_file, default=None,
                   help="where to write (default: the cache, for the real model; - for stdout)")


def run(args):
    bars = report.bars(args.quiet)
    if args.output is None and args.model == registry.REAL_MODEL and args.embd_type is None:
        path = registry.ensure_requantized(args.type, quiet=args.quiet, progress=bars)
    else:
        src = registry.resolve(args.model, quiet=args.quiet, progress=bars).path
        if args.output is None:
            out = Path(src).with_name(f"{Path(src).stem}.{args.type.upper()}.gguf")
        else:
            out = Path(args.output)
        path = requantize(src, out, args.type, embd_type=args.embd_type, progress=bars)
    if str(path) == STDOUT:
        return
    report.say(f"wrote {path} ({report.format_bytes(path.stat().st_size, digits=1, unit='MB')})",
               quiet=args.quiet)
    print(path)
