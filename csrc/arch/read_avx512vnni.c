/* The calibration's read loop in 512-bit loads, on cores with AVX-512 (chosen with the
 * avx512-vnni kernel path): one core streams about 20% more bytes per second than with 256-bit
 * loads on a Sapphire Rapids class Xeon, as an independent -march=native read does. */
#include <immintrin.h>

#include "calib/calib_internal.h"

uint64_t slm_calib_read_avx512(const uint64_t *a, int64_t n) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_add_epi64(s0, _mm512_loadu_si512((const void *)(a + i)));
        s1 = _mm512_add_epi64(s1, _mm512_loadu_si512((const void *)(a + i + 8)));
        s2 = _mm512_add_epi64(s2, _mm512_loadu_si512((const void *)(a + i + 16)));
        s3 = _mm512_add_epi64(s3, _mm512_loadu_si512((const void *)(a + i + 24)));
    }
    uint64_t s = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1),
                                                                    _mm512_add_epi64(s2, s3)));
    for (; i < n; i++) s += a[i];
    return s;
}
