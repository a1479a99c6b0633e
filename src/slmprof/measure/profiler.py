"""Regions: `with profiler.region("name"):` (or `@profiler.region("name")`), accumulated in C.

    prof = Profiler()                        # counters for this core, all threads
    with prof.region("prefill"):
        ...
    for r in prof.results(): print(r["name"], r["wall_ns"], r["counters"]["task-clock"].value)

A disabled profiler (`Profiler(enabled=False)`) hands out one shared no-op context manager
and returns decorated functions unchanged: it costs nothing. The engine calls the same C
table through `prof.table` (a RegionTable whose C hooks it installs), with ids
SLM_REGION_ID(slot, op) below USER_REGION_BASE; names given here get ids from
USER_REGION_BASE up.
"""
import functools
import threading

from slmprof import _core
from slmprof.measure.counters import Counters, interpret

USER_REGION_BASE = 8192
DEFAULT_CAPACITY = 16384


class _NullRegion:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


_NULL_REGION = _NullRegion()


class _Region:
    """Stateless besides its id: one object per name, reused (nesting is tracked in C)."""
    __slots__ = ("_begin", "_end", "id", "name")

    def __init__(self, table, region_id, name):
        self._begin, self._end, self.id, self.name = table.begin, table.end, region_id, name

    def __enter__(self):
        self._begin(self.id)
        return self

    def __exit__(self, *exc):
        self._end(self.id)
        return False

    def __call__(self, fn):
        begin, end, rid = self._begin, self._end, self.id

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            begin(rid)
            try:
                return fn(*args, **kwargs)
            finally:
                end(rid)
        return wrapper


class Profiler:
    """Region accounting with counters over every thread of this process.

    events: None for the core's default events plus software events, a list of names, or
    [] for time only. counters: an existing slmprof.measure.counters.Counters to use instead."""

    def __init__(self, enabled=True, events=None, counters=None, capacity=DEFAULT_CAPACITY):
        self.enabled = bool(enabled)
        self.counters = None
        self.table = None
        self._regions = {}
        self._names = {}
        self._lock = threading.Lock()
        if not self.enabled:
            return
        if counters is None and events != []:
            counters = Counters(events)
        if counters is not None:
            counters.attach_threads()
        self.counters = counters
        cset = counters.counter_set if counters is not None else None
        self.table = _core.RegionTable(capacity, cset)

    # -- regions
    def region(self, name):
        """Context manager and decorator measuring `name`."""
        if not self.enabled:
            return _NULL_REGION
        r = self._regions.get(name)
        if r is None:
            with self._lock:
                r = self._regions.get(name)
                if r is None:
                    rid = USER_REGION_BASE + len(self._regions)
                    if rid >= self.table.capacity:
                        raise ValueError(f"too many region names ({len(self._regions)})")
                    r = _Region(self.table, rid, name)
                    self._names[rid] = name
                    self._regions[name] = r
        return r

    def name_regions(self, names):
        """Names for ids the engine uses: iterable of (region_id, name)."""
        for rid, name in names:
            self._names[int(rid)] = name

    def attach_threads(self):
        """Count threads created since the profiler started (e.g. an engine's pool)."""
        return self.counters.attach_threads() if self.counters is not None else 0

    # -- results
    def result(self, region_id):
        if not self.enabled:
            return None
        st = self.table.get(region_id)
        if st is None:
            return None
        names = self.counters.names if self.counters is not None else []
        st["counters"] = {n: interpret(n, v) for n, v in zip(names, st["counters"])}
        st["id"] = region_id
        st["name"] = self._names.get(region_id, f"region {region_id}")
        return st

    def results(self):
        """Every region that ran, engine ids first, then named regions in creation order."""
        if not self.enabled:
            return []
        out = []
        ids = sorted(i for i in self._names if i < USER_REGION_BASE)
        ids += sorted(i for i in self._names if i >= USER_REGION_BASE)
        for rid in ids:
            r = self.result(rid)
            if r is not None:
                out.append(r)
        return out

    @property
    def errors(self):
        return self.table.errors if self.enabled else 0

    @property
    def read_path(self):
        return self.counters.read_path if self.counters is not None else "none"

    def reset(self):
        if self.enabled:
            self.table.reset()

    def close(self):
        self._regions.clear()  # they hold the table's bound methods
        self.table = None
        if self.counters is not None:
            self.counters.close()
            self.counters = None
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
