"""Contention: how busy the machine was, measured beside a process that keeps a core busy, and
what `layers` makes of it."""
import os
import threading

import pytest

from slmprof.analysis import layers
from slmprof.measure import calibrate, contention, procfs

FAKE = os.path.join(os.path.dirname(__file__), "fake_roots")


def test_proc_stat_and_thread_schedstat_parse():
    roots = procfs.Roots(proc=os.path.join(FAKE, "pi4", "proc"), sys=os.path.join(FAKE, "pi4", "sys"))
    t = procfs.cpu_times(roots)
    hz = os.sysconf("SC_CLK_TCK")
    assert t["user"] == pytest.approx(1000 / hz) and t["idle"] == pytest.approx(50000 / hz)
    assert procfs.busy_seconds(t) == pytest.approx((1000 + 20 + 300 + 10) / hz)
    assert procfs.thread_schedstat(1234, roots=roots) == (5000000, 250000, 40)
    assert procfs.thread_schedstat(99, roots=roots) is None
    assert procfs.task_ids(roots=roots) == [1234]
    # this machine's own files
    assert procfs.thread_schedstat(threading.get_native_id()) is not None
    assert procfs.busy_seconds(procfs.cpu_times()) > 0


def test_a_thread_beside_a_busy_process_waits_for_its_core(busy_core):
    """A thread spinning on the CPU another process keeps busy is runnable but not running about
    half the time; the meter says so, and that other processes kept a core busy."""
    busy_core(0)
    tid, stop = [], threading.Event()

    def spin():
        os.sched_setaffinity(0, {0})
        tid.append(threading.get_native_id())
        while not stop.is_set():
            pass
    t = threading.Thread(target=spin)
    t.start()
    while not tid:
        pass
    meter = contention.LoadMeter(tid)
    stop.wait(0.5)
    load = meter.stop()
    stop.set()
    t.join()
    assert load.threads == 1 and 0.2 <= load.contention <= 1.0, load
    assert load.busy and load.others_cores >= 0.3, load
    assert "waited for a core" in load.describe()
    assert contention.Load.from_dict(load.to_dict()) == load


@pytest.fixture(scope="module")
def profile():
    return calibrate.measure(threads_max=2, seconds_per_step=0.01, array_bytes=16 << 20)


def test_layers_beside_a_busy_process_reports_contention(tiny_model, profile, busy_core):
    """`layers` at 2 threads with a process busy on CPU 1 (`taskset -c 1`): the decode phase's
    threads waited for a core, the summary and the bottleneck say the machine was busy, and no
    row faster than a ceiling is left without a flag saying which and why."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    path = tiny_model(type="q4_0", n_layer=4, dim=512, ffn=1536, n_head=8, n_kv_head=4, ctx=512)
    busy_core(1)
    result = layers.profile_layers(str(path), threads=2, prompt_tokens=64, gen_tokens=200,
                                   profile=profile, events=[])
    rep = result.to_report()
    decode = rep["summary"]["decode"]
    assert decode["contention"] >= 0.05, decode["load"]
    assert decode["load"]["busy"]
    assert "machine was busy" in rep["summary"]["bottleneck"]
    total = [r for r in result.rows if r.phase == "decode" and r.layer == "total"][0]
    assert any(f.startswith("the machine was busy") for f in total.flags)
    for r in result.rows:
        if r.layer == "total" or not r.ms_per_token:
            continue
        if r.bandwidth_pct > 100 * (1 + 0.10):
            assert any(f.startswith("above the memory ceiling") for f in r.flags), r
        if r.compute_pct > 100 * (1 + 0.10):
            assert any(f.startswith("above the compute ceiling") for f in r.flags), r
    assert any(any(f.startswith("contended") for f in r.flags) for r in result.rows)
    # layers add up to the pass; operations to their layer
    for ph in ("prefill", "decode"):
        rows = [r for r in result.rows if r.phase == ph]
        for layer in {r.layer for r in rows if r.op}:
            ops = sum(r.ms_per_token for r in rows if r.layer == layer and r.op)
            whole = [r.ms_per_token for r in rows if r.layer == layer and not r.op][0]
            assert ops == pytest.approx(whole, rel=1e-6, abs=1e-9), (ph, layer)
