"""`slmprof layers`: where each layer's time goes, and whether it waits on memory or arithmetic."""
import textwrap

from slmprof import report
from slmprof.analysis import layers, roofline
from slmprof.commands import _options
from slmprof.engine import workload
from slmprof.errors import UsageError
from slmprof.measure.contention import Load

NAME = "layers"
HELP = "per-layer time, bytes, throughput and roofline verdict of a model on this machine"
DESCRIPTION = (
    "Run a prompt (prefill) and a greedy generation (decode) with every layer and operation of\n"
    "the engine measured as a region, and print one row per layer (embedding, each block, final\n"
    "norm + LM head) with time per token, bytes moved (weights + KV cache), achieved GB/s and\n"
    "share of this machine's calibrated bandwidth, operations and GOP/s, arithmetic intensity and\n"
    "the verdict: memory-bound, compute-bound or overhead-bound.\n\n"
    + textwrap.fill("Verdict rule: " + roofline.VERDICT_RULE + ".", 92))
EXAMPLES = """examples:
  python -m slmprof layers                              the default model, both phases
  python -m slmprof layers --phase decode --ops         decode only, each layer split into operations
  python -m slmprof layers --model synth:qwen2.5-0.5b --threads 2 --json out.json --csv out.csv
  python -m slmprof layers --trace run.trace.json       also write a Perfetto/Chrome trace
"""

COLUMNS = [
    report.Column("layer", "layer", align="left"),
    report.Column("op", "op", align="left"),
    report.Column("ms_per_token", "ms/tok", "{:.3f}"),
    report.Column("pct", "%", "{:.1f}"),
    report.Column("bytes_per_token", "MB/tok", lambda v, r: f"{v / 1e6:.2f}" if v is not None else ""),
    report.Column("gb_per_s", "GB/s", "{:.2f}"),
    report.Column("bandwidth_pct", "%BW", "{:.0f}"),
    report.Column("gop_per_s", "GOP/s", "{:.2f}"),
    report.Column("intensity", "op/B", "{:.2f}"),
    report.Column("verdict", "verdict", align="left"),
    report.Column("imbalance_ms_per_token", "imbal%",
                  lambda v, r: f"{100 * v / r['ms_per_token']:.0f}" if v is not None and r["ms_per_token"] else ""),
    report.Column("run_delay_pct", "delay%", lambda v, r: f"{v:.0f}" if v is not None else ""),
    report.Column("flags", "flags", lambda v, r: ", ".join(short_flag(f) for f in v or []), align="left"),
]
# The table's short form of a row's flags (the JSON and the notes below the table say them whole).
SHORT_FLAGS = (("above the memory ceiling", "mem>ceiling"), ("above the compute ceiling", "ops>ceiling"),
               ("contended", "contended"), ("the machine was busy", "busy"))


def short_flag(text):
    return next((short for start, short in SHORT_FLAGS if text.startswith(start)), text.split(":")[0])
COUNTER_COLUMNS = [
    report.Column("ipc", "IPC", "{:.2f}"),
    report.Column("dram_bytes_per_token", "DRAM MB/tok",
                  lambda v, r: f"{v / 1e6:.2f}" if v is not None else ""),
    report.Column("backend_stall_pct", "stall%", "{:.0f}"),
]


def add_arguments(p):
    _options.add_model(p, workload.DEFAULT_MODEL,
                       help=f"registry name or GGUF path (default {workload.DEFAULT_MODEL}; offline "
                            f"it falls back to {workload.FALLBACK_MODEL} and says so)")
    _options.add_threads(p)
    p.add_argument("--prompt-tokens", type=_options.prompt_tokens, default=64,
                   help="prompt length for prefill (default 64)")
    p.add_argument("--gen-tokens", type=_options.gen_tokens, default=32,
                   help="tokens to decode (default 32; at least 1 unless --phase prefill)")
    p.add_argument("--phase", choices=("prefill", "decode", "both"), default="both")
    p.add_argument("--ops", action="store_true", help="one row per operation under each layer")
    p.add_argument("--events", default=None,
                   help="comma-separated counter events (default: the core's set; 'none' for time only)")
    p.add_argument("--hz", type=_options.sample_rate, default=0,
                   help="also sample /proc and sysfs at this rate for --trace (default off)")
    p.add_argument("--csv", metavar="FILE", type=_options.output_file, default=None,
                   help="write the rows as CSV")
    p.add_argument("--trace", metavar="FILE", type=_options.output_file, default=None,
                   help="write a Chrome/Perfetto JSON trace of the run (see `slmprof trace`)")
    report.add_output_arguments(p)


def check(args):
    _options.check_kernel_path()
    if args.gen_tokens < 1 and args.phase != "prefill":
        raise UsageError("--gen-tokens must be at least 1 (or use --phase prefill)")
    args.events = _options.event_names(args.events)
    _options.check_events(args.events)
    _options.check_positions(args.model, args.prompt_tokens + args.gen_tokens,
                             "--prompt-tokens + --gen-tokens")


def run(args):
    def say(text):
        report.say(text, quiet=args.quiet)

    result = layers.profile_layers(args.model, threads=args.threads, prompt_tokens=args.prompt_tokens,
                                   gen_tokens=args.gen_tokens, phase=args.phase,
                                   events=args.events, progress=say,
                                   trace_path=args.trace, hz=args.hz)
    rep = result.to_report()
    if args.csv:
        report.write_text(report.to_csv(rep["records"]), args.csv)
    fmt = report.stdout_format(args)
    if fmt in ("json", "csv"):
        text = report.render(rep, fmt)
    else:
        text = render_text(result, show_ops=args.ops, style=fmt)
    report.emit_output(text, args, rep)


def flag_lines(rows):
    """What the flags in the table mean, each kind once with the rows that carry it."""
    out = []
    for start, short in SHORT_FLAGS:
        hits = [(r, f) for r in rows for f in r.flags if f.startswith(start)]
        if not hits:
            continue
        names = [f"{r.phase} {r.layer}{' ' + r.op if r.op else ''}" for r, _ in hits]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        out.append(f"flag {short} ({len(hits)} row{'s' if len(hits) != 1 else ''}: {shown}): "
                   + hits[0][1].split(": ", 1)[-1])
    return out


def render_text(result, show_ops=False, style="md"):
    """The table people read (from a layers.LayersResult): header lines, one table per phase,
    summary lines, notes."""
    out = []
    model, ceil, settings = result.model, result.ceilings, result.settings
    out.append(f"model: {model.get('name')}{' (synthetic)' if model.get('synthetic') else ''}"
               f", {model.get('file_type') or ''}; {settings.get('threads')} "
               f"thread{'s' if settings.get('threads') != 1 else ''}, "
               f"kernel path {settings.get('isa') or '?'}, KV cache {model.get('kv_type')}")

    def rates(key):
        return ", ".join(f"{t} {v / 1e9:.0f}" for t, v in sorted((ceil.get(key) or {}).items()))
    matvec, gemm, dots = rates("matvec_ops_per_s"), rates("gemm_ops_per_s"), rates("dot_ops_per_s")
    calibrated = ceil.get("calibrated_threads") or ceil.get("threads")
    out.append(f"ceilings ({'calibrated here' if ceil.get('measured', True) else 'REFERENCE, not measured here'}"
               f", {calibrated} thread{'s' if calibrated != 1 else ''}): "
               + (ceil.get("describe") or f"read {ceil.get('bandwidth_bytes_per_s', 0) / 1e9:.1f} GB/s; "
                  + (f"matmul GOP/s decode {matvec}; prefill {gemm}; " if matvec else
                     f"int8 dot GOP/s {dots}; " if dots else "")
                  + f"f32 FMA {ceil.get('fma_ops_per_s', 0) / 1e9:.0f} GFLOP/s"))
    if ceil.get("engine_stream_bytes_per_s"):
        out.append("this engine streams one-token weights at " + ", ".join(
            f"{t} {v / 1e9:.1f}" for t, v in sorted(ceil["engine_stream_bytes_per_s"].items()))
            + " GB/s (what it achieves, not a ceiling)")
    for n in result.notes_of("calibration"):
        out.append(f"calibration: {n}")
    for n in result.notes_of("threads"):
        out.append(f"threads: {n}")
    for ph in layers.PHASES:
        s = result.phases.get(ph)
        if s is not None and s.load:
            load = Load.from_dict(s.load)
            out.append(f"{'the machine was busy' if load.busy else 'load'} during {ph}: "
                       + load.describe())
    rows = result.rows
    has_counters = any(r.ipc is not None or r.dram_bytes_per_token is not None for r in rows)
    counter_notes = result.notes_of("counters")
    if counter_notes:
        out.append("counters: IPC, DRAM bytes and backend stalls not shown: "
                   + counter_notes[0].split("empty: ", 1)[-1])
    if has_counters and show_ops and settings.get("operation_regions"):
        out.append("counters: per layer; operation rows: " + settings["operation_regions"])
    for n in result.notes_of("model"):
        out.append(f"model note: {n}")
    columns = COLUMNS + (COUNTER_COLUMNS if has_counters else [])
    if not show_ops:
        columns = [c for c in columns if c.key != "op"]
    for ph in layers.PHASES:
        shown = [r for r in rows if r.phase == ph and (show_ops or not r.op)]
        if not shown:
            continue
        # operation rows sit under their layer's row: the layer name is not repeated
        table = [dict(vars(r), layer="") if r.op else vars(r) for r in shown]
        s = result.phases[ph]
        out.append("")
        out.append(f"{ph}: {s.tokens} tokens, {s.ms_per_token:.2f} ms/token, "
                   f"{s.tokens_per_s:.1f} tokens/s")
        out.append(report.format_table(table, columns, style=style).rstrip("\n"))
        out.append("  where the time goes: layers " + ", ".join(
            f"{name} {pct:.0f}%" for name, pct in s.top_layers) + "; operations " + ", ".join(
            f"{op} {pct:.0f}%" for op, pct in s.top_ops))
        ideal = s.ideal_tokens_per_s
        out.append(f"  roofline-ideal {ideal:.1f} tokens/s vs achieved {s.tokens_per_s:.1f} "
                   f"({100 * (s.roofline_efficiency or 0):.0f}% of the roofline)" if ideal else
                   "  roofline-ideal: n/a")
        out.append(f"  regions cover {100 * s.regions_coverage:.1f}% of the measured time "
                   f"({s.regions_sum_ms_per_token:.3f} of {s.ms_per_token:.3f} ms/token)")
        if s.unprofiled_ms_per_token:
            out.append(f"  without regions: {s.unprofiled_ms_per_token:.2f} ms/token "
                       f"({1e3 / s.unprofiled_ms_per_token:.1f} tokens/s); the regions cost "
                       f"{100 * s.profiling_overhead:+.1f}%")
    out.append("")
    out.append("bottleneck: " + result.bottleneck)
    out.append("verdicts: " + result.verdict_rule + ".")
    out += flag_lines(rows)
    for n in result.notes:
        if n.kind not in ("counters", "model", "calibration", "threads"):
            out.append(f"note: {n.text}")
    return "\n".join(out) + "\n"
