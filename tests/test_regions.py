"""Region table: counts, nesting, threads, counter deltas, the disabled profiler."""
import mmap
import threading
import time

import pytest

from slmprof import _core
from slmprof.measure.counters import Counters
from slmprof.measure.profiler import Profiler, USER_REGION_BASE

def _software_counting_reason():
    from slmprof.measure.counters import Counters
    st = Counters(["task-clock"]).states[0]
    return None if st.available else st.reason


SOFTWARE_UNAVAILABLE = _software_counting_reason()
needs_perf = pytest.mark.skipif(SOFTWARE_UNAVAILABLE is not None,
                                reason=f"no counting at all here: {SOFTWARE_UNAVAILABLE}")



def _touch(n_pages):
    m = mmap.mmap(-1, n_pages * mmap.PAGESIZE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    for i in range(0, n_pages * mmap.PAGESIZE, mmap.PAGESIZE):
        m[i] = 1
    m.close()


@needs_perf
def test_region_counts_time_and_page_faults():
    with Profiler(events=["page-faults", "task-clock"]) as prof:
        for _ in range(3):
            with prof.region("touch"):
                _touch(1000)
        r = prof.results()[0]
    assert r["name"] == "touch" and r["count"] == 3
    assert r["wall_ns"] > 0 and 0 < r["thread_cpu_ns"] <= r["wall_ns"] * 1.05
    assert r["counters"]["page-faults"].value >= 3000 * 0.9
    assert r["counters"]["page-faults"].status == "exact"
    # task-clock over all threads is at least this thread's CPU time in the region
    assert r["counters"]["task-clock"].value >= r["thread_cpu_ns"] * 0.95


@needs_perf
def test_region_deltas_match_a_direct_read():
    prof = Profiler(events=["page-faults"])
    before = prof.counters.read()["page-faults"].value
    with prof.region("r"):
        _touch(500)
    after = prof.counters.read()["page-faults"].value
    inside = prof.results()[0]["counters"]["page-faults"].value
    assert inside <= after - before
    assert inside >= (after - before) - 50   # only the region's bookkeeping lies outside
    prof.close()


def test_nesting_is_inclusive():
    with Profiler(events=[]) as prof:
        with prof.region("outer"):
            time.sleep(0.02)
            for _ in range(2):
                with prof.region("inner"):
                    time.sleep(0.01)
        res = {r["name"]: r for r in prof.results()}
    assert res["outer"]["count"] == 1 and res["inner"]["count"] == 2
    assert res["outer"]["wall_ns"] >= res["inner"]["wall_ns"] + 15e6
    assert prof.errors == 0


def test_same_name_recursion_and_decorator():
    prof = Profiler(events=[])

    @prof.region("fib")
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(10) == 55
    r = prof.results()[0]
    assert r["name"] == "fib" and r["count"] == 177
    assert prof.errors == 0


@needs_perf
def test_threads_have_their_own_stacks():
    prof = Profiler(events=["task-clock"])
    barrier = threading.Barrier(4)

    def work(k):
        barrier.wait()
        for _ in range(50):
            with prof.region("a"):
                with prof.region(f"t{k}"):
                    pass

    ths = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    res = {r["name"]: r for r in prof.results()}
    assert res["a"]["count"] == 200
    assert all(res[f"t{k}"]["count"] == 50 for k in range(4))
    assert prof.errors == 0


def test_unmatched_edges_are_counted_not_crashing():
    t = _core.RegionTable(16)
    t.end(3)             # end without begin
    t.begin(99)          # id out of range
    t.begin(1)
    t.end(2)             # wrong id
    t.end(1)
    assert t.errors == 3
    assert t.get(1)["count"] == 1
    assert t.get(2) is None
    with pytest.raises(ValueError):
        t.get(16)


@needs_perf
def test_counters_set_shared_with_table_outlives_close():
    c = Counters(["task-clock"])
    c.attach_threads()
    t = _core.RegionTable(8, c.counter_set)
    c.close()                        # refused while the table uses it
    t.begin(0)
    t.end(0)
    assert t.get(0)["counters"][0]["raw"] > 0
    del t
    c.close()
    assert c.counter_set.closed


def test_engine_id_names_and_order():
    prof = Profiler(events=[])
    prof.name_regions([(0, "embed"), (11, "blk.0")])
    for rid in (11, 0):
        prof.table.begin(rid)
        prof.table.end(rid)
    with prof.region("python"):
        pass
    names = [r["name"] for r in prof.results()]
    assert names == ["embed", "blk.0", "python"]
    assert prof.region("python").id == USER_REGION_BASE


def test_disabled_profiler_is_a_no_op():
    prof = Profiler(enabled=False)
    r1, r2 = prof.region("a"), prof.region("b")
    assert r1 is r2
    with r1:
        pass

    def f():
        return 1
    assert prof.region("x")(f) is f
    assert prof.results() == [] and prof.table is None


@needs_perf
def test_read_path_is_reported():
    prof = Profiler(events=["task-clock"])
    assert prof.read_path in ("read", "rdpmc", "mrs")
    prof.close()


def test_only_hook_sources_reach_the_engine(tiny_model):
    from slmprof.engine.model import Model
    with Model.load(tiny_model(), threads=1, ctx=16) as m:
        m.engine.set_hooks(_core.RegionTable(64))
        m.engine.set_hooks(_core.TraceRecorder(64))
        m.engine.set_hooks(None)
        with pytest.raises(TypeError):
            m.engine.set_hooks(12345)      # an address is not a hook source


@needs_perf
def test_attaching_threads_while_regions_run():
    prof = Profiler(events=["task-clock", "page-faults"])
    stop = threading.Event()
    started = []

    def edges():
        while not stop.is_set():
            with prof.region("busy"):
                pass

    def newcomer():
        started.append(1)
        stop.wait()

    worker = threading.Thread(target=edges)
    worker.start()
    extra = []
    for _ in range(8):                     # threads appear and get attached mid-run
        t = threading.Thread(target=newcomer)
        t.start()
        extra.append(t)
        prof.attach_threads()
    time.sleep(0.05)
    stop.set()
    worker.join()
    for t in extra:
        t.join()
    r = prof.results()[0]
    assert r["count"] > 0 and prof.errors == 0
    assert prof.counters.n_threads >= 10
    prof.close()


def test_wall_only_regions_record_count_and_wall_time_only():
    t = _core.RegionTable(8)
    t.set_wall_only([2])
    t.begin(1)
    t.begin(2)
    time.sleep(0.002)
    t.end(2)
    t.end(1)
    op, layer = t.get(2), t.get(1)
    assert op["wall_only"] and op["thread_cpu_ns"] is None and op["counters"] == []
    assert op["count"] == 1 and op["wall_ns"] >= 2_000_000
    assert not layer["wall_only"] and layer["thread_cpu_ns"] is not None
    assert layer["wall_ns"] >= op["wall_ns"]
    with pytest.raises(ValueError):
        t.set_wall_only([8])


@needs_perf
def test_wall_only_regions_inside_counted_ones():
    c = Counters(["page-faults"])
    c.attach_threads()
    t = _core.RegionTable(8, c.counter_set)
    t.set_wall_only([2])
    t.edge(begins=[1, 2])
    _touch(200)
    t.edge(ends=[2, 1])
    assert t.get(2)["counters"] == []
    assert t.get(1)["counters"][0]["raw"] >= 200 * 0.9
    del t
    c.close()


def test_an_edge_ends_and_begins_regions_at_one_instant():
    """Regions that follow each other at edges tile their enclosing region exactly."""
    t = _core.RegionTable(8)
    t.set_wall_only([2, 3])
    t.edge(begins=[1, 2])
    time.sleep(0.001)
    t.edge(ends=[2], begins=[3])
    time.sleep(0.001)
    t.edge(ends=[3, 1])
    assert t.get(2)["wall_ns"] + t.get(3)["wall_ns"] == t.get(1)["wall_ns"]
    assert t.get(1)["thread_cpu_ns"] >= 0 and t.errors == 0
    t.edge(ends=[5])            # nothing open: counted, not crashing
    t.edge(begins=[1, 99])      # out of range
    t.edge(ends=[4, 1])         # 4 is not the innermost: only 1 ends
    assert t.errors == 3 and t.get(1)["count"] == 2

