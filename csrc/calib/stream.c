/* STREAM-style loops and the portable FMA loop. Several accumulators keep the read loop from
 * being latency-bound on its own sum; integer sums let the compiler vectorise without
 * reassociating floating point. */
#include "calib_internal.h"

uint64_t slm_calib_read_u64(const uint64_t *a, int64_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += a[i + 0]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3];
        s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7];
    }
    for (; i < n; i++) s0 += a[i];
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

void slm_calib_copy_u64(uint64_t *restrict dst, const uint64_t *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

void slm_calib_triad_f64(double *restrict a, const double *restrict b, const double *restrict c,
                         double k, int64_t n) {
    for (int64_t i = 0; i < n; i++) a[i] = b[i] + k * c[i];
}

float slm_calib_fma_scalar(int64_t iters, float seed) {
    /* 16 independent chains x = x * m + c; m slightly below 1 keeps values finite. */
    float x[16];
    for (int j = 0; j < 16; j++) x[j] = seed + 0.001f * (float)j;
    const float m = 0.9999999f, c = 1e-7f;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 16; j++) x[j] = x[j] * m + c;
    float s = 0;
    for (int j = 0; j < 16; j++) s += x[j];
    return s;
}
