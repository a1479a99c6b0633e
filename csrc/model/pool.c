/* A persistent thread pool with a cheap barrier.
 *
 * The caller of slm_pool_run is worker 0; workers 1..n-1 are threads that live as long as the
 * pool. Waiting is spin-then-sleep: a waiter spins on an atomic generation counter (a few
 * hundred ns to hand over when everyone is busy), and after a spin budget in time it sleeps on
 * a futex on the same word, so an idle pool costs no CPU. Whoever advances a generation wakes
 * the sleepers only when some exist, so the fast path is one atomic add and one store.
 */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "slm.h"
#include "model/pool.h"

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* Spin budgets, in time (a pause or yield instruction lasts from one cycle to over a hundred
 * depending on the core, so a count of rounds would mean a different wait on each machine).
 * Inside a forward pass: long enough to cover the imbalance at a step's end, short enough that
 * a thread whose partner was descheduled (a busy machine) soon gives its core back instead of
 * spinning through a whole time slice. Between jobs: long enough to cover what the caller does
 * between two decoded tokens (sampling, bookkeeping: 0.1-0.3 ms measured), since waking a
 * sleeping thread cost the next token about 60 us on a 2-vCPU VM. */
#define STEP_SPIN_NS 50000
#define JOB_SPIN_NS 500000
#define SPINS_PER_CLOCK_READ 32

struct slm_pool {
    int n_threads;
    pthread_t *threads;
    slm_pool_fn fn;
    void *ctx;
    _Alignas(64) atomic_uint job_gen;   /* bumped by slm_pool_run to start a job */
    _Alignas(64) atomic_uint bar_count;  /* arrivals at the current barrier */
    _Alignas(64) atomic_uint bar_gen;    /* bumped when everyone has arrived */
    _Alignas(64) atomic_int sleepers;    /* threads asleep (or about to sleep) on a futex */
    atomic_int stop;
};

typedef struct { slm_pool *pool; int ith; } worker_arg;

static void futex_wait(atomic_uint *word, unsigned seen) {
#ifdef __linux__
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)word; (void)seen;
    sched_yield();
#endif
}

static void futex_wake_all(atomic_uint *word) {
#ifdef __linux__
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until *word differs from seen: spin for up to spin_ns, then sleep. The clock is first
 * read after one batch of spins, so a wait that ends at once (most inside a pass) reads none. */
static void wait_for_change(slm_pool *pool, atomic_uint *word, unsigned seen, int64_t spin_ns) {
    int64_t until = 0;
    for (;;) {
        for (int i = 0; i < SPINS_PER_CLOCK_READ; i++) {
            if (atomic_load_explicit(word, memory_order_acquire) != seen) return;
            cpu_relax();
        }
        const int64_t now = monotonic_ns();
        if (!until) until = now + spin_ns;
        else if (now >= until) break;
    }
    while (atomic_load(word) == seen) {
        atomic_fetch_add(&pool->sleepers, 1);
        futex_wait(word, seen); /* returns at once if the word already moved */
        atomic_fetch_sub(&pool->sleepers, 1);
    }
}

static void advance_by(slm_pool *pool, atomic_uint *word, unsigned n) {
    atomic_fetch_add(word, n); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&pool->sleepers) > 0) futex_wake_all(word);
}

static void advance(slm_pool *pool, atomic_uint *word) { advance_by(pool, word, 1); }

void slm_pool_barrier(slm_pool *pool) {
    if (pool->n_threads == 1) return;
    unsigned gen = atomic_load_explicit(&pool->bar_gen, memory_order_acquire);
    if (atomic_fetch_add(&pool->bar_count, 1) == (unsigned)pool->n_threads - 1) {
        atomic_store_explicit(&pool->bar_count, 0, memory_order_relaxed);
        advance(pool, &pool->bar_gen);
    } else {
        wait_for_change(pool, &pool->bar_gen, gen, STEP_SPIN_NS);
    }
}

void slm_pool_wait_count(slm_pool *pool, atomic_uint *word, unsigned target) {
    for (;;) {
        unsigned seen = atomic_load_explicit(word, memory_order_acquire);
        if (seen >= target) return;
        wait_for_change(pool, word, seen, STEP_SPIN_NS);
    }
}

void slm_pool_count_up(slm_pool *pool, atomic_uint *word, unsigned n) { advance_by(pool, word, n); }

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    slm_pool *pool = arg.pool;
    unsigned seen = 0;
    for (;;) {
        wait_for_change(pool, &pool->job_gen, seen, JOB_SPIN_NS);
        seen = atomic_load(&pool->job_gen);
        if (atomic_load(&pool->stop)) break;
        pool->fn(pool->ctx, arg.ith, pool->n_threads);
        slm_pool_barrier(pool); /* the job ends when every worker is done */
    }
    return NULL;
}

void slm_pool_run(slm_pool *pool, slm_pool_fn fn, void *ctx) {
    if (pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    advance(pool, &pool->job_gen);
    fn(ctx, 0, pool->n_threads);
    slm_pool_barrier(pool);
}

int slm_pool_create(int n_threads, slm_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > SLM_MAX_THREADS) return SLM_EINVAL;
    slm_pool *pool = aligned_alloc(64, sizeof(slm_pool));
    if (!pool) return SLM_ENOMEM;
    *pool = (slm_pool){.n_threads = n_threads};
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!pool->threads) { free(pool); return SLM_ENOMEM; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg) *arg = (worker_arg){pool, i};
        int rc = arg ? pthread_create(&pool->threads[i], NULL, worker_main, arg) : ENOMEM;
        if (rc != 0) {
            free(arg);
            pool->n_threads = i; /* stop the ones that started */
            slm_pool_free(pool);
            return -rc;
        }
    }
    *out = pool;
    return SLM_OK;
}

void slm_pool_free(slm_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    advance(pool, &pool->job_gen);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    free(pool);
}

int slm_pool_threads(const slm_pool *pool) { return pool->n_threads; }
