/* slm_perf.h: perf_event counter groups, the region table and the /proc + sysfs sampler
 * thread. Included by slm.h.
 *
 * Counters (csrc/perf/counters.c)
 *   A counter set is one list of events, split into groups (each group is scheduled on the
 *   PMU as a unit), opened once per thread: for this process one group set per existing
 *   thread (from /proc/self/task; call slm_counters_attach_threads again to pick up threads
 *   created since), or, for a child process, one inherited group set on its pid.
 *   Reads aggregate every thread. Values are scaled by time_enabled / time_running per
 *   (thread, group) and the times are kept so callers can flag scaled and never-counted
 *   values. Regions read through the fastest path the kernel allows: rdpmc (x86) or mrs
 *   (arm64) from the perf mmap page for the calling thread's hardware groups, read()
 *   otherwise.
 *
 * Regions (csrc/perf/regions.c)
 *   begin/end by integer id, nested, from any thread; each accumulates count, wall ns,
 *   CPU ns of the calling thread and counter deltas over all threads. The engine's
 *   per-thread spans add each operation's critical path, the threads' busy time and their
 *   imbalance, and can be kept whole in a log with each thread's run-queue wait per chunk.
 *
 * Sampler (csrc/perf/sampler.c)
 *   A pthread reading kept-open /proc and sysfs files with pread at offset 0, at 1 Hz to
 *   10 kHz, into a ring of fixed-size slm_sample records that Python drains to numpy. Each
 *   source is read every N ticks (its own rate, chosen by the caller); the ticks of the
 *   slower sources are spread so that few of them fall on the same tick.
 */
#ifndef SLM_PERF_H
#define SLM_PERF_H

/* ---------------------------------------------------------------- counters */

#define SLM_PERF_MAX_EVENTS 24      /* events in one counter set */
#define SLM_PERF_MAX_GROUP 16       /* events in one group */

/* Flags for slm_perf_probe / slm_counters_create. */
enum {
    SLM_PERF_EXCLUDE_KERNEL = 1 << 0,  /* required by perf_event_paranoid >= 2 */
    SLM_PERF_INHERIT = 1 << 1,         /* count threads/children created after opening */
    SLM_PERF_ENABLE_ON_EXEC = 1 << 2,  /* start counting when the target calls exec */
    SLM_PERF_USER_READ = 1 << 3,       /* mmap pages for rdpmc / mrs (self-monitoring only) */
};

/* Read paths, as reported by slm_counters_read_path. */
enum {
    SLM_READ_SYSCALL = 0,  /* read() of the group leader */
    SLM_READ_RDPMC = 1,    /* x86 rdpmc via the perf mmap page */
    SLM_READ_MRS = 2,      /* arm64 PMU user access (perf_user_access=1, config1 bit 1) */
};

/* Scaling outcome of one value (slm_perf_scale). */
enum {
    SLM_COUNT_EXACT = 0,        /* ran the whole time it was enabled */
    SLM_COUNT_SCALED = 1,       /* multiplexed: value * enabled / running */
    SLM_COUNT_NOT_COUNTED = 2,  /* enabled but never ran: no value exists */
    SLM_COUNT_IDLE = 3,         /* never enabled (task never ran): zero is exact */
};

typedef struct slm_perf_event {
    uint32_t type;      /* PERF_TYPE_HARDWARE, _SOFTWARE, _RAW, ... */
    uint64_t config;
    uint64_t config1;   /* arm64: bit 1 asks for user access */
    int32_t group;      /* events with the same group index are opened as one group */
} slm_perf_event;

/* Aggregated reading of one event over all threads. */
typedef struct slm_perf_value {
    uint64_t raw;           /* sum of raw counts */
    double scaled;          /* sum over (thread, group) of raw * enabled / running */
    uint64_t enabled_ns;    /* sum of time enabled */
    uint64_t running_ns;    /* sum of time running */
    uint32_t n_scaled;      /* (thread, group) pairs that were multiplexed */
    uint32_t n_not_counted; /* (thread, group) pairs enabled but never running */
} slm_perf_value;

typedef struct slm_counters slm_counters;

/* Try to open one event on the calling thread and close it: 0 or -errno. */
int slm_perf_probe(uint32_t type, uint64_t config, uint64_t config1, int flags);

/* Scale one value; returns SLM_COUNT_*. */
int slm_perf_scale(uint64_t value, uint64_t enabled, uint64_t running, double *scaled);

/* Parse a PERF_FORMAT_GROUP|TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING[|ID] read buffer of
 * n_words u64: checks nr against expected, fills values[nr] (and ids[nr] if has_id). */
int slm_perf_parse_group(const uint64_t *buf, size_t n_words, int expected_nr, int has_id,
                         uint64_t *values, uint64_t *ids, uint64_t *enabled, uint64_t *running);

int slm_counters_create(slm_counters **out, const slm_perf_event *events, int n_events, int flags);
/* Open the group set on every thread of pid (0: this process) not yet attached; returns the
 * number of threads newly attached, or -errno (-EMFILE when out of descriptors). Threads
 * that exit between listing and opening are skipped. */
int slm_counters_attach_threads(slm_counters *c, int pid);
/* Open the group set on one task (with SLM_PERF_INHERIT: its future threads/children too). */
int slm_counters_attach_task(slm_counters *c, int tid);
int slm_counters_enable(slm_counters *c);
int slm_counters_disable(slm_counters *c);
/* Totals since opening, aggregated over threads: out[n_events]. */
int slm_counters_read(slm_counters *c, slm_perf_value *out);
int slm_counters_n_events(const slm_counters *c);
int slm_counters_n_threads(const slm_counters *c);
int slm_counters_n_fds(const slm_counters *c);
/* SLM_READ_* used for the calling thread's groups at region edges. */
int slm_counters_read_path(slm_counters *c);
/* allow = 0 makes every read use read() even where the user-space path is open (to compare
 * the two paths on the same counters); 1 restores the default. */
void slm_counters_allow_user_read(slm_counters *c, int allow);
/* (thread, group) reads since creation: served from the mmap page, by read(), and user-path
 * attempts that had to fall back to read() (group not on the PMU at that moment). */
void slm_counters_read_stats(slm_counters *c, uint64_t *user_reads, uint64_t *syscall_reads,
                             uint64_t *user_fallbacks);
void slm_counters_destroy(slm_counters *c);
/* n iterations of a 2-instruction loop (x86-64, arm64): a known instruction count. */
void slm_perf_spin(uint64_t n);

/* A snapshot: per (thread, group) raw values and times; used by the region table. */
typedef struct slm_counters_snapshot {
    int n_slots;        /* (thread, group) pairs captured */
    int capacity;       /* slots allocated */
    uint64_t *words;    /* [capacity][SLM_PERF_MAX_GROUP + 2]: values..., enabled, running */
} slm_counters_snapshot;

int slm_counters_snapshot_take(slm_counters *c, slm_counters_snapshot *s);
/* Accumulate (now - before) into out[n_events]. */
int slm_counters_snapshot_delta(slm_counters *c, const slm_counters_snapshot *before,
                                const slm_counters_snapshot *now, slm_perf_value *out);
void slm_counters_snapshot_free(slm_counters_snapshot *s);

/* MIDR_EL1 of the calling core via the kernel's emulated mrs (arm64 with HWCAP_CPUID);
 * -ENOSYS elsewhere. */
int64_t slm_cpu_midr(void);

/* ---------------------------------------------------------------- regions */

#define SLM_REGION_MAX_DEPTH 32
#define SLM_REGION_MAX_THREADS 32

typedef struct slm_region_stats {
    uint64_t count;
    uint64_t wall_ns;           /* CLOCK_MONOTONIC, the sampler's clock */
    uint64_t thread_cpu_ns;     /* CPU time of the thread calling begin/end (0: wall-only) */
    /* From the engine's per-thread spans (slm_region_hooks.spans): */
    uint64_t span_count;        /* instances */
    uint64_t span_ns;           /* critical path (slm_spans_critical) */
    uint64_t busy_ns;           /* the threads' own work, summed over threads */
    uint64_t imbalance_ns;      /* how long the first thread to finish waited for the last */
    slm_perf_value counters[SLM_PERF_MAX_EVENTS];
} slm_region_stats;

/* One row of the span log: one thread's span of one operation instance (thread >= 0), or the
 * tile of one layer (thread = -1, t0/t1 = c0/c1 = the tile). */
typedef struct slm_span_record {
    uint64_t t0_ns, t1_ns;      /* this thread's span (0, 0: it never reached the operation) */
    uint64_t busy_ns;
    uint64_t c0_ns, c1_ns;      /* the instance's critical interval */
    int32_t region;
    int32_t layer;              /* the layer region it belongs to */
    int32_t thread;             /* worker index, -1 for a layer tile */
    uint32_t chunks;
    uint32_t call;              /* forward chunk, counted from the last reset */
    int32_t own_copy;           /* every thread computed the whole operation for itself */
} slm_span_record;

/* One thread in one forward chunk: its run-queue wait (schedstat) since its previous chunk. */
typedef struct slm_call_record {
    uint64_t t_begin_ns, t_end_ns;
    uint64_t run_delay_ns;      /* UINT64_MAX: not known (first sight of the thread, no procfs) */
    int32_t thread, tid;
    uint32_t call;
    int32_t pad;
} slm_call_record;

typedef struct slm_region_table slm_region_table;

/* counters may be NULL (time only). capacity: ids 0 .. capacity-1. */
int slm_region_table_create(slm_region_table **out, int capacity, slm_counters *counters);
void slm_region_table_destroy(slm_region_table *t);
void slm_region_begin(void *table, int32_t id);
void slm_region_end(void *table, int32_t id);
/* End the regions ends[0..n_end) (innermost first) and begin begins[0..n_begin) (outermost
 * first) at one instant, each clock read once for the edge: regions that follow each other
 * tile the time. The CPU clock and counter reads (only if a region here keeps them) come
 * after the wall instant, so they are in the time of the regions that begin. */
void slm_region_edge(void *table, const int32_t *ends, int n_end, const int32_t *begins, int n_begin);
/* Record only count and wall time for this region (no thread CPU time, no counters): for
 * regions too short and too many for a system call at each edge. */
int slm_region_set_wall_only(slm_region_table *t, int32_t id, int wall_only);
int slm_region_is_wall_only(const slm_region_table *t, int32_t id);
slm_region_hooks slm_region_table_hooks(slm_region_table *t);
/* 0 and fills out if the region ran, -ENOENT if it never did, -EINVAL for a bad id. */
int slm_region_get(slm_region_table *t, int32_t id, slm_region_stats *out);
void slm_region_table_reset(slm_region_table *t);
/* Edges that could not be matched (end without begin, depth or thread overflow, bad id). */
uint64_t slm_region_table_errors(slm_region_table *t);
int slm_region_table_capacity(const slm_region_table *t);
/* n begin+end pairs of one id in a C loop; returns elapsed ns (benchmarks). */
uint64_t slm_region_bench_pairs(slm_region_table *t, int32_t id, int64_t n);
/* The critical interval of each operation of a chunk: from the end of the previous one's (the
 * chunk's begin for the first), or the first thread's begin if that is later, to the end of
 * the last thread that did some of its work. Consecutive operations never overlap, so they
 * add up to their layers; layers tile the chunk: layer_end[i] is the end of the layer whose
 * last operation is i (the chunk's end for the last layer), 0 for the other operations.
 * Each array has n_ops entries. */
void slm_spans_critical(const slm_chunk_spans *s, uint64_t *start, uint64_t *end, uint64_t *layer_end);
/* The hooks' spans callback of a region table (what slm_region_table_hooks installs). */
void slm_region_spans(void *table, const slm_chunk_spans *s);
/* Keep every span (and per chunk, each thread's run-queue wait read from
 * /proc/self/task/TID/schedstat) in a log of `capacity` span records (0: stop keeping them).
 * Records past the capacity are counted as dropped. */
int slm_region_keep_spans(slm_region_table *t, int64_t capacity);
int64_t slm_region_span_count(slm_region_table *t);
int64_t slm_region_span_dropped(slm_region_table *t);
/* Copy up to max records out (from the first); returns how many. */
int64_t slm_region_span_copy(slm_region_table *t, slm_span_record *out, int64_t max);
int64_t slm_region_call_count(slm_region_table *t);
int64_t slm_region_call_copy(slm_region_table *t, slm_call_record *out, int64_t max);

/* ---------------------------------------------------------------- sampler */

#define SLM_SAMPLER_MIN_HZ 1
#define SLM_SAMPLER_MAX_HZ 10000
#define SLM_SAMPLER_MAX_CPUS 16
#define SLM_SAMPLER_MAX_THERMAL 8
#define SLM_SAMPLER_MAX_RAPL 4
#define SLM_SAMPLER_MAX_SOURCES 64
#define SLM_SAMPLER_MAX_EVERY 100000  /* 10 s at 10 kHz */

/* What a source is parsed as (the rates the Python side reads them at: slmprof/sampler.py). */
typedef enum slm_source_kind {
    SLM_SRC_SCHEDSTAT = 0,  /* <proc>/<pid>/schedstat: run ns, wait ns (leader thread) */
    SLM_SRC_STATUS,         /* <proc>/<pid>/status: VmHWM, ctxt switches (leader thread) */
    SLM_SRC_STAT,           /* <proc>/<pid>/stat: minflt, majflt (all threads) */
    SLM_SRC_IO,             /* <proc>/<pid>/io */
    SLM_SRC_SYSSTAT,        /* <proc>/stat: "cpu" line */
    SLM_SRC_MEMINFO,        /* <proc>/meminfo: MemAvailable */
    SLM_SRC_PSI_CPU,        /* <proc>/pressure/cpu */
    SLM_SRC_PSI_MEMORY,
    SLM_SRC_PSI_IO,
    SLM_SRC_CPUFREQ,        /* slot = cpu: scaling_cur_freq (kHz) */
    SLM_SRC_THERMAL,        /* slot = zone: temp (m°C) */
    SLM_SRC_THROTTLED,      /* Raspberry Pi get_throttled (hex bit field) */
    SLM_SRC_UNDERVOLT,      /* Raspberry Pi hwmon in0_lcrit_alarm (0/1) */
    SLM_SRC_RAPL,           /* slot = domain: energy_uj */
    SLM_SRC_VMSTAT,         /* <proc>/vmstat */
    SLM_SRC_SMAPS_ROLLUP,   /* <proc>/<pid>/smaps_rollup */
    SLM_SRC_STATM,          /* <proc>/<pid>/statm: resident pages */
    SLM_SRC_RUSAGE,         /* no file, pid 0 only: getrusage of this process (all threads,
                               the sampler's too): CPU ns, faults, ctxt switches, peak RSS */
    SLM_SRC_PROC_CLOCK,     /* no file: the process's POSIX CPU clock (all threads) */
    SLM_SRC_KIND_COUNT
} slm_source_kind;

/* One record. Every field is valid only if its source's bit is set in `valid`
 * (bit i = source i in the order added); nothing is carried over from a failed read. */
typedef struct slm_sample {
    uint64_t t_ns;                 /* CLOCK_MONOTONIC */
    uint64_t proc_cpu_ns;          /* process CPU time (all threads): RUSAGE or PROC_CLOCK */
    uint64_t sched_run_ns, sched_wait_ns;
    uint64_t rss_bytes, peak_rss_bytes;
    uint64_t minflt, majflt;
    uint64_t vol_ctxsw, invol_ctxsw;
    uint64_t io_rchar, io_wchar, io_read_bytes, io_write_bytes;
    uint64_t sys_busy_ticks, sys_total_ticks;
    uint64_t mem_available_bytes;
    uint64_t psi_cpu_some_us, psi_mem_some_us, psi_mem_full_us, psi_io_some_us, psi_io_full_us;
    uint64_t rapl_uj[SLM_SAMPLER_MAX_RAPL];
    uint64_t vm_pgfault, vm_pgmajfault, vm_pswpin, vm_pswpout;
    uint64_t pss_bytes, swap_bytes;
    uint64_t valid;                /* bit per source */
    uint32_t cpufreq_khz[SLM_SAMPLER_MAX_CPUS];
    int32_t thermal_mc[SLM_SAMPLER_MAX_THERMAL];
    uint32_t throttled;
    uint32_t undervolt;
    uint64_t tick;                 /* ticks since start; gaps are missed ticks. Source i is
                                      read when tick % every == phase (slm_sampler_source) */
} slm_sample;

typedef struct slm_sampler slm_sampler;

typedef struct slm_sampler_stats {
    uint64_t n_samples;      /* records written */
    uint64_t n_missed;       /* ticks skipped because the thread fell behind */
    uint64_t n_dropped;      /* records lost because the ring was full */
    uint64_t thread_cpu_ns;  /* the sampler thread's own CPU time */
    uint64_t elapsed_ns;     /* from start to stop (or now) */
    uint64_t thread_vol_ctxsw, thread_invol_ctxsw;  /* its own context switches (once stopped) */
} slm_sampler_stats;

/* pid: 0 for this process. capacity: ring records (rounded up to a power of two).
 * -ERANGE if hz is outside 1..10000. */
int slm_sampler_create(slm_sampler **out, int hz, int pid, int capacity);
/* Open (and test-read) a source, read every `every` ticks (1 = every tick, up to
 * SLM_SAMPLER_MAX_EVERY). path is NULL for RUSAGE and PROC_CLOCK. Returns the source index
 * (>= 0), or -errno (the caller records the source as missing). */
int slm_sampler_add_source(slm_sampler *s, int kind, int slot, const char *path, int every);
int slm_sampler_start(slm_sampler *s);
int slm_sampler_stop(slm_sampler *s);
/* Copy up to max records out; returns how many. */
int slm_sampler_drain(slm_sampler *s, slm_sample *out, int max);
int slm_sampler_stats_get(slm_sampler *s, slm_sampler_stats *out);
/* Source i: kind, slot, errno of the last failed read (0 if none), failure count, its
 * period in ticks and the first tick it is read on (set by start). */
int slm_sampler_source(slm_sampler *s, int i, int *kind, int *slot, int *last_errno,
                       uint64_t *n_failed, int *every, int *phase);
int slm_sampler_n_sources(const slm_sampler *s);
/* Sample once into *out right now (for tests and one-off reads; the thread need not run). */
int slm_sampler_sample_once(slm_sampler *s, slm_sample *out);
void slm_sampler_destroy(slm_sampler *s);
size_t slm_sample_size(void);
uint64_t slm_monotonic_ns(void);
/* Kernel thread id of the calling thread (cached per thread). */
int32_t slm_thread_id(void);

#endif /* SLM_PERF_H */
