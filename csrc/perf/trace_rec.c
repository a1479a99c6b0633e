/* Region-edge recorder for traces: begin/end hooks that append timestamped edges to a
 * preallocated array and then call the next hooks (so a region table keeps its totals).
 * The engine's per-thread spans become edges too: each thread's own span of each operation
 * on that thread's track, each operation's critical interval and each layer's tile on the
 * track SLM_TRACE_CRITICAL_TID. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "slm.h"

struct slm_trace_recorder {
    slm_region_hooks self;      /* what the engine calls */
    slm_region_hooks next;      /* passed on to, when begin is not NULL */
    slm_trace_edge *edges;      /* [capacity] */
    int64_t capacity;
    _Atomic int64_t n;          /* edges claimed (may exceed capacity: the excess is dropped) */
    uint64_t *scratch;          /* [3 * scratch_n] critical starts, ends, layer ends */
    int scratch_n;
};

uint64_t slm_trace_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static _Thread_local int32_t cached_tid;

int32_t slm_thread_id(void) {
    if (!cached_tid) cached_tid = (int32_t)syscall(SYS_gettid);
    return cached_tid;
}

static void record_at(slm_trace_recorder *r, uint64_t t, int32_t region, int32_t tid, int32_t is_end) {
    int64_t i = atomic_fetch_add_explicit(&r->n, 1, memory_order_relaxed);
    if (i < r->capacity) {
        slm_trace_edge *e = &r->edges[i];
        e->t_ns = t;
        e->region = region;
        e->tid = tid;
        e->is_end = is_end;
        e->pad = 0;
    }
}

static void record(slm_trace_recorder *r, int32_t region, int32_t is_end) {
    record_at(r, slm_trace_now_ns(), region, slm_thread_id(), is_end);
}

/* A chunk's spans: every thread's own, then the critical intervals and layer tiles. */
static void trace_spans(void *ctx, const slm_chunk_spans *s) {
    slm_trace_recorder *r = ctx;
    if (s->n_ops > 0 && r->scratch_n < s->n_ops) {
        uint64_t *p = realloc(r->scratch, 3 * (size_t)s->n_ops * sizeof(uint64_t));
        if (p) {
            r->scratch = p;
            r->scratch_n = s->n_ops;
        }
    }
    if (s->n_ops > 0 && r->scratch_n >= s->n_ops) {
        for (int k = 0; k < s->n_threads; k++)
            for (int i = 0; i < s->n_ops; i++) {
                const slm_thread_span *sp = &s->spans[(size_t)k * s->row_stride + i];
                if (!sp->t0_ns) continue;
                record_at(r, sp->t0_ns, s->ops[i], s->tids[k], 0);
                record_at(r, sp->t1_ns, s->ops[i], s->tids[k], 1);
            }
        uint64_t *start = r->scratch, *end = start + s->n_ops, *layer_end = end + s->n_ops;
        slm_spans_critical(s, start, end, layer_end);
        uint64_t tile0 = s->t_begin_ns;
        for (int i = 0; i < s->n_ops; i++) {
            if (i == 0 || s->layers[i] != s->layers[i - 1])
                record_at(r, tile0, s->layers[i], SLM_TRACE_CRITICAL_TID, 0);
            record_at(r, start[i], s->ops[i], SLM_TRACE_CRITICAL_TID, 0);
            record_at(r, end[i], s->ops[i], SLM_TRACE_CRITICAL_TID, 1);
            if (layer_end[i]) {
                record_at(r, layer_end[i], s->layers[i], SLM_TRACE_CRITICAL_TID, 1);
                tile0 = layer_end[i];
            }
        }
    }
    if (r->next.spans) r->next.spans(r->next.ctx, s);
}

/* On begin the edge is logged after the next hooks ran, on end before, so the recorder's own
 * cost falls outside the region table's interval as far as it can. */
static void trace_begin(void *ctx, int32_t region) {
    slm_trace_recorder *r = ctx;
    if (r->next.begin) r->next.begin(r->next.ctx, region);
    record(r, region, 0);
}

static void trace_end(void *ctx, int32_t region) {
    slm_trace_recorder *r = ctx;
    record(r, region, 1);
    if (r->next.end) r->next.end(r->next.ctx, region);
}

/* A whole edge: its ends logged first, its begins last, the next hooks' edge in between. */
static void trace_edge(void *ctx, const int32_t *ends, int n_end, const int32_t *begins, int n_begin) {
    slm_trace_recorder *r = ctx;
    for (int i = 0; i < n_end; i++) record(r, ends[i], 1);
    if (r->next.edge) {
        r->next.edge(r->next.ctx, ends, n_end, begins, n_begin);
    } else if (r->next.begin) {
        for (int i = 0; i < n_end; i++) r->next.end(r->next.ctx, ends[i]);
        for (int i = 0; i < n_begin; i++) r->next.begin(r->next.ctx, begins[i]);
    }
    for (int i = 0; i < n_begin; i++) record(r, begins[i], 0);
}

int slm_trace_create(slm_trace_recorder **out, int64_t capacity, const slm_region_hooks *next) {
    if (!out || capacity < 1 || capacity > ((int64_t)1 << 32)) return SLM_EINVAL;
    *out = NULL;
    slm_trace_recorder *r = calloc(1, sizeof(*r));
    if (!r) return SLM_ENOMEM;
    r->edges = malloc((size_t)capacity * sizeof(slm_trace_edge));
    if (!r->edges) { free(r); return SLM_ENOMEM; }
    r->capacity = capacity;
    atomic_init(&r->n, 0);
    if (next && next->begin && next->end) r->next = *next;
    r->self.hold_at_layers = r->next.hold_at_layers; /* the next hooks' needs hold */
    r->self.begin = trace_begin;
    r->self.end = trace_end;
    r->self.edge = trace_edge;
    /* spans only where the next hooks take them too (or there are none): a table that only
     * takes edges keeps getting edges */
    r->self.spans = !r->next.begin || r->next.spans ? trace_spans : NULL;
    r->self.ctx = r;
    *out = r;
    return SLM_OK;
}

void slm_trace_destroy(slm_trace_recorder *r) {
    if (!r) return;
    free(r->edges);
    free(r->scratch);
    free(r);
}

const slm_region_hooks *slm_trace_hooks(slm_trace_recorder *r) { return r ? &r->self : NULL; }

int64_t slm_trace_count(const slm_trace_recorder *r) {
    int64_t n = atomic_load_explicit(&((slm_trace_recorder *)r)->n, memory_order_acquire);
    return n < r->capacity ? n : r->capacity;
}

int64_t slm_trace_dropped(const slm_trace_recorder *r) {
    int64_t n = atomic_load_explicit(&((slm_trace_recorder *)r)->n, memory_order_acquire);
    return n > r->capacity ? n - r->capacity : 0;
}

const slm_trace_edge *slm_trace_edges(const slm_trace_recorder *r) { return r->edges; }

void slm_trace_clear(slm_trace_recorder *r) { atomic_store(&r->n, 0); }
