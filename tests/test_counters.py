"""Counters: software events really counted through the group/read/scale path, scaling
math, group parsing, event tables against the documented ARM numbers, fallback reasons."""
import errno
import mmap
import os
import subprocess
import sys
import threading
import time

import pytest

from slmprof import _core

from slmprof.measure import counters, events as ev, procfs
from slmprof.measure.counters import Counters, interpret

def _software_counting_reason():
    from slmprof.measure.counters import Counters
    st = Counters(["task-clock"]).states[0]
    return None if st.available else st.reason


SOFTWARE_UNAVAILABLE = _software_counting_reason()
needs_perf = pytest.mark.skipif(SOFTWARE_UNAVAILABLE is not None,
                                reason=f"no counting at all here: {SOFTWARE_UNAVAILABLE}")



def _no_pmu_reason():
    c = Counters(["cycles"])
    return None if c.states[0].available else c.states[0].reason


NO_PMU = _no_pmu_reason()
FAKE_ROOTS = os.path.join(os.path.dirname(__file__), "fake_roots")


@pytest.fixture
def fake_root():
    def make(board):
        base = os.path.join(FAKE_ROOTS, board)
        return procfs.Roots(proc=os.path.join(base, "proc"), sys=os.path.join(base, "sys"))
    return make


def _touch_fresh_pages(n_pages):
    page = mmap.PAGESIZE
    m = mmap.mmap(-1, n_pages * page)
    if hasattr(m, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)  # one fault per 4 KiB page, not per 2 MiB
    for i in range(0, n_pages * page, page):
        m[i] = 1
    m.close()


@needs_perf
def test_page_faults_rise_when_fresh_pages_are_touched():
    with Counters(["page-faults", "minor-faults"]) as c:
        c.attach_threads()
        before = c.read()
        _touch_fresh_pages(4096)
        after = c.read()
    grown = after["page-faults"].value - before["page-faults"].value
    assert 4096 * 0.9 <= grown <= 4096 * 3
    assert after["minor-faults"].value - before["minor-faults"].value >= 4096 * 0.9
    assert after["page-faults"].status == "exact"


@needs_perf
def test_task_clock_of_a_busy_loop_is_close_to_its_wall_time():
    with Counters(["task-clock", "context-switches"]) as c:
        c.attach_threads()
        before = c.read()["task-clock"].value
        t0 = time.monotonic_ns()
        cpu0 = time.process_time_ns()
        while time.monotonic_ns() - t0 < 200_000_000:
            pass
        task = c.read()["task-clock"].value - before
        cpu = time.process_time_ns() - cpu0
        wall = time.monotonic_ns() - t0
    # task-clock and the process CPU clock measure the same thing independently.
    assert task == pytest.approx(cpu, rel=0.05, abs=2e6)
    # The loop is busy: it is close to wall time unless other work on this machine took
    # the CPU away (the shared CI cores), which the process CPU clock shows.
    if cpu > 0.9 * wall:
        assert task > 0.85 * wall
    assert task <= wall * (os.cpu_count() or 1) * 1.05


@needs_perf
def test_threads_that_already_exist_are_counted():
    """A thread started before the counters burns a fixed amount of its own CPU time inside
    the counted window: the counters must see at least that much, however long it takes."""
    work_ns = 50_000_000
    go, done, finish = threading.Event(), threading.Event(), threading.Event()

    def spin():
        go.wait()
        t0 = time.thread_time_ns()
        while time.thread_time_ns() - t0 < work_ns:
            pass
        done.set()
        finish.wait()          # stay alive until the last read

    th = threading.Thread(target=spin)
    th.start()
    try:
        with Counters(["task-clock"]) as c:
            added = c.attach_threads()
            assert added >= 2 and c.n_threads >= 2
            t0 = time.monotonic_ns()
            before = c.read()["task-clock"].value
            go.set()
            assert done.wait(60)
            after = c.read()["task-clock"].value
            wall = time.monotonic_ns() - t0
    finally:
        go.set()
        finish.set()
        th.join()
    # task-clock counts the time a thread is on a CPU, at least its CPU clock's run time
    assert after - before >= 0.95 * work_ns
    assert after - before <= wall * os.cpu_count() * 1.05 + 5e6


@needs_perf
def test_attach_again_adds_only_new_threads():
    with Counters(["task-clock"]) as c:
        n = c.attach_threads()
        assert n >= 1
        assert c.attach_threads() == 0
        assert c.n_fds == c.n_threads


@pytest.mark.parametrize("value,enabled,running,expected,status", [
    (1000, 100, 100, 1000.0, "exact"),
    (1000, 100, 50, 2000.0, "scaled"),
    (300, 90, 30, 900.0, "scaled"),
    (0, 100, 0, 0.0, "not counted"),
    (0, 0, 0, 0.0, "idle"),
])
def test_scaling_math_on_synthetic_values(value, enabled, running, expected, status):
    scaled, how = _core.perf_scale(value, enabled, running)
    assert how == status
    assert scaled == pytest.approx(expected)


def test_group_buffer_parsing():
    words = [3, 500, 250, 10, 101, 20, 102, 30, 103]
    vals, ids, en, run = _core.perf_parse_group(words, 3, True)
    assert vals == [10, 20, 30] and ids == [101, 102, 103] and (en, run) == (500, 250)
    vals, ids, en, run = _core.perf_parse_group([2, 7, 7, 1, 2], 2, False)
    assert vals == [1, 2] and ids is None
    with pytest.raises(ValueError):
        _core.perf_parse_group([3, 1, 1, 1, 1], 2, False)       # nr disagrees
    with pytest.raises(ValueError):
        _core.perf_parse_group([2, 1, 1, 5], 2, False)          # truncated


def test_interpret_flags_scaled_and_not_counted():
    base = {"raw": 100, "scaled": 250.0, "enabled_ns": 100, "running_ns": 40, "n_scaled": 1,
            "n_not_counted": 0}
    r = interpret("x", base)
    assert r.status == "scaled" and r.scaled and r.value == 250.0 and r.running_fraction == 0.4
    r = interpret("x", dict(base, raw=0, scaled=0.0, running_ns=0, n_scaled=0, n_not_counted=2))
    assert r.status == "not counted" and r.value is None
    r = interpret("x", dict(base, scaled=100.0, running_ns=100, n_scaled=0))
    assert r.status == "exact" and r.value == 100.0


@needs_perf
def test_real_software_group_reads_exact_values():
    with Counters(["task-clock", "page-faults", "context-switches", "cpu-migrations"]) as c:
        c.attach_threads()
        assert len({s.group for s in c.active}) == 1   # one software group
        assert c.active[0].event.name == "task-clock"  # the clock leads
        r = c.read()
        for name in c.names:
            assert r[name].status == "exact"
            assert r[name].enabled_ns > 0 and r[name].running_ns == r[name].enabled_ns


def test_unknown_event_lists_valid_names():
    with pytest.raises(ValueError) as e:
        Counters(["task-clok"])
    assert "task-clock" in str(e.value) and "page-faults" in str(e.value)


def test_hardware_events_fall_back_to_software_with_a_reason():
    c = Counters()
    if SOFTWARE_UNAVAILABLE is not None:
        assert c.mode == "none" and "nothing can be counted" in c.mode_reason
        assert all(r.status == "unavailable" and r.reason for r in c.read().values())
        return
    if NO_PMU is None:
        assert c.mode == "hardware"
        return
    assert c.mode == "software"
    assert "software events only" in c.mode_reason
    r = c.read()
    assert r["cycles"].status == "unavailable" and r["cycles"].value is None
    assert "ENOENT" in r["cycles"].reason or "EACCES" in r["cycles"].reason
    assert r["task-clock"].status in ("exact", "scaled")


@pytest.mark.pmu
@pytest.mark.skipif(NO_PMU is not None, reason=f"hardware counters unavailable here: {NO_PMU}")
def test_cycles_and_instructions_count_a_loop():
    with Counters(["cycles", "instructions"]) as c:
        c.attach_threads()
        before = c.read()
        s = 0
        for i in range(1_000_000):
            s += i
        after = c.read()
    assert after["instructions"].value - before["instructions"].value > 1_000_000
    assert after["cycles"].value - before["cycles"].value > 0


def test_explain_errno_names_the_sysctl():
    d = ev.SOFTWARE["task-clock"]
    text = counters.explain_errno(errno.EACCES, d)
    assert "perf_event_paranoid" in text and "sysctl" in text
    assert "EOPNOTSUPP" in counters.explain_errno(errno.EOPNOTSUPP, ev.GENERIC_HARDWARE["cycles"])


def test_group_planning_respects_counter_count():
    core = ev.CORES[0xD08]
    defs = ev.resolve(["cycles", "instructions", "l1d_cache", "l1d_cache_refill", "l2d_cache",
                       "l2d_cache_refill", "l2d_cache_wb", "ase_spec", "task-clock"], core)
    groups = counters.plan_groups(defs, core.counters)
    hw = [g for d, g in zip(defs, groups) if not d.is_software]
    assert hw.count(hw[0]) == 7           # cycles + 6 programmable counters
    assert len(set(hw)) == 2
    assert groups[-1] not in hw            # software in its own group
    sw = ev.resolve(["page-faults", "task-clock", "context-switches", "cpu-clock"])
    assert len(set(counters.plan_groups(sw, 4))) == 1


# Documented numbers: include/linux/perf/arm_pmuv3.h (ARMV8_PMUV3_PERFCTR_*), transcribed
# here independently of slmprof/events.py.
DOCUMENTED = {"INST_RETIRED": 0x08, "CPU_CYCLES": 0x11, "L1D_CACHE_REFILL": 0x03,
              "L1D_CACHE": 0x04, "L2D_CACHE": 0x16, "L2D_CACHE_REFILL": 0x17,
              "L2D_CACHE_WB": 0x18, "BUS_ACCESS": 0x19, "INST_SPEC": 0x1B, "MEM_ACCESS": 0x13,
              "STALL_FRONTEND": 0x23, "STALL_BACKEND": 0x24, "L3D_CACHE_REFILL": 0x2A,
              "L3D_CACHE": 0x2B, "LL_CACHE_RD": 0x36, "LL_CACHE_MISS_RD": 0x37,
              "BR_MIS_PRED": 0x10, "BR_RETIRED": 0x21, "MEM_ACCESS_RD": 0x66,
              "MEM_ACCESS_WR": 0x67, "ASE_SPEC": 0x74, "VFP_SPEC": 0x75, "DP_SPEC": 0x73,
              "L2D_CACHE_ALLOCATE": 0x20, "L3D_CACHE_RD": 0xA0}


def test_arm_event_numbers_match_the_documented_ones():
    for name, code in DOCUMENTED.items():
        assert ev.ARMV8_EVENTS[name.lower()] == code, name


def test_arm_core_tables():
    a72, a76, a53, a55 = (ev.CORES[p] for p in (0xD08, 0xD0B, 0xD03, 0xD05))
    assert (a72.name, a76.name, a53.name, a55.name) == (
        "cortex-a72", "cortex-a76", "cortex-a53", "cortex-a55")
    # A72 has no stall or L3 events; A76 has both (TRMs; kernel pmu-events JSON).
    assert "stall_backend" not in a72.events and "l3d_cache_refill" not in a72.events
    assert {"stall_frontend", "stall_backend", "l3d_cache_refill", "ll_cache_miss_rd"} <= set(a76.events)
    # DRAM-byte estimates of DESIGN.md: Pi 4 (0x17 + 0x18) * 64, Pi 5 0x2A * 64.
    assert [ev.ARMV8_EVENTS[e] for e in a72.dram.events] == [0x17, 0x18] and a72.dram.line_bytes == 64
    assert [ev.ARMV8_EVENTS[e] for e in a76.dram.events] == [0x2A] and a76.dram.line_bytes == 64
    for core in (a72, a76, a53, a55):
        assert core.counters == 6
        names = set(core.events) | set(ev.GENERIC_HARDWARE)
        assert set(core.default_events) <= names
        hw = [n for n in core.default_events if n != "cycles"]
        assert len(hw) <= core.counters     # the default set fits one group
        for n in core.events:
            assert n in ev.ARMV8_EVENTS
    raw = a76.raw_events()["l3d_cache_refill"]
    assert raw.type == ev.PERF_TYPE_RAW and raw.config == 0x2A


@pytest.mark.parametrize("midr,name", [(0x410FD083, "cortex-a72"), (0x414FD0B1, "cortex-a76"),
                                       (0x410FD034, "cortex-a53"), (0x412FD050, "cortex-a55")])
def test_core_from_midr(midr, name):
    assert ev.core_for_midr(midr).name == name


def test_core_from_cpuinfo_on_fake_trees(fake_root):
    pi5 = fake_root("pi5")
    det = counters.detect_core(pi5)
    assert det.core.name == "cortex-a76" and det.source == "/proc/cpuinfo"
    assert counters.detect_core(fake_root("pi4")).core.name == "cortex-a72"


def test_raw_names_need_the_core():
    with pytest.raises(ValueError):
        ev.resolve(["l2d_cache_refill"], None)
    assert ev.resolve(["r17"], None)[0].config == 0x17


@needs_perf
def test_emfile_is_a_clear_error():
    code = r"""
import resource, sys
from slmprof.measure.counters import Counters
import os
used = len(os.listdir('/proc/self/fd'))
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    c = Counters(['task-clock', 'page-faults', 'context-switches', 'cpu-migrations'])
    c.attach_threads()
except OSError as e:
    print('ERR', e.errno, e)
    sys.exit(0)
print('no error')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"ERR {errno.EMFILE}" in out.stdout and "ulimit -n" in out.stdout


# ---- hardware path: runs where a PMU exists (a Pi, or the emulated Pi of the CI arm64 stage)

pmu = pytest.mark.skipif(NO_PMU is not None, reason=f"hardware counters unavailable here: {NO_PMU}")
SPIN = 5_000_000


@pytest.mark.pmu
@pmu
def test_instructions_of_a_known_loop():
    with Counters(["cycles", "instructions"]) as c:
        c.attach_threads()
        prof_table = _core.RegionTable(4, c.counter_set)
        prof_table.begin(0)
        _core.perf_spin(SPIN)
        prof_table.end(0)
        r = prof_table.get(0)["counters"]
        ins = dict(zip(c.names, r))["instructions"]
        # 2 per iteration plus the region's own bookkeeping (a few thousand at most)
        assert 2 * SPIN <= ins["raw"] <= 2 * SPIN * 1.01 + 20_000
        assert dict(zip(c.names, r))["cycles"]["raw"] > 0
        del prof_table


@pytest.mark.pmu
@pmu
def test_region_delta_matches_a_direct_read():
    with Counters(["instructions"]) as c:
        c.attach_threads()
        t = _core.RegionTable(4, c.counter_set)
        before = c.read()["instructions"].raw
        t.begin(1)
        _core.perf_spin(SPIN)
        t.end(1)
        after = c.read()["instructions"].raw
        inside = t.get(1)["counters"][0]["raw"]
        assert 2 * SPIN <= inside <= after - before
        del t


@pytest.mark.pmu
@pmu
def test_more_events_than_counters_multiplex_and_are_flagged():
    det = counters.detect_core()
    n_counters = det.core.counters if det.core else ev.GENERIC_COUNTERS
    if det.core:
        pool = [n for n in det.core.events if n not in ("sw_incr", "cpu_cycles", "chain")]
    else:
        pool = ["instructions", "cache-references", "cache-misses", "branches", "branch-misses",
                "bus-cycles", "ref-cycles"]
    names = pool[: n_counters + 3]
    with Counters(names) as c:
        if len(c.active) <= n_counters:
            pytest.skip(f"only {len(c.active)} of these events open here")
        c.attach_threads()
        for _ in range(20):
            _core.perf_spin(SPIN)
        r = c.read()
    states = {n: r[n].status for n in c.names}
    assert set(states.values()) <= {"scaled", "not counted", "exact"}
    multiplexed = [n for n in c.names if r[n].status in ("scaled", "not counted")]
    assert multiplexed, states          # more events than counters cannot all run all the time
    for n in multiplexed:
        if r[n].status == "scaled":
            assert r[n].running_fraction < 1 and r[n].value >= r[n].raw
        else:
            assert r[n].value is None


# Which region read path the machine is set up for, when the caller knows (the emulated PMU
# system runs the pmu tests once with kernel.perf_user_access=0 and once with =1): "read", or
# "mrs" / "rdpmc". Unset: whichever this machine allows.
EXPECT_READ_PATH = os.environ.get("SLMPROF_EXPECT_READ_PATH") or None


def _user_read_allowed():
    allowed, why = counters.user_read_state()
    if EXPECT_READ_PATH == "read":
        assert not allowed, f"expected user-space reads to be off, but: {why}"
    elif EXPECT_READ_PATH is not None:
        assert allowed, f"expected the {EXPECT_READ_PATH} path, but: {why}"
    return allowed, why


@pytest.mark.pmu
@pmu
def test_user_space_read_path_or_its_fallback_is_reported():
    allowed, why = _user_read_allowed()
    with Counters(["cycles", "instructions"]) as c:
        c.attach_threads()
        before = c.read_stats
        c.read()
        after = c.read_stats
        if not allowed:
            assert c.read_path == "read" and c.user_read_reason == why
            assert all(s.config1 == 0 for s in c.active)
            assert after["user"] == 0 and after["syscall"] - before["syscall"] == c.n_threads
            return
        assert c.read_path == ("mrs" if counters.is_arm64() else "rdpmc")
        if counters.is_arm64():  # config1 bit 1 asks the armv8 PMU driver for EL0 access
            assert [s.config1 for s in c.active] == [2, 2]
        # This thread's group came from the mmap page; the other threads' through read().
        assert after["user"] - before["user"] == 1
        assert after["syscall"] - before["syscall"] == c.n_threads - 1
        assert after["user_fallback"] == before["user_fallback"]


@pytest.mark.pmu
@pmu
def test_user_space_reads_equal_read_on_the_same_counters():
    """Regions whose edges are read by mrs/rdpmc, by read(), and by one of each, on the same
    counters: the spin inside is 2 * spin user-mode instructions whichever path read the
    edges, so the deltas agree to the few instructions the two paths differ by (exact on an
    instruction-exact PMU such as the emulated one; a real core's retired-instruction count
    is exact as well). A path with a wrong counter index, width or offset is off by far more.
    Short regions (0.4 ms emulated), the fewest of seven runs at shifting phases: in the
    emulated system a thread's count also takes in what the other vCPU retires meanwhile
    (QEMU counts instructions for the whole machine), such as its periodic timer interrupt,
    which a fixed loop would meet at the same region every round."""
    spin = 200_000
    allowed, why = _user_read_allowed()
    if not allowed:
        pytest.skip(f"user-space reads off, nothing to compare: {why}")
    with Counters(["cycles", "instructions"], exclude_kernel=True) as c:
        c.attach_task(threading.get_native_id())
        cs = c.counter_set
        path = c.read_path
        assert path in ("mrs", "rdpmc")
        table = _core.RegionTable(8, cs)

        def region(begin_user, end_user):
            table.reset()
            cs.allow_user_read(begin_user)
            table.begin(0)
            cs.allow_user_read(end_user)  # the same call in every region: same overhead
            _core.perf_spin(spin)
            table.end(0)
            return {n: v["raw"] for n, v in zip(c.names, table.get(0)["counters"])}

        paths = [(True, True), (False, False), (True, False), (False, True)]
        region(True, True)  # warm-up: the interpreter specialises the code on its first runs
        stats0 = c.read_stats
        # The fewest of a few runs per combination: whatever else lands in the window only
        # ever adds. A growing gap between regions moves them against periodic work.
        runs = []
        for r in range(7):
            runs.append([])
            for k, (b, e) in enumerate(paths):
                _core.perf_spin(13_001 * (4 * r + k + 1))
                runs[-1].append(region(b, e))
        deltas = [{n: min(r[k][n] for r in runs) for n in c.names} for k in range(len(paths))]
        stats1 = c.read_stats
        cs.allow_user_read(True)
        # The values the two paths give for the same counters at (nearly) the same moment.
        mixed = []
        for user in (True, False, True, False):
            cs.allow_user_read(user)
            mixed.append({n: v["raw"] for n, v in zip(c.names, cs.read())})
        cs.allow_user_read(True)
        del table
    ins = [d["instructions"] for d in deltas]
    cyc = [d["cycles"] for d in deltas]
    print(f"user-space read path {path}: region instructions (mrs/mrs, read/read, "
          f"mrs/read, read/mrs) = {ins}, cycles = {cyc}; reads by path {stats1}; "
          f"instructions read by mrs, read(), mrs, read() in a row: "
          f"{[m['instructions'] for m in mixed]}")
    assert stats1["user"] - stats0["user"] == 7 * 4    # the four user-path edges, 7 times
    assert stats1["user_fallback"] == stats0["user_fallback"]
    for n in ins:
        assert 2 * spin <= n <= 2 * spin + 5_000, ins
    assert max(ins) - min(ins) <= 500, ins
    # Cycles: every path sees the same counter; a region of 2 * spin instructions takes at
    # least spin / 4 cycles on these cores (IPC <= 8) and the paths agree to a few percent.
    for n in cyc:
        assert n >= spin // 4, cyc
    assert max(cyc) <= 1.05 * min(cyc) + 5_000, cyc
    # Absolute values alternate between the paths and only ever grow.
    for name in c.names:
        seq = [m[name] for m in mixed]
        assert seq == sorted(seq), (name, seq)
        assert seq[-1] - seq[0] < 1_000_000, (name, seq)


@pytest.mark.pmu
@pmu
def test_instructions_over_the_engine_pool_add_up_to_the_process_count(tiny_model):
    """Per-thread counters on every thread of the process (the engine's pool workers
    included, attached after they exist) sum to what one inherited counter, opened before
    the pool started, counts for the whole process; and more than the calling thread alone."""
    from slmprof.engine.model import Model
    me = threading.get_native_id()
    path = tiny_model(dim=256, ffn=512, n_head=4, n_kv_head=2)
    whole = Counters(["instructions"], inherit=True, exclude_kernel=True)
    try:
        whole.attach_task(me)
        model = Model.load(str(path), threads=2, ctx=64)
        try:
            threads = Counters(["instructions"], exclude_kernel=True)
            caller = Counters(["instructions"], exclude_kernel=True, user_read=False)
            threads.attach_threads()
            caller.attach_task(me)
            assert threads.n_threads >= 2
            tokens = model.tokenizer.encode("counting every thread of the pool")[:8]

            def window(work):
                time.sleep(0.05)  # the pool's workers asleep: none of their spin in the edges
                p0, c0, w0 = (s.counter_set.read()[0]["raw"] for s in (threads, caller, whole))
                work()
                time.sleep(0.05)
                w1, c1, p1 = (s.counter_set.read()[0]["raw"] for s in (whole, caller, threads))
                return p1 - p0, c1 - c0, w1 - w0

            def run_tokens():
                model.reset()
                model.prefill(tokens)
                for t in (1, 2, 3, 4):
                    model.decode(t)

            # The reads of the other sets fall inside the per-thread window: measured on an
            # empty window and allowed for.
            empty = window(lambda: None)
            summed, alone, process = window(run_tokens)
            stats = threads.read_stats
        finally:
            model.close()
    finally:
        whole.close()
    edges = empty[0] - empty[2]
    print(f"instructions over {threads.n_threads} threads {summed:,}, calling thread "
          f"{alone:,}, process (inherited) {process:,}; read edges {edges:,}; "
          f"per-thread reads by path {stats}")
    assert process > 100_000
    assert alone < 0.95 * summed            # the worker did part of the work
    assert abs((summed - process) - edges) <= 4_000 + 1e-4 * process, (summed, process, edges)
    if _user_read_allowed()[0]:
        assert stats["user"] >= 4          # this thread's group came from the mmap page


@pytest.mark.arm64
@pytest.mark.pmu
@pytest.mark.skipif(not counters.is_arm64(), reason="MIDR detection by mrs needs an arm64 core")
def test_core_detected_from_midr_on_arm64():
    det = counters.detect_core()
    assert det.midr is not None
    if (det.midr >> 24) == 0x41 and ((det.midr >> 4) & 0xFFF) in ev.CORES:
        assert det.core is ev.CORES[(det.midr >> 4) & 0xFFF]


def test_spin_is_callable_here():
    t0 = time.thread_time_ns()
    _core.perf_spin(SPIN)
    assert time.thread_time_ns() > t0
