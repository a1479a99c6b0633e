"""`slmprof requantize`: write a copy of a model with its weights in another type."""
from pathlib import Path

from slmprof import report
from slmprof.commands import _options
from slmprof.engine import quant, registry
from slmprof.engine.requantize import REQUANT_TYPES, planned_types, requantize
from slmprof.files import STDOUT

NAME = "requantize"
HELP = ("write a copy of a model with its 2-D weights in another type (q4_0 .. q8_0, the K types, "
        "q4_k_m, q5_k_m, f16, f32)")
DESCRIPTION = (
    "Dequantize every 2-D weight and quantize it again in --type, so the same model can be\n"
    "compared across quantizations. Norms stay F32. For q4_0, q4_1, q8_0, f16 and f32 every\n"
    "2-D weight but token_embd takes the type (token_embd only with --embd-type). q5_0, q5_1,\n"
    "q2_k, q3_k (llama.cpp's Q3_K_S), q4_k (Q4_K_S), q5_k (Q5_K_S), q6_k, q4_k_m and q5_k_m\n"
    "follow llama-quantize's recipe for that file type (the LM head in Q6_K, more bits for some\n"
    "attn_v and ffn_down layers) and its fallbacks for rows that are not a multiple of 256\n"
    "(Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0), each listed on stdout.\n"
    "From a 4-bit source the result carries both roundings. Without --output the file goes to\n"
    "the cache, where `--model smollm2-135m:<type>` finds it.")
EXAMPLES = """examples:
  python -m slmprof requantize --model smollm2-135m --type q8_0
  python -m slmprof requantize --model smollm2-135m --type q4_k_m
  python -m slmprof requantize --model smollm2-135m --type q4_0 --output smollm2-q4_0.gguf
  python -m slmprof generate --model smollm2-135m:q4_k_m --prompt "The capital of France is"
"""


def add_arguments(p):
    _options.add_model(p, registry.REAL_MODEL, short=True)
    p.add_argument("--type", "-t", required=True, choices=REQUANT_TYPES, help="new weight type or mix")
    p.add_argument("--embd-type", choices=quant.WEIGHT_TYPES, default=None,
                   help="also convert token_embd.weight to this type")
    p.add_argument("--output", "-o", metavar="FILE", type=_options.output_file, default=None,
                   help="where to write (default: the cache, for the real model; - for stdout)")


def run(args):
    bars = report.bars(args.quiet)
    if args.output is None and args.model == registry.REAL_MODEL and args.embd_type is None:
        src = registry.ensure_requantized("q4_1", quiet=args.quiet, progress=bars)
        path = registry.ensure_requantized(args.type, quiet=args.quiet, progress=bars)
    else:
        src = registry.resolve(args.model, quiet=args.quiet, progress=bars).path
        if args.output is None:
            out = Path(src).with_name(f"{Path(src).stem}.{args.type.upper()}.gguf")
        else:
            out = Path(args.output)
        path = requantize(src, out, args.type, embd_type=args.embd_type, progress=bars)
    if str(path) == STDOUT:          # standard output carries the model file
        return
    fallbacks = [c for c in planned_types(src, args.type).values() if c.fell_back]
    for c in fallbacks:
        print(f"fallback: {c.tensor}: {c.cols} columns are not a multiple of {c.wanted.upper()}'s "
              f"block; written as {c.type.upper()}")
    if fallbacks:
        report.say(f"{len(fallbacks)} tensor(s) fell back to another type (listed above)",
                   quiet=args.quiet)
    report.say(f"wrote {path} ({report.format_bytes(path.stat().st_size, digits=1, unit='MB')})",
               quiet=args.quiet)
    print(path)
