"""`slmprof plan`: will a model fit on a device, and how fast will it run there?"""
import re
import sys

NAME = "plan"
HELP = "predict memory, tokens/s, load time and energy of models x types on a device (no run needed)"
DESCRIPTION = (
    "For each model x weight type, predict from the shapes and the device's ceilings: memory\n"
    "(weights + KV cache at --ctx + working buffers) against the device memory less OS headroom\n"
    "(fits / tight / does not fit); decode tokens/s as a roofline bound and as expected with the\n"
    "engine efficiency measured on this machine; prefill tokens/s from the compute ceiling; load\n"
    "time from the storage read speed; energy per token where the profile has power. A type does\n"
    "not need to exist on disk to be planned.\n\n"
    "Devices: 'this' (calibrated here; calibrates once if needed), the built-in reference\n"
    "profiles pi4-4gb, pi4-8gb, pi5-4gb, pi5-8gb (published measurements, each value with its\n"
    "source, not measured by this installation), or a file from `calibrate --export`.")
EXAMPLES = """examples:
  python -m slmprof plan --model smollm2-135m,qwen2.5-0.5b,tinyllama-1.1b --device pi4-4gb
  python -m slmprof plan --model llama-3.2-1b --types q4_0,q8_0 --ctx 4096 --device pi5-8gb --min-tok-s 10
  python -m slmprof plan --model model.gguf --device pi5.json --json
  python -m slmprof plan --shape n_layer=24,dim=1024,ffn=2816,n_head=16,n_kv_head=4,vocab=32000
  python -m slmprof bench --model smollm2-135m --format json -o b.json
  python -m slmprof plan --learn b.json    (store this engine's efficiency measured here, then plan)
"""


def _bytes_arg(text):
    """'3.5G', '1500M', '2GiB', '4000000000' -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not m:
        raise ValueError(text)
    value, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[unit]
    if binary:
        scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]
    return int(value * scale)


def _types_arg(text):
    from slmprof.analysis.plan import PLAN_TYPES
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in PLAN_TYPES]
    if bad or not types:
        import argparse
        raise argparse.ArgumentTypeError(f"unknown type {', '.join(bad) or text!r} "
                                         f"(choose from {', '.join(PLAN_TYPES)})")
    return types


def _bytes_type(text):
    import argparse
    try:
        return _bytes_arg(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 3.5G, 1500M, 2GiB)") from None


def _efficiency_arg(text):
    import argparse
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        try:
            v = float(value)
        except ValueError:
            v = None
        if key not in ("decode", "prefill") or v is None or not 0 < v <= 1.5:
            raise argparse.ArgumentTypeError(f"{part!r}: give decode=F and/or prefill=F with 0 < F <= 1.5")
        out[key] = v
    return out


def add_arguments(p):
    p.add_argument("--model", "-m", action="append", default=[], metavar="M[,M2...]",
                   help="registry shape names (smollm2-135m, qwen2.5-0.5b, ...), synth:<shape>[:<type>] "
                        "or GGUF paths; comma-separated or repeated")
    p.add_argument("--shape", action="append", default=[], metavar="KEY=V,...",
                   help="a shape by hand: n_layer=,dim=,ffn=,n_head=,vocab= [n_kv_head=,head_dim=,"
                        "ctx=,tied=,arch=]")
    p.add_argument("--types", type=_types_arg, default=None, metavar="T[,T2...]",
                   help="weight types to plan (q4_0,q4_1,q8_0,f16; default all four for shapes, "
                        "the file's own types for a GGUF)")
    p.add_argument("--ctx", type=int, default=None, help="context length (default: min(model max, 2048))")
    p.add_argument("--device", "-d", default="this",
                   help="this | pi4-4gb | pi4-8gb | pi5-4gb | pi5-8gb | FILE (default: this)")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: the device's cores)")
    p.add_argument("--min-tok-s", type=float, default=None, help="target decode tokens/s")
    p.add_argument("--max-mem", type=_bytes_type, default=None, help="memory budget, e.g. 1.5G")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prefill batch for the prefill figure (default 128)")
    p.add_argument("--decode-at", type=int, default=None,
                   help="context position for the decode figure (default: half of --ctx)")
    p.add_argument("--storage-MBps", type=float, default=None,
                   help="storage read speed for the load time (default: the device profile's)")
    p.add_argument("--learn", nargs="+", metavar="BENCH_JSON", default=None,
                   help="learn the engine efficiency from `bench --format json` results of this "
                        "machine, store it, and use it")
    p.add_argument("--ceilings", choices=("median", "best"), default="median",
                   help="for 'this' or an exported calibration: ceilings from the median calibration "
                        "pass (what the machine sustains while shared; default) or the best (the "
                        "machine undisturbed; --learn then takes each bench run's fastest repetition)")
    p.add_argument("--relearn", action="store_true",
                   help="with --learn: forget the runs learnt before instead of adding to them")
    p.add_argument("--efficiency", type=_efficiency_arg, default=None, metavar="decode=F,prefill=F",
                   help="engine efficiency (fraction of the roofline) to use instead of the stored one")
    p.add_argument("--list-devices", action="store_true",
                   help="list the built-in device profiles with their ceilings, then exit")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write the output to FILE")
    p.add_argument("--quiet", "-q", action="store_true", help="no status lines on stderr")


def _error(msg):
    print(f"slmprof plan: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    from slmprof.analysis import devices
    from slmprof import report
    from slmprof.analysis import plan as planner

    if args.list_devices:
        for name in devices.BUILTIN_NAMES:
            d = devices.builtin_profile(name)
            print(f"{name:9} {d.title}\n          {d.cores} x {d.cpu_model} ({d.isa}), "
                  f"{d.memory_bytes / 2**30:.0f} GiB, read {d.bandwidth_GBps(d.cores):.1f} GB/s, "
                  f"int8 {d.int8_GOPs_at(d.cores):.1f} GOP/s, f32 {d.f32_GFLOPs_at(d.cores):.1f} GFLOP/s "
                  f"at {d.cores} threads")
        print(f"{devices.THIS:9} this machine, calibrated (`python -m slmprof calibrate`)\n"
              f"FILE      a profile written by `python -m slmprof calibrate --export FILE`")
        return 0
    models = [m.strip() for arg in args.model for m in arg.split(",") if m.strip()]
    if not models and not args.shape and not args.learn:
        return _error("give --model M[,M2...] and/or --shape KEY=V,... (see --help)")
    for name, value in (("--ctx", args.ctx), ("--threads", args.threads),
                        ("--prompt-tokens", args.prompt_tokens)):
        if value is not None and value < 1:
            return _error(f"{name} must be at least 1")
    if args.decode_at is not None and args.decode_at < 0:
        return _error("--decode-at must be >= 0")

    if args.device == devices.THIS and not args.quiet:
        from slmprof.measure import calibrate
        if calibrate.cached_profile() is None:
            report.say("slmprof plan: no calibration of this machine yet; calibrating once (under a minute)")
    device = devices.resolve_device(args.device, which=args.ceilings)

    if args.learn:
        this = device if args.device == devices.THIS else devices.resolve_device(devices.THIS, which=args.ceilings)
        reps = [report.read_json(path, kind="bench") for path in args.learn]
        eff = planner.learn_efficiency(reps, this, previous=None if args.relearn else planner.stored_efficiency(),
                                       which=args.ceilings)
        where = planner.store_efficiency(eff)
        report.say(f"slmprof plan: engine efficiency decode {eff.decode:.2f}, prefill {eff.prefill:.2f} "
                   f"of the roofline ({eff.source}); stored in {where}", quiet=args.quiet and bool(models))
        if not models and not args.shape:
            return 0
    else:
        eff = planner.stored_efficiency()
    if args.efficiency:
        eff.decode = args.efficiency.get("decode", eff.decode)
        eff.prefill = args.efficiency.get("prefill", eff.prefill)
        eff.points = [p for p in eff.points if p["phase"] not in args.efficiency]
        eff.given = sorted(set(eff.given) | set(args.efficiency))
        given = ", ".join(f"{k} {v:.2f}" for k, v in args.efficiency.items())
        eff.source = f"{given} given with --efficiency" + (
            "" if len(args.efficiency) == 2 else f"; otherwise {eff.source}")
        eff.measured = False

    preds = planner.plan(models, device=device, types=args.types, ctx=args.ctx, threads=args.threads,
                         efficiency=eff, min_tok_s=args.min_tok_s, max_mem=args.max_mem,
                         prefill_tokens=args.prompt_tokens, decode_at=args.decode_at,
                         storage_MBps=args.storage_MBps, shape_specs=args.shape)
    rep = planner.make_plan_report(preds, device, eff, settings={
        "device": args.device, "ctx": args.ctx, "threads": args.threads, "types": args.types,
        "min_tok_s": args.min_tok_s, "max_mem": args.max_mem, "prompt_tokens": args.prompt_tokens,
        "decode_at": args.decode_at, "storage_MBps": args.storage_MBps, "ceilings": args.ceilings})
    text = report.to_json(rep) if args.json else planner.format_plan(rep)
    report.write_text(text, args.output)
    return 0
