"""The region-edge recorder and the trace file/export, without the engine: edges logged from
Python through the same C hooks the engine calls."""
import json
import threading

import numpy as np
import pytest

from slmprof import _core

from slmprof.measure import trace
from slmprof.report import chrome


def test_recorder_logs_edges_in_order_with_thread_ids():
    rec = _core.TraceRecorder(64)
    t0 = _core.trace_now_ns()
    rec.begin(5)
    rec.begin(6)
    rec.end(6)
    rec.end(5)
    e = rec.edges()
    assert list(e["region"]) == [5, 6, 6, 5] and list(e["is_end"]) == [0, 0, 1, 1]
    assert np.all(np.diff(e["t_ns"].astype(np.int64)) >= 0) and e["t_ns"][0] >= t0
    assert len(set(e["tid"])) == 1 and e["tid"][0] > 0
    th = threading.Thread(target=lambda: (rec.begin(7), rec.end(7)))
    th.start()
    th.join()
    assert len(set(rec.edges()["tid"])) == 2
    rec.clear()
    assert rec.count == 0


def test_recorder_counts_what_does_not_fit():
    rec = _core.TraceRecorder(3)
    for i in range(4):
        rec.begin(i)
        rec.end(i)
    assert rec.count == 3 and rec.dropped == 5
    with pytest.raises(ValueError):
        _core.TraceRecorder(0)


def test_recorder_chains_to_a_region_table():
    profiler = pytest.importorskip("slmprof.measure.profiler")
    prof = profiler.Profiler(events=[])
    rec = _core.TraceRecorder(16, prof.table)
    assert rec.next_hooks is prof.table       # kept alive while the recorder lives
    rec.begin(3)
    rec.end(3)
    got = prof.table.get(3)
    assert got is not None and got["count"] == 1
    assert rec.count == 2


def make_trace():
    rec = _core.TraceRecorder(64)
    for rid in (trace.PHASE_REGION_BASE, 11, 13):
        rec.begin(rid)
    rec.end(13)
    rec.end(11)
    rec.end(trace.PHASE_REGION_BASE)
    t = rec.edges()["t_ns"].astype(np.uint64)
    samples = {"t_ns": np.array([t[0], t[0] + 10_000_000, t[0] + 20_000_000], dtype=np.uint64),
               "rss_bytes": np.array([10e6, 12e6, 13e6]), "minflt": np.array([0, 10, 30])}
    meta = {"format": trace.FORMAT, "format_version": trace.FORMAT_VERSION, "pid": 1,
            "region_names": {"11": ["blk.0", "layer"], "13": ["blk.0", "qkv"]},
            "phases": {str(trace.PHASE_REGION_BASE): "decode"}, "notes": []}
    return {"edges": rec.edges(), "samples": samples, "meta": meta}


def test_save_load_and_chrome_json(tmp_path):
    data = make_trace()
    path = trace.save(data, tmp_path / "r.npz")
    back = trace.load(path)
    assert back["meta"]["phases"] == data["meta"]["phases"]
    assert [s[2] for s in trace.slices(back)] == [trace.PHASE_REGION_BASE, 11, 13]
    doc = json.loads(chrome.write_recording(back, tmp_path / "r.json").read_text())
    names = {(e["ph"], e["name"]) for e in doc["traceEvents"]}
    assert ("X", "decode") in names and ("X", "blk.0") in names and ("X", "qkv") in names
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C"]
    assert {e["name"] for e in counters} == {"RSS (MiB)", "minor faults/s"}
    rates = [e["args"]["value"] for e in counters if e["name"] == "minor faults/s"]
    assert rates == [pytest.approx(1000.0), pytest.approx(2000.0)]
    assert "decode" in " ".join(trace.summary_lines(back))


def test_newer_trace_format_is_refused(tmp_path):
    from slmprof.errors import UnsupportedError
    data = make_trace()
    data["meta"]["format_version"] = trace.FORMAT_VERSION + 1
    path = trace.save(data, tmp_path / "new.npz")
    with pytest.raises(UnsupportedError, match="newer"):
        trace.load(path)
