"""Traces: every region edge of a run (layer and operation slices on the thread that emitted
them) plus the sampler's /proc and sysfs values, kept in a compact file; report/chrome.py
exports it as a Chrome/Perfetto JSON trace (https://ui.perfetto.dev opens it).

Compact file (.npz, numpy): `edges` (t_ns, region, tid, is_end), `samples_<field>` columns with
`samples_t_ns`, and `meta` (JSON: region names, phases, model, settings, clock). Times are
CLOCK_MONOTONIC ns, the clock of both the recorder and the sampler.

    rec = start(model, hz=1000)        # hooks on, sampler running
    ... model.prefill(...); mark(rec, "decode"); model.decode(...) ...
    data = stop(rec)                   # hooks off, samples drained
    save(data, "run.slmtrace.npz"); report.chrome.write_recording(data, "run.json")
"""
import io
import json
import os
from pathlib import Path

import numpy as np

from slmprof import _core
from slmprof.engine import workload
from slmprof.errors import ModelFileError, UnavailableError, UnsupportedError
from slmprof.files import atomic_write
from slmprof.measure.sampler import Sampler
from slmprof.measure.machine import machine_info
from slmprof.measure.schema import SCHEMA, ReportError, schema_of

KIND = "recording"      # the schema's kind of a recording's meta
# what recordings said before they carried the schema: their "format", read up to FORMAT_VERSION
FORMAT = "slmprof.trace"
LEGACY_FORMATS = (FORMAT, "slmprof.measure.trace")
FORMAT_VERSION = 1
# Python-level phase markers get region ids from here up (engine ids are far below).
PHASE_REGION_BASE = 1 << 20
RATE_WINDOW_NS = 10_000_000  # rates of cumulative counters are taken over 10 ms windows
DEFAULT_CAPACITY = 1 << 22  # edges (24 bytes each): ~100 MB worst case, allocated lazily by the OS

# Sampled fields shown as counter tracks: field -> (track name, scale, derive)
# derive: "level" plots the value, "rate" plots its per-second rate between samples.
COUNTER_TRACKS = {
    "rss_bytes": ("RSS (MiB)", 2**-20, "level"),
    "proc_cpu_ns": ("process CPU (cores busy)", 1e-9, "rate"),
    "sched_wait_ns": ("run-queue wait (s per s)", 1e-9, "rate"),
    "majflt": ("major faults/s", 1.0, "rate"),
    "minflt": ("minor faults/s", 1.0, "rate"),
    "invol_ctxsw": ("involuntary switches/s", 1.0, "rate"),
    "io_read_bytes": ("disk read (MB/s)", 1e-6, "rate"),
    "mem_available_bytes": ("MemAvailable (MiB)", 2**-20, "level"),
    "cpufreq_khz": ("CPU frequency (MHz)", 1e-3, "level"),
    "thermal_mc": ("temperature (C)", 1e-3, "level"),
    "throttled": ("throttled flags", 1.0, "level"),
}


class Recording:
    """A run being recorded: the recorder hooks on the model, the sampler, the phase marks."""

    def __init__(self, model, recorder, sampler, names, note):
        self.model = model
        self.recorder = recorder
        self.sampler = sampler
        self.names = names          # region id -> (layer, op)
        self.phase_names = {}       # region id -> phase name
        self.open_phase = None
        self.notes = [note] if note else []
        self.meta = {}


def _region_names(model):
    return {int(rid): (layer, op) for rid, layer, op in model.region_names()}


def start(model, hz=0, next_table=None, capacity=DEFAULT_CAPACITY):
    """Put a recorder on the model's region hooks (chained to `next_table`, a region table, so
    its totals still accumulate) and start the sampler at `hz` (0: none)."""
    recorder = _core.TraceRecorder(capacity, next_table)
    model.set_profiler(recorder)
    sampler, note = (None, None)
    if hz:
        sampler, note = _start_sampler(hz)
    return Recording(model, recorder, sampler, _region_names(model), note)


def mark(rec, phase):
    """Begin a named phase (ends the previous one): a slice on its own track."""
    if rec.open_phase is not None:
        rec.recorder.end(rec.open_phase)
    rid = PHASE_REGION_BASE + len(rec.phase_names)
    rec.phase_names[rid] = phase
    rec.recorder.begin(rid)
    rec.open_phase = rid


def stop(rec, next_table=None):
    """Detach the recorder (re-attaching `next_table` if given), stop the sampler, and return
    the trace as a dict (see save())."""
    if rec.open_phase is not None:
        rec.recorder.end(rec.open_phase)
        rec.open_phase = None
    rec.model.set_profiler(next_table)
    samples = {}
    if rec.sampler is not None:
        samples, note = _stop_sampler(rec.sampler)
        if note:
            rec.notes.append(note)
    if rec.recorder.dropped:
        rec.notes.append(f"{rec.recorder.dropped} region edges did not fit the recorder "
                         f"({rec.recorder.count} kept); record fewer tokens")
    names = {str(k): list(v) for k, v in rec.names.items()}
    meta = {"schema": SCHEMA, "kind": KIND, "clock": "CLOCK_MONOTONIC ns",
            "pid": os.getpid(), "machine": machine_info(), "region_names": names,
            "phases": {str(k): v for k, v in rec.phase_names.items()}, "notes": rec.notes}
    meta.update(rec.meta)
    if rec.sampler is not None and hasattr(rec.sampler, "sources"):
        # each sampled field has values only at its source's rate (NaN between reads)
        meta["sampler_rates_hz"] = {s.name: s.rate_hz for s in rec.sampler.sources if s.available}
    return {"edges": rec.recorder.edges(), "samples": samples, "meta": meta}


# ------------------------------------------------------------------------------------------
# Sampler (slmprof.measure.sampler, from the measurement core)


def _start_sampler(hz):
    s = Sampler(hz=hz)
    s.start()
    return s, None


def _stop_sampler(sampler):
    """Stop and collect: the counter-track fields as float64 with NaN where a source was not
    read that tick (the sampler's own validity bits), plus t_ns."""
    sampler.stop()
    data = sampler.samples()
    cols = sample_columns(data)
    if hasattr(sampler, "series") and isinstance(data, np.ndarray) and data.dtype.names:
        cols = {"t_ns": np.asarray(data["t_ns"])}
        for field in COUNTER_TRACKS:
            if field not in data.dtype.names:
                continue
            slot = None
            if data.dtype[field].shape:
                src = sampler.source_for(field)
                if src is None:
                    continue
                slot = src.slot
            cols[field] = sampler.series(field, slot=slot, data=data)
    close = getattr(sampler, "close", None)
    if callable(close):
        close()
    return cols, None


def sample_columns(data):
    """Samples as {field: 1-D or 2-D numpy array} with 't_ns', from a structured array, a dict
    of arrays, or a list of dicts."""
    if data is None:
        return {}
    if isinstance(data, np.ndarray) and data.dtype.names:
        return {n: np.asarray(data[n]) for n in data.dtype.names}
    if isinstance(data, dict):
        return {k: np.asarray(v) for k, v in data.items()
                if isinstance(v, (list, tuple, np.ndarray))}
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):
        keys = data[0].keys()
        return {k: np.asarray([d[k] for d in data]) for k in keys}
    return {}


# ------------------------------------------------------------------------------------------
# Compact file


def save(trace, path):
    path = Path(path)
    arrays = {"edges": trace["edges"], "meta": np.frombuffer(json.dumps(trace["meta"]).encode(), np.uint8)}
    for k, v in trace["samples"].items():
        arrays[f"samples_{k}"] = np.asarray(v)
    # built in memory: zipfile seeks back to write its directory, which a device, a FIFO or a
    # pipe given as the path cannot do
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_write(path, binary=True) as f:
        f.write(buffer.getbuffer())
    return path


def load(path):
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            edges = z["edges"]
            samples = {k[len("samples_"):]: z[k] for k in z.files if k.startswith("samples_")}
    except FileNotFoundError:
        raise ModelFileError(f"trace {path}: no such file") from None
    except (OSError, ValueError, KeyError) as e:
        raise ModelFileError(f"trace {path}: not an slmprof trace ({e})") from None
    if isinstance(meta, dict) and meta.get("format") in LEGACY_FORMATS:
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise UnsupportedError(f"trace {path}: format version {meta['format_version']} is "
                                   f"newer than this slmprof reads ({FORMAT_VERSION})")
    else:
        try:
            kind, _ = schema_of(meta, f"trace {path}")
        except ReportError as e:
            if "newer" in str(e):
                raise UnsupportedError(str(e)) from None
            kind = None
        if kind != KIND:
            raise ModelFileError(f"trace {path}: not an slmprof recording")
    return {"edges": edges, "samples": samples, "meta": meta}


# ------------------------------------------------------------------------------------------
# Analysis and export


def slices(trace):
    """Matched begin/end pairs: list of (t0_ns, t1_ns, region, tid), in start order.
    Unmatched edges (a run cut short) are left out."""
    open_edges = {}
    out = []
    for t, region, tid, is_end in zip(trace["edges"]["t_ns"], trace["edges"]["region"],
                                      trace["edges"]["tid"], trace["edges"]["is_end"]):
        key = (int(region), int(tid))
        if not is_end:
            open_edges.setdefault(key, []).append(int(t))
        elif open_edges.get(key):
            out.append((open_edges[key].pop(), int(t), key[0], key[1]))
    out.sort()
    return out


CRITICAL_TID = _core.TRACE_CRITICAL_TID


def region_totals(trace, phase=None):
    """region id -> (total ns, count), from the slices (only those inside `phase`, a phase
    name, when given). Where the engine stamped per-thread spans, a region's time is its part
    of the critical path (the CRITICAL_TID track), not the sum over threads."""
    all_slices = slices(trace)
    critical = {r for _, _, r, tid in all_slices if tid == CRITICAL_TID}
    all_slices = [s for s in all_slices if s[2] not in critical or s[3] == CRITICAL_TID]
    lo, hi = 0, float("inf")
    if phase is not None:
        ids = [int(k) for k, v in trace["meta"].get("phases", {}).items() if v == phase]
        spans = [(a, b) for a, b, r, _ in all_slices if r in ids]
        if not spans:
            return {}
        lo, hi = spans[0]
    totals = {}
    for t0, t1, region, _ in all_slices:
        if t0 < lo or t1 > hi or str(region) in trace["meta"].get("phases", {}):
            continue
        ns, n = totals.get(region, (0, 0))
        totals[region] = (ns + t1 - t0, n + 1)
    return totals


def counter_series(samples):
    """[(track name, t_ns array, values array)] for the sampled fields that vary."""
    if "t_ns" not in samples or len(samples["t_ns"]) < 2:
        return []
    t = samples["t_ns"].astype(np.int64)
    valid = samples.get("valid")
    out = []
    for field, (title, scale, derive) in COUNTER_TRACKS.items():
        if field not in samples:
            continue
        t = samples["t_ns"].astype(np.int64)
        v = np.asarray(samples[field], dtype=np.float64)
        if v.ndim == 2:   # per cpu / zone: first column that reads non-zero
            cols = [c for c in range(v.shape[1]) if np.any(v[:, c])]
            if not cols:
                continue
            v = v[:, cols[0]]
        if derive == "rate":
            # rates over windows of RATE_WINDOW_NS: counters that move in jumps (CPU time,
            # faults) give meaningless spikes over a single sub-millisecond tick
            ok = np.isfinite(v)
            tt, vv = t[ok], v[ok]
            if len(tt) < 2:
                continue
            edges = np.arange(tt[0], tt[-1] + 1, RATE_WINDOW_NS)
            idx = np.unique(np.searchsorted(tt, edges))
            idx = idx[idx < len(tt)]
            t, v = tt[idx], vv[idx]
            if len(t) < 2:
                continue
            dt = np.diff(t) / 1e9
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = np.where(dt > 0, np.diff(v) / dt, np.nan)
            series_t, series_v = t[1:], rate * scale
        else:
            series_t, series_v = t, v * scale
        keep = np.isfinite(series_v)   # NaN: the source was not read at that tick
        series_t, series_v = series_t[keep], series_v[keep]
        if not np.any(series_v) or valid is not None and not np.any(valid):
            continue
        out.append((title, series_t, series_v))
    return out


# ------------------------------------------------------------------------------------------
# A whole recorded run (the `trace` command)


def record_run(model_name, threads=None, prompt_tokens=32, gen_tokens=16, hz=1000, progress=None):
    """Load a model, warm it up, and record a prefill and a greedy decode with every region edge
    and the sampler at `hz`. Returns the trace dict (see save())."""
    say = progress or (lambda text: None)
    m, notes = workload.load(model_name, threads=threads, prompt_tokens=prompt_tokens,
                             gen_tokens=gen_tokens, say=say)
    try:
        prompt = workload.prompt_tokens(m, prompt_tokens)
        say("warming up")
        workload.warm_up(m, prompt)
        rec = start(m, hz=hz)
        rec.notes.extend(notes)
        say(f"recording: prefill {prompt_tokens} tokens, decode {gen_tokens}")
        mark(rec, "prefill")
        pre = workload.prefill(m, prompt)
        if gen_tokens:
            mark(rec, "decode")
            workload.decode_greedy(m, pre.logits, gen_tokens)
        data = stop(rec)
        data["meta"]["model"] = {"name": m.name, "synthetic": bool(m.synthetic)}
        data["meta"]["settings"] = {"threads": m.threads, "prompt_tokens": prompt_tokens,
                                    "gen_tokens": gen_tokens, "hz": hz}
        return data
    finally:
        m.close()


def summary_lines(data, top=6):
    """What a recorded trace holds, for people."""
    sl = slices(data)
    meta = data["meta"]
    lines = [f"{len(data['edges'])} region edges on {len({s[3] for s in sl})} thread(s), "
             f"{len(data['samples'].get('t_ns', []))} samples"]
    for rid, phase in meta.get("phases", {}).items():
        for t0, t1, region, _ in sl:
            if str(region) == rid:
                lines.append(f"  {phase}: {(t1 - t0) / 1e6:.1f} ms")
    by_op = {}
    names = meta.get("region_names", {})
    critical = {r for _, _, r, tid in sl if tid == CRITICAL_TID}
    for t0, t1, region, tid in sl:
        if region in critical and tid != CRITICAL_TID:
            continue   # each thread's own span: the critical track holds the region's time
        layer, op = names.get(str(region), (None, None))
        if op and op != "layer":
            by_op[op] = by_op.get(op, 0) + (t1 - t0)
    total = sum(by_op.values())
    if total:
        lines.append("  operations: " + ", ".join(
            f"{op} {100 * ns / total:.0f}%" for op, ns in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]))
    for n in meta.get("notes", []):
        lines.append(f"note: {n}")
    return lines
