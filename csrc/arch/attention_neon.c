/* Attention for one query head with NEON (baseline Armv8-A: Cortex-A72 and A76), fp32 or fp16
 * KV (fp16 widened with FCVTL). Any head size that is a multiple of 4 (64, 80, 128, Gemma's
 * 256, ...); others take the portable path. The softmax's exponentials are vectorized, and so
 * is the other exponential of the forward pass, SwiGLU's. */
#include <arm_neon.h>
#include <math.h>

#include "slm.h"
#include "model/attention.h"

/* 4 keys or values from element i of row `base` (fp16 or fp32) as fp32. */
static inline float32x4_t load4(const void *base, size_t i, int kv_f16) {
    return kv_f16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)base + i)))
                  : vld1q_f32((const float *)base + i);
}

/* e^x, x clamped to [-87, 88] (beyond, e^x is 0 or inf for the callers' purposes): x = n ln2 + r
 * with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7), times 2^n
 * built in the exponent bits. */
static inline float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f)); /* ln2, split for exact n*hi */
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

void slm_swiglu_neon(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t silu = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(x))));
        vst1q_f32(g + i, vmulq_f32(silu, vld1q_f32(u + i)));
    }
    if (i < n) slm_swiglu_generic(g + i, u + i, n - i);
}

static void softmax_neon(float *att, int n) {
    float32x4_t m4 = vdupq_n_f32(-INFINITY);
    int p = 0;
    for (; p + 4 <= n; p += 4) m4 = vmaxq_f32(m4, vld1q_f32(att + p));
    float max = vmaxvq_f32(m4);
    for (; p < n; p++) max = att[p] > max ? att[p] : max;
    float32x4_t s4 = vdupq_n_f32(0.0f);
    const float32x4_t mx = vdupq_n_f32(max);
    for (p = 0; p + 4 <= n; p += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(att + p), mx));
        vst1q_f32(att + p, e);
        s4 = vaddq_f32(s4, e);
    }
    float sum = vaddvq_f32(s4);
    for (; p < n; p++) {
        att[p] = expf(att[p] - max);
        sum += att[p];
    }
    const float inv = 1.0f / sum;
    for (p = 0; p + 4 <= n; p += 4) vst1q_f32(att + p, vmulq_n_f32(vld1q_f32(att + p), inv));
    for (; p < n; p++) att[p] *= inv;
}

void slm_attend_neon(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos, int head_dim,
                     float scale, int kv_f16, float *att, float *out) {
    if (head_dim % 4 != 0) {
        slm_attend_generic(q, k, v, kv_stride, n_pos, head_dim, scale, kv_f16, att, out);
        return;
    }
    if (head_dim == 64) { /* the common head size: q stays in 16 registers for every key */
        float32x4_t qv[16];
        for (int j = 0; j < 16; j++) qv[j] = vld1q_f32(q + 4 * j);
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride;
            float32x4_t a[4];
            for (int j = 0; j < 4; j++) a[j] = vmulq_f32(qv[j], load4(k, off + 4 * j, kv_f16));
            for (int j = 4; j < 16; j++) a[j % 4] = vfmaq_f32(a[j % 4], qv[j], load4(k, off + 4 * j, kv_f16));
            att[p] = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3]))) * scale;
        }
    } else {
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride;
            float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
            int i = 0;
            for (; i + 16 <= head_dim; i += 16) {
                a0 = vfmaq_f32(a0, vld1q_f32(q + i), load4(k, off + i, kv_f16));
                a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), load4(k, off + i + 4, kv_f16));
                a2 = vfmaq_f32(a2, vld1q_f32(q + i + 8), load4(k, off + i + 8, kv_f16));
                a3 = vfmaq_f32(a3, vld1q_f32(q + i + 12), load4(k, off + i + 12, kv_f16));
            }
            for (; i < head_dim; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(q + i), load4(k, off + i, kv_f16));
            att[p] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) * scale;
        }
    }
    softmax_neon(att, n_pos);
    /* 64 outputs at a time (then 32) stay in registers while every position streams past */
    int c = 0;
    for (; c + 64 <= head_dim; c += 64) {
        float32x4_t o[16];
        for (int j = 0; j < 16; j++) o[j] = vdupq_n_f32(0.0f);
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride + c;
            const float a = att[p];
            for (int j = 0; j < 16; j++) o[j] = vfmaq_n_f32(o[j], load4(v, off + 4 * j, kv_f16), a);
        }
        for (int j = 0; j < 16; j++) vst1q_f32(out + c + 4 * j, o[j]);
    }
    for (; c + 32 <= head_dim; c += 32) {
        float32x4_t o[8];
        for (int j = 0; j < 8; j++) o[j] = vdupq_n_f32(0.0f);
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride + c;
            const float a = att[p];
            for (int j = 0; j < 8; j++) o[j] = vfmaq_n_f32(o[j], load4(v, off + 4 * j, kv_f16), a);
        }
        for (int j = 0; j < 8; j++) vst1q_f32(out + c + 4 * j, o[j]);
    }
    for (; c < head_dim; c += 4) {
        float32x4_t o = vdupq_n_f32(0.0f);
        for (int p = 0; p < n_pos; p++) o = vfmaq_n_f32(o, load4(v, (size_t)p * kv_stride + c, kv_f16), att[p]);
        vst1q_f32(out + c, o);
    }
}
