/* f32 FMA peak on AVX2+FMA: 12 independent 8-lane chains cover the FMA latency of current
 * x86 cores (4-5 cycles on 2 pipes needs at least 8-10 in flight). */
#include <immintrin.h>

#include "calib/calib_internal.h"

float slm_calib_fma_avx2(int64_t iters, float seed) {
    __m256 x0 = _mm256_set1_ps(seed), x1 = _mm256_set1_ps(seed + 0.01f);
    __m256 x2 = _mm256_set1_ps(seed + 0.02f), x3 = _mm256_set1_ps(seed + 0.03f);
    __m256 x4 = _mm256_set1_ps(seed + 0.04f), x5 = _mm256_set1_ps(seed + 0.05f);
    __m256 x6 = _mm256_set1_ps(seed + 0.06f), x7 = _mm256_set1_ps(seed + 0.07f);
    __m256 x8 = _mm256_set1_ps(seed + 0.08f), x9 = _mm256_set1_ps(seed + 0.09f);
    __m256 xa = _mm256_set1_ps(seed + 0.10f), xb = _mm256_set1_ps(seed + 0.11f);
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm256_fmadd_ps(x0, m, c); x1 = _mm256_fmadd_ps(x1, m, c);
        x2 = _mm256_fmadd_ps(x2, m, c); x3 = _mm256_fmadd_ps(x3, m, c);
        x4 = _mm256_fmadd_ps(x4, m, c); x5 = _mm256_fmadd_ps(x5, m, c);
        x6 = _mm256_fmadd_ps(x6, m, c); x7 = _mm256_fmadd_ps(x7, m, c);
        x8 = _mm256_fmadd_ps(x8, m, c); x9 = _mm256_fmadd_ps(x9, m, c);
        xa = _mm256_fmadd_ps(xa, m, c); xb = _mm256_fmadd_ps(xb, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(xa, xb)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
