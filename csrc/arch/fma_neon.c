/* f32 FMA peak on aarch64 NEON: 12 independent 4-lane chains (Cortex-A72/A76 have two FP
 * pipes with 4-cycle FMA latency, so 8 or more must be in flight). */
#include <arm_neon.h>

#include "calib/calib_internal.h"

float slm_calib_fma_neon(int64_t iters, float seed) {
    float32x4_t x[12];
    for (int j = 0; j < 12; j++) x[j] = vdupq_n_f32(seed + 0.01f * (float)j);
    const float32x4_t m = vdupq_n_f32(0.9999999f), c = vdupq_n_f32(1e-7f);
    for (int64_t i = 0; i < iters; i++) {
        x[0] = vfmaq_f32(c, x[0], m); x[1] = vfmaq_f32(c, x[1], m);
        x[2] = vfmaq_f32(c, x[2], m); x[3] = vfmaq_f32(c, x[3], m);
        x[4] = vfmaq_f32(c, x[4], m); x[5] = vfmaq_f32(c, x[5], m);
        x[6] = vfmaq_f32(c, x[6], m); x[7] = vfmaq_f32(c, x[7], m);
        x[8] = vfmaq_f32(c, x[8], m); x[9] = vfmaq_f32(c, x[9], m);
        x[10] = vfmaq_f32(c, x[10], m); x[11] = vfmaq_f32(c, x[11], m);
    }
    float32x4_t s = x[0];
    for (int j = 1; j < 12; j++) s = vaddq_f32(s, x[j]);
    return vaddvq_f32(s);
}
