/* Ceilings of this machine for the roofline: memory bandwidth, cache-resident kernel
 * throughput, f32 FMA peak and fan-out cost. Each measurement runs on its own small team of
 * threads (the caller is thread 0) that steps through timed passes in lock-step:
 *
 *   barrier  -> thread 0 reads the clock
 *   every thread runs its slice of the pass
 *   barrier  -> thread 0 reads the clock, records the pass, decides whether to go on
 *   barrier  -> everyone sees the decision
 *
 * so a pass's time covers the slowest thread, as a parallel layer's time does. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

#include "slm.h"
#include "calib_internal.h"
#include "model/attention.h"
#include "model/pool.h"


#define MAX_PASSES_LIMIT 100000
/* Operations per thread in one pass of a cache-resident kernel: a pass must dwarf the barriers
 * around it (a few microseconds, tens when a core is shared), or a multi-thread figure measures
 * the barrier instead of the kernel. 2^25 operations are ~0.3 ms on an x86 core, ~3 ms on a
 * Pi 4 core. */
#define PASS_OPS ((int64_t)1 << 25)

static int64_t reps_for(int64_t ops_per_rep) {
    int64_t reps = ops_per_rep > 0 ? PASS_OPS / ops_per_rep : 1;
    return reps < 1 ? 1 : reps;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the calling thread: leaves out the time other processes held the core. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Run-queue wait of the calling thread so far (ns), from its schedstat; 0 where there is none. */
static uint64_t own_run_delay_ns(void) {
    char buf[96];
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    unsigned long long run = 0, wait = 0;
    return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? (uint64_t)wait : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------------------------------- */
/* The team: lock-step passes over a per-thread body.                                        */

struct team;
typedef int (*team_setup_fn)(struct team *t, int tid);  /* allocate/first-touch own data */
typedef void (*team_body_fn)(struct team *t, int tid);  /* one pass of own slice */
typedef void (*team_teardown_fn)(struct team *t, int tid);

typedef struct team {
    int threads;
    pthread_barrier_t barrier;
    team_setup_fn setup;
    team_body_fn body;
    team_teardown_fn teardown;
    void *ctx;                 /* the measurement's own state */
    double min_seconds;
    int max_passes;
    int min_passes;
    /* written by thread 0 only */
    double *pass_seconds;      /* [max_passes] */
    double *pass_cpu_seconds;  /* [max_passes] thread 0's CPU time of each pass */
    int passes;
    double spent;
    volatile int stop;
    volatile int setup_failed;
    void *gate_owner;          /* the start gate, owned by team_run */
    uint64_t checksums[SLM_CALIB_MAX_THREADS];
    _Atomic uint64_t run_delay_ns;  /* every thread's run-queue wait while measuring */
    _Atomic uint64_t thread_ns;     /* every thread's wall time measuring */
} team;

typedef struct { team *t; int tid; } team_arg;

/* Threads wait at this gate until the whole team exists (go = 1) or creation failed (go = -1):
 * a barrier cannot shrink, so nobody touches it before the team is complete. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go;
} start_gate;

static start_gate *gate_of(team *t);

static void team_loop(team *t, int tid) {
    int failed = t->setup ? t->setup(t, tid) : 0;
    if (failed) t->setup_failed = failed;
    pthread_barrier_wait(&t->barrier);
    if (t->setup_failed) goto done;
    double started = now_seconds();
    const uint64_t delay0 = own_run_delay_ns();
    for (;;) {
        double t0 = 0, c0 = 0;
        pthread_barrier_wait(&t->barrier);
        if (tid == 0) { t0 = now_seconds(); c0 = cpu_seconds(); }
        t->body(t, tid);
        if (tid == 0) t->pass_cpu_seconds[t->passes] = cpu_seconds() - c0;
        pthread_barrier_wait(&t->barrier);
        if (tid == 0) {
            double t1 = now_seconds();
            t->pass_seconds[t->passes++] = t1 - t0;
            t->spent = t1 - started;
            t->stop = t->passes >= t->max_passes ||
                      (t->passes >= t->min_passes && t->spent >= t->min_seconds);
        }
        pthread_barrier_wait(&t->barrier);
        if (t->stop) break;
    }
    atomic_fetch_add(&t->run_delay_ns, own_run_delay_ns() - delay0);
    atomic_fetch_add(&t->thread_ns, (uint64_t)((now_seconds() - started) * 1e9));
done:
    if (t->teardown) t->teardown(t, tid);
}

typedef struct { team *t; start_gate gate; } team_with_gate;

static start_gate *gate_of(team *t) { return &((team_with_gate *)t->gate_owner)->gate; }

static void *team_thread(void *p) {
    team_arg *a = p;
    start_gate *g = gate_of(a->t);
    pthread_mutex_lock(&g->lock);
    while (g->go == 0) pthread_cond_wait(&g->cond, &g->lock);
    int go = g->go;
    pthread_mutex_unlock(&g->lock);
    if (go > 0) team_loop(a->t, a->tid);
    return NULL;
}

static void gate_open(start_gate *g, int go) {
    pthread_mutex_lock(&g->lock);
    g->go = go;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Runs the team to completion; SLM_OK or the first failure. */
static int team_run(team *t) {
    if (t->threads < 1 || t->threads > SLM_CALIB_MAX_THREADS) return SLM_EINVAL;
    if (t->max_passes < 1 || t->max_passes > MAX_PASSES_LIMIT) return SLM_EINVAL;
    if (t->min_passes > t->max_passes) t->min_passes = t->max_passes;
    t->pass_seconds = calloc((size_t)t->max_passes, sizeof(double));
    t->pass_cpu_seconds = calloc((size_t)t->max_passes, sizeof(double));
    if (!t->pass_seconds || !t->pass_cpu_seconds) {
        free(t->pass_seconds);
        free(t->pass_cpu_seconds);
        t->pass_seconds = t->pass_cpu_seconds = NULL;
        return SLM_ENOMEM;
    }
    t->passes = 0;
    t->stop = 0;
    t->setup_failed = 0;
    atomic_store(&t->run_delay_ns, 0);
    atomic_store(&t->thread_ns, 0);
    memset(t->checksums, 0, sizeof(t->checksums));
    team_with_gate tg = {.t = t, .gate = {.go = 0}};
    pthread_mutex_init(&tg.gate.lock, NULL);
    pthread_cond_init(&tg.gate.cond, NULL);
    t->gate_owner = &tg;
    if (pthread_barrier_init(&t->barrier, NULL, (unsigned)t->threads) != 0) {
        free(t->pass_seconds);
        free(t->pass_cpu_seconds);
        t->pass_seconds = t->pass_cpu_seconds = NULL;
        return SLM_ENOMEM;
    }
    pthread_t ids[SLM_CALIB_MAX_THREADS];
    team_arg args[SLM_CALIB_MAX_THREADS];
    int started = 1, status = SLM_OK;
    for (int i = 1; i < t->threads; i++) {
        args[i].t = t;
        args[i].tid = i;
        if (pthread_create(&ids[i], NULL, team_thread, &args[i]) != 0) {
            status = -EAGAIN;
            break;
        }
        started++;
    }
    gate_open(&tg.gate, status == SLM_OK ? 1 : -1);
    if (status == SLM_OK) team_loop(t, 0);
    for (int i = 1; i < started; i++) pthread_join(ids[i], NULL);
    pthread_barrier_destroy(&t->barrier);
    pthread_cond_destroy(&tg.gate.cond);
    pthread_mutex_destroy(&tg.gate.lock);
    if (status == SLM_OK && t->setup_failed) status = t->setup_failed;
    return status;
}

static void team_result(team *t, int64_t work_per_pass_all_threads, slm_calib_result *out) {
    memset(out, 0, sizeof(*out));
    if (t->passes <= 0) return;
    qsort(t->pass_seconds, (size_t)t->passes, sizeof(double), cmp_double);
    double best = t->pass_seconds[0];
    double median = t->pass_seconds[t->passes / 2];
    out->best_per_s = best > 0 ? (double)work_per_pass_all_threads / best : 0;
    out->median_per_s = median > 0 ? (double)work_per_pass_all_threads / median : 0;
    qsort(t->pass_cpu_seconds, (size_t)t->passes, sizeof(double), cmp_double);
    double cpu_median = t->pass_cpu_seconds[t->passes / 2];
    out->median_per_cpu_s = cpu_median > 0 ? (double)work_per_pass_all_threads / cpu_median : 0;
    free(t->pass_cpu_seconds);
    t->pass_cpu_seconds = NULL;
    out->seconds = t->spent;
    out->run_delay_seconds = 1e-9 * (double)atomic_load(&t->run_delay_ns);
    out->thread_seconds = 1e-9 * (double)atomic_load(&t->thread_ns);
    out->passes = t->passes;
    out->work_per_pass = work_per_pass_all_threads;
    uint64_t c = 0;
    for (int i = 0; i < t->threads; i++) c = c * 1099511628211ULL + t->checksums[i];
    out->checksum = c;
    free(t->pass_seconds);
    t->pass_seconds = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Memory bandwidth.                                                                         */

typedef struct {
    int kind;
    slm_calib_read_fn read; /* READ's loop: the widest loads this core has */
    int64_t n;          /* elements per array */
    uint64_t *a, *c;    /* READ uses a; COPY a -> c */
    double *ta, *tb, *tc; /* TRIAD ta = tb + k*tc */
} mem_ctx;

/* A read ceiling must be what the core can stream, not what a narrow loop issues. */
static slm_calib_read_fn widest_read(void) {
#if defined(__x86_64__)
    if (slm_isa_available(SLM_ISA_AVX512_VNNI)) return slm_calib_read_avx512;
    if (slm_isa_available(SLM_ISA_AVX2)) return slm_calib_read_avx2;
#endif
    return slm_calib_read_u64;
}

static void slice(int64_t n, int threads, int tid, int64_t *lo, int64_t *hi) {
    /* Slices are multiples of 8 elements (one cache line) so no two threads share a line. */
    int64_t lines = n / 8;
    *lo = lines * tid / threads * 8;
    *hi = (tid == threads - 1) ? n : lines * (tid + 1) / threads * 8;
}

static int mem_setup(team *t, int tid) {
    mem_ctx *m = t->ctx;
    int64_t lo, hi;
    slice(m->n, t->threads, tid, &lo, &hi);
    /* First touch by the owning thread, with values no compiler can predict. */
    if (m->kind == SLM_CALIB_TRIAD) {
        for (int64_t i = lo; i < hi; i++) {
            m->ta[i] = 0.0;
            m->tb[i] = (double)(i & 1023);
            m->tc[i] = (double)((i * 7) & 511);
        }
    } else {
        for (int64_t i = lo; i < hi; i++) m->a[i] = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        if (m->kind == SLM_CALIB_COPY) memset(m->c + lo, 0, (size_t)(hi - lo) * sizeof(uint64_t));
    }
    return 0;
}

static void mem_body(team *t, int tid) {
    mem_ctx *m = t->ctx;
    int64_t lo, hi;
    slice(m->n, t->threads, tid, &lo, &hi);
    if (m->kind == SLM_CALIB_READ) {
        t->checksums[tid] += m->read(m->a + lo, hi - lo);
    } else if (m->kind == SLM_CALIB_COPY) {
        slm_calib_copy_u64(m->c + lo, m->a + lo, hi - lo);
        t->checksums[tid] += m->c[hi - 1];
    } else {
        slm_calib_triad_f64(m->ta + lo, m->tb + lo, m->tc + lo, 3.0, hi - lo);
        t->checksums[tid] += (uint64_t)m->ta[hi - 1];
    }
}

static void *alloc_lines(int64_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)bytes) != 0) return NULL;
    return p;
}

/* 2 MiB aligned and marked for transparent huge pages (before the first touch, so the
 * kernel can back it with huge pages from the start). Not an error if THP is off. */
static void *alloc_huge(int64_t bytes) {
    const size_t huge = 2u << 20;
    size_t n = ((size_t)bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

int slm_calib_memory(int kind, int threads, int64_t bytes_per_array, double min_seconds,
                     int max_passes, int flags, slm_calib_result *out) {
    if (!out || kind < SLM_CALIB_READ || kind > SLM_CALIB_TRIAD) return SLM_EINVAL;
    if (bytes_per_array < 4096 || threads < 1 || threads > SLM_CALIB_MAX_THREADS) return SLM_EINVAL;
    if (!(min_seconds >= 0) || max_passes < 1) return SLM_EINVAL;
    mem_ctx m = {.kind = kind, .read = widest_read(), .n = bytes_per_array / 8};
    void *(*alloc)(int64_t) = (flags & SLM_CALIB_HUGEPAGES) ? alloc_huge : alloc_lines;
    int status = SLM_OK;
    if (kind == SLM_CALIB_TRIAD) {
        m.ta = alloc(m.n * 8);
        m.tb = alloc(m.n * 8);
        m.tc = alloc(m.n * 8);
        if (!m.ta || !m.tb || !m.tc) status = SLM_ENOMEM;
    } else {
        m.a = alloc(m.n * 8);
        if (!m.a) status = SLM_ENOMEM;
        if (kind == SLM_CALIB_COPY) {
            m.c = alloc(m.n * 8);
            if (!m.c) status = SLM_ENOMEM;
        }
    }
    if (status == SLM_OK) {
        team t = {.threads = threads, .setup = mem_setup, .body = mem_body, .ctx = &m,
                  .min_seconds = min_seconds, .max_passes = max_passes, .min_passes = 3};
        status = team_run(&t);
        int arrays = kind == SLM_CALIB_READ ? 1 : kind == SLM_CALIB_COPY ? 2 : 3;
        if (status == SLM_OK) team_result(&t, (int64_t)arrays * m.n * 8, out);
        free(t.pass_seconds);
        free(t.pass_cpu_seconds);
    }
    free(m.a); free(m.c); free(m.ta); free(m.tb); free(m.tc);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* Cache-resident dot products with the real kernels.                                        */

typedef struct {
    int type;
    int64_t rows, cols;
    const slm_type_traits *traits;
    int64_t w_row_bytes;
    uint8_t *w[SLM_CALIB_MAX_THREADS];    /* [rows][w_row_bytes] per thread */
    uint8_t *act[SLM_CALIB_MAX_THREADS];  /* one activation row per thread */
    int64_t act_bytes;
    int64_t reps;                         /* block products per pass */
} dot_ctx;

/* A small deterministic generator so weights are not all alike. */
static float lcg_float(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((int64_t)(*state >> 40) - (1 << 23)) / (float)(1 << 23);
}

static int dot_setup(team *t, int tid) {
    dot_ctx *d = t->ctx;
    float *row = malloc((size_t)d->cols * sizeof(float));
    d->w[tid] = alloc_lines(d->rows * d->w_row_bytes);
    d->act[tid] = alloc_lines(d->act_bytes);
    if (!row || !d->w[tid] || !d->act[tid]) { free(row); return SLM_ENOMEM; }
    uint64_t state = 0x1234567ULL + (uint64_t)tid;
    int status = SLM_OK;
    for (int64_t r = 0; r < d->rows && status == SLM_OK; r++) {
        for (int64_t i = 0; i < d->cols; i++) row[i] = lcg_float(&state);
        if (d->type == SLM_TYPE_F32) memcpy(d->w[tid] + r * d->w_row_bytes, row, (size_t)d->w_row_bytes);
        else status = slm_quantize_row_ref(d->type, row, d->w[tid] + r * d->w_row_bytes, d->cols);
    }
    for (int64_t i = 0; i < d->cols; i++) row[i] = lcg_float(&state);
    if (status == SLM_OK) {
        if (d->traits->from_float) d->traits->from_float(row, d->act[tid], d->cols);
        else memcpy(d->act[tid], row, (size_t)d->cols * sizeof(float));
    }
    free(row);
    return status < 0 ? status : 0;
}

static void dot_body(team *t, int tid) {
    dot_ctx *d = t->ctx;
    float acc = 0, s = 0;
    const uint8_t *w = d->w[tid];
    for (int64_t k = 0; k < d->reps; k++) {
        for (int64_t r = 0; r < d->rows; r++) {
            d->traits->vec_dot(d->cols, &s, w + r * d->w_row_bytes, d->act[tid]);
            acc += s;
        }
    }
    uint64_t bits;
    memcpy(&bits, &(float){acc}, sizeof(float));
    t->checksums[tid] ^= bits;
}

static void dot_teardown(team *t, int tid) {
    dot_ctx *d = t->ctx;
    free(d->w[tid]);
    free(d->act[tid]);
    d->w[tid] = d->act[tid] = NULL;
}

int slm_calib_dot(int type, int isa, int threads, int64_t rows, int64_t cols,
                  double min_seconds, slm_calib_result *out) {
    if (!out || threads < 1 || threads > SLM_CALIB_MAX_THREADS || rows < 1 || cols < SLM_QK)
        return SLM_EINVAL;
    if (!(min_seconds >= 0)) return SLM_EINVAL;
    if (isa < 0 || isa >= SLM_ISA_COUNT || !slm_isa_available(isa)) return SLM_ENOSYS;
    const slm_type_traits *tr = slm_get_traits(type, isa);
    if (!tr || !tr->vec_dot) return SLM_ENOSYS;
    int64_t wrb = slm_row_bytes(type, cols);
    if (wrb <= 0) return SLM_ESHAPE;
    int64_t arb = tr->from_float ? slm_row_bytes(tr->vec_dot_type, cols) : cols * (int64_t)sizeof(float);
    if (arb <= 0) return SLM_ESHAPE;
    dot_ctx d = {.type = type, .rows = rows, .cols = cols, .traits = tr, .w_row_bytes = wrb,
                 .act_bytes = arb, .reps = reps_for(2 * rows * cols)};
    team t = {.threads = threads, .setup = dot_setup, .body = dot_body, .teardown = dot_teardown,
              .ctx = &d, .min_seconds = min_seconds, .max_passes = MAX_PASSES_LIMIT,
              .min_passes = 5};
    int status = team_run(&t);
    if (status == SLM_OK) team_result(&t, 2 * rows * cols * d.reps * (int64_t)threads, out);
    free(t.pass_seconds);
    free(t.pass_cpu_seconds);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* Cache-resident matrix products through the engine's path.                                 */

typedef struct {
    int type;
    int64_t rows, cols, n_tok;
    int64_t reps;                           /* products per pass */
    slm_weight w[SLM_CALIB_MAX_THREADS];
    uint8_t *data[SLM_CALIB_MAX_THREADS];   /* [rows][row_bytes] plain rows */
    uint8_t *act[SLM_CALIB_MAX_THREADS];    /* [n_tok][act_row_bytes] */
    float *y[SLM_CALIB_MAX_THREADS];        /* [n_tok][rows] */
    int64_t act_row_bytes[SLM_CALIB_MAX_THREADS];
} mm_ctx;

static int mm_setup(team *t, int tid) {
    mm_ctx *c = t->ctx;
    const int64_t rb = slm_row_bytes(c->type, c->cols);
    /* activations in their quantized form take at most 4 bytes per element plus block headers */
    const int64_t act_cap = c->n_tok * (c->cols * 4 + 64);
    float *x = malloc((size_t)(c->n_tok * c->cols) * sizeof(float));
    c->data[tid] = alloc_lines(c->rows * rb);
    c->act[tid] = alloc_lines(act_cap);
    c->y[tid] = alloc_lines(c->n_tok * c->rows * (int64_t)sizeof(float));
    if (!x || !c->data[tid] || !c->act[tid] || !c->y[tid]) { free(x); return SLM_ENOMEM; }
    uint64_t state = 0xABCDEF12ULL + (uint64_t)tid;
    int status = SLM_OK;
    for (int64_t r = 0; r < c->rows && status == SLM_OK; r++) {
        for (int64_t i = 0; i < c->cols; i++) x[i] = lcg_float(&state);
        if (c->type == SLM_TYPE_F32) memcpy(c->data[tid] + r * rb, x, (size_t)rb);
        else status = slm_quantize_row_ref(c->type, x, c->data[tid] + r * rb, c->cols);
    }
    for (int64_t i = 0; i < c->n_tok * c->cols; i++) x[i] = lcg_float(&state);
    if (status == SLM_OK) {
        c->w[tid] = (slm_weight){.type = c->type, .rows = c->rows, .cols = c->cols, .row_bytes = rb,
                                 .data = c->data[tid]};
        status = slm_weight_prepare(&c->w[tid]);
    }
    if (status == SLM_OK)
        status = slm_quantize_activations(c->type, x, c->cols, c->n_tok, c->cols, c->act[tid],
                                          &c->act_row_bytes[tid]);
    free(x);
    return status < 0 ? status : 0;
}

static void mm_body(team *t, int tid) {
    mm_ctx *c = t->ctx;
    int st = 0;
    for (int64_t k = 0; k < c->reps; k++)
        st |= slm_matmul_rows(&c->w[tid], c->act[tid], c->act_row_bytes[tid], c->n_tok, c->y[tid],
                              c->rows, 0, c->rows);
    uint64_t bits = 0;
    memcpy(&bits, &c->y[tid][0], sizeof(float));
    t->checksums[tid] ^= bits ^ (uint64_t)(st < 0);
}

static void mm_teardown(team *t, int tid) {
    mm_ctx *c = t->ctx;
    slm_weight_release(&c->w[tid]);
    free(c->data[tid]);
    free(c->act[tid]);
    free(c->y[tid]);
    c->data[tid] = c->act[tid] = NULL;
    c->y[tid] = NULL;
}

int slm_calib_matmul(int type, int threads, int64_t rows, int64_t cols, int64_t n_tok,
                     double min_seconds, slm_calib_result *out) {
    if (!out || threads < 1 || threads > SLM_CALIB_MAX_THREADS || rows < 1 || cols < SLM_QK ||
        n_tok < 1 || n_tok > 4096 || !(min_seconds >= 0))
        return SLM_EINVAL;
    if (slm_row_bytes(type, cols) <= 0) return SLM_ESHAPE;
    const slm_type_traits *tr = slm_get_traits(type, -1);
    if (!tr) return SLM_ENOSYS;
    mm_ctx *c = calloc(1, sizeof(mm_ctx));
    if (!c) return SLM_ENOMEM;
    c->type = type; c->rows = rows; c->cols = cols; c->n_tok = n_tok;
    c->reps = reps_for(2 * rows * cols * n_tok);
    team t = {.threads = threads, .setup = mm_setup, .body = mm_body, .teardown = mm_teardown,
              .ctx = c, .min_seconds = min_seconds, .max_passes = MAX_PASSES_LIMIT, .min_passes = 5};
    int status = team_run(&t);
    if (status == SLM_OK) team_result(&t, 2 * rows * cols * n_tok * c->reps * (int64_t)threads, out);
    free(t.pass_seconds);
    free(t.pass_cpu_seconds);
    free(c);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* Decode's matrix-vector product streaming its weights from memory, through the engine's    */
/* path and in the engine's pattern: copies of one weight, each prepared as the engine        */
/* prepares its weights (repacked into its own huge-page chunks), together far larger than    */
/* the last-level cache, multiplied by one activation row in calls of chunk_rows rows (the    */
/* engine's work unit), `interleave` weights in turn (gate and up: 2), chunks dealt round     */
/* robin to the threads. What a token of decode does to its weights, minus the waits.        */

typedef struct {
    int type;
    int64_t rows, cols, row_bytes, chunk_rows;
    int n_copies, interleave;
    slm_weight *w;                        /* [n_copies], shared */
    uint8_t *act[SLM_CALIB_MAX_THREADS];  /* one activation row per thread */
    float *y[SLM_CALIB_MAX_THREADS];      /* [interleave][rows] per thread */
    int64_t act_row_bytes;
} stream_ctx;

static int stream_setup(team *t, int tid) {
    stream_ctx *c = t->ctx;
    float *x = malloc((size_t)c->cols * sizeof(float));
    c->act[tid] = alloc_lines(c->cols * 4 + 64);
    c->y[tid] = alloc_lines(c->interleave * c->rows * (int64_t)sizeof(float));
    if (!x || !c->act[tid] || !c->y[tid]) { free(x); return SLM_ENOMEM; }
    uint64_t state = 0x5EED5EEDULL + (uint64_t)tid;
    for (int64_t i = 0; i < c->cols; i++) x[i] = lcg_float(&state);
    int64_t arb = 0;
    int status = slm_quantize_activations(c->type, x, c->cols, 1, c->cols, c->act[tid], &arb);
    c->act_row_bytes = arb;
    free(x);
    return status < 0 ? status : 0;
}

static void stream_body(team *t, int tid) {
    stream_ctx *c = t->ctx;
    const int64_t n_chunks = (c->rows + c->chunk_rows - 1) / c->chunk_rows;
    int st = 0;
    for (int i = 0; i + c->interleave <= c->n_copies; i += c->interleave) {
        for (int64_t k = tid; k < n_chunks; k += t->threads) {
            const int64_t r0 = k * c->chunk_rows;
            const int64_t r1 = r0 + c->chunk_rows < c->rows ? r0 + c->chunk_rows : c->rows;
            for (int j = 0; j < c->interleave; j++)
                st |= slm_matmul_rows(&c->w[i + j], c->act[tid], c->act_row_bytes, 1,
                                      c->y[tid] + j * c->rows, c->rows, r0, r1);
        }
    }
    uint64_t bits = 0;
    memcpy(&bits, &c->y[tid][0], sizeof(float));
    t->checksums[tid] ^= bits ^ (uint64_t)(st < 0);
}

static void stream_teardown(team *t, int tid) {
    stream_ctx *c = t->ctx;
    free(c->act[tid]);
    free(c->y[tid]);
    c->act[tid] = NULL;
    c->y[tid] = NULL;
}

int slm_calib_stream(int type, int threads, int64_t rows, int64_t cols, int64_t total_bytes,
                     int64_t chunk_rows, int interleave, double min_seconds, slm_calib_result *out) {
    if (!out || threads < 1 || threads > SLM_CALIB_MAX_THREADS || rows < 4 || cols < SLM_QK ||
        total_bytes < 1 || chunk_rows < 4 || chunk_rows % 4 || interleave < 1 || interleave > 8 ||
        !(min_seconds >= 0))
        return SLM_EINVAL;
    const int64_t rb = slm_row_bytes(type, cols);
    if (rb <= 0) return SLM_ESHAPE;
    if (!slm_get_traits(type, -1)) return SLM_ENOSYS;
    const int64_t bytes = rows * rb;
    int64_t n = (total_bytes + bytes - 1) / bytes;
    n = (n + interleave - 1) / interleave * interleave;
    if (n > 1000000) return SLM_EINVAL;
    stream_ctx c = {.type = type, .rows = rows, .cols = cols, .row_bytes = rb, .n_copies = 0,
                    .chunk_rows = chunk_rows, .interleave = interleave};
    c.w = calloc((size_t)n, sizeof(slm_weight));
    uint8_t *plain = alloc_lines(bytes);
    float *x = malloc((size_t)cols * sizeof(float));
    int status = (c.w && plain && x) ? SLM_OK : SLM_ENOMEM;
    uint64_t state = 0xC0FFEEULL;
    for (int64_t r = 0; r < rows && status == SLM_OK; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = lcg_float(&state);
        if (type == SLM_TYPE_F32) memcpy(plain + r * rb, x, (size_t)rb);
        else status = slm_quantize_row_ref(type, x, plain + r * rb, cols);
    }
    free(x);
    /* Each copy gets its own rows, prepared; a repacked copy no longer reads them, so they are
     * dropped and it points at the shared template (never read again). */
    for (int64_t i = 0; i < n && status == SLM_OK; i++) {
        uint8_t *rows_i = alloc_lines(bytes);
        if (!rows_i) { status = SLM_ENOMEM; break; }
        memcpy(rows_i, plain, (size_t)bytes);
        c.w[i] = (slm_weight){.type = type, .rows = rows, .cols = cols, .row_bytes = rb, .data = rows_i};
        status = slm_weight_prepare(&c.w[i]);
        if (status < 0) { free(rows_i); break; }
        if (c.w[i].packed) { free(rows_i); c.w[i].data = plain; }
        c.n_copies++;
    }
    if (status >= 0) {
        status = SLM_OK;
        team t = {.threads = threads, .setup = stream_setup, .body = stream_body,
                  .teardown = stream_teardown, .ctx = &c, .min_seconds = min_seconds,
                  .max_passes = MAX_PASSES_LIMIT, .min_passes = 3};
        status = team_run(&t);
        if (status == SLM_OK) team_result(&t, bytes * c.n_copies, out);
        free(t.pass_seconds);
        free(t.pass_cpu_seconds);
    }
    for (int i = 0; i < c.n_copies; i++) {
        const void *own = c.w[i].data;
        slm_weight_release(&c.w[i]);
        if (own != plain) free((void *)own);
    }
    free(c.w);
    free(plain);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* Attention of one decoded token through the engine's path for the active ISA: every thread  */
/* runs query heads over cached positions (f32, KV heads side by side as in the engine's      */
/* cache, 3 query heads per KV head) of "layers" of its own that together are far larger than */
/* the last-level cache, as a decoded token finds its KV cache after streaming every weight.  */
/* Operations counted as the roofline counts them: per head and attended position,           */
/* 4 * head_dim (scores and weighted sum) + 5 (softmax).                                      */

#define ATTN_KV_HEADS 4
#define ATTN_HEADS 12

typedef struct {
    int head_dim, n_pos;
    int64_t layers;                     /* per thread */
    slm_attend_fn attend;
    float *kv[SLM_CALIB_MAX_THREADS];   /* per layer K then V: [layers][2][n_pos][ATTN_KV_HEADS * head_dim] */
    float *q[SLM_CALIB_MAX_THREADS];    /* [ATTN_HEADS][head_dim] */
    float *att[SLM_CALIB_MAX_THREADS];  /* [n_pos] */
    float *o[SLM_CALIB_MAX_THREADS];    /* [head_dim] */
} attn_ctx;

static int64_t attn_layer_floats(const attn_ctx *a) {
    return 2 * (int64_t)a->n_pos * ATTN_KV_HEADS * a->head_dim;
}

static int attn_setup(team *t, int tid) {
    attn_ctx *a = t->ctx;
    const int64_t n = a->layers * attn_layer_floats(a);
    a->kv[tid] = alloc_lines(n * (int64_t)sizeof(float));
    a->q[tid] = alloc_lines((int64_t)ATTN_HEADS * a->head_dim * (int64_t)sizeof(float));
    a->att[tid] = alloc_lines(a->n_pos * (int64_t)sizeof(float));
    a->o[tid] = alloc_lines(a->head_dim * (int64_t)sizeof(float));
    if (!a->kv[tid] || !a->q[tid] || !a->att[tid] || !a->o[tid]) return SLM_ENOMEM;
    uint64_t state = 0xA77E17ULL + (uint64_t)tid;
    for (int64_t i = 0; i < n; i++) a->kv[tid][i] = lcg_float(&state);
    for (int64_t i = 0; i < (int64_t)ATTN_HEADS * a->head_dim; i++) a->q[tid][i] = lcg_float(&state);
    return 0;
}

static void attn_body(team *t, int tid) {
    attn_ctx *a = t->ctx;
    const size_t stride = (size_t)ATTN_KV_HEADS * (size_t)a->head_dim;
    const float scale = 1.0f / sqrtf((float)a->head_dim);
    float acc = 0;
    for (int64_t l = 0; l < a->layers; l++) {
        const float *k = a->kv[tid] + l * attn_layer_floats(a);
        const float *v = k + (size_t)a->n_pos * stride;
        for (int h = 0; h < ATTN_HEADS; h++) {
            const size_t off = (size_t)(h / (ATTN_HEADS / ATTN_KV_HEADS)) * (size_t)a->head_dim;
            a->attend(a->q[tid] + (size_t)h * (size_t)a->head_dim, k + off, v + off, stride, a->n_pos,
                      a->head_dim, scale, 0, a->att[tid], a->o[tid]);
            acc += a->o[tid][0];
        }
    }
    uint64_t bits = 0;
    memcpy(&bits, &acc, sizeof(float));
    t->checksums[tid] ^= bits;
}

static void attn_teardown(team *t, int tid) {
    attn_ctx *a = t->ctx;
    free(a->kv[tid]); free(a->q[tid]); free(a->att[tid]); free(a->o[tid]);
    a->kv[tid] = a->q[tid] = a->att[tid] = a->o[tid] = NULL;
}

int slm_calib_attention(int threads, int head_dim, int n_pos, int64_t total_kv_bytes,
                        double min_seconds, slm_calib_result *out) {
    if (!out || threads < 1 || threads > SLM_CALIB_MAX_THREADS || head_dim < 2 || head_dim % 2 ||
        head_dim > 1024 || n_pos < 1 || n_pos > (1 << 20) || total_kv_bytes < 1 || !(min_seconds >= 0))
        return SLM_EINVAL;
    attn_ctx *a = calloc(1, sizeof(attn_ctx));
    if (!a) return SLM_ENOMEM;
    a->head_dim = head_dim;
    a->n_pos = n_pos;
    const int64_t layer_bytes = attn_layer_floats(a) * (int64_t)sizeof(float);
    a->layers = (total_kv_bytes / threads + layer_bytes - 1) / layer_bytes;
    a->attend = slm_attend_for(-1);   /* as the engine picks */
    const int64_t ops_per_layer = (int64_t)ATTN_HEADS * n_pos * (4 * (int64_t)head_dim + 5);
    team t = {.threads = threads, .setup = attn_setup, .body = attn_body, .teardown = attn_teardown,
              .ctx = a, .min_seconds = min_seconds, .max_passes = MAX_PASSES_LIMIT, .min_passes = 3};
    int status = team_run(&t);
    if (status == SLM_OK) team_result(&t, ops_per_layer * a->layers * threads, out);
    free(t.pass_seconds);
    free(t.pass_cpu_seconds);
    free(a);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* f32 FMA peak.                                                                             */

typedef struct {
    int64_t iters;
    slm_calib_fma_fn fn;
    int64_t ops_per_iter;
} fma_ctx;

static void fma_body(team *t, int tid) {
    fma_ctx *f = t->ctx;
    float r = f->fn(f->iters, 1.0f + 1e-7f * (float)tid);
    uint64_t bits = 0;
    memcpy(&bits, &r, sizeof(float));
    t->checksums[tid] ^= bits;
}

int slm_calib_fma(int threads, double min_seconds, slm_calib_result *out, const char **path_name) {
    if (!out || threads < 1 || threads > SLM_CALIB_MAX_THREADS || !(min_seconds >= 0)) return SLM_EINVAL;
    fma_ctx f = {.iters = 200000, .fn = slm_calib_fma_scalar,
                 .ops_per_iter = SLM_CALIB_FMA_SCALAR_OPS};
    const char *name = "scalar";
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        f.fn = slm_calib_fma_avx2;
        f.ops_per_iter = SLM_CALIB_FMA_AVX2_OPS;
        name = "avx2-fma";
    }
#elif defined(__aarch64__)
    f.fn = slm_calib_fma_neon;
    f.ops_per_iter = SLM_CALIB_FMA_NEON_OPS;
    name = "neon";
#endif
    if (path_name) *path_name = name;
    team t = {.threads = threads, .body = fma_body, .ctx = &f, .min_seconds = min_seconds,
              .max_passes = MAX_PASSES_LIMIT, .min_passes = 5};
    int status = team_run(&t);
    if (status == SLM_OK) team_result(&t, f.iters * f.ops_per_iter * threads, out);
    free(t.pass_seconds);
    free(t.pass_cpu_seconds);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* Fan-out cost: an empty pass is one start barrier plus one end barrier, i.e. one dispatch    */
/* and one join of a thread pool that waits on a barrier.                                    */

static void empty_body(team *t, int tid) { (void)t; (void)tid; }

int slm_calib_sync(int threads, int rounds, double *best_seconds, double *median_seconds) {
    if (threads < 1 || threads > SLM_CALIB_MAX_THREADS || rounds < 1 || rounds > MAX_PASSES_LIMIT)
        return SLM_EINVAL;
    team t = {.threads = threads, .body = empty_body, .min_seconds = 0, .max_passes = rounds,
              .min_passes = rounds};
    int status = team_run(&t);
    if (status == SLM_OK && t.passes > 0) {
        qsort(t.pass_seconds, (size_t)t.passes, sizeof(double), cmp_double);
        if (best_seconds) *best_seconds = t.pass_seconds[0];
        if (median_seconds) *median_seconds = t.pass_seconds[t.passes / 2];
    }
    free(t.pass_seconds);
    free(t.pass_cpu_seconds);
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* The engine's wait: its pool, its work counters, its spin-then-sleep wait.                 */

typedef struct {
    _Alignas(64) atomic_uint next;
    atomic_uint done;
} wait_counter;

typedef struct {
    slm_pool *pool;
    wait_counter *counters; /* [steps] */
    int steps;
    int units;
    _Atomic uint64_t run_delay_ns, thread_ns;
} wait_job;

static void wait_steps(void *ctx, int ith, int nth) {
    wait_job *j = ctx;
    const double t0 = now_seconds();
    const uint64_t d0 = own_run_delay_ns();
    for (int s = 0; s < j->steps; s++) {
        wait_counter *c = &j->counters[s];
        unsigned mine = 0;
        while (atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) < (unsigned)j->units) mine++;
        if (mine) slm_pool_count_up(j->pool, &c->done, mine);
        slm_pool_wait_count(j->pool, &c->done, (unsigned)j->units);
    }
    atomic_fetch_add(&j->run_delay_ns, own_run_delay_ns() - d0);
    atomic_fetch_add(&j->thread_ns, (uint64_t)((now_seconds() - t0) * 1e9));
    (void)ith, (void)nth;
}

int slm_calib_engine_wait(int threads, int steps, int rounds, double *best_seconds,
                          double *median_seconds, slm_calib_result *load) {
    if (threads < 1 || threads > SLM_CALIB_MAX_THREADS || steps < 1 || steps > 1000000 ||
        rounds < 1 || rounds > MAX_PASSES_LIMIT)
        return SLM_EINVAL;
    wait_job j = {.steps = steps, .units = 2 * threads};
    int status = slm_pool_create(threads, &j.pool);
    if (status < 0) return status;
    j.counters = aligned_alloc(64, (size_t)steps * sizeof(wait_counter));
    double *per_step = calloc((size_t)rounds, sizeof(double));
    if (!j.counters || !per_step) {
        free(j.counters);
        free(per_step);
        slm_pool_free(j.pool);
        return SLM_ENOMEM;
    }
    for (int r = 0; r < rounds; r++) {
        memset(j.counters, 0, (size_t)steps * sizeof(wait_counter));
        const double t0 = now_seconds();
        slm_pool_run(j.pool, wait_steps, &j);
        per_step[r] = (now_seconds() - t0) / steps;
    }
    qsort(per_step, (size_t)rounds, sizeof(double), cmp_double);
    if (best_seconds) *best_seconds = per_step[0];
    if (median_seconds) *median_seconds = per_step[rounds / 2];
    if (load) {
        memset(load, 0, sizeof *load);
        load->run_delay_seconds = 1e-9 * (double)atomic_load(&j.run_delay_ns);
        load->thread_seconds = 1e-9 * (double)atomic_load(&j.thread_ns);
    }
    free(per_step);
    free(j.counters);
    slm_pool_free(j.pool);
    return SLM_OK;
}

/* ---------------------------------------------------------------------------------------- */

int64_t slm_calib_llc_bytes(void) {
    int64_t best = 0;
    int best_level = 0;
    char path[128], buf[64];
    for (int i = 0; i < 16; i++) {
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int level = 0;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (!f) continue;
        int64_t size = 0;
        if (fgets(buf, sizeof buf, f)) {
            char *end = NULL;
            size = strtoll(buf, &end, 10);
            if (end && (*end == 'K' || *end == 'k')) size <<= 10;
            else if (end && (*end == 'M' || *end == 'm')) size <<= 20;
        }
        fclose(f);
        if (level >= best_level && size > 0) { best_level = level; best = size; }
    }
    return best;
}
