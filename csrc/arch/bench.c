/* Kernel timing loops in C (so Python call overhead is not what gets measured): a matrix
 * product over several weight copies (so decode-size weights stream from DRAM as they do in a
 * real forward pass, instead of sitting in cache), split across threads by rows like the
 * engine does, with a spinning barrier after each product; and a plain read-bandwidth loop
 * that gives the ceiling those numbers are compared against. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/kernels_impl.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of the calling thread: on a shared machine it leaves out the time other processes
 * held the core, which wall time cannot. */
static double cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

typedef struct {
    int n_threads;
    int count;            /* threads arrived in this phase */
    int phase;
} spin_barrier;

static void barrier_wait(spin_barrier *b) {
    const int phase = __atomic_load_n(&b->phase, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n_threads) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->phase, phase + 1, __ATOMIC_RELEASE);
    } else {
        /* spin briefly (the others are usually microseconds away), then yield the core so an
         * oversubscribed machine does not make a descheduled thread's partner spin a whole slice */
        for (int spins = 0; __atomic_load_n(&b->phase, __ATOMIC_ACQUIRE) == phase; spins++) {
            if (spins > 2000) sched_yield();
#if defined(__x86_64__)
            else __builtin_ia32_pause();
#elif defined(__aarch64__)
            else __asm__ volatile("yield");
#endif
        }
    }
}

typedef struct {
    const slm_weight *copies;
    int n_copies;
    const void *act;
    int64_t act_row_bytes, n_tok;
    float *y;
    int reps, thread, n_threads;
    spin_barrier *barrier;
    const int *go; /* 0 wait, 1 run, -1 abort (a thread could not be created) */
    double seconds, cpu_seconds;
    int status;
} bench_job;

static int wait_go(const int *go) {
    int g;
    while ((g = __atomic_load_n(go, __ATOMIC_ACQUIRE)) == 0) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    return g;
}

static void *bench_thread(void *arg) {
    bench_job *j = arg;
    const int64_t rows = j->copies[0].rows;
    /* rows split in multiples of 4 so packed tiles are never shared */
    const int64_t groups = (rows + 3) / 4;
    const int64_t r0 = groups * j->thread / j->n_threads * 4, r1g = groups * (j->thread + 1) / j->n_threads * 4;
    const int64_t r1 = r1g < rows ? r1g : rows;
    if (wait_go(j->go) < 0) return NULL;
    barrier_wait(j->barrier);
    const double t0 = now_s(), c0 = cpu_s();
    for (int rep = 0; rep < j->reps; rep++) {
        const slm_weight *w = &j->copies[rep % j->n_copies];
        if (r1 > r0) {
            const int st = slm_matmul_rows(w, j->act, j->act_row_bytes, j->n_tok, j->y, rows, r0, r1);
            if (st < 0) j->status = st;
        }
        barrier_wait(j->barrier);
    }
    j->seconds = now_s() - t0;
    j->cpu_seconds = cpu_s() - c0;
    return NULL;
}

int slm_bench_matmul(const slm_weight *copies, int n_copies, const void *act, int64_t act_row_bytes,
                     int64_t n_tok, float *y, int reps, int n_threads, double *seconds_per_rep,
                     double *cpu_seconds_per_rep) {
    if (!copies || n_copies < 1 || !act || !y || reps < 1 || n_threads < 1 || n_threads > 256 || !seconds_per_rep)
        return SLM_EINVAL;
    spin_barrier barrier = {n_threads, 0, 0};
    int go = 0;
    bench_job jobs[256];
    pthread_t tids[256];
    for (int t = 0; t < n_threads; t++)
        jobs[t] = (bench_job){copies, n_copies, act, act_row_bytes, n_tok, y, reps, t, n_threads, &barrier, &go, 0, 0, 0};
    int started = 1;
    while (started < n_threads && pthread_create(&tids[started], NULL, bench_thread, &jobs[started]) == 0) started++;
    __atomic_store_n(&go, started == n_threads ? 1 : -1, __ATOMIC_RELEASE);
    if (started == n_threads) bench_thread(&jobs[0]);
    for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
    if (started != n_threads) return -EAGAIN;
    for (int t = 0; t < n_threads; t++)
        if (jobs[t].status < 0) return jobs[t].status;
    *seconds_per_rep = jobs[0].seconds / reps;
    if (cpu_seconds_per_rep) *cpu_seconds_per_rep = jobs[0].cpu_seconds / reps;
    return SLM_OK;
}

/* ---- read bandwidth: each thread sums its part of a buffer much larger than the caches ---- */

typedef struct {
    const uint64_t *p;
    size_t n;
    int reps;
    spin_barrier *barrier;
    const int *go;
    uint64_t sink;
} read_job;

static void *read_thread(void *arg) {
    read_job *j = arg;
    if (wait_go(j->go) < 0) return NULL;
    barrier_wait(j->barrier);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int r = 0; r < j->reps; r++) {
        for (size_t i = 0; i + 4 <= j->n; i += 4) {
            s0 += j->p[i];
            s1 += j->p[i + 1];
            s2 += j->p[i + 2];
            s3 += j->p[i + 3];
        }
    }
    j->sink = s0 + s1 + s2 + s3;
    barrier_wait(j->barrier);
    return NULL;
}

int slm_bench_read_bandwidth(int64_t bytes, int reps, int n_threads, double *bytes_per_second,
                             double *bytes_per_cpu_second) {
    if (bytes < 4096 || reps < 1 || n_threads < 1 || n_threads > 256 || !bytes_per_second) return SLM_EINVAL;
    uint64_t *buf = aligned_alloc(64, (size_t)(bytes + 63) / 64 * 64);
    if (!buf) return SLM_ENOMEM;
    memset(buf, 1, (size_t)bytes); /* fault every page in before timing */
    const size_t words = (size_t)bytes / 8;
    spin_barrier barrier = {n_threads, 0, 0};
    int go = 0;
    read_job jobs[256];
    pthread_t tids[256];
    for (int t = 0; t < n_threads; t++) {
        const size_t a = words * (size_t)t / (size_t)n_threads, b = words * (size_t)(t + 1) / (size_t)n_threads;
        jobs[t] = (read_job){buf + a, b - a, reps, &barrier, &go, 0};
    }
    int started = 1;
    while (started < n_threads && pthread_create(&tids[started], NULL, read_thread, &jobs[started]) == 0) started++;
    __atomic_store_n(&go, started == n_threads ? 1 : -1, __ATOMIC_RELEASE);
    if (started != n_threads) {
        for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
        free(buf);
        return -EAGAIN;
    }
    /* thread 0 times from the first barrier to the last */
    const double t0 = now_s(), c0 = cpu_s();
    read_thread(&jobs[0]);
    const double dt = now_s() - t0, dc = cpu_s() - c0;
    for (int t = 1; t < n_threads; t++) pthread_join(tids[t], NULL);
    free(buf);
    const double moved = (double)(words / 4 * 4 * 8) * reps;
    *bytes_per_second = moved / dt;
    if (bytes_per_cpu_second) *bytes_per_cpu_second = moved / dc; /* threads run alike */
    return SLM_OK;
}
