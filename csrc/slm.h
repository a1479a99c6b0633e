/*
 * slm.h: the one public header of slmprof's C core.
 *
 * Rules that hold for everything behind it:
 *  - C never exits, aborts or touches Python objects. Every fallible function returns
 *    SLM_OK (0) or a negative errno-style status (SLM_E*); _core.pyx maps them to exceptions
 *    in one place.
 *  - Hot loops live here; policy (what to run, what to report) lives in Python.
 *
 * Subjects have their own sections, included below:
 *   slm_quant.h  block formats, quantizers, kernels, ISA dispatch, matmul over row ranges
 *   slm_model.h  llama-family forward pass, KV cache, thread pool, region hooks
 *   slm_perf.h   perf_event counter groups, region table, /proc+sysfs sampler thread
 *   slm_calib.h  machine ceilings for the roofline: bandwidth, kernel throughput, fan-out cost
 */
#ifndef SLM_H
#define SLM_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: 0 or a negative errno value. Values below -1000 are slmprof's own. */
enum {
    SLM_OK = 0,
    SLM_EINVAL = -EINVAL,      /* bad argument (shape, type, range) */
    SLM_ENOMEM = -ENOMEM,      /* allocation failed */
    SLM_ERANGE = -ERANGE,      /* value out of range (context overflow, rate) */
    SLM_ENOSYS = -ENOSYS,      /* not available on this machine / build */
    SLM_ENOENT = -ENOENT,
    SLM_EACCES = -EACCES,
    SLM_EBUSY = -EBUSY,
    SLM_EMFILE = -EMFILE,
    SLM_EOPNOTSUPP = -EOPNOTSUPP,
    SLM_EINTR = -EINTR,        /* interrupted (Ctrl-C): work so far is kept */
    SLM_EUNSUPPORTED_TYPE = -1001, /* tensor type without a kernel */
    SLM_ESHAPE = -1002,        /* shapes do not agree */
    SLM_ECTX = -1003,          /* KV cache / context length exceeded */
};

/* One thread's part in one operation of a forward chunk, stamped by that thread itself. */
typedef struct slm_thread_span {
    uint64_t t0_ns;    /* it began the operation (CLOCK_MONOTONIC) */
    uint64_t t1_ns;    /* it finished its own share of the work, before waiting for the others */
    uint64_t busy_ns;  /* in its own share: t1 - t0 less its waits inside the operation */
    uint32_t chunks;   /* work units it took (0: the others did them all) */
    uint32_t own_copy; /* 1: every thread computed the whole operation for its own use */
} slm_thread_span;

/* Every operation of one forward chunk as each thread timed it, handed to the hooks once the
 * chunk is done. Each thread has timed its own work into its own row; nothing was synchronised
 * to take these times. */
typedef struct slm_chunk_spans {
    int32_t n_threads;
    int32_t n_ops;
    int32_t row_stride;            /* spans between two threads' rows (>= n_ops) */
    int32_t pad;
    const int32_t *ops;            /* [n_ops] operation region ids in the order run */
    const int32_t *layers;         /* [n_ops] the layer region each operation belongs to */
    const slm_thread_span *spans;  /* [n_threads][row_stride]: thread k, operation i at
                                      spans[k * row_stride + i] */
    const int32_t *tids;           /* [n_threads] kernel thread ids */
    uint64_t t_begin_ns;           /* before the threads were woken */
    uint64_t t_end_ns;             /* after the last one finished */
} slm_chunk_spans;

/* Region hooks: how the engine tells a profiler where a layer or operation begins and ends.
 * The engine calls begin/end/edge on its main thread only, once the step before the edge has
 * finished on every thread, so a region covers the work of every thread. A NULL begin means
 * "no profiler": one predictable branch. */
typedef struct slm_region_hooks {
    void (*begin)(void *ctx, int32_t region);
    void (*end)(void *ctx, int32_t region);
    void *ctx;
    /* Optional: a whole edge in one call, ending then beginning regions (each clock is read
     * once for the edge, so consecutive regions can tile the time). NULL: the engine calls
     * end and begin region by region. */
    void (*edge)(void *ctx, const int32_t *ends, int n_end, const int32_t *begins, int n_begin);
    /* Nonzero: at layer edges the hooks read state of every thread (counters), so the engine
     * holds its other threads there until the hooks return. Operation edges never hold: the
     * other threads go on with the next step while the main thread records the edge. */
    int hold_at_layers;
    /* Optional: per-thread operation times. When set (and operation regions are asked for)
     * every thread stamps its own operation edges into its own buffer, the engine calls
     * begin/end/edge for no operation and, unless hold_at_layers, for no layer, and hands the
     * chunk's spans over once it is done, from the calling thread. */
    void (*spans)(void *ctx, const slm_chunk_spans *spans);
} slm_region_hooks;

#include "slm_quant.h"
#include "slm_model.h"
#include "slm_perf.h"
#include "slm_calib.h"

#ifdef __cplusplus
}
#endif
#endif /* SLM_H */
