/* Thread-pool pieces the forward pass uses besides the public slm_pool_* (internal). */
#ifndef SLM_MODEL_POOL_H
#define SLM_MODEL_POOL_H

#include <stdatomic.h>

#include "slm.h"

/* Wait (spin, then sleep) until *word >= target. */
void slm_pool_wait_count(slm_pool *pool, atomic_uint *word, unsigned target);
/* Add n to *word and wake whoever sleeps on it. */
void slm_pool_count_up(slm_pool *pool, atomic_uint *word, unsigned n);

#endif
