"""`slmprof plan`: will a model fit on a device, and how fast will it run there?"""
import argparse
import re

from slmprof import report
from slmprof.analysis import devices
from slmprof.analysis import plan as planner
from slmprof.commands import _options
from slmprof.errors import UsageError
from slmprof.measure import calibrate

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
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in planner.PLAN_TYPES]
    if bad or not types:
        raise argparse.ArgumentTypeError(f"unknown type {', '.join(bad) or text!r} "
                                         f"(choose from {', '.join(planner.PLAN_TYPES)})")
    return types


def _bytes_type(text):
    try:
        return _bytes_arg(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 3.5G, 1500M, 2GiB)") from None


def _efficiency_arg(text):
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
    p.add_argument("--ctx", type=_options.context, default=None,
                   help="context length (default: min(model max, 2048))")
    p.add_argument("--device", "-d", default="this",
                   help="this | pi4-4gb | pi4-8gb | pi5-4gb | pi5-8gb | FILE (default: this)")
    # dest is not `threads`: these are the device's threads, not this machine's
    p.add_argument("--threads", "-t", dest="device_threads", type=_options.threads, default=None,
                   help="threads on the device (default: the device's cores)")
    p.add_argument("--min-tok-s", type=_options.number(0, lo_open=True), default=None,
                   help="target decode tokens/s")
    p.add_argument("--max-mem", type=_bytes_type, default=None, help="memory budget, e.g. 1.5G")
    p.add_argument("--prompt-tokens", type=_options.prompt_tokens, default=128,
                   help="prefill batch for the prefill figure (default 128)")
    p.add_argument("--decode-at", type=_options.integer(0, _options.MAX_CTX), default=None,
                   help="context position for the decode figure (default: half of --ctx)")
    p.add_argument("--storage-MBps", type=_options.number(0, lo_open=True), default=None,
                   help="storage read speed for the load time (default: the device profile's)")
    p.add_argument("--learn", nargs="+", metavar="BENCH_JSON", default=None, type=_options.input_file,
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
    report.add_output_arguments(p, formats=None)


def check(args):
    args.models = [m.strip() for arg in args.model for m in arg.split(",") if m.strip()]
    if not args.list_devices and not args.models and not args.shape and not args.learn:
        raise UsageError("give --model M[,M2...] and/or --shape KEY=V,... (see --help)")
    for name in args.models:
        _options.model(name)
    # a named or file device is read now, so a bad one fails before any work
    args.device_profile = (None if args.device == devices.THIS
                           else devices.resolve_device(args.device, which=args.ceilings))


def run(args):
    if args.list_devices:
        for name in devices.BUILTIN_NAMES:
            d = devices.builtin_profile(name)
            print(f"{name:9} {d.title}\n          {d.cores} x {d.cpu_model} ({d.isa}), "
                  f"{report.format_bytes(d.memory_bytes, binary=True, digits=0)}, read "
                  f"{d.bandwidth_GBps(d.cores):.1f} GB/s, int8 {d.int8_GOPs_at(d.cores):.1f} GOP/s, "
                  f"f32 {d.f32_GFLOPs_at(d.cores):.1f} GFLOP/s at {d.cores} threads")
        print(f"{devices.THIS:9} this machine, calibrated (`python -m slmprof calibrate`)\n"
              f"FILE      a profile written by `python -m slmprof calibrate --export FILE`")
        return
    models = args.models
    if args.device == devices.THIS and calibrate.cached_profile() is None:
        seconds = calibrate.expected_seconds()
        report.say(f"slmprof plan: no calibration of this machine yet; calibrating once (about "
                   f"{max(5, 5 * round(seconds / 5))} s)", args.quiet)
    device = args.device_profile or devices.resolve_device(args.device, which=args.ceilings)

    if args.learn:
        this = device if args.device == devices.THIS else devices.resolve_device(devices.THIS, which=args.ceilings)
        reps = [report.read_json(path, kind="bench") for path in args.learn]
        eff = planner.learn_efficiency(reps, this, previous=None if args.relearn else planner.stored_efficiency(),
                                       which=args.ceilings)
        where = planner.store_efficiency(eff)
        report.say(f"slmprof plan: engine efficiency decode {eff.decode:.2f}, prefill {eff.prefill:.2f} "
                   f"of the roofline ({eff.source}); stored in {where}", quiet=args.quiet and bool(models))
        if not models and not args.shape:
            return
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

    preds = planner.plan(models, device=device, types=args.types, ctx=args.ctx,
                         threads=args.device_threads, efficiency=eff, min_tok_s=args.min_tok_s,
                         max_mem=args.max_mem, prefill_tokens=args.prompt_tokens,
                         decode_at=args.decode_at, storage_MBps=args.storage_MBps,
                         shape_specs=args.shape)
    rep = planner.make_plan_report(preds, device, eff, settings={
        "device": args.device, "ctx": args.ctx, "threads": args.device_threads, "types": args.types,
        "min_tok_s": args.min_tok_s, "max_mem": args.max_mem, "prompt_tokens": args.prompt_tokens,
        "decode_at": args.decode_at, "storage_MBps": args.storage_MBps, "ceilings": args.ceilings})
    report.emit_output(planner.format_plan(rep), args, rep)
