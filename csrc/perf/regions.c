/* regions.c: the region table. begin/end by integer id, nested, from any thread.
 *
 * Each thread that calls begin gets its own stack of open frames (found by a short scan of
 * at most SLM_REGION_MAX_THREADS owners), so nesting works per thread. A frame holds the
 * wall clock, the thread's CPU clock and a counter snapshot taken at begin; end takes a
 * second snapshot and adds the differences to the region's totals under the table lock.
 * Stats are allocated on a region's first end, so a large id space costs only pointers.
 *
 * A region marked wall-only records count and wall time alone: one vDSO clock read per
 * edge (tens of ns) instead of the thread CPU clock (a system call, about a microsecond)
 * and a counter snapshot. The engine's operation regions are marked so; its layer regions
 * keep everything. slm_region_edge ends and begins several regions at one edge, reading
 * each clock once for the whole edge.
 */
#include "slm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct frame {
    int32_t id;
    int full;  /* CPU clock and counters were read at begin (not wall-only) */
    uint64_t t0_ns, cpu0_ns;
    slm_counters_snapshot snap;
} frame;

typedef struct thread_stack {
    pthread_t owner;
    int claimed;  /* 0 free, 1 taken (atomic) */
    int depth;
    frame frames[SLM_REGION_MAX_DEPTH];
    slm_counters_snapshot now;  /* scratch for end */
} thread_stack;

struct slm_region_table {
    int capacity;
    slm_counters *counters;
    slm_region_stats **stats;  /* [capacity], NULL until the region first ends */
    uint8_t *wall_only;        /* [capacity] 1: count and wall time only */
    pthread_mutex_t lock;
    uint64_t errors;
    thread_stack stacks[SLM_REGION_MAX_THREADS];
};

uint64_t slm_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int slm_region_table_create(slm_region_table **out, int capacity, slm_counters *counters) {
    *out = NULL;
    if (capacity < 1 || capacity > (1 << 24)) return SLM_EINVAL;
    slm_region_table *t = calloc(1, sizeof *t);
    if (!t) return SLM_ENOMEM;
    t->stats = calloc((size_t)capacity, sizeof *t->stats);
    t->wall_only = calloc((size_t)capacity, 1);
    if (!t->stats || !t->wall_only) {
        free(t->stats);
        free(t->wall_only);
        free(t);
        return SLM_ENOMEM;
    }
    t->capacity = capacity;
    t->counters = counters;
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
}

static void count_error(slm_region_table *t) { __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED); }

static thread_stack *my_stack(slm_region_table *t, int claim) {
    pthread_t self = pthread_self();
    for (int i = 0; i < SLM_REGION_MAX_THREADS; i++) {
        thread_stack *s = &t->stacks[i];
        if (__atomic_load_n(&s->claimed, __ATOMIC_ACQUIRE) == 1 && pthread_equal(s->owner, self))
            return s;
    }
    if (!claim) return NULL;
    for (int i = 0; i < SLM_REGION_MAX_THREADS; i++) {
        thread_stack *s = &t->stacks[i];
        int expected = 0;
        /* 2 = being set up, so no scanner matches a half-written owner */
        if (__atomic_compare_exchange_n(&s->claimed, &expected, 2, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            s->owner = self;
            s->depth = 0;
            __atomic_store_n(&s->claimed, 1, __ATOMIC_RELEASE);
            return s;
        }
    }
    return NULL;
}

void slm_region_begin(void *table, int32_t id) {
    slm_region_table *t = table;
    if (id < 0 || id >= t->capacity) {
        count_error(t);
        return;
    }
    thread_stack *s = my_stack(t, 1);
    if (!s || s->depth >= SLM_REGION_MAX_DEPTH) {
        count_error(t);
        return;
    }
    frame *f = &s->frames[s->depth++];
    f->id = id;
    f->full = !t->wall_only[id];
    /* Counters first and clocks last, so the region's own bookkeeping is not in its time. */
    if (f->full) {
        if (t->counters) slm_counters_snapshot_take(t->counters, &f->snap);
        f->cpu0_ns = thread_cpu_ns();
    }
    f->t0_ns = slm_monotonic_ns();
}

/* Add one finished frame to its region's totals; the caller holds the table lock. now: the
 * counter snapshot at the end (unused for wall-only frames). */
static void accumulate(slm_region_table *t, const frame *f, uint64_t t1, uint64_t cpu1,
                       const slm_counters_snapshot *now) {
    slm_region_stats *st = t->stats[f->id];
    if (!st) st = t->stats[f->id] = calloc(1, sizeof *st);
    if (!st) {
        count_error(t);
        return;
    }
    st->count++;
    st->wall_ns += t1 - f->t0_ns;
    if (f->full) {
        st->thread_cpu_ns += cpu1 - f->cpu0_ns;
        if (t->counters) slm_counters_snapshot_delta(t->counters, &f->snap, now, st->counters);
    }
}

void slm_region_end(void *table, int32_t id) {
    uint64_t t1 = slm_monotonic_ns();
    slm_region_table *t = table;
    thread_stack *s = my_stack(t, 0);
    if (!s || s->depth == 0 || s->frames[s->depth - 1].id != id) {
        count_error(t);
        return;
    }
    frame *f = &s->frames[--s->depth];
    uint64_t cpu1 = 0;
    if (f->full) {
        cpu1 = thread_cpu_ns();
        if (t->counters) slm_counters_snapshot_take(t->counters, &s->now);
    }
    pthread_mutex_lock(&t->lock);
    accumulate(t, f, t1, cpu1, &s->now);
    pthread_mutex_unlock(&t->lock);
}

/* dst = src, growing dst as needed; on allocation failure dst is left empty (no delta). */
static void snapshot_copy(slm_counters_snapshot *dst, const slm_counters_snapshot *src) {
    const size_t stride = SLM_PERF_MAX_GROUP + 2;
    if (dst->capacity < src->n_slots) {
        uint64_t *w = realloc(dst->words, (size_t)src->n_slots * stride * sizeof(uint64_t));
        if (!w) {
            dst->n_slots = 0;
            return;
        }
        dst->words = w;
        dst->capacity = src->n_slots;
    }
    if (src->n_slots) memcpy(dst->words, src->words, (size_t)src->n_slots * stride * sizeof(uint64_t));
    dst->n_slots = src->n_slots;
}

void slm_region_edge(void *table, const int32_t *ends, int n_end, const int32_t *begins, int n_begin) {
    uint64_t now_ns = slm_monotonic_ns();
    slm_region_table *t = table;
    thread_stack *s = my_stack(t, n_begin > 0);
    if (!s) {
        for (int i = 0; i < n_end + n_begin; i++) count_error(t);
        return;
    }
    /* The CPU clock and counters are read once, and only if some region here keeps them. */
    int full = 0;
    for (int i = 0; i < n_end; i++) {
        int d = s->depth - 1 - i;
        if (d >= 0 && s->frames[d].full) full = 1;
    }
    for (int i = 0; i < n_begin; i++)
        if (begins[i] >= 0 && begins[i] < t->capacity && !t->wall_only[begins[i]]) full = 1;
    /* One instant for both sides, read first: the regions tile the time. The CPU clock and
     * counter reads that follow are in the time of the regions that begin (a preemption at
     * that system call too: leaving it out of every region lost whole time slices on a busy
     * machine), and their values bracket both sides alike. */
    uint64_t cpu = 0;
    if (full) {
        cpu = thread_cpu_ns();
        if (t->counters) slm_counters_snapshot_take(t->counters, &s->now);
    }
    if (n_end > 0) {
        pthread_mutex_lock(&t->lock);
        for (int i = 0; i < n_end; i++) {
            if (s->depth == 0 || s->frames[s->depth - 1].id != ends[i]) {
                count_error(t);
                continue;
            }
            accumulate(t, &s->frames[--s->depth], now_ns, cpu, &s->now);
        }
        pthread_mutex_unlock(&t->lock);
    }
    for (int i = 0; i < n_begin; i++) {
        int32_t id = begins[i];
        if (id < 0 || id >= t->capacity || s->depth >= SLM_REGION_MAX_DEPTH) {
            count_error(t);
            continue;
        }
        frame *f = &s->frames[s->depth++];
        f->id = id;
        f->full = !t->wall_only[id];
        f->t0_ns = now_ns;
        f->cpu0_ns = cpu;
        if (f->full && t->counters) snapshot_copy(&f->snap, &s->now);
    }
}

int slm_region_set_wall_only(slm_region_table *t, int32_t id, int wall_only) {
    if (id < 0 || id >= t->capacity) return SLM_EINVAL;
    t->wall_only[id] = wall_only != 0;
    return 0;
}

int slm_region_is_wall_only(const slm_region_table *t, int32_t id) {
    return id >= 0 && id < t->capacity && t->wall_only[id];
}

slm_region_hooks slm_region_table_hooks(slm_region_table *t) {
    /* With counters, layer edges read every thread's groups: the engine holds its threads
     * there so no thread's next-layer work is counted in the layer that ends. */
    slm_region_hooks h = {slm_region_begin, slm_region_end, t, slm_region_edge, t->counters != NULL};
    return h;
}

int slm_region_get(slm_region_table *t, int32_t id, slm_region_stats *out) {
    if (id < 0 || id >= t->capacity) return SLM_EINVAL;
    int rc = SLM_ENOENT;
    pthread_mutex_lock(&t->lock);
    if (t->stats[id]) {
        *out = *t->stats[id];
        rc = 0;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void slm_region_table_reset(slm_region_table *t) {
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->capacity; i++) {
        free(t->stats[i]);
        t->stats[i] = NULL;
    }
    t->errors = 0;
    pthread_mutex_unlock(&t->lock);
}

uint64_t slm_region_table_errors(slm_region_table *t) {
    return __atomic_load_n(&t->errors, __ATOMIC_RELAXED);
}

int slm_region_table_capacity(const slm_region_table *t) { return t->capacity; }

void slm_region_table_destroy(slm_region_table *t) {
    if (!t) return;
    for (int i = 0; i < t->capacity; i++) free(t->stats[i]);
    for (int i = 0; i < SLM_REGION_MAX_THREADS; i++) {
        for (int d = 0; d < SLM_REGION_MAX_DEPTH; d++) slm_counters_snapshot_free(&t->stacks[i].frames[d].snap);
        slm_counters_snapshot_free(&t->stacks[i].now);
    }
    free(t->stats);
    free(t->wall_only);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

uint64_t slm_region_bench_pairs(slm_region_table *t, int32_t id, int64_t n) {
    uint64_t t0 = slm_monotonic_ns();
    for (int64_t i = 0; i < n; i++) {
        slm_region_begin(t, id);
        slm_region_end(t, id);
    }
    return slm_monotonic_ns() - t0;
}
