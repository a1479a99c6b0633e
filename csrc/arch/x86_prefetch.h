/* Decode's weight stream asks for its bytes this far ahead: the engine's work units (48-512
 * rows) are too short for the hardware prefetcher to reach full speed before each one ends. */
#ifndef SLM_X86_PREFETCH_H
#define SLM_X86_PREFETCH_H
#include <immintrin.h>
#include <stdint.h>

#define PREFETCH_AHEAD 2048

/* The `bytes` (a tile, a super-block) that lie PREFETCH_AHEAD beyond p, into L1. */
static inline void prefetch_ahead(const void *p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + PREFETCH_AHEAD + o, _MM_HINT_T0);
}
#endif
