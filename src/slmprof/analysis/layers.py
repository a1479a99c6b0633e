"""Per-layer roofline attribution of a model run on this machine.

Runs a prompt (prefill) and a greedy generation (decode) with the engine's region hooks on,
reads each layer's and operation's wall time from the region table, costs the same regions with
slmprof.analysis.roofline, and turns the pair into achieved bandwidth and throughput against this
machine's calibrated ceilings, with a verdict per row.

    from slmprof.analysis.layers import profile_layers
    rep = profile_layers("smollm2-135m", threads=2, prompt_tokens=64, gen_tokens=32)
    rep["records"]   # one flat row per (phase, layer[, op]) plus a total per phase

Times are per token: prefill divides its one call by the prompt length, decode averages its
calls. Bytes and operations per token follow the same division.
"""
import time

import numpy as np

from slmprof.engine.model import forward_chunks
from slmprof.measure import calibrate

from slmprof.analysis import roofline
from slmprof.errors import ModelNotFoundError, UnavailableError

DEFAULT_MODEL = "smollm2-135m"
FALLBACK_MODEL = "synth:smollm2-135m"
PHASES = ("prefill", "decode")
# Above this, the cost of the region hooks themselves is reported with the results.
PROFILING_OVERHEAD_WARN = 0.03
# Operation rows carry wall time only; counters and thread CPU time are per layer.
OPERATION_REGIONS = ("wall time only: counters and thread CPU time are read at layer edges, not "
                     "at the ~8 operation edges per layer, where a counter read (a system call "
                     "per thread) would slow decode by several percent")
PROMPT_TEXT = ("The history of computing is a story of machines that became smaller, faster and "
               "cheaper, until a board the size of a credit card could run a language model. ")


# ------------------------------------------------------------------------------------------
# Model choice


def resolve_model(name):
    """(name to load, note or None). The default real model falls back to its synthetic twin
    when it cannot be fetched (offline), and says so."""
    from slmprof.engine import registry
    if not hasattr(registry, "resolve"):  # a build without the registry: paths only
        return name, None
    try:
        resolved = registry.resolve(name)
    except ModelNotFoundError as e:
        if name != DEFAULT_MODEL:
            raise
        registry.resolve(FALLBACK_MODEL)
        return FALLBACK_MODEL, (f"{DEFAULT_MODEL} could not be fetched ({e}); using "
                                f"{FALLBACK_MODEL}: random weights in the same shape and types, "
                                "so speed figures hold but outputs are meaningless")
    note = None
    if getattr(resolved, "synthetic", False):
        note = f"{name}: {getattr(resolved, 'description', '') or 'synthetic, random weights'}"
    return name, note


def prompt_tokens_for(model, n):
    """n prompt tokens: a fixed English text through the model's tokenizer, repeated; token ids
    in order when the model has no tokenizer."""
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        ids = list(tok.encode(PROMPT_TEXT * (1 + n // 16), add_bos=True))
        while len(ids) < n:
            ids += list(tok.encode(PROMPT_TEXT, add_bos=False))
        return ids[:n]
    vocab = model.config.vocab
    return [(1 + 7 * i) % vocab for i in range(n)]


# ------------------------------------------------------------------------------------------
# Costs of what was run


def phase_costs(shape, weight_types, kv_type, calls, ceilings):
    """Sum OpCost over forward calls [(n_past, n_tok, n_logits)]: region -> dict with bytes,
    weight/kv bytes, ops and the roofline times t_mem and t_compute (each op with its own peak)."""
    out = {}
    for n_past, n_tok, n_logits in calls:
        for c in roofline.op_costs(shape, weight_types, n_past, n_tok, kv_type, n_logits):
            t_mem, t_comp = ceilings.times(c)
            for rid in (c.region, roofline.region_id(c.slot, "layer")):
                acc = out.setdefault(rid, {"slot": c.slot, "layer": c.layer,
                                           "op": c.op if rid == c.region else "layer",
                                           "bytes": 0, "weight_bytes": 0, "kv_bytes": 0, "ops": 0,
                                           "t_mem": 0.0, "t_compute": 0.0, "t_roof": 0.0,
                                           "weight_type": c.weight_type if rid == c.region else None,
                                           "kind": c.kind if rid == c.region else "layer"})
                acc["bytes"] += c.bytes
                acc["weight_bytes"] += c.weight_bytes
                acc["kv_bytes"] += c.kv_read_bytes + c.kv_write_bytes
                acc["ops"] += c.ops
                acc["t_mem"] += t_mem
                acc["t_compute"] += t_comp
                acc["t_roof"] += max(t_mem, t_comp)
    return out


# ------------------------------------------------------------------------------------------
# Counters


COUNTER_COLUMNS = ("ipc", "dram_bytes_per_token", "backend_stall_pct")


def counter_figures(counters, dram_events=None, line_bytes=64):
    """IPC, estimated DRAM bytes and backend-stall share from a region's readings
    ({name: Reading}); None for what the readings cannot give."""
    def value(name):
        r = counters.get(name) if counters else None
        return getattr(r, "value", None) if r is not None else None
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


def _profiler(Profiler, events):
    """(Profiler, note). With events=None the core's default counters are used when the
    machine has hardware counters; otherwise regions are timed only, because software events
    fill no column here and reading them on every thread at every edge costs decode time."""
    if events is not None:
        return Profiler(events=events), None
    from slmprof.measure.counters import Counters
    counters = Counters()
    if counters.describe().get("mode") == "hardware":
        return Profiler(counters=counters), None
    reason = counters.describe().get("mode_reason") or "no hardware counters on this machine"
    counters.close()
    return Profiler(events=[]), ("counter columns (IPC, DRAM bytes, backend stalls) empty: "
                                 f"{reason}; regions are timed without counters")


def counters_note(profiler):
    """Why the counter columns are empty, or None when they have values."""
    counters = getattr(profiler, "counters", None)
    if counters is None:
        return "counter columns empty: no counters were opened (time-only profiling)"
    desc = counters.describe() if hasattr(counters, "describe") else {}
    if desc.get("mode") == "hardware":
        return None
    return "counter columns (IPC, DRAM bytes, backend stalls) empty: " + str(
        desc.get("mode_reason") or "no hardware counters on this machine")


def dram_estimate(profiler):
    counters = getattr(profiler, "counters", None)
    core = getattr(getattr(counters, "detection", None), "core", None)
    dram = getattr(core, "dram", None)
    if dram is None:
        # x86: last-level cache misses x 64, the usual estimate (it misses prefetches). On ARM
        # the generic cache-misses event is an L1 refill: no estimate without the core's table.
        import platform
        names = getattr(counters, "names", []) if counters is not None else []
        x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
        return (("cache-misses",), 64) if x86 and "cache-misses" in names else (None, 64)
    return tuple(dram.events), dram.line_bytes


# ------------------------------------------------------------------------------------------
# The run


def profile_layers(model="smollm2-135m", threads=None, prompt_tokens=64, gen_tokens=32,
                   phase="both", events=None, profile=None, progress=None, ctx=None,
                   loaded_model=None, trace_path=None, hz=0):
    """Run and attribute; returns a report dict in the shared schema (slmprof.report).

    events: counter event names (None: the core's defaults; [] time only). profile: a machine
    profile (default: this machine's, measured now if missing). progress(text): status lines.
    loaded_model: an already loaded Model to use instead of loading `model`.
    trace_path: also record every region edge (and the sampler at `hz`) and write a trace there
    (.json: Chrome/Perfetto JSON; otherwise slmprof's compact .npz)."""
    from slmprof import report as rep
    try:
        from slmprof.measure.profiler import Profiler
    except ImportError as e:
        raise UnavailableError(f"the region profiler is not part of this build ({e})") from None

    say = progress or (lambda text: None)
    if phase not in ("prefill", "decode", "both"):
        raise ValueError(f"phase must be prefill, decode or both (got {phase!r})")
    if prompt_tokens < 1 or gen_tokens < (1 if phase != "prefill" else 0):
        raise ValueError("need at least one prompt token, and one generated token for decode")
    notes = []
    if profile is None:
        say("machine profile: looking for this machine's calibration")
        profile, cached = calibrate.get_profile(progress=lambda d, t, label, text: say(
            f"calibrate [{d}/{t}] {label}: {text}"))
        if not cached:
            notes.append("this machine was calibrated for this run (cached for the next)")
    if not profile.get("measured", True):
        notes.append(f"ceilings are from a reference profile, not measured here: {profile.get('source')}")

    if loaded_model is None:
        try:
            from slmprof.engine.model import Model
        except ImportError as e:
            raise UnavailableError(f"the engine is not part of this build ({e})") from None
        name, model_note = resolve_model(model)
        if model_note:
            notes.append(model_note)
        n_ctx = ctx or (prompt_tokens + gen_tokens + 8)
        say(f"loading {name}")
        m = Model.load(name, threads=threads, ctx=n_ctx)
    else:
        m, name = loaded_model, getattr(loaded_model, "name", "model")
    try:
        return _run(m, name, profile, prompt_tokens, gen_tokens, phase, events, notes, say, rep,
                    Profiler, trace_path, hz)
    finally:
        if loaded_model is None:
            m.close()


def _isa_name():
    try:
        from slmprof.engine import quant
        return quant.active_isa()
    except (ImportError, AttributeError):
        return None


def _run(m, name, profile, n_prompt, n_gen, phase, events, notes, say, rep, Profiler,
         trace_path=None, hz=0):
    shape = m.config
    threads = m.threads
    isa = _isa_name()
    ceilings = roofline.ceilings_from_profile(profile, threads, isa=isa if isa in (profile.get("dot") or {}) else None)
    notes += ceilings.notes
    wtypes = roofline.weight_types_from_tensors(m.description.tensors, shape.tied)
    kv_type = m.kv_type
    prompt = prompt_tokens_for(m, n_prompt)

    prof, why_no_counters = _profiler(Profiler, events)
    try:
        prof.name_regions((rid, f"{layer}/{op}") for rid, layer, op in m.region_names())
        m.set_profiler(prof.table)
        prof.attach_threads()
        # Warm-up: page the weights in and settle the thread pool before anything is timed.
        say("warming up")
        m.reset()
        m.prefill(prompt[: min(len(prompt), 16)])
        m.decode(prompt[0])
        m.reset()

        rec = None
        if trace_path:
            from slmprof.measure import trace
            # Behind the recorder the region table keeps its totals (and counters); a table
            # that cannot be chained is replaced and the totals come from the edges.
            chained = trace.chainable(prof.table)
            rec = trace.start(m, hz=hz, next_table=prof.table if chained else None)
            trace.mark(rec, "prefill")
        phases = {}
        say(f"prefill: {n_prompt} tokens")
        prof.reset()
        t0 = time.perf_counter()
        logits = m.prefill(prompt)
        prefill_s = time.perf_counter() - t0
        if phase in ("prefill", "both"):
            calls = [(p, n, 1 if p + n == n_prompt else 0) for p, n in forward_chunks(0, n_prompt)]
            phases["prefill"] = (prefill_s, n_prompt, _region_times(prof),
                                 phase_costs(shape, wtypes, kv_type, calls, ceilings))
        if phase in ("decode", "both"):
            say(f"decode: {n_gen} tokens")
            if rec is not None:
                trace.mark(rec, "decode")
            prof.reset()
            token = int(np.argmax(logits))
            decode_s, decoded = 0.0, []
            for _ in range(n_gen):
                decoded.append(token)
                t0 = time.perf_counter()
                logits = m.decode(token)
                decode_s += time.perf_counter() - t0
                token = int(np.argmax(logits))
            calls = [(n_prompt + i, 1, 1) for i in range(n_gen)]
            phases["decode"] = (decode_s, n_gen, _region_times(prof),
                                phase_costs(shape, wtypes, kv_type, calls, ceilings))
        if rec is not None:
            data = trace.stop(rec)
            data["meta"]["model"] = {"name": name, "synthetic": bool(getattr(m, "synthetic", False))}
            data["meta"]["settings"] = {"threads": m.threads, "prompt_tokens": n_prompt,
                                        "gen_tokens": n_gen, "hz": hz}
            if str(trace_path).endswith(".json"):
                trace.write_chrome(data, trace_path)
            else:
                trace.save(data, trace_path)
            notes.extend(data["meta"]["notes"])
            if not chained:
                for ph, (secs, n, _, costs) in list(phases.items()):
                    times = {rid: (ns * 1e-9, count, {}) for rid, (ns, count) in
                             trace.region_totals(data, ph).items()}
                    phases[ph] = (secs, n, times, costs)
                notes.append("region times come from the trace recorder (this region table "
                             "cannot be chained); no counter values")
            say(f"trace written to {trace_path}")
        dram_events, line_bytes = dram_estimate(prof)
        cnote = why_no_counters or counters_note(prof)
        if cnote:
            notes.append(cnote)
        m.set_profiler(None)
        unprofiled = None
        if "decode" in phases:
            # the same tokens at the same positions (the cache rewound) with no region hooks:
            # what the regions cost
            say(f"decode without regions: {n_gen} tokens")
            m.engine.set_n_past(n_prompt)
            unprofiled = 0.0
            for token in decoded:
                t0 = time.perf_counter()
                m.decode(token)
                unprofiled += time.perf_counter() - t0
    finally:
        prof.close()

    records, summary = [], {}
    for ph, (seconds, n_tokens, times, costs) in phases.items():
        rows, s = _phase_records(ph, seconds, n_tokens, times, costs, ceilings, shape,
                                 dram_events, line_bytes)
        records += rows
        summary[ph] = s
    if unprofiled and "decode" in summary:
        d = summary["decode"]
        d["unprofiled_ms_per_token"] = unprofiled / n_gen * 1e3
        d["profiling_overhead"] = d["ms_per_token"] / d["unprofiled_ms_per_token"] - 1.0
        if d["profiling_overhead"] > PROFILING_OVERHEAD_WARN:
            notes.append(
                f"per-operation regions slowed decode by {100 * d['profiling_overhead']:.0f}% "
                f"({d['ms_per_token']:.2f} vs {d['unprofiled_ms_per_token']:.2f} ms/token for the "
                "same tokens without them, run after them): each edge costs the main thread one clock read, so a "
                "larger figure mostly means a busy machine; the table's times include it")
    summary["bottleneck"] = bottleneck_sentence(summary, ceilings)
    summary["verdict_rule"] = roofline.VERDICT_RULE
    model_info = {"name": name, "synthetic": bool(getattr(m, "synthetic", False)),
                  "path": str(getattr(m.description, "path", "")),
                  "file_type": getattr(m.description, "file_type", None),
                  "n_layer": shape.n_layer, "dim": shape.dim, "weight_types": wtypes,
                  "kv_type": kv_type,
                  "weight_bytes_per_token": m.weight_bytes_per_token()}
    settings = {"threads": threads, "prompt_tokens": n_prompt, "gen_tokens": n_gen,
                "phase": phase, "isa": isa, "events": events,
                "operation_regions": OPERATION_REGIONS}
    ceil = {"threads": threads, "bandwidth_bytes_per_s": ceilings.bandwidth,
            "fma_ops_per_s": ceilings.fma, "dot_ops_per_s": dict(ceilings.dot), "isa": ceilings.isa,
            "matvec_ops_per_s": dict(ceilings.matvec), "gemm_ops_per_s": dict(ceilings.gemm),
            "sync_seconds": ceilings.sync_seconds, "measured": ceilings.measured,
            "profile_key": profile.get("key")}
    return rep.make_report("layers", records, model=model_info, settings=settings,
                           summary=summary, notes=notes, ceilings=ceil)


def _region_times(prof):
    """region id -> (wall seconds, count, counter readings)."""
    out = {}
    for r in prof.results():
        out[int(r["id"])] = (r["wall_ns"] * 1e-9, int(r["count"]), r.get("counters") or {})
    return out


def _phase_records(ph, seconds, n_tokens, times, costs, ceilings, shape, dram_events, line_bytes):
    per_tok = 1.0 / n_tokens
    slots = sorted({c["slot"] for c in costs.values()})
    layer_rows, op_rows = [], []
    for rid, c in sorted(costs.items(), key=lambda kv: (kv[1]["slot"], kv[0])):
        wall, count, counters = times.get(rid, (0.0, 0, {}))
        a = roofline.analyze(c["bytes"], c["ops"], wall, ceilings, t_mem=c["t_mem"],
                             t_compute=c["t_compute"])
        # max() per op summed, not max of sums: the roof of a layer whose ops differ in kind
        a["t_roof"] = c["t_roof"]
        a["explained"] = c["t_roof"] / wall if wall > 0 else 0.0
        cf = counter_figures(counters, dram_events, line_bytes)
        row = {
            "phase": ph, "layer": c["layer"], "op": "" if c["op"] == "layer" else c["op"],
            "slot": c["slot"], "region": rid, "calls": count,
            "ms_per_token": wall * per_tok * 1e3, "pct": 0.0,
            "bytes_per_token": c["bytes"] * per_tok, "weight_bytes_per_token": c["weight_bytes"] * per_tok,
            "kv_bytes_per_token": c["kv_bytes"] * per_tok,
            "gb_per_s": a["gb_per_s"], "bandwidth_pct": a["bandwidth_pct"],
            "ops_per_token": c["ops"] * per_tok, "gop_per_s": a["gop_per_s"],
            "intensity": a["intensity"], "roof_ms_per_token": c["t_roof"] * per_tok * 1e3,
            "explained": a["explained"], "verdict": a["verdict"] if wall > 0 else "not measured",
            "ipc": cf["ipc"],
            "dram_bytes_per_token": cf["dram_bytes"] * per_tok if cf["dram_bytes"] is not None else None,
            "backend_stall_pct": cf["backend_stall_pct"],
        }
        (layer_rows if c["op"] == "layer" else op_rows).append(row)
    for row in layer_rows + op_rows:
        row["pct"] = 100.0 * row["ms_per_token"] / (seconds * per_tok * 1e3) if seconds > 0 else 0.0
    # total: the measured time of the calls (Python-timed), all regions' bytes and operations
    tb = sum(c["bytes"] for rid, c in costs.items() if c["op"] == "layer")
    tops = sum(c["ops"] for rid, c in costs.items() if c["op"] == "layer")
    troof = sum(c["t_roof"] for c in costs.values() if c["op"] == "layer")
    tmem = sum(c["t_mem"] for c in costs.values() if c["op"] == "layer")
    tcomp = sum(c["t_compute"] for c in costs.values() if c["op"] == "layer")
    a = roofline.analyze(tb, tops, seconds, ceilings, t_mem=tmem, t_compute=tcomp)
    covered = sum(r["ms_per_token"] for r in layer_rows) / (seconds * per_tok * 1e3) if seconds else 0
    total = {"phase": ph, "layer": "total", "op": "", "slot": None, "region": None, "calls": n_tokens if ph == "decode" else 1,
             "ms_per_token": seconds * per_tok * 1e3, "pct": 100.0,
             "bytes_per_token": tb * per_tok,
             "weight_bytes_per_token": sum(c["weight_bytes"] for c in costs.values() if c["op"] == "layer") * per_tok,
             "kv_bytes_per_token": sum(c["kv_bytes"] for c in costs.values() if c["op"] == "layer") * per_tok,
             "gb_per_s": a["gb_per_s"], "bandwidth_pct": a["bandwidth_pct"],
             "ops_per_token": tops * per_tok, "gop_per_s": a["gop_per_s"], "intensity": a["intensity"],
             "roof_ms_per_token": troof * per_tok * 1e3, "explained": troof / seconds if seconds else 0,
             "verdict": roofline.verdict(tmem, tcomp, seconds), "ipc": None,
             "dram_bytes_per_token": None, "backend_stall_pct": None}
    # order: each layer row followed by its operations
    ordered = []
    for slot in slots:
        ordered += [r for r in layer_rows if r["slot"] == slot]
        ordered += [r for r in op_rows if r["slot"] == slot]
    ordered.append(total)

    by_op = {}
    for r in op_rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["ms_per_token"]
    top_layers = sorted(layer_rows, key=lambda r: -r["ms_per_token"])[:3]
    verdict_time = {}
    for r in op_rows:
        verdict_time[r["verdict"]] = verdict_time.get(r["verdict"], 0.0) + r["ms_per_token"]
    ms = seconds * per_tok * 1e3
    summary = {
        "tokens": n_tokens, "seconds": seconds,
        "ms_per_token": ms, "tokens_per_s": n_tokens / seconds if seconds else 0.0,
        "ideal_tokens_per_s": n_tokens / troof if troof else None,
        "roofline_efficiency": troof / seconds if seconds else None,
        "regions_sum_ms_per_token": sum(r["ms_per_token"] for r in layer_rows),
        "regions_coverage": covered,
        "top_layers": [(r["layer"], r["pct"]) for r in top_layers],
        "top_ops": sorted(((op, 100.0 * t / ms) for op, t in by_op.items()), key=lambda x: -x[1])[:4],
        "time_share_by_verdict": {v: 100.0 * t / ms for v, t in verdict_time.items()},
        "bytes_per_token": tb * per_tok, "gb_per_s": a["gb_per_s"],
        "bandwidth_pct": a["bandwidth_pct"], "verdict": total["verdict"],
    }
    return ordered, summary


def bottleneck_sentence(summary, ceilings):
    """The main bottleneck in one sentence, from the decode phase when there is one: the
    phase's own verdict (its bytes and operations against the ceilings), then how much of its
    time sits in operations that neither ceiling explains."""
    ph = "decode" if "decode" in summary else "prefill"
    s = summary.get(ph)
    if not s:
        return ""
    shares = s["time_share_by_verdict"]
    overhead = shares.get("overhead-bound", 0.0)
    top_op = s["top_ops"][0] if s["top_ops"] else ("?", 0)
    bw = ceilings.bandwidth / 1e9
    reach = (f"{s['tokens_per_s']:.1f} tokens/s is {100 * (s['roofline_efficiency'] or 0):.0f}% of "
             f"the roofline's {s['ideal_tokens_per_s'] or 0:.1f}")
    tail = (f"; {overhead:.0f}% of the time is in operations neither ceiling explains (sync, "
            "dispatch, small matrices)" if overhead >= 20 else "")
    if s["verdict"] == "memory-bound":
        return (f"{ph.capitalize()} is limited by memory bandwidth: it moves "
                f"{s['bytes_per_token'] / 1e6:.1f} MB per token at {s['gb_per_s']:.1f} GB/s "
                f"({s['bandwidth_pct']:.0f}% of the calibrated {bw:.1f} GB/s) and {reach}; the "
                f"largest operation is {top_op[0]} ({top_op[1]:.0f}%){tail}.")
    if s["verdict"] == "compute-bound":
        return (f"{ph.capitalize()} is limited by arithmetic: {reach}, and faster kernels, not "
                f"more bandwidth, would speed it up; the largest operation is {top_op[0]} "
                f"({top_op[1]:.0f}%){tail}.")
    return (f"{ph.capitalize()} is overhead-bound: neither bandwidth nor arithmetic explains most "
            f"of its time (sync, dispatch, small matrices); {reach}; the largest operation is "
            f"{top_op[0]} ({top_op[1]:.0f}%).")


# ------------------------------------------------------------------------------------------
# What profiling costs


def _decode_one(m, pos, token):
    """Decode `token` at position `pos` (the cache is rewound there); seconds in the call."""
    m.engine.set_n_past(pos)
    t0 = time.perf_counter()
    m.decode(token)
    return time.perf_counter() - t0


def _layer_seconds(prof, m):
    """Wall time in the layer regions since the last reset."""
    total = 0
    for rid, _, op in m.region_names():
        st = prof.table.get(rid) if op == "layer" else None
        total += st["wall_ns"] if st else 0
    return total * 1e-9


PROFILING_CONFIGS = ("off", "layers", "ops")


def profiling_cost(m, prompt_tokens=64, gen_tokens=32, reps=15, events=None):
    """Decode time of a loaded Model with profiling off, layer regions only and per-operation
    regions (what `layers` attaches; events as for profile_layers).

    The prompt is prefilled once and its greedy continuation decoded once; each repetition
    then decodes exactly those tokens from the same positions (the cache is rewound), each
    token once under every configuration back to back, the order rotating, so a change in the
    machine's load touches all of them alike. Returns {"runs": {config: [seconds per
    repetition]}, "ratios": {config: [run / off run]}, "median_ratio": {config: x},
    "median_token_ratio": {config: median over single tokens of token / the same token off
    (robust to a preemption in one call)},
    "coverage": {"layers"|"ops": layer regions' time / measured time}, "counters_note",
    "region_errors", "tokens"}."""
    from slmprof.measure.profiler import Profiler
    if m.n_past:
        m.reset()
    prompt = prompt_tokens_for(m, prompt_tokens)
    logits = m.prefill(prompt)
    tokens, t = [], int(np.argmax(logits))
    for _ in range(gen_tokens):
        tokens.append(t)
        t = int(np.argmax(m.decode(t)))
    start = len(prompt)
    # one table per profiled configuration, so each one's layer regions can be set against
    # that configuration's own measured time
    made = {c: _profiler(Profiler, events) for c in ("layers", "ops")}
    profs = {c: p for c, (p, _) in made.items()}
    attach = {"off": lambda: m.set_profiler(None),
              "layers": lambda: m.set_profiler(profs["layers"].table, ops=False),
              "ops": lambda: m.set_profiler(profs["ops"].table)}
    runs = {c: [] for c in PROFILING_CONFIGS}
    per_token = {c: [] for c in PROFILING_CONFIGS}  # [rep * n + i] seconds
    try:
        for c in PROFILING_CONFIGS:  # warm every path once
            attach[c]()
            if c in profs:
                profs[c].attach_threads()
            for i in range(min(4, len(tokens))):
                _decode_one(m, start + i, tokens[i])
        for p in profs.values():
            p.reset()
        k = 0
        for _ in range(reps):
            spent = dict.fromkeys(PROFILING_CONFIGS, 0.0)
            for i, token in enumerate(tokens):
                order = PROFILING_CONFIGS[k % 3:] + PROFILING_CONFIGS[:k % 3]
                k += 1
                for c in order:
                    attach[c]()
                    s = _decode_one(m, start + i, token)
                    spent[c] += s
                    per_token[c].append(s)
            for c in PROFILING_CONFIGS:
                runs[c].append(spent[c])
        m.set_profiler(None)
        coverage = {c: _layer_seconds(profs[c], m) / sum(runs[c]) for c in profs}
        errors = sum(p.errors for p in profs.values())
    finally:
        m.set_profiler(None)
        for p in profs.values():
            p.close()
    ratios = {c: [a / b for a, b in zip(runs[c], runs["off"])] for c in PROFILING_CONFIGS}
    token_ratio = {c: float(np.median(np.array(per_token[c]) / np.array(per_token["off"])))
                   for c in PROFILING_CONFIGS}
    return {"runs": runs, "ratios": ratios,
            "median_ratio": {c: float(np.median(r)) for c, r in ratios.items()},
            "median_token_ratio": token_ratio,
            "coverage": coverage, "counters_note": made["ops"][1], "region_errors": errors,
            "tokens": len(tokens)}
