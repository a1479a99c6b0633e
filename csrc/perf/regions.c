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
 *
 * The engine's per-thread spans (slm_region_spans) arrive once per forward chunk: each
 * operation's critical path, busy time and imbalance are added to its totals, each layer's
 * tile to the layer's, and, when asked for, every span is kept in a log together with each
 * thread's run-queue wait over the chunk (one pread of its schedstat per thread and chunk).
 */
#include "slm.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* An engine thread's schedstat, kept open: its run-queue wait at the last chunk. */
typedef struct sched_reader {
    int32_t tid;
    int fd;
    uint64_t wait_ns;
} sched_reader;

struct slm_region_table {
    int capacity;
    slm_counters *counters;
    slm_region_stats **stats;  /* [capacity], NULL until the region first ends */
    uint8_t *wall_only;        /* [capacity] 1: count and wall time only */
    pthread_mutex_t lock;
    uint64_t errors;
    thread_stack stacks[SLM_REGION_MAX_THREADS];
    /* span log (slm_region_keep_spans), under lock */
    slm_span_record *log;      /* [log_cap] */
    int64_t log_cap, log_n, log_dropped;
    slm_call_record *calls;    /* [calls_cap] */
    int64_t calls_cap, calls_n;
    uint32_t n_calls;
    uint64_t *scratch;         /* [3 * scratch_n] critical starts, ends, layer ends */
    int scratch_n;
    sched_reader sched[SLM_REGION_MAX_THREADS];
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
    for (int i = 0; i < SLM_REGION_MAX_THREADS; i++) t->sched[i].fd = -1;
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
    slm_region_hooks h = {slm_region_begin, slm_region_end, t, slm_region_edge, t->counters != NULL,
                          slm_region_spans};
    return h;
}

/* ---- per-thread spans ------------------------------------------------------------------- */

/* The critical path of a chunk, walked back from the join: the thread that reached the join
 * last was on it; going back through its operations, wherever it had waited for the others
 * (an operation shared out in work units ends only when its last unit is done), the path moves
 * to the thread that finished that operation's last unit, at the moment it finished it. Each
 * operation gets the part of the path from its boundary with the one before to its boundary
 * with the one after: the operations tile the chunk, and a thread that was held up (a sleep, a
 * preemption, a slow unit) puts that time in the operation it was in. */
void slm_spans_critical(const slm_chunk_spans *s, uint64_t *start, uint64_t *end, uint64_t *layer_end) {
    const int n = s->n_ops;
    if (n <= 0) return;
#define SPAN(k, i) (&s->spans[(size_t)(k) * s->row_stride + (i)])
    /* the join waits for every thread: the last to arrive is where the path ends */
    int k = 0;
    for (int j = 1; j < s->n_threads; j++)
        if (SPAN(j, n - 1)->t1_ns > SPAN(k, n - 1)->t1_ns) k = j;
    uint64_t cur = s->t_end_ns;
    for (int i = n - 1; i >= 0; i--) {
        end[i] = cur;
        uint64_t boundary = i == 0 ? s->t_begin_ns : SPAN(k, i)->t0_ns;
        if (i > 0 && !SPAN(k, i - 1)->own_copy) {
            /* who finished the last work unit of the operation before, and when */
            int last = -1;
            for (int j = 0; j < s->n_threads; j++)
                if (SPAN(j, i - 1)->chunks && (last < 0 || SPAN(j, i - 1)->t1_ns > SPAN(last, i - 1)->t1_ns))
                    last = j;
            if (last >= 0 && last != k && SPAN(last, i - 1)->t1_ns > SPAN(k, i - 1)->t1_ns) {
                boundary = SPAN(last, i - 1)->t1_ns;  /* k waited for it */
                k = last;
            }
        }
        if (!boundary || boundary > cur) boundary = cur;
        if (i == 0 && s->t_begin_ns < boundary) boundary = s->t_begin_ns;
        start[i] = boundary;
        cur = boundary;
    }
#undef SPAN
    for (int i = 0; i < n; i++) {
        layer_end[i] = 0;
        if (i > 0 && s->layers[i] != s->layers[i - 1]) layer_end[i - 1] = start[i];
    }
    layer_end[n - 1] = end[n - 1];
}

static slm_region_stats *stats_of(slm_region_table *t, int32_t id) {
    if (id < 0 || id >= t->capacity) return NULL;
    if (!t->stats[id]) t->stats[id] = calloc(1, sizeof(slm_region_stats));
    return t->stats[id];
}

/* Run-queue wait of a thread (ns) from its schedstat, or UINT64_MAX. A thread seen for the
 * first time has no earlier reading: its wait over this chunk is not known. */
static uint64_t run_delay_since_last(slm_region_table *t, int32_t tid) {
    sched_reader *r = NULL;
    for (int i = 0; i < SLM_REGION_MAX_THREADS && !r; i++)
        if (t->sched[i].tid == tid && t->sched[i].fd >= 0) r = &t->sched[i];
    int fresh = 0;
    if (!r) {
        for (int i = 0; i < SLM_REGION_MAX_THREADS && !r; i++) {
            sched_reader *q = &t->sched[i];
            /* a slot whose thread is gone (its file reads nothing) is reused */
            char probe[8];
            if (q->fd >= 0 && pread(q->fd, probe, sizeof probe, 0) > 0) continue;
            if (q->fd >= 0) close(q->fd);
            char path[64];
            snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", (int)tid);
            q->fd = open(path, O_RDONLY | O_CLOEXEC);
            q->tid = tid;
            if (q->fd < 0) return UINT64_MAX;
            r = q;
            fresh = 1;
        }
        if (!r) return UINT64_MAX;
    }
    char buf[96];
    ssize_t n = pread(r->fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return UINT64_MAX;
    buf[n] = 0;
    unsigned long long run = 0, wait = 0;
    if (sscanf(buf, "%llu %llu", &run, &wait) != 2) return UINT64_MAX;
    uint64_t delta = fresh || wait < r->wait_ns ? UINT64_MAX : wait - r->wait_ns;
    r->wait_ns = wait;
    return delta;
}

static void log_span(slm_region_table *t, const slm_span_record *rec) {
    if (t->log_n < t->log_cap) t->log[t->log_n++] = *rec;
    else t->log_dropped++;
}

void slm_region_spans(void *table, const slm_chunk_spans *s) {
    slm_region_table *t = table;
    if (s->n_ops <= 0) return;
    pthread_mutex_lock(&t->lock);
    if (t->scratch_n < s->n_ops) {
        uint64_t *p = realloc(t->scratch, 3 * (size_t)s->n_ops * sizeof(uint64_t));
        if (!p) {
            pthread_mutex_unlock(&t->lock);
            count_error(t);
            return;
        }
        t->scratch = p;
        t->scratch_n = s->n_ops;
    }
    uint64_t *start = t->scratch, *end = start + s->n_ops, *layer_end = end + s->n_ops;
    slm_spans_critical(s, start, end, layer_end);
    const uint32_t call = t->n_calls++;
    const int keep = t->log_cap > 0;
    uint64_t tile0 = s->t_begin_ns, layer_busy = 0, layer_imbalance = 0;
    for (int i = 0; i < s->n_ops; i++) {
        uint64_t busy = 0, min_end = UINT64_MAX, last = 0;
        for (int k = 0; k < s->n_threads; k++) {
            const slm_thread_span *sp = &s->spans[(size_t)k * s->row_stride + i];
            if (keep)
                log_span(t, &(slm_span_record){sp->t0_ns, sp->t1_ns, sp->busy_ns, start[i], end[i],
                                                s->ops[i], s->layers[i], k, sp->chunks, call,
                                                (int32_t)sp->own_copy});
            if (!sp->t0_ns) continue;
            busy += sp->busy_ns;
            if (sp->own_copy) continue; /* nobody waits after an operation of own copies */
            if (sp->t1_ns < min_end) min_end = sp->t1_ns;
            if (sp->chunks && sp->t1_ns > last) last = sp->t1_ns;
        }
        const uint64_t imbalance = last > min_end ? last - min_end : 0;
        slm_region_stats *st = stats_of(t, s->ops[i]);
        if (st) {
            st->span_count++;
            st->span_ns += end[i] - start[i];
            st->busy_ns += busy;
            st->imbalance_ns += imbalance;
        } else {
            count_error(t);
        }
        layer_busy += busy;
        layer_imbalance += imbalance;
        if (layer_end[i]) {
            slm_region_stats *ls = stats_of(t, s->layers[i]);
            if (ls) {
                ls->span_count++;
                ls->span_ns += layer_end[i] - tile0;
                ls->busy_ns += layer_busy;
                ls->imbalance_ns += layer_imbalance;
            } else {
                count_error(t);
            }
            if (keep)
                log_span(t, &(slm_span_record){tile0, layer_end[i], layer_busy, tile0, layer_end[i],
                                                s->layers[i], s->layers[i], -1, 0, call, 0});
            tile0 = layer_end[i];
            layer_busy = layer_imbalance = 0;
        }
    }
    if (keep) {
        for (int k = 0; k < s->n_threads; k++) {
            uint64_t delay = run_delay_since_last(t, s->tids[k]);
            if (t->calls_n < t->calls_cap)
                t->calls[t->calls_n++] = (slm_call_record){s->t_begin_ns, s->t_end_ns, delay, k,
                                                           s->tids[k], call, 0};
        }
    }
    pthread_mutex_unlock(&t->lock);
}

int slm_region_keep_spans(slm_region_table *t, int64_t capacity) {
    if (capacity < 0 || capacity > ((int64_t)1 << 32)) return SLM_EINVAL;
    pthread_mutex_lock(&t->lock);
    free(t->log);
    free(t->calls);
    t->log = NULL;
    t->calls = NULL;
    t->log_cap = t->log_n = t->log_dropped = t->calls_cap = t->calls_n = 0;
    int rc = SLM_OK;
    if (capacity > 0) {
        /* a chunk logs one call row per thread and at least three span rows per thread (the
         * embedding, the output norm, the LM head): a third of the span rows is enough */
        const int64_t calls = capacity / 3 + SLM_REGION_MAX_THREADS;
        t->log = malloc((size_t)capacity * sizeof(slm_span_record));
        t->calls = malloc((size_t)calls * sizeof(slm_call_record));
        if (!t->log || !t->calls) {
            free(t->log);
            free(t->calls);
            t->log = NULL;
            t->calls = NULL;
            rc = SLM_ENOMEM;
        } else {
            t->log_cap = capacity;
            t->calls_cap = calls;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int64_t slm_region_span_count(slm_region_table *t) {
    pthread_mutex_lock(&t->lock);
    int64_t n = t->log_n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int64_t slm_region_span_dropped(slm_region_table *t) {
    pthread_mutex_lock(&t->lock);
    int64_t n = t->log_dropped;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int64_t slm_region_span_copy(slm_region_table *t, slm_span_record *out, int64_t max) {
    pthread_mutex_lock(&t->lock);
    int64_t n = t->log_n < max ? t->log_n : max;
    if (n > 0) memcpy(out, t->log, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&t->lock);
    return n;
}

int64_t slm_region_call_count(slm_region_table *t) {
    pthread_mutex_lock(&t->lock);
    int64_t n = t->calls_n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int64_t slm_region_call_copy(slm_region_table *t, slm_call_record *out, int64_t max) {
    pthread_mutex_lock(&t->lock);
    int64_t n = t->calls_n < max ? t->calls_n : max;
    if (n > 0) memcpy(out, t->calls, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&t->lock);
    return n;
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
    t->log_n = t->log_dropped = t->calls_n = 0;
    t->n_calls = 0;
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
    free(t->log);
    free(t->calls);
    free(t->scratch);
    for (int i = 0; i < SLM_REGION_MAX_THREADS; i++)
        if (t->sched[i].fd >= 0) close(t->sched[i].fd);
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
