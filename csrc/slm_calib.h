/* slm_calib.h: measurements of this machine's ceilings for the roofline: memory bandwidth
 * over buffers far larger than the last-level cache, cache-resident int8 dot-product
 * throughput of each kernel path, f32 FMA throughput, and the cost of a thread fan-out.
 * Included by slm.h. Every function returns SLM_OK or a negative status; results are numbers. */
#ifndef SLM_CALIB_H
#define SLM_CALIB_H

/* Memory kernels, STREAM-style. Bytes counted per pass (8-byte elements, n per array):
 *   READ   s += a[i]             8n   (reads only)
 *   COPY   c[i] = a[i]           16n  (read + write; write-allocate traffic not counted)
 *   TRIAD  a[i] = b[i] + k*c[i]  24n */
typedef enum slm_calib_mem_kind {
    SLM_CALIB_READ = 0,
    SLM_CALIB_COPY = 1,
    SLM_CALIB_TRIAD = 2,
} slm_calib_mem_kind;

typedef struct slm_calib_result {
    double best_per_s;    /* bytes/s (memory) or operations/s (compute) of the fastest pass */
    double median_per_s;  /* same, median pass */
    double seconds;       /* wall time spent measuring */
    int64_t passes;       /* passes timed */
    int64_t work_per_pass;/* bytes or operations in one pass */
    uint64_t checksum;    /* folds every result so no pass can be optimised away */
    double median_per_cpu_s; /* per second of thread 0's CPU time, median pass: with one thread,
                                the kernel's speed without the time other processes held the core */
    double run_delay_seconds;  /* the team's threads' time runnable but not running, summed
                                  (schedstat; 0 where the kernel has none) */
    double thread_seconds;     /* the team's threads' wall time measuring, summed */
} slm_calib_result;

/* Stream `bytes_per_array` per array with `threads` threads (each owns a contiguous slice,
 * first-touched by that thread) for at least min_seconds (at least 3 passes, at most
 * max_passes). The buffers are allocated and freed here. */
int slm_calib_memory(int kind, int threads, int64_t bytes_per_array, double min_seconds,
                     int max_passes, int flags, slm_calib_result *out);

/* flags for slm_calib_memory. By default the arrays live in ordinary 4 KiB pages, as the
 * model's mmap'd (or repacked) weights do; with SLM_CALIB_HUGEPAGES they are 2 MiB aligned
 * and madvise(MADV_HUGEPAGE)d, as numpy and most STREAM builds get (fewer TLB misses). */
enum { SLM_CALIB_HUGEPAGES = 1 };

/* Cache-resident dot products with a weight type's kernel on one ISA (slm_get_traits):
 * every thread runs vec_dot over its own `rows` x `cols` weight block (small enough to stay in
 * L1/L2) against one activation row. Operations = 2 * rows * cols per pass per thread
 * (one multiply and one add per weight). SLM_ENOSYS when the type has no kernel on that ISA. */
int slm_calib_dot(int type, int isa, int threads, int64_t rows, int64_t cols,
                  double min_seconds, slm_calib_result *out);

/* Cache-resident matrix products through the engine's own path on the active ISA
 * (slm_weight_prepare, slm_quantize_activations, slm_matmul_rows): every thread multiplies
 * its own `rows` x `cols` weight (repacked as the engine's are) by n_tok activation rows.
 * n_tok = 1 is decode's matrix-vector product, larger n_tok prefill's blocked product.
 * Operations = 2 * rows * cols * n_tok per pass per thread. */
int slm_calib_matmul(int type, int threads, int64_t rows, int64_t cols, int64_t n_tok,
                     double min_seconds, slm_calib_result *out);

/* Decode's matrix-vector product streaming from memory through the engine's path (active
 * ISA) in the engine's pattern: enough prepared copies of one `rows` x `cols` weight to exceed
 * total_bytes (make it far larger than the last-level cache), multiplied by one activation row
 * in calls of chunk_rows rows (a multiple of 4), `interleave` copies in turn (the engine's
 * gate and up: 2), chunks dealt round robin to the threads. Rates are weight bytes per second
 * (the copies' plain row bytes; the repacked layouts hold the same bytes). */
int slm_calib_stream(int type, int threads, int64_t rows, int64_t cols, int64_t total_bytes,
                     int64_t chunk_rows, int interleave, double min_seconds, slm_calib_result *out);

/* Decode attention through the engine's path (active ISA), f32 cache: every thread runs query
 * heads (3 per KV head) over n_pos cached positions of per-layer caches of its own that
 * together hold total_kv_bytes (make it far larger than the last-level cache: a decoded token
 * finds its cache evicted by the weights it streamed). Operations per head and position as
 * the roofline counts them: 4 * head_dim + 5. */
int slm_calib_attention(int threads, int head_dim, int n_pos, int64_t total_kv_bytes,
                        double min_seconds, slm_calib_result *out);

/* Peak f32 FMA throughput: independent fused multiply-add chains in registers, 2 operations
 * per lane per FMA. Uses the widest vector unit this CPU has (AVX2+FMA, NEON, else scalar C);
 * *path_name (may be NULL) says which. */
int slm_calib_fma(int threads, double min_seconds, slm_calib_result *out, const char **path_name);

/* Cost of one fan-out + join of `threads` threads doing no work (the floor under every
 * parallel operation), in seconds: best and median of `rounds` rounds. */
int slm_calib_sync(int threads, int rounds, double *best_seconds, double *median_seconds);

/* What one wait for all threads costs the forward pass, measured the way the engine waits: the
 * engine's thread pool runs `steps` parallel steps back to back, each cut into 2 * threads
 * empty work units claimed from an atomic counter, every thread waiting (spin, then sleep)
 * until all units are done (csrc/model/model.c, parallel()). Seconds per step: best and
 * median over `rounds` runs (a run also pays one wake of the pool). */
int slm_calib_engine_wait(int threads, int steps, int rounds, double *best_seconds,
                          double *median_seconds, slm_calib_result *load);

/* Last-level cache size in bytes as the OS reports it (sysfs), or 0 when unknown. */
int64_t slm_calib_llc_bytes(void);

/* Trace recorder: region hooks that log every edge (monotonic ns, region id, begin/end,
 * thread id) into a preallocated buffer, then pass the edge on to `next` hooks (a region
 * table) when given. Lock-free: one atomic increment per edge. Edges past the capacity are
 * counted as dropped, never written. */
typedef struct slm_trace_edge {
    uint64_t t_ns;   /* CLOCK_MONOTONIC (the sampler's clock) */
    int32_t region;
    int32_t tid;     /* kernel thread id of the caller */
    int32_t is_end;  /* 0 begin, 1 end */
    int32_t pad;
} slm_trace_edge;

/* The tid of the track that holds each operation's critical interval and each layer's tile
 * when the engine hands over per-thread spans (no kernel thread has it). */
#define SLM_TRACE_CRITICAL_TID (-1)

typedef struct slm_trace_recorder slm_trace_recorder;

int slm_trace_create(slm_trace_recorder **out, int64_t capacity, const slm_region_hooks *next);
void slm_trace_destroy(slm_trace_recorder *r);
/* The hooks to hand to the engine; they stay valid until slm_trace_destroy. */
const slm_region_hooks *slm_trace_hooks(slm_trace_recorder *r);
int64_t slm_trace_count(const slm_trace_recorder *r);    /* edges stored */
int64_t slm_trace_dropped(const slm_trace_recorder *r);  /* edges lost to the capacity */
const slm_trace_edge *slm_trace_edges(const slm_trace_recorder *r);
void slm_trace_clear(slm_trace_recorder *r);
uint64_t slm_trace_now_ns(void);

#endif /* SLM_CALIB_H */
