# _perf.pxi: wrappers of the measurement core (csrc/perf/*). Included by _core.pyx.
# A RegionTable is a HookSource: the engine calls its C hooks at region edges with ids
# SLM_REGION_ID(slot, op) (Model.set_profiler). Python code uses slmprof.measure.counters,
# .profiler and .sampler, not these classes directly.

PERF_EXCLUDE_KERNEL = SLM_PERF_EXCLUDE_KERNEL
PERF_INHERIT = SLM_PERF_INHERIT
PERF_ENABLE_ON_EXEC = SLM_PERF_ENABLE_ON_EXEC
PERF_USER_READ = SLM_PERF_USER_READ
PERF_MAX_EVENTS = SLM_PERF_MAX_EVENTS
PERF_MAX_GROUP = SLM_PERF_MAX_GROUP
READ_PATH_NAMES = {SLM_READ_SYSCALL: "read", SLM_READ_RDPMC: "rdpmc", SLM_READ_MRS: "mrs"}
# slm_span_record and slm_call_record (csrc/slm_perf.h) as numpy records
SPAN_DTYPE = np.dtype([("t0_ns", np.uint64), ("t1_ns", np.uint64), ("busy_ns", np.uint64),
                       ("c0_ns", np.uint64), ("c1_ns", np.uint64), ("region", np.int32),
                       ("layer", np.int32), ("thread", np.int32), ("chunks", np.uint32),
                       ("call", np.uint32), ("own_copy", np.int32)])
CALL_DTYPE = np.dtype([("t_begin_ns", np.uint64), ("t_end_ns", np.uint64),
                       ("run_delay_ns", np.uint64), ("thread", np.int32), ("tid", np.int32),
                       ("call", np.uint32), ("pad", np.int32)])
RUN_DELAY_UNKNOWN = 0xFFFFFFFFFFFFFFFF
assert SPAN_DTYPE.itemsize == sizeof(slm_span_record), "SPAN_DTYPE disagrees with slm_span_record"
assert CALL_DTYPE.itemsize == sizeof(slm_call_record), "CALL_DTYPE disagrees with slm_call_record"
COUNT_STATUS_NAMES = {SLM_COUNT_EXACT: "exact", SLM_COUNT_SCALED: "scaled",
                      SLM_COUNT_NOT_COUNTED: "not counted", SLM_COUNT_IDLE: "idle"}


def monotonic_ns():
    """CLOCK_MONOTONIC in ns: the clock of regions and sampler records."""
    return slm_monotonic_ns()


def cpu_midr():
    """MIDR_EL1 read on the core itself (arm64 with HWCAP_CPUID), else None."""
    cdef int64_t v = slm_cpu_midr()
    return None if v < 0 else int(v)


def perf_spin(uint64_t n):
    """Run n iterations of a 2-instruction loop (x86-64, arm64): 2n instructions retired."""
    with nogil:
        slm_perf_spin(n)


def perf_probe(uint32_t type, uint64_t config, uint64_t config1=0, int flags=0):
    """Open and close one event on this thread: 0, or a negative errno."""
    with nogil:
        rc = slm_perf_probe(type, config, config1, flags)
    return rc


def perf_scale(uint64_t value, uint64_t enabled, uint64_t running):
    """(scaled value, status name) for one reading; status is exact/scaled/not counted/idle."""
    cdef double scaled = 0
    cdef int how = slm_perf_scale(value, enabled, running, &scaled)
    return scaled, COUNT_STATUS_NAMES[how]


def perf_parse_group(words, int expected_nr, bint has_id=True):
    """Parse a PERF_FORMAT_GROUP read buffer given as a sequence of u64:
    -> (values, ids, enabled, running)."""
    cdef cnp.ndarray[cnp.uint64_t, ndim=1] buf = np.ascontiguousarray(words, dtype=np.uint64)
    cdef uint64_t vals[64]
    cdef uint64_t ids[64]
    cdef uint64_t en = 0, run = 0
    if expected_nr < 0 or expected_nr > 64:
        raise ValueError(f"group size {expected_nr} out of range 0..64")
    check(slm_perf_parse_group(<uint64_t *>buf.data, buf.shape[0], expected_nr, has_id,
                               vals, ids, &en, &run), "parsing a group read")
    return ([vals[i] for i in range(expected_nr)],
            [ids[i] for i in range(expected_nr)] if has_id else None, en, run)


cdef dict _value_dict(slm_perf_value *v):
    return {"raw": v.raw, "scaled": v.scaled, "enabled_ns": v.enabled_ns,
            "running_ns": v.running_ns, "n_scaled": v.n_scaled,
            "n_not_counted": v.n_not_counted}


cdef class CounterSet:
    """perf_event groups opened per thread (or inherited on a child), read as one set.

    events: sequence of (type, config, config1, group); events sharing a group index are one
    perf group. Use slmprof.measure.counters.Counters, which chooses events and explains failures."""

    def __cinit__(self, events, int flags=0):
        cdef slm_perf_event ev[24]
        n = len(events)
        if n < 1 or n > SLM_PERF_MAX_EVENTS:
            raise ValueError(f"{n} events: a counter set holds 1 to {SLM_PERF_MAX_EVENTS}")
        for i, (t, cfg, cfg1, g) in enumerate(events):
            ev[i].type = t
            ev[i].config = cfg
            ev[i].config1 = cfg1
            ev[i].group = g
        check(slm_counters_create(&self.c, ev, n, flags), "creating a counter set")
        self.n_events = n

    def __dealloc__(self):
        if self.c != NULL:
            slm_counters_destroy(self.c)
            self.c = NULL

    cdef slm_counters *ptr(self) except NULL:
        if self.c == NULL:
            raise ValueError("counter set is closed")
        return self.c

    def attach_threads(self, int pid=0):
        """Open the groups on every thread of pid (0: this process) not attached yet;
        returns how many threads were added, or a negative errno."""
        cdef slm_counters *c = self.ptr()
        with nogil:
            rc = slm_counters_attach_threads(c, pid)
        return rc

    def attach_task(self, int tid):
        """Open the groups on one task; 0 or a negative errno."""
        cdef slm_counters *c = self.ptr()
        with nogil:
            rc = slm_counters_attach_task(c, tid)
        return rc

    def enable(self):
        check(slm_counters_enable(self.ptr()), "enabling counters")

    def disable(self):
        check(slm_counters_disable(self.ptr()), "disabling counters")

    def read(self):
        """One dict per event: raw, scaled, enabled_ns, running_ns, n_scaled, n_not_counted."""
        cdef slm_perf_value vals[24]
        cdef slm_counters *c = self.ptr()
        with nogil:
            rc = slm_counters_read(c, vals)
        check(rc, "reading counters")
        return [_value_dict(&vals[i]) for i in range(self.n_events)]

    @property
    def n_threads(self):
        return slm_counters_n_threads(self.ptr())

    @property
    def n_fds(self):
        return slm_counters_n_fds(self.ptr())

    @property
    def read_path(self):
        """How the calling thread's groups are read at region edges: read, rdpmc or mrs."""
        return READ_PATH_NAMES[slm_counters_read_path(self.ptr())]

    def allow_user_read(self, bint allow):
        """False: read every group with read() even where rdpmc/mrs is open (to compare the
        two paths on the same counters); True: back to the fastest path."""
        slm_counters_allow_user_read(self.ptr(), allow)

    def read_stats(self):
        """How (thread, group) reads were served so far: {"user": from the mmap page with
        rdpmc/mrs, "syscall": by read(), "user_fallback": user path tried, read() used}."""
        cdef uint64_t user = 0, syscall = 0, fallback = 0
        slm_counters_read_stats(self.ptr(), &user, &syscall, &fallback)
        return {"user": user, "syscall": syscall, "user_fallback": fallback}

    def close(self):
        """Close every descriptor (kept open while a region table uses the set)."""
        if self.c != NULL and self.users == 0:
            slm_counters_destroy(self.c)
            self.c = NULL

    @property
    def closed(self):
        return self.c == NULL


cdef class RegionTable(HookSource):
    """C region table: begin/end by integer id (0 .. capacity-1), nested, thread-safe,
    accumulating count, wall ns, calling-thread CPU ns and counter deltas of `counters`
    (a CounterSet or None) over all its threads. The engine calls its hooks at region edges
    (Model.set_profiler)."""

    def __cinit__(self, int capacity=16384, CounterSet counters=None):
        cdef slm_counters *c = NULL
        if counters is not None:
            c = counters.ptr()
            self.n_events = counters.n_events
        check(slm_region_table_create(&self.t, capacity, c), "creating the region table")
        self.hooks = slm_region_table_hooks(self.t)
        self.counters = counters
        if counters is not None:
            counters.users += 1

    def __dealloc__(self):
        if self.t != NULL:
            slm_region_table_destroy(self.t)
            self.t = NULL
        if self.counters is not None:
            (<CounterSet>self.counters).users -= 1

    cdef const slm_region_hooks *hooks_ptr(self) except NULL:
        return &self.hooks

    def begin(self, int32_t region_id):
        with nogil:
            slm_region_begin(self.t, region_id)

    def end(self, int32_t region_id):
        with nogil:
            slm_region_end(self.t, region_id)

    def edge(self, ends=(), begins=()):
        """End the regions `ends` (innermost first) and begin `begins` (outermost first) at
        one instant, as the engine does at a region edge: each clock is read once."""
        cdef int32_t e[8]
        cdef int32_t b[8]
        cdef int ne = len(ends), nb = len(begins), i
        if ne > 8 or nb > 8:
            raise ValueError("at most 8 regions on each side of an edge")
        for i in range(ne):
            e[i] = ends[i]
        for i in range(nb):
            b[i] = begins[i]
        with nogil:
            slm_region_edge(self.t, e, ne, b, nb)

    def set_wall_only(self, region_ids, bint wall_only=True):
        """Record only count and wall time for these regions: no thread CPU time and no
        counters, and one cheap clock read per edge instead of a system call and a counter
        snapshot (for short regions at a high rate, e.g. the engine's operations)."""
        for rid in region_ids:
            check(slm_region_set_wall_only(self.t, rid, wall_only), f"marking region {rid}")

    def bench_pairs(self, int32_t region_id, int64_t n):
        """Run n begin+end pairs in a C loop; elapsed ns (what one edge pair costs, without
        Python call overhead)."""
        cdef uint64_t ns
        with nogil:
            ns = slm_region_bench_pairs(self.t, region_id, n)
        return ns

    def get(self, int32_t region_id):
        """Totals of one region as a dict, or None if it never ran."""
        cdef slm_region_stats st
        rc = slm_region_get(self.t, region_id, &st)
        if rc == SLM_ENOENT:
            return None
        check(rc, f"reading region {region_id}")
        spans = {"span_count": st.span_count, "span_ns": st.span_ns, "busy_ns": st.busy_ns,
                 "imbalance_ns": st.imbalance_ns}
        if slm_region_is_wall_only(self.t, region_id):
            return {"count": st.count, "wall_ns": st.wall_ns, "thread_cpu_ns": None,
                    "counters": [], "wall_only": True, **spans}
        return {"count": st.count, "wall_ns": st.wall_ns, "thread_cpu_ns": st.thread_cpu_ns,
                "counters": [_value_dict(&st.counters[i]) for i in range(self.n_events)],
                "wall_only": False, **spans}

    def keep_spans(self, int64_t capacity):
        """Keep every per-thread span the engine hands over (up to `capacity` records), and
        each engine thread's run-queue wait per forward chunk; 0 stops keeping them."""
        check(slm_region_keep_spans(self.t, capacity), f"keeping {capacity} spans")

    def spans(self):
        """The kept spans as a numpy structured array (SPAN_DTYPE): one row per thread and
        operation instance, and one per layer tile (thread -1)."""
        cdef int64_t n = slm_region_span_count(self.t)
        out = np.zeros(n, dtype=SPAN_DTYPE)
        cdef size_t addr = out.ctypes.data
        if n:
            n = slm_region_span_copy(self.t, <slm_span_record *>addr, n)
        return out[:n]

    def calls(self):
        """Per forward chunk and engine thread: its run-queue wait since its previous chunk
        (CALL_DTYPE; RUN_DELAY_UNKNOWN where there was no earlier reading)."""
        cdef int64_t n = slm_region_call_count(self.t)
        out = np.zeros(n, dtype=CALL_DTYPE)
        cdef size_t addr = out.ctypes.data
        if n:
            n = slm_region_call_copy(self.t, <slm_call_record *>addr, n)
        return out[:n]

    @property
    def spans_dropped(self):
        return slm_region_span_dropped(self.t)

    def reset(self):
        slm_region_table_reset(self.t)

    @property
    def errors(self):
        """Edges that could not be matched (end without begin, too deep, bad id)."""
        return slm_region_table_errors(self.t)

    @property
    def capacity(self):
        return slm_region_table_capacity(self.t)


# ---------------------------------------------------------------- sampler

SAMPLER_MIN_HZ = SLM_SAMPLER_MIN_HZ
SAMPLER_MAX_HZ = SLM_SAMPLER_MAX_HZ
SAMPLER_MAX_CPUS = SLM_SAMPLER_MAX_CPUS
SAMPLER_MAX_THERMAL = SLM_SAMPLER_MAX_THERMAL
SAMPLER_MAX_RAPL = SLM_SAMPLER_MAX_RAPL
SAMPLER_MAX_SOURCES = SLM_SAMPLER_MAX_SOURCES
SAMPLER_MAX_EVERY = SLM_SAMPLER_MAX_EVERY


def sample_size():
    """sizeof(slm_sample): slmprof.measure.sampler checks its numpy dtype against it."""
    return slm_sample_size()


cdef class SamplerCore:
    """The C sampler thread. dtype: the numpy structured dtype matching slm_sample.
    Use slmprof.measure.sampler.Sampler, which finds the sources and explains missing ones."""

    def __cinit__(self, int hz, int pid, int capacity, dtype):
        if dtype.itemsize != slm_sample_size():
            raise RuntimeError(f"sample dtype is {dtype.itemsize} bytes, C record {slm_sample_size()}")
        rc = slm_sampler_create(&self.s, hz, pid, capacity)
        if rc == SLM_ERANGE:
            raise ValueError(f"sampling rate {hz} Hz out of range: {SLM_SAMPLER_MIN_HZ} to "
                             f"{SLM_SAMPLER_MAX_HZ} Hz")
        check(rc, "creating the sampler")
        self.dtype = dtype

    def __dealloc__(self):
        if self.s != NULL:
            with nogil:
                slm_sampler_destroy(self.s)
            self.s = NULL

    def add_source(self, int kind, int slot, path, int every=1):
        """Open a source read every `every` ticks (path None for the kinds without a file):
        its index (>= 0) or a negative errno."""
        if path is None:
            return slm_sampler_add_source(self.s, kind, slot, NULL, every)
        b = os.fsencode(path)
        return slm_sampler_add_source(self.s, kind, slot, b, every)

    def start(self):
        check(slm_sampler_start(self.s), "starting the sampler thread")

    def stop(self):
        with nogil:
            slm_sampler_stop(self.s)

    def drain(self, int max_records=1 << 16):
        """Records written since the last drain, as a numpy structured array."""
        out = np.empty(max_records, dtype=self.dtype)
        cdef cnp.ndarray arr = out
        cdef int n
        with nogil:
            n = slm_sampler_drain(self.s, <slm_sample *>arr.data, max_records)
        return out[:n].copy() if n < max_records // 2 else out[:n]

    def sample_once(self):
        out = np.zeros(1, dtype=self.dtype)
        cdef cnp.ndarray arr = out
        check(slm_sampler_sample_once(self.s, <slm_sample *>arr.data), "sampling once")
        return out

    def stats(self):
        cdef slm_sampler_stats st
        slm_sampler_stats_get(self.s, &st)
        return {"n_samples": st.n_samples, "n_missed": st.n_missed, "n_dropped": st.n_dropped,
                "thread_cpu_ns": st.thread_cpu_ns, "elapsed_ns": st.elapsed_ns,
                "thread_vol_ctxsw": st.thread_vol_ctxsw, "thread_invol_ctxsw": st.thread_invol_ctxsw}

    def source(self, int i):
        """(kind, slot, last errno, failures, every, phase) of source i."""
        cdef int kind = 0, slot = 0, err = 0, every = 0, phase = 0
        cdef uint64_t failed = 0
        check(slm_sampler_source(self.s, i, &kind, &slot, &err, &failed, &every, &phase),
              "source status")
        return kind, slot, err, failed, every, phase

    @property
    def n_sources(self):
        return slm_sampler_n_sources(self.s)
