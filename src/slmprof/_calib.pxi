# Calibration kernels (csrc/calib/): this machine's ceilings for the roofline, as numbers.

TRACE_CRITICAL_TID = SLM_TRACE_CRITICAL_TID
CALIB_MEMORY_KINDS = {"read": SLM_CALIB_READ, "copy": SLM_CALIB_COPY, "triad": SLM_CALIB_TRIAD}


cdef dict _calib_result(slm_calib_result *r):
    return {"best_per_s": r.best_per_s, "median_per_s": r.median_per_s, "seconds": r.seconds,
            "passes": r.passes, "work_per_pass": r.work_per_pass, "checksum": r.checksum,
            "median_per_cpu_s": r.median_per_cpu_s, "run_delay_s": r.run_delay_seconds,
            "thread_s": r.thread_seconds}


def calib_memory(str kind, int threads, int64_t bytes_per_array, double min_seconds=0.3,
                 int max_passes=50, bint hugepages=False):
    """Bandwidth of a STREAM-style loop ("read", "copy", "triad") in bytes/s (best and median).
    Arrays are in 4 KiB pages like mmap'd weights, or with hugepages=True in transparent huge
    pages (as numpy allocates large arrays)."""
    if kind not in CALIB_MEMORY_KINDS:
        raise ValueError(f"memory kernel {kind!r}: expected one of {', '.join(CALIB_MEMORY_KINDS)}")
    cdef int k = CALIB_MEMORY_KINDS[kind]
    cdef slm_calib_result r
    cdef int status
    with nogil:
        status = slm_calib_memory(k, threads, bytes_per_array, min_seconds, max_passes,
                                  SLM_CALIB_HUGEPAGES if hugepages else 0, &r)
    check(status, f"{kind} bandwidth with {threads} threads over {bytes_per_array} bytes")
    return _calib_result(&r)


def calib_dot(int type, int isa, int threads, int64_t rows, int64_t cols, double min_seconds=0.2):
    """Cache-resident vec_dot throughput of one weight type on one kernel path, in operations/s."""
    cdef slm_calib_result r
    cdef int status
    with nogil:
        status = slm_calib_dot(type, isa, threads, rows, cols, min_seconds, &r)
    check(status, f"dot throughput of type {type} on kernel path {isa}")
    return _calib_result(&r)


def calib_matmul(int type, int threads, int64_t rows, int64_t cols, int64_t n_tok,
                 double min_seconds=0.2):
    """Cache-resident throughput of the engine's matrix product (prepared weights, active
    kernel path) for n_tok activation rows, in operations/s."""
    cdef slm_calib_result r
    cdef int status
    with nogil:
        status = slm_calib_matmul(type, threads, rows, cols, n_tok, min_seconds, &r)
    check(status, f"matrix product throughput of type {type} with {n_tok} tokens")
    return _calib_result(&r)


def calib_stream(int type, int threads, int64_t rows, int64_t cols, int64_t total_bytes,
                 int64_t chunk_rows=48, int interleave=1, double min_seconds=0.2):
    """Decode's matrix-vector product through the engine's path with its weights streaming
    from memory (prepared copies totalling total_bytes) in calls of chunk_rows rows,
    `interleave` weights in turn, in weight bytes/s."""
    cdef slm_calib_result r
    cdef int status
    with nogil:
        status = slm_calib_stream(type, threads, rows, cols, total_bytes, chunk_rows, interleave,
                                  min_seconds, &r)
    check(status, f"streamed matrix-vector product of type {type} over {total_bytes} bytes")
    return _calib_result(&r)


def calib_attention(int threads, int64_t total_kv_bytes, int head_dim=64, int n_pos=256,
                    double min_seconds=0.2):
    """Decode attention through the engine's path (f32 KV caches totalling total_kv_bytes, read
    from memory as decode finds them), in operations/s counted as the roofline counts them
    (4 * head_dim + 5 per head and position)."""
    cdef slm_calib_result r
    cdef int status
    with nogil:
        status = slm_calib_attention(threads, head_dim, n_pos, total_kv_bytes, min_seconds, &r)
    check(status, f"attention throughput with {threads} threads")
    return _calib_result(&r)


def calib_fma(int threads, double min_seconds=0.2):
    """Peak f32 FMA throughput in operations/s; 'path' names the vector unit used."""
    cdef slm_calib_result r
    cdef const char *path = NULL
    cdef int status
    with nogil:
        status = slm_calib_fma(threads, min_seconds, &r, &path)
    check(status, f"f32 FMA throughput with {threads} threads")
    d = _calib_result(&r)
    d["path"] = path.decode() if path != NULL else "unknown"
    return d


def calib_sync(int threads, int rounds=2000):
    """Seconds for one fan-out + join of `threads` threads doing nothing: (best, median)."""
    cdef double best = 0, median = 0
    cdef int status
    with nogil:
        status = slm_calib_sync(threads, rounds, &best, &median)
    check(status, f"fan-out cost with {threads} threads")
    return best, median


def calib_engine_wait(int threads, int steps=200, int rounds=50):
    """Seconds one wait for all threads costs the forward pass, measured with the engine's own
    pool, work counters and wait: {"best", "median", "run_delay_s", "thread_s"}."""
    cdef double best = 0, median = 0
    cdef slm_calib_result load
    cdef int status
    with nogil:
        status = slm_calib_engine_wait(threads, steps, rounds, &best, &median, &load)
    check(status, f"the engine's wait with {threads} threads")
    return {"best": best, "median": median, "run_delay_s": load.run_delay_seconds,
            "thread_s": load.thread_seconds}


def calib_llc_bytes():
    """Last-level cache size in bytes as sysfs reports it, 0 when unknown."""
    return slm_calib_llc_bytes()


# ---- trace recorder: region edges with timestamps, chained to a region table ---------------

def trace_now_ns():
    """CLOCK_MONOTONIC in ns: the clock of trace edges and of the sampler."""
    return slm_trace_now_ns()


cdef class TraceRecorder(HookSource):
    """Region hooks that log every edge with its time and thread, then pass it on to `next_hooks`
    (a RegionTable, kept alive here), if given. Hand it to the engine like a region table:
    `model.set_profiler(recorder)`."""

    def __cinit__(self, int64_t capacity=1 << 21, HookSource next_hooks=None):
        check(slm_trace_create(&self.r, capacity,
                               next_hooks.hooks_ptr() if next_hooks is not None else NULL),
              f"creating a trace recorder for {capacity} edges")
        self.next_hooks = next_hooks

    def __dealloc__(self):
        if self.r != NULL:
            slm_trace_destroy(self.r)
            self.r = NULL

    cdef const slm_region_hooks *hooks_ptr(self) except NULL:
        return slm_trace_hooks(self.r)

    @property
    def count(self):
        return slm_trace_count(self.r)

    @property
    def dropped(self):
        return slm_trace_dropped(self.r)

    def clear(self):
        slm_trace_clear(self.r)

    def edges(self):
        """The edges so far as a numpy structured array (t_ns, region, tid, is_end)."""
        cdef int64_t n = slm_trace_count(self.r)
        dtype = np.dtype([("t_ns", np.uint64), ("region", np.int32), ("tid", np.int32),
                          ("is_end", np.int32), ("pad", np.int32)])
        if n == 0:
            return np.empty(0, dtype=dtype)
        raw = (<char *>slm_trace_edges(self.r))[:n * sizeof(slm_trace_edge)]  # a copy
        return np.frombuffer(raw, dtype=dtype).copy()

    def begin(self, int32_t region):
        """Log an edge from Python (tests, Python-level regions)."""
        cdef const slm_region_hooks *h = slm_trace_hooks(self.r)
        h.begin(h.ctx, region)

    def end(self, int32_t region):
        cdef const slm_region_hooks *h = slm_trace_hooks(self.r)
        h.end(h.ctx, region)
