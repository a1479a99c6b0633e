"""Sampler: parsers on the fake Raspberry Pi trees, each source read exactly on its planned
ticks, getrusage of this process without the sampler thread, the real thread on this process
and on another one, sources that vanish mid-run, bad rates. Rates and overhead are measured by
scripts/bench_sampler.py, not asserted here."""
import mmap
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from slmprof import _core

from slmprof.measure import procfs
from slmprof.measure import sampler as sm
from slmprof.measure.sampler import Sampler, SAMPLE_DTYPE

FAKE_ROOTS = os.path.join(os.path.dirname(__file__), "fake_roots")


def fake(board, base=FAKE_ROOTS):
    return procfs.Roots(proc=os.path.join(base, board, "proc"), sys=os.path.join(base, board, "sys"))


def test_record_layout_matches_c():
    assert SAMPLE_DTYPE.itemsize == _core.sample_size()


@pytest.mark.parametrize("board", ["pi5", "pi4"])
def test_parsers_on_fake_pi_trees(board):
    s = Sampler(hz=10, roots=fake(board))
    names = {x.name: x for x in s.sources}
    for must in ("process CPU clock", "process statm", "process status", "process stat", "process io", "process schedstat",
                 "system stat", "meminfo", "vmstat", "process smaps_rollup", "pressure cpu",
                 "rpi get_throttled", "rpi_volt under-voltage"):
        assert names[must].available, (must, names[must].reason)
    assert [x.slot for x in s.sources if x.name.startswith("cpufreq")] == [0, 1, 2, 3]
    assert names["rapl"].reason and not names["rapl"].available
    r = s.sample_once()
    assert r["rss_bytes"] == 40000 * os.sysconf("SC_PAGESIZE") and r["peak_rss_bytes"] == 180000 * 1024
    assert (r["vol_ctxsw"], r["invol_ctxsw"]) == (150, 25)
    assert (r["minflt"], r["majflt"]) == (15000, 12)
    assert (r["io_rchar"], r["io_wchar"], r["io_read_bytes"], r["io_write_bytes"]) == (
        1000000, 20000, 409600, 8192)
    assert (r["sched_run_ns"], r["sched_wait_ns"]) == (123456789, 2345678)
    assert r["sys_total_ticks"] == 1000 + 20 + 300 + 50000 + 40 + 0 + 10 + 0
    assert r["sys_busy_ticks"] == r["sys_total_ticks"] - 50000 - 40
    assert r["mem_available_bytes"] == 7534120 * 1024
    assert r["psi_cpu_some_us"] == 1234567
    assert (r["psi_mem_some_us"], r["psi_mem_full_us"]) == (2345, 1234)
    assert (r["psi_io_some_us"], r["psi_io_full_us"]) == (456789, 345678)
    assert (r["vm_pgfault"], r["vm_pgmajfault"], r["vm_pswpin"], r["vm_pswpout"]) == (9876543, 321, 3, 7)
    assert (r["pss_bytes"], r["swap_bytes"]) == (150000 * 1024, 128 * 1024)
    n_valid = bin(int(r["valid"])).count("1")
    assert n_valid == sum(x.available for x in s.sources)
    if board == "pi5":
        assert list(r["cpufreq_khz"][:4]) == [2400000, 2400000, 1500000, 2400000]
        assert r["thermal_mc"][0] == 61250
        assert r["throttled"] == 0 and r["undervolt"] == 0
    else:
        assert list(r["cpufreq_khz"][:4]) == [1500000] * 4
        assert r["thermal_mc"][0] == 72500
        assert r["throttled"] == 0x50005 and r["undervolt"] == 1
        assert procfs.decode_throttled(int(r["throttled"])) == [
            "under-voltage now", "throttled now", "under-voltage has occurred",
            "throttling has occurred"]


def test_missing_sources_say_why(tmp_path):
    shutil.copytree(os.path.join(FAKE_ROOTS, "pi4"), tmp_path / "pi4")
    shutil.rmtree(tmp_path / "pi4" / "proc" / "pressure")
    os.remove(tmp_path / "pi4" / "proc" / "self" / "io")
    s = Sampler(hz=10, roots=fake("pi4", str(tmp_path)))
    names = {x.name: x for x in s.sources}
    assert not names["pressure"].available and "CONFIG_PSI" in names["pressure"].reason
    assert not names["process io"].available and "does not exist" in names["process io"].reason
    r = s.sample_once()
    assert r["peak_rss_bytes"] == 180000 * 1024      # the others are read
    assert np.isnan(s.series("io_rchar", data=np.array([r])))[0]

def test_rates_per_kind():
    assert sm.every_for(sm.STAT, 1000, 1) == sm.every_for(sm.RUSAGE, 10000, 1) == 1
    assert sm.every_for(sm.STATM, 1000, 1) == 20 and sm.every_for(sm.MEMINFO, 1000, 1) == 500
    assert sm.every_for(sm.IO, 1000, 1) == 100 and sm.every_for(sm.SYSSTAT, 1000, 1) == 100
    assert sm.every_for(sm.SYSSTAT, 5, 1) == 1                    # never above the sampling rate
    assert sm.every_for(sm.VMSTAT, 1000, 2) == 500
    assert sm.every_for(sm.SMAPS_ROLLUP, 1000, 1, cost_s=20e-6) == 1000
    assert sm.every_for(sm.SMAPS_ROLLUP, 1000, 1, cost_s=1e-3) == 10000   # 0.1 Hz: 0.01% of a core
    assert sm.every_for(sm.THERMAL, 100, 1, rates={sm.THERMAL: None}) == 1
    assert sm.every_for(sm.SMAPS_ROLLUP, 10000, 1e-3, cost_s=1) == _core.SAMPLER_MAX_EVERY


def test_a_source_vanishing_mid_run_does_not_stop_the_others(tmp_path):
    shutil.copytree(os.path.join(FAKE_ROOTS, "pi5"), tmp_path / "pi5")
    temp = tmp_path / "pi5" / "sys" / "class" / "thermal" / "thermal_zone0" / "temp"
    s = Sampler(hz=200, roots=fake("pi5", str(tmp_path)))
    src = next(x for x in s.sources if x.name.startswith("thermal"))
    assert src.rate_hz == 10
    with s:
        time.sleep(0.5)
        t_cut = _core.monotonic_ns()
        with open(temp, "w"):
            pass                               # the sensor now reads empty
        time.sleep(0.5)
    data = s.samples()
    thermal = s.series("thermal_mc", 0, data)
    planned = s.planned_mask(data, src)
    before, after = data["t_ns"] < t_cut, data["t_ns"] > t_cut + 5_000_000
    assert np.isfinite(thermal[planned & before]).all() and (planned & before).sum() >= 2
    assert (planned & after).sum() >= 2 and np.isnan(thermal[after]).all()
    assert np.isnan(thermal[~planned]).all()             # nothing carried between reads
    assert np.isfinite(s.series("proc_cpu_ns", data=data)).all()   # every tick, all along
    statm = s.source_for("rss_bytes")
    assert np.isfinite(s.series("rss_bytes", data=data)[s.planned_mask(data, statm)]).all()
    assert "failed" in src.reason


def planned_reads(s, window):
    """Lower-rate (every > 1) sources planned on each tick of range(window)."""
    load = np.zeros(window, dtype=int)
    for x in s.sources:
        if x.available and x.every > 1:
            load[x.phase::x.every] += 1
    return load


def test_each_source_is_read_exactly_on_its_planned_ticks_spread_out():
    s = Sampler(hz=1000, roots=fake("pi5"))
    rates = {x.name: x.rate_hz for x in s.sources if x.available}
    for name in ("process CPU clock", "process stat"):
        assert rates[name] == 1000
    assert rates["process statm"] == 50
    for name in ("process schedstat", "process io", "process status", "system stat",
                 "cpufreq cpu0", "cpufreq cpu3", "thermal zone0 cpu-thermal", "rpi get_throttled",
                 "rpi_volt under-voltage"):
        assert rates[name] == 10
    for name in ("meminfo", "pressure cpu", "pressure memory", "pressure io"):
        assert rates[name] == 2
    assert rates["vmstat"] == rates["process smaps_rollup"] == 1
    with s:
        time.sleep(0.3)
    assert max(planned_reads(s, 1000)) <= 2           # no tick reads more than two slow files
    tenth = [x.phase for x in s.sources if x.available and x.every == 100]
    assert len(tenth) == 11 and len(set(tenth)) == len(tenth)   # the 10 Hz ones on distinct ticks
    data = s.samples()
    assert len(data) > 100
    for x in s.sources:
        if x.available:
            read = (data["valid"] >> np.uint64(x.index)) & np.uint64(1) == 1
            assert (read == s.planned_mask(data, x)).all(), x.name
            assert x.every > 1 or read.all()
    assert (np.diff(data["tick"].astype(np.int64)) >= 1).all()
    d = s.describe()
    assert {x["name"]: x["rate_hz"] for x in d["sources"] if x["available"]} == rates


def test_rusage_is_this_whole_process():
    s = Sampler(hz=1000)
    names = {x.name for x in s.sources if x.available}
    assert "process rusage" in names and "process status" not in names and "process stat" not in names
    assert s.source_for("vol_ctxsw").kind == sm.RUSAGE and s.source_for("proc_cpu_ns").kind == sm.RUSAGE
    before = resource.getrusage(resource.RUSAGE_SELF)
    r = s.sample_once()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = lambda u: round((u.ru_utime + u.ru_stime) * 1e6) * 1000  # noqa: E731
    assert cpu(before) - 2000 <= r["proc_cpu_ns"] <= cpu(after) + 2000
    assert before.ru_minflt <= r["minflt"] <= after.ru_minflt
    assert before.ru_nvcsw <= r["vol_ctxsw"] <= after.ru_nvcsw
    assert before.ru_nivcsw <= r["invol_ctxsw"] <= after.ru_nivcsw
    assert r["peak_rss_bytes"] == after.ru_maxrss * 1024
    with s:
        time.sleep(0.3)                     # the thread sleeps ~300 times, and says so
    data = s.samples()
    st = s.stats()
    vol = s.series("vol_ctxsw", data=data)
    assert np.isfinite(vol).all() and len(data) > 150
    assert len(data) / 2 <= st["thread_vol_ctxsw"] <= st["n_samples"] + 10
    assert vol[-1] - vol[0] >= (len(data) - 1) / 2     # every thread's, the sampler's too


def test_real_sampling_of_this_process():
    s = Sampler(hz=500, slow_hz=50)
    t_before = _core.monotonic_ns()
    with s:
        time.sleep(0.05)
        block = mmap.mmap(-1, 40 << 20)          # fresh pages: ~40 MB more resident
        for i in range(0, 40 << 20, mmap.PAGESIZE):
            block[i] = 1
        time.sleep(0.1)
    t_after = _core.monotonic_ns()
    data = s.samples()
    assert len(data) >= 10
    t = data["t_ns"]
    assert (np.diff(t.astype(np.int64)) > 0).all()
    assert t_before <= t[0] and t[-1] <= t_after       # same clock as regions
    rss = s.series("rss_bytes", data=data)
    assert np.nanmax(rss) - np.nanmin(rss) > 30e6
    flt = s.series("minflt", data=data)
    assert flt[-1] - flt[0] > 5000                     # ~10000 pages faulted in
    cpu = s.series("proc_cpu_ns", data=data)
    assert np.isfinite(cpu).all() and cpu[-1] > cpu[0]
    # CPU time sums live threads plus exited ones; a thread exiting between two reads can
    # make it step back by a little.
    assert np.diff(cpu).min() > -5e6
    for x in s.sources:                                 # each read on its ticks, none failed
        if x.available:
            field = sm.KIND_FIELDS[x.kind][0]
            got = np.isfinite(s.series(field, x.slot if SAMPLE_DTYPE[field].shape else None, data))
            assert (got == s.planned_mask(data, x)).all(), x.name
    vm = s.source_for("vm_pgfault")
    assert vm.every == 10 and 0 < s.planned_mask(data, vm).sum() < len(data)
    pss = s.source_for("pss_bytes")                    # slower still when a read is dear
    assert pss.read_cost_s > 0 and pss.every == sm.every_for(sm.SMAPS_ROLLUP, 500, 50, cost_s=pss.read_cost_s)
    st = s.stats()
    assert st["n_samples"] == len(data) and st["thread_cpu_ns"] > 0
    block.close()


def test_sampling_another_process_survives_its_exit():
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nwhile time.process_time() < 0.3: pass"])
    s = Sampler(hz=200, pid=child.pid)
    assert s.source_for("rss_bytes") is not None
    with s:
        child.wait()
        time.sleep(0.1)                         # the process is gone: its files fail
    data = s.samples()
    cpu = s.series("proc_cpu_ns", data=data)
    assert np.nanmax(cpu) > 0.25e9              # it burnt CPU, seen through its clock
    rss = s.series("rss_bytes", data=data)[s.planned_mask(data, s.source_for("rss_bytes"))]
    assert np.isfinite(rss[0]) and np.isnan(rss[-1])
    psi = s.source_for("psi_cpu_some_us")              # a system file: read all along
    if psi:
        assert np.isfinite(s.series("psi_cpu_some_us", data=data)[s.planned_mask(data, psi)]).all()
    assert np.isfinite(s.series("t_ns", data=data)).all()


@pytest.mark.parametrize("hz", [0, -5, 10001, 100000])
def test_rate_out_of_range_is_a_clear_error(hz):
    with pytest.raises(ValueError, match="1 to 10000 Hz"):
        Sampler(hz=hz)


def test_rate_checked_in_c_too():
    with pytest.raises(ValueError, match="out of range"):
        _core.SamplerCore(20000, 0, 1024, SAMPLE_DTYPE)


def test_bad_sources_are_refused_in_c():
    import errno
    core = _core.SamplerCore(100, 0, 1024, SAMPLE_DTYPE)
    statm = "/proc/self/statm"
    assert core.add_source(sm.STATM, 0, statm, 0) == -errno.EINVAL            # every < 1
    assert core.add_source(sm.STATM, 0, statm, _core.SAMPLER_MAX_EVERY + 1) == -errno.EINVAL
    assert core.add_source(sm.STATM, 0, None) == -errno.EINVAL                # a file kind needs a path
    assert core.add_source(sm.RUSAGE, 0, statm) == -errno.EINVAL              # and rusage has none
    assert core.add_source(99, 0, statm) == -errno.EINVAL
    assert core.add_source(sm.STATM, 0, "/nonexistent/statm") == -errno.ENOENT
    other = _core.SamplerCore(100, os.getppid(), 1024, SAMPLE_DTYPE)
    assert other.add_source(sm.RUSAGE, 0, None) == -errno.EINVAL              # getrusage: ours only
    assert other.add_source(sm.PROC_CLOCK, 0, None) == 0
    assert core.add_source(sm.STATM, 0, statm, 7) == 0


def test_ring_overflow_drops_and_counts():
    s = Sampler(hz=5000, seconds_buffered=0.0, drain_every=10.0)   # ring of 1024 records
    s._core.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = s._core.stats()
        if st["n_samples"] + st["n_dropped"] > 1100:
            break
        time.sleep(0.05)
    s._core.stop()
    st = s._core.stats()
    kept = len(s._core.drain())
    assert kept == 1024
    assert st["n_samples"] == 1024 and st["n_dropped"] > 0
