/* The calibration's read loop in 256-bit loads: the baseline build's 128-bit loop issues twice
 * the loads for the same bytes, which one core's load ports can make the limit. */
#include <immintrin.h>

#include "calib/calib_internal.h"

uint64_t slm_calib_read_avx2(const uint64_t *a, int64_t n) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(a + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(a + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(a + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(a + i + 12)));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
    uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; i++) s += a[i];
    return s;
}
