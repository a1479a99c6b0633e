"""Per-layer roofline attribution of a model run on this machine.

Runs a prompt (prefill) and a greedy generation (decode) with the engine's region hooks on,
reads each layer's and operation's wall time from the region table, costs the same regions with
slmprof.analysis.roofline, and turns the pair into achieved bandwidth and throughput against this
machine's calibrated ceilings, with a verdict per row.

    from slmprof.analysis.layers import profile_layers
    result = profile_layers("smollm2-135m", threads=2, prompt_tokens=64, gen_tokens=32)
    result.rows            # one LayerRow per (phase, layer[, op]) plus a total per phase
    result.phases["decode"].tokens_per_s
    result.to_report()     # the shared JSON schema (slmprof.report)

Times are per token: prefill divides its one call by the prompt length, decode averages its
calls. Bytes and operations per token follow the same division.

Each engine thread stamps its own operation edges (csrc/model/model.c): a row's time is its
share of the pass's critical path (csrc/perf/regions.c, slm_spans_critical), so operations add
up to their layer and layers to the pass; a row also gets the threads' busy time in it and their
imbalance (how long the first to finish waited for the last). Each phase is measured for
contention (slmprof.measure.contention): how long the engine's threads were runnable but not
running, what else used the machine; the run delay is placed in the rows it fell in, and a row
where it is a large share is flagged `contended`.
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import time

from slmprof import report
from slmprof.report import chrome
from slmprof.analysis import roofline
from slmprof.engine import quant, registry, workload
from slmprof.engine.model import OP_NAMES, block_ops, forward_chunks, region_id, thread_count_note
from slmprof.measure import calibrate, contention, trace
from slmprof.measure.counters import Counters
from slmprof.measure.profiler import Profiler

PHASES = ("prefill", "decode")
# Above this, the cost of the region hooks themselves is reported with the results.
PROFILING_OVERHEAD_WARN = 0.03
# Operation rows carry wall time only; counters and thread CPU time are per layer.
OPERATION_REGIONS = ("wall time only: counters and thread CPU time are read at layer edges, not "
                     "at the ~8 operation edges per layer, where a counter read (a system call "
                     "per thread) would slow decode by several percent")
COUNTER_COLUMNS = ("ipc", "dram_bytes_per_token", "backend_stall_pct")
# A row whose threads spent this share of their time in it runnable but not running is flagged
# `contended`; past CONTENDED_MOSTLY its time is mostly run delay and it is never named as
# the bottleneck.
CONTENDED_SHARE = 0.10
CONTENDED_MOSTLY = 0.5
# A run faster than this multiple of the roofline built from the calibration says the
# calibration looks stale.
STALE_RATIO = 1.10


# ------------------------------------------------------------------------------------------
# Typed results


@dataclass
class Note:
    """A sentence the report carries, with what it is about, so renderers need not parse it."""
    kind: str       # "model", "counters", "calibration", "ceilings", "profiling", "trace"
    text: str


@dataclass
class LayerRow:
    """One layer or operation of one phase, per token (or the phase's total)."""
    phase: str
    layer: str                  # "embedding", "block 3", "output", "total"
    op: str                     # "" for a layer row
    slot: Optional[int]
    region: Optional[int]
    calls: int
    ms_per_token: float
    pct: float                  # of the phase's measured time
    bytes_per_token: float
    weight_bytes_per_token: float
    kv_bytes_per_token: float
    gb_per_s: float
    bandwidth_pct: float
    ops_per_token: float
    gop_per_s: float
    intensity: float
    roof_ms_per_token: float
    explained: float            # roofline time / measured time
    verdict: str
    ipc: Optional[float] = None
    dram_bytes_per_token: Optional[float] = None
    backend_stall_pct: Optional[float] = None
    compute_pct: float = 0.0                        # t_compute / measured time, in %
    busy_ms_per_token: Optional[float] = None       # the threads' own work in it, summed
    imbalance_ms_per_token: Optional[float] = None  # how long the first thread to finish waited
    run_delay_pct: Optional[float] = None           # of the threads' time in it: runnable, not running
    flags: list = field(default_factory=list)       # why not to trust a figure (strings)


@dataclass
class PhaseSummary:
    tokens: int
    seconds: float
    ms_per_token: float
    tokens_per_s: float
    ideal_tokens_per_s: Optional[float]
    roofline_efficiency: Optional[float]
    regions_sum_ms_per_token: float
    regions_coverage: float
    top_layers: list            # [(layer, pct)]
    top_ops: list               # [(op, pct)]
    time_share_by_verdict: dict
    bytes_per_token: float
    gb_per_s: float
    bandwidth_pct: float
    verdict: str
    unprofiled_ms_per_token: Optional[float] = None
    profiling_overhead: Optional[float] = None
    contention: Optional[float] = None          # the engine threads' run delay / their wall time
    load: Optional[dict] = None                 # contention.Load of the phase
    top_ops_contended: list = field(default_factory=list)  # ops of top_ops mostly run delay


@dataclass
class LayersResult:
    model: dict                 # name, synthetic, path, file_type, shape, weight types, KV type
    settings: dict              # threads, tokens, phase, isa, events
    ceilings: dict              # the ceilings the verdicts were taken against
    rows: list                  # [LayerRow]
    phases: dict                # phase -> PhaseSummary
    bottleneck: str
    verdict_rule: str
    notes: list                 # [Note]
    calibration: dict = field(default_factory=dict)  # created, age_s, load of the ceilings' calibration

    def notes_of(self, kind: str) -> list:
        return [n.text for n in self.notes if n.kind == kind]

    def records(self) -> list:
        return [asdict(r) for r in self.rows]

    def to_report(self) -> dict:
        summary = {ph: asdict(s) for ph, s in self.phases.items()}
        summary.update(bottleneck=self.bottleneck, verdict_rule=self.verdict_rule,
                       calibration=self.calibration)
        return report.make_report("layers", self.records(), model=self.model,
                                  settings=self.settings, summary=summary,
                                  notes=[n.text for n in self.notes], ceilings=self.ceilings)


# ------------------------------------------------------------------------------------------
# Costs of what was run


@dataclass
class RegionCost:
    """The cost model's figures for one region, summed over a phase's forward calls."""
    slot: int
    layer: str
    op: str                     # "layer" for a whole slot
    kind: str
    weight_type: Optional[str]
    bytes: int = 0
    weight_bytes: int = 0
    kv_bytes: int = 0
    ops: int = 0
    t_mem: float = 0.0
    t_compute: float = 0.0
    t_roof: float = 0.0         # max(t_mem, t_compute) per operation, summed
    memory_what: str = "the memory ceilings of its data"


def phase_costs(shape, weight_types, kv_type, calls, ceilings) -> dict:
    """Sum roofline.OpCost over forward calls [(n_past, n_tok, n_logits)]: region id ->
    RegionCost (each operation at its own ceilings; each slot's layer region sums them)."""
    out = {}
    for n_past, n_tok, n_logits in calls:
        for c in roofline.op_costs(shape, weight_types, n_past, n_tok, kv_type, n_logits):
            t_mem, t_comp = ceilings.times(c)
            layer_id = region_id(c.slot, "layer")
            for rid in (c.region, layer_id):
                acc = out.get(rid)
                if acc is None:
                    own = rid == c.region
                    acc = out[rid] = RegionCost(c.slot, c.layer, c.op if own else "layer",
                                                c.kind if own else "layer",
                                                c.weight_type if own else None)
                    if own and not c.kv_read_bytes:
                        huge = ceilings.huge_pages(c.kind, c.weight_type)
                        acc.memory_what = (f"the read loop over {'huge' if huge else '4 KiB'} "
                                           f"pages ({ceilings.memory_ceiling(c.kind, c.weight_type) / 1e9:.1f} GB/s)")
                acc.bytes += c.bytes
                acc.weight_bytes += c.weight_bytes
                acc.kv_bytes += c.kv_read_bytes + c.kv_write_bytes
                acc.ops += c.ops
                acc.t_mem += t_mem
                acc.t_compute += t_comp
                acc.t_roof += max(t_mem, t_comp)
    return out


# ------------------------------------------------------------------------------------------
# Counters


def counter_figures(counters, dram_events=None, line_bytes=64):
    """IPC, estimated DRAM bytes and backend-stall share from a region's readings
    ({name: Reading}); None for what the readings cannot give."""
    def value(name):
        r = counters.get(name) if counters else None
        return r.value if r is not None else None
    cycles, instructions = value("cycles"), value("instructions")
    out = {"ipc": instructions / cycles if cycles and instructions is not None else None}
    dram = None
    if dram_events:
        vals = [value(e) for e in dram_events]
        if all(v is not None for v in vals):
            dram = sum(vals) * line_bytes
    out["dram_bytes"] = dram
    stall = value("stall_backend")
    if stall is None:
        stall = value("stalled-cycles-backend")
    out["backend_stall_pct"] = 100.0 * stall / cycles if stall is not None and cycles else None
    return out


def make_profiler(events) -> tuple[Profiler, Optional[str]]:
    """(Profiler, why its counter columns are empty or None). With events=None the core's
    default counters are used when the machine has hardware counters; otherwise regions are
    timed only, because software events fill no column here and reading them on every thread
    at every edge costs decode time."""
    if events is not None:
        prof = Profiler(events=events)
        return prof, counters_note(prof)
    counters = Counters()
    desc = counters.describe()
    if desc["mode"] == "hardware":
        return Profiler(counters=counters), None
    counters.close()
    return Profiler(events=[]), ("counter columns (IPC, DRAM bytes, backend stalls) empty: "
                                 f"{desc['mode_reason'] or 'no hardware counters on this machine'}; "
                                 "regions are timed without counters")


def counters_note(profiler) -> Optional[str]:
    """Why the counter columns are empty, or None when they have values."""
    counters = profiler.counters
    if counters is None:
        return "counter columns empty: no counters were opened (time-only profiling)"
    desc = counters.describe()
    if desc["mode"] == "hardware":
        return None
    return "counter columns (IPC, DRAM bytes, backend stalls) empty: " + str(
        desc["mode_reason"] or "no hardware counters on this machine")


def dram_estimate(profiler):
    """(events whose sum x line bytes estimates DRAM traffic, line bytes); (None, 64) when the
    counters give no estimate."""
    counters = profiler.counters
    dram = counters.detection.core.dram if counters is not None and counters.detection.core else None
    if dram is None:
        # x86: last-level cache misses x 64, the usual estimate (it misses prefetches). On ARM
        # the generic cache-misses event is an L1 refill: no estimate without the core's table.
        names = counters.names if counters is not None else []
        x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
        return (("cache-misses",), 64) if x86 and "cache-misses" in names else (None, 64)
    return tuple(dram.events), dram.line_bytes


# ------------------------------------------------------------------------------------------
# The run


@dataclass
class _Phase:
    seconds: float
    tokens: int
    times: dict                 # region id -> RegionTime
    costs: dict                 # region id -> RegionCost
    load: Optional[contention.Load] = None
    placed: Optional[contention.PlacedDelay] = None


@dataclass
class RegionTime:
    seconds: float              # critical path (per-thread spans), else wall time between edges
    count: int
    counters: dict              # name -> Reading
    busy_seconds: Optional[float] = None
    imbalance_seconds: Optional[float] = None


def first_run_notice(model, calibrating):
    """What a first run does once before it measures, said up front (None when nothing): it
    takes a while, and the calibration wants an idle machine."""
    where = str(registry.cache_dir())
    home = os.path.expanduser("~")
    if home != "/" and where.startswith(home + os.sep):
        where = "~" + where[len(home):]
    download = registry.needs_download(model) if model is not None else None
    if not calibrating:
        return (f"first use of {download.name}: downloading it once ({download.download}) into "
                f"{where}" if download else None)
    fetch = f"{download.name} once ({download.download})" if download else ""
    seconds = calibrate.expected_seconds()
    took = f"{max(5, 5 * round(seconds / 5))} s" if seconds < 90 else f"{round(seconds / 60)} min"
    return (f"first run: slmprof calibrates this machine once (about {took}; best on an idle "
            "machine, since every verdict is judged against what it measures)"
            + (f", then downloads {fetch}; both are kept in {where}"
               if download
               else f"; the result is kept in {where}"))


def profile_layers(model=workload.DEFAULT_MODEL, threads=None, prompt_tokens=64, gen_tokens=32,
                   phase="both", events=None, profile=None,
                   progress: Callable[[str], None] = lambda text: None, ctx=None,
                   loaded_model=None, trace_path=None, hz=0) -> LayersResult:
    """Run and attribute; returns a LayersResult.

    events: counter event names (None: the core's defaults; [] time only). profile: a machine
    profile (default: this machine's, measured now if missing). progress(text): status lines.
    loaded_model: an already loaded Model to use instead of loading `model`.
    trace_path: also record every region edge (and the sampler at `hz`) and write a trace there
    (.json: Chrome/Perfetto JSON; otherwise slmprof's compact .npz)."""
    say = progress
    if phase not in ("prefill", "decode", "both"):
        raise ValueError(f"phase must be prefill, decode or both (got {phase!r})")
    if prompt_tokens < 1 or gen_tokens < (1 if phase != "prefill" else 0):
        raise ValueError("need at least one prompt token, and one generated token for decode")
    notes = []
    notice = first_run_notice(model if loaded_model is None else None,
                              calibrating=profile is None and calibrate.cached_profile() is None)
    if notice:
        say(notice)
    if profile is None:
        say("machine profile: looking for this machine's calibration")
        profile, cached = calibrate.get_profile(progress=lambda d, t, label, text: say(
            f"calibrate [{d}/{t}] {label}: {text}"))
        if profile.get("not_saved"):
            notes.append(Note("calibration", "this machine was calibrated for this run; the "
                                             f"calibration was not saved ({profile['not_saved']}), "
                                             "so the next run measures it again"))
        elif not cached:
            notes.append(Note("calibration", "this machine was calibrated for this run "
                                             "(cached for the next)"))
    if not profile.get("measured", True):
        notes.append(Note("ceilings", "ceilings are from a reference profile, not measured here: "
                                      f"{profile.get('source')}"))

    if loaded_model is None:
        m, model_notes = workload.load(model, threads=threads, ctx=ctx, prompt_tokens=prompt_tokens,
                                       gen_tokens=gen_tokens, say=say)
        notes += [Note("model", n) for n in model_notes]
    else:
        m = loaded_model
    try:
        return _run(m, profile, prompt_tokens, gen_tokens, phase, events, notes, say,
                    trace_path, hz)
    finally:
        if loaded_model is None:
            m.close()


def span_capacity(shape, threads, n_prompt, n_gen):
    """Span log records for a run: per forward chunk one per thread and operation and one per
    layer tile, for the warm-up, the prefill chunks and every decoded token."""
    per_block = len(block_ops(getattr(shape, "arch", "llama")))
    per_chunk = threads * (per_block * shape.n_layer + 3) + shape.n_layer + 2
    chunks = 2 + len(list(forward_chunks(0, n_prompt))) + n_gen + 4
    return int(per_chunk * chunks * 1.25)


def engine_tids(table):
    """Kernel thread ids of the engine's workers, from the chunks the table has seen."""
    calls = table.calls()
    return sorted({int(t) for t in calls["tid"]}) if len(calls) else []


def _measured(prof, run):
    """Run `run()` between a reset of the region table and a read of it, under a load meter on
    the engine's threads: (what run returned, RegionTime by id, Load, spans, calls)."""
    tids = engine_tids(prof.table)
    prof.reset()
    meter = contention.LoadMeter(tids)
    out = run()
    load = meter.stop()
    return out, _region_times(prof), load, prof.table.spans(), prof.table.calls()


def _run(m, profile, n_prompt, n_gen, phase, events, notes, say, trace_path=None, hz=0):
    shape = m.config
    threads = m.threads
    isa = quant.active_isa()
    ceilings = roofline.ceilings_from_profile(profile, threads,
                                              isa=isa if isa in (profile.get("dot") or {}) else None)
    too_many = thread_count_note(threads)
    if too_many:
        notes.append(Note("threads", too_many))
    notes += [Note("ceilings", n) for n in ceilings.notes]
    wtypes = roofline.weight_types_from_tensors(m.description.tensors, shape.tied)
    prompt = workload.prompt_tokens(m, n_prompt)

    prof, counters_empty = make_profiler(events)
    phases = {}
    try:
        prof.name_regions((rid, f"{layer}/{op}") for rid, layer, op in m.region_names())
        m.set_profiler(prof.table)
        prof.table.keep_spans(span_capacity(shape, threads, n_prompt, n_gen))
        prof.attach_threads()
        say("warming up")
        workload.warm_up(m, prompt)

        rec = None
        if trace_path:
            # behind the recorder the region table keeps its totals (and counters)
            rec = trace.start(m, hz=hz, next_table=prof.table)
            trace.mark(rec, "prefill")
        say(f"prefill: {n_prompt} tokens")
        pre, times, load, spans, calls = _measured(prof, lambda: workload.prefill(m, prompt))
        if phase in ("prefill", "both"):
            chunks = [(p, n, 1 if p + n == n_prompt else 0) for p, n in forward_chunks(0, n_prompt)]
            phases["prefill"] = _Phase(pre.seconds, n_prompt, times,
                                       phase_costs(shape, wtypes, m.kv_type, chunks, ceilings),
                                       load, contention.delay_by_region(spans, calls, len(OP_NAMES)))
        decoded = None
        if phase in ("decode", "both"):
            say(f"decode: {n_gen} tokens")
            if rec is not None:
                trace.mark(rec, "decode")
            decoded, times, load, spans, calls = _measured(
                prof, lambda: workload.decode_greedy(m, pre.logits, n_gen))
            chunks = [(n_prompt + i, 1, 1) for i in range(n_gen)]
            phases["decode"] = _Phase(decoded.seconds, n_gen, times,
                                      phase_costs(shape, wtypes, m.kv_type, chunks, ceilings),
                                      load, contention.delay_by_region(spans, calls, len(OP_NAMES)))
        if rec is not None:
            _write_trace(rec, m, trace_path, notes,
                         {"threads": threads, "prompt_tokens": n_prompt, "gen_tokens": n_gen, "hz": hz})
            say(f"trace written to {trace_path}")
        if prof.table.spans_dropped:
            notes.append(Note("profiling", f"{prof.table.spans_dropped} per-thread spans did not "
                                           "fit the log: run delay is placed from the rest"))
        dram_events, line_bytes = dram_estimate(prof)
        if counters_empty:
            notes.append(Note("counters", counters_empty))
        m.set_profiler(None)
        unprofiled = None
        if decoded is not None:
            # the same tokens at the same positions (the cache rewound) with no region hooks:
            # what the regions cost
            say(f"decode without regions: {n_gen} tokens")
            m.engine.set_n_past(n_prompt)
            unprofiled = workload.decode_tokens(m, decoded.tokens).seconds
    finally:
        m.set_profiler(None)
        prof.close()

    rows, summaries = [], {}
    for ph, p in phases.items():
        phase_rows, s = _phase_records(ph, p, ceilings, dram_events, line_bytes, threads)
        rows += phase_rows
        summaries[ph] = s
    if unprofiled and "decode" in summaries:
        d = summaries["decode"]
        d.unprofiled_ms_per_token = unprofiled / n_gen * 1e3
        d.profiling_overhead = d.ms_per_token / d.unprofiled_ms_per_token - 1.0
        if d.profiling_overhead > PROFILING_OVERHEAD_WARN:
            notes.append(Note("profiling",
                f"per-operation regions slowed decode by {100 * d.profiling_overhead:.0f}% "
                f"({d.ms_per_token:.2f} vs {d.unprofiled_ms_per_token:.2f} ms/token for the "
                "same tokens without them, run after them): each thread reads the clock twice "
                "per operation, so a larger figure mostly means a busy machine; the table's times "
                "include it"))
    calib = calibration_info(profile)
    notes += [Note("calibration", n) for n in calibration_notes(calib, summaries)]
    model_info = {"name": m.name, "synthetic": bool(m.synthetic),
                  "path": str(m.description.path), "file_type": m.description.file_type,
                  "arch": shape.arch, "n_layer": shape.n_layer, "dim": shape.dim,
                  "weight_types": wtypes,
                  "kv_type": m.kv_type, "weight_bytes_per_token": m.weight_bytes_per_token()}
    settings = {"threads": threads, "prompt_tokens": n_prompt, "gen_tokens": n_gen,
                "phase": phase, "isa": isa, "events": events,
                "operation_regions": OPERATION_REGIONS}
    ceil = dict(ceilings.as_report(), profile_key=profile.get("key"), describe=ceilings.describe())
    return LayersResult(model=model_info, settings=settings, ceilings=ceil, rows=rows,
                        phases=summaries, bottleneck=bottleneck_sentence(summaries, ceilings),
                        verdict_rule=roofline.verdict_rule(ceilings), notes=notes,
                        calibration=calib)


def calibration_info(profile) -> dict:
    """When the ceilings were calibrated and under what load (None where the profile does not
    say: a reference profile, or one from an older calibrate)."""
    created = profile.get("created")
    age = None
    if created:
        try:
            age = time.time() - time.mktime(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone
        except ValueError:
            age = None
    return {"created": created, "age_s": age, "load": profile.get("load"),
            "measured": bool(profile.get("measured", True))}


def describe_age(seconds) -> str:
    if seconds is None:
        return "age unknown"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def calibration_notes(calib, summaries) -> list:
    """The calibration's age and load, and whether a phase ran faster than the roofline built
    from it allows (the calibration looks stale)."""
    out = []
    if not calib.get("measured", True):
        return out
    load = calib.get("load")
    under = ("under an unknown load (it was taken by an older calibrate)" if not load else
             f"while the machine was busy ({contention.Load.from_dict(load).describe('its')})"
             if load.get("busy") else "on a quiet machine")
    out.append(f"ceilings calibrated {calib.get('created') or '?'} ({describe_age(calib.get('age_s'))}) {under}")
    for ph, s in summaries.items():
        if s.roofline_efficiency and s.roofline_efficiency > STALE_RATIO:
            out.append(f"the calibration looks stale: {ph} ran at {100 * s.roofline_efficiency:.0f}% "
                       "of the roofline built from it (no run can beat a ceiling); refresh it in an "
                       "idle moment with `python -m slmprof calibrate --force` (unless the rows "
                       "flagged above the memory ceiling say the bytes came from cache)")
            break
    return out


def _write_trace(rec, m, path, notes, settings):
    data = trace.stop(rec)
    data["meta"]["model"] = {"name": m.name, "synthetic": bool(m.synthetic)}
    data["meta"]["settings"] = settings
    if str(path).endswith(".json"):
        chrome.write_recording(data, path)
    else:
        trace.save(data, path)
    notes += [Note("trace", n) for n in data["meta"]["notes"]]


def _region_times(prof):
    """region id -> RegionTime: each engine region's share of the critical path where the
    engine handed over per-thread spans, else its wall time between edges."""
    out = {}
    for r in prof.results():
        counters = r.get("counters") or {}
        if r.get("span_count"):
            out[int(r["id"])] = RegionTime(r["span_ns"] * 1e-9, int(r["span_count"]), counters,
                                           r["busy_ns"] * 1e-9, r["imbalance_ns"] * 1e-9)
        else:
            out[int(r["id"])] = RegionTime(r["wall_ns"] * 1e-9, int(r["count"]), counters)
    return out


def _phase_records(ph, p: _Phase, ceilings, dram_events, line_bytes, threads=1):
    per_tok = 1.0 / p.tokens
    seconds = p.seconds
    delay = p.placed.by_region if p.placed else {}
    layer_rows, op_rows = [], []
    for rid, c in sorted(p.costs.items(), key=lambda kv: (kv[1].slot, kv[0])):
        t = p.times.get(rid) or RegionTime(0.0, 0, {})
        wall = t.seconds
        a = roofline.analyze(c.bytes, c.ops, wall, ceilings, t_mem=c.t_mem, t_compute=c.t_compute)
        cf = counter_figures(t.counters, dram_events, line_bytes)
        share = delay.get(rid, 0.0) / (threads * wall) if wall > 0 else 0.0
        flags = roofline.ceiling_flags(c.t_mem, c.t_compute, wall, c.bytes * per_tok * p.tokens,
                                       c.ops, memory_what=c.memory_what)
        if share >= CONTENDED_SHARE:
            flags.append(f"contended: for {100 * min(share, 1):.0f}% of their time in it the "
                         "engine's threads were runnable but not running (another process had "
                         "the core); its time is the machine's share, not the engine's speed")
        row = LayerRow(
            phase=ph, layer=c.layer, op="" if c.op == "layer" else c.op, slot=c.slot, region=rid,
            calls=t.count, ms_per_token=wall * per_tok * 1e3, pct=0.0,
            bytes_per_token=c.bytes * per_tok, weight_bytes_per_token=c.weight_bytes * per_tok,
            kv_bytes_per_token=c.kv_bytes * per_tok, gb_per_s=a["gb_per_s"],
            bandwidth_pct=a["bandwidth_pct"], ops_per_token=c.ops * per_tok,
            gop_per_s=a["gop_per_s"], intensity=a["intensity"],
            compute_pct=100.0 * c.t_compute / wall if wall > 0 else 0.0,
            # max() per op summed, not max of sums: the roof of a layer whose ops differ in kind
            roof_ms_per_token=c.t_roof * per_tok * 1e3,
            explained=c.t_roof / wall if wall > 0 else 0.0,
            verdict=a["verdict"] if wall > 0 else "not measured", ipc=cf["ipc"],
            dram_bytes_per_token=cf["dram_bytes"] * per_tok if cf["dram_bytes"] is not None else None,
            backend_stall_pct=cf["backend_stall_pct"],
            busy_ms_per_token=t.busy_seconds * per_tok * 1e3 if t.busy_seconds is not None else None,
            imbalance_ms_per_token=(t.imbalance_seconds * per_tok * 1e3
                                    if t.imbalance_seconds is not None else None),
            run_delay_pct=100.0 * min(share, 1.0) if p.placed else None, flags=flags)
        (layer_rows if c.op == "layer" else op_rows).append(row)
    ms = seconds * per_tok * 1e3
    for row in layer_rows + op_rows:
        row.pct = 100.0 * row.ms_per_token / ms if seconds > 0 else 0.0
    # total: the measured time of the calls (Python-timed), all regions' bytes and operations
    layers_costs = [c for c in p.costs.values() if c.op == "layer"]
    tb = sum(c.bytes for c in layers_costs)
    tops = sum(c.ops for c in layers_costs)
    troof = sum(c.t_roof for c in layers_costs)
    tmem = sum(c.t_mem for c in layers_costs)
    tcomp = sum(c.t_compute for c in layers_costs)
    a = roofline.analyze(tb, tops, seconds, ceilings, t_mem=tmem, t_compute=tcomp)
    covered = sum(r.ms_per_token for r in layer_rows) / ms if seconds else 0
    load = p.load
    total_flags = list(a["flags"])
    if load is not None and load.busy:
        total_flags.append("the machine was busy: " + load.describe())
    total = LayerRow(
        phase=ph, layer="total", op="", slot=None, region=None,
        calls=p.tokens if ph == "decode" else 1, ms_per_token=ms, pct=100.0,
        bytes_per_token=tb * per_tok,
        weight_bytes_per_token=sum(c.weight_bytes for c in layers_costs) * per_tok,
        kv_bytes_per_token=sum(c.kv_bytes for c in layers_costs) * per_tok,
        gb_per_s=a["gb_per_s"], bandwidth_pct=a["bandwidth_pct"], ops_per_token=tops * per_tok,
        gop_per_s=a["gop_per_s"], intensity=a["intensity"],
        compute_pct=100.0 * tcomp / seconds if seconds else 0.0,
        roof_ms_per_token=troof * per_tok * 1e3, explained=troof / seconds if seconds else 0,
        verdict=roofline.verdict(tmem, tcomp, seconds),
        busy_ms_per_token=sum(r.busy_ms_per_token or 0 for r in layer_rows),
        imbalance_ms_per_token=sum(r.imbalance_ms_per_token or 0 for r in layer_rows),
        run_delay_pct=100.0 * load.contention if load is not None else None, flags=total_flags)
    # order: each layer row followed by its operations
    ordered = []
    for slot in sorted({c.slot for c in p.costs.values()}):
        ordered += [r for r in layer_rows if r.slot == slot]
        ordered += [r for r in op_rows if r.slot == slot]
    ordered.append(total)

    by_op, op_delay, verdict_time = {}, {}, {}
    for r in op_rows:
        by_op[r.op] = by_op.get(r.op, 0.0) + r.ms_per_token
        op_delay[r.op] = op_delay.get(r.op, 0.0) + r.ms_per_token * (r.run_delay_pct or 0) / 100
        verdict_time[r.verdict] = verdict_time.get(r.verdict, 0.0) + r.ms_per_token
    top_layers = sorted(layer_rows, key=lambda r: -r.ms_per_token)[:3]
    top_ops = sorted(((op, 100.0 * t / ms) for op, t in by_op.items()), key=lambda x: -x[1])[:4]
    summary = PhaseSummary(
        tokens=p.tokens, seconds=seconds, ms_per_token=ms,
        tokens_per_s=p.tokens / seconds if seconds else 0.0,
        ideal_tokens_per_s=p.tokens / troof if troof else None,
        roofline_efficiency=troof / seconds if seconds else None,
        regions_sum_ms_per_token=sum(r.ms_per_token for r in layer_rows),
        regions_coverage=covered,
        top_layers=[(r.layer, r.pct) for r in top_layers],
        top_ops=top_ops,
        time_share_by_verdict={v: 100.0 * t / ms for v, t in verdict_time.items()},
        bytes_per_token=tb * per_tok, gb_per_s=a["gb_per_s"], bandwidth_pct=a["bandwidth_pct"],
        verdict=total.verdict,
        contention=load.contention if load is not None else None,
        load=load.to_dict() if load is not None else None,
        top_ops_contended=[op for op, _ in top_ops
                           if by_op[op] and op_delay[op] / by_op[op] >= CONTENDED_MOSTLY])
    return ordered, summary


def bottleneck_sentence(phases: dict, ceilings) -> str:
    """The main bottleneck in one sentence, from the decode phase when there is one: first
    whether the machine was busy, then the phase's own verdict (its bytes and operations
    against the ceilings), then its largest operation whose time is not mostly run delay, and
    how much of its time sits in operations that neither ceiling explains."""
    ph = "decode" if "decode" in phases else "prefill"
    s = phases.get(ph)
    if s is None:
        return ""
    busy = [(name, p) for name, p in phases.items() if p.load and p.load.get("busy")]
    lead = ""
    if busy:
        name, p = next(((n, q) for n, q in busy if n == ph), busy[0])
        lead = ("The machine was busy: during " + name + " "
                + contention.Load.from_dict(p.load).describe() + ", so the times below are the "
                "share of the machine the engine got. ")
    overhead = s.time_share_by_verdict.get("overhead-bound", 0.0)
    named = [(op, pct) for op, pct in s.top_ops if op not in s.top_ops_contended]
    top_op = (f"the largest operation is {named[0][0]} ({named[0][1]:.0f}%)" if named else
              "no operation stands out from the run delay")
    if s.top_ops_contended:
        top_op += (f" ({', '.join(s.top_ops_contended)} took more, but mostly waiting for a core)")
    mem = ceilings.bandwidth_huge if ceilings.repacked and ceilings.bandwidth_huge else ceilings.bandwidth
    reach = (f"{s.tokens_per_s:.1f} tokens/s is {100 * (s.roofline_efficiency or 0):.0f}% of "
             f"the roofline's {s.ideal_tokens_per_s or 0:.1f}")
    tail = (f"; {overhead:.0f}% of the time is in operations neither ceiling explains (sync, "
            "dispatch, small matrices, a busy machine)" if overhead >= 20 else "")
    if s.verdict == "memory-bound":
        return (f"{lead}{ph.capitalize()} is limited by memory bandwidth: it moves "
                f"{s.bytes_per_token / 1e6:.1f} MB per token at {s.gb_per_s:.1f} GB/s "
                f"({s.bandwidth_pct:.0f}% of what memory delivers to it; the read loop gives "
                f"{mem / 1e9:.1f} GB/s) and {reach}; {top_op}{tail}.")
    if s.verdict == "compute-bound":
        return (f"{lead}{ph.capitalize()} is limited by arithmetic: {reach}, and faster kernels, "
                f"not more bandwidth, would speed it up; {top_op}{tail}.")
    return (f"{lead}{ph.capitalize()} is overhead-bound: neither bandwidth nor arithmetic explains "
            f"most of its time (sync, dispatch, small matrices, a busy machine); {reach}; {top_op}.")
