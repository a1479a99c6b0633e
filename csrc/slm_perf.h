/* slm_perf.h: perf_event counter groups, the region table and the /proc + sysfs sampler
 * thread. Included by slm.h. */
#ifndef SLM_PERF_H
#define SLM_PERF_H

#endif /* SLM_PERF_H */
