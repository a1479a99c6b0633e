"""Chrome trace-event JSON, which https://ui.perfetto.dev and chrome://tracing open: the one
writer of traces (a recorded run from measure/trace, and `stat`'s sampled counters).

A trace document is the JSON object format of the Trace Event Format, with the schema's two
fields beside it (the format keeps any other key as metadata):

    {"schema": "slmprof/1", "kind": "trace", "traceEvents": [...], "displayTimeUnit": "ms",
     "otherData": {...}}

Times in events are microseconds from the trace's origin.
"""
from __future__ import annotations

from typing import Iterable, Optional

from slmprof.measure import trace as recording
from slmprof.measure.schema import stamp, write_json

KIND = "trace"


def process_name(pid: int, name: str) -> dict:
    return {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}


def thread_name(pid: int, tid: int, name: str) -> dict:
    return {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def slice_event(name: str, ts_us: float, dur_us: float, pid: int, tid: int,
                cat: Optional[str] = None, args: Optional[dict] = None) -> dict:
    """A complete ('X') slice."""
    ev = {"name": name, "ph": "X", "ts": ts_us, "dur": dur_us, "pid": pid, "tid": tid}
    if cat:
        ev["cat"] = cat
    if args:
        ev["args"] = args
    return ev


def counter_events(name: str, t_us: Iterable[float], values: Iterable[float], pid: int,
                   digits: int = 6) -> list:
    """One counter track ('C' events), a point per (time, value)."""
    return [{"name": name, "ph": "C", "ts": float(t), "pid": pid,
             "args": {"value": round(float(v), digits)}} for t, v in zip(t_us, values)]


def document(events: list, other: Optional[dict] = None) -> dict:
    return stamp(KIND, {"traceEvents": events, "displayTimeUnit": "ms",
                        "otherData": dict(other or {})})


def write(doc: dict, path) -> None:
    """Compact JSON (traces are large), written whole; '-' is standard output."""
    write_json(doc, path, indent=None)


# ------------------------------------------------------------------------------------------
# A recorded run (measure/trace): layer and operation slices per thread, sampled counters

def _slice_name(meta: dict, region: int) -> tuple:
    if str(region) in meta.get("phases", {}):
        return meta["phases"][str(region)], "phase"
    layer, op = meta.get("region_names", {}).get(str(region), (f"region {region}", "layer"))
    return (layer, "layer") if op == "layer" else (op, "op")


def from_recording(data: dict) -> dict:
    """The trace document of a recording: one track per thread with phase, layer and op
    slices, and a counter track per sampled value that varies."""
    meta = data["meta"]
    pid = int(meta.get("pid", 1))
    sl = recording.slices(data)
    samples = data["samples"]
    t_candidates = [s[0] for s in sl[:1]]
    if "t_ns" in samples and len(samples["t_ns"]):
        t_candidates.append(int(samples["t_ns"][0]))
    origin = min(t_candidates) if t_candidates else 0
    phase_tid = 0
    events = [process_name(pid, f"slmprof {(meta.get('model') or {}).get('name', '')}".strip())]
    tids = sorted({s[3] for s in sl})
    engine = [t for t in tids if t != recording.CRITICAL_TID]
    for tid in tids:
        events.append(thread_name(pid, tid, "critical path (each operation's part of the pass)"
                                  if tid == recording.CRITICAL_TID else
                                  "engine (main thread)" if tid == engine[0] else f"thread {tid}"))
    events.append(thread_name(pid, phase_tid, "phases"))
    for t0, t1, region, tid in sl:
        name, cat = _slice_name(meta, region)
        layer = meta.get("region_names", {}).get(str(region), [None])[0]
        events.append(slice_event(name, (t0 - origin) / 1e3, (t1 - t0) / 1e3, pid,
                                  phase_tid if cat == "phase" else tid, cat,
                                  {"layer": layer} if cat == "op" and layer else None))
    for title, ts, vs in recording.counter_series(samples):
        events += counter_events(title, [(int(t) - origin) / 1e3 for t in ts], vs, pid)
    return document(events, {"generator": "slmprof", "notes": meta.get("notes", []),
                             "model": meta.get("model"), "settings": meta.get("settings")})


def write_recording(data: dict, path):
    """Write a recording as a trace document; returns the path."""
    write(from_recording(data), path)
    return path
