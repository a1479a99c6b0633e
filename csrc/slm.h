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

/* Region hooks: how the engine tells a profiler where a layer or operation begins and ends.
 * The engine calls them on its main thread only, once the step before the edge has finished
 * on every thread, so a region covers the work of every thread. A NULL begin means "no
 * profiler": one predictable branch. */
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
} slm_region_hooks;

#include "slm_quant.h"
#include "slm_model.h"
#include "slm_perf.h"
#include "slm_calib.h"

#ifdef __cplusplus
}
#endif
#endif /* SLM_H */
