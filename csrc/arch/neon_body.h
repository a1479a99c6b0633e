/* NEON kernels, written once and compiled twice:
 *   kernels_neon.c          baseline Armv8-A (Cortex-A72, Pi 4): int8 dot products through
 *                           widening multiplies. For 4-bit weights the 32 products of a block
 *                           are chained in int16 (|q| <= 15 times |a| <= 127, 4 per lane, fits)
 *                           and widened once; for Q8_0 every pair is widened (vpadalq).
 *   kernels_neon_dotprod.c  Armv8.2-A + dotprod (Cortex-A76, Pi 5): vdotq_s32.
 * The includer defines NEON_DOTPROD (0/1) and NEON_FN(name) (symbol suffix).
 *
 * The plain path's weights use the R4X2 tiles (4 rows x 2 blocks, see slm_quant.h): decode
 * computes 4 rows per pass sharing every activation load; prefill computes 4 rows x 4 tokens per
 * pass, reducing the 16 integer block sums with pairwise adds before one float multiply-add per
 * row. The dot-product path uses the R4I tiles (neon_dotprod_tiles.h).
 * Activation quantizers are bit-identical to the reference (FCVTAS rounds half away from 0). */
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels_impl.h"

#define ROW_CHUNK 64

/* One fp16 -> fp32 with the scalar hardware conversion (FCVT, baseline Armv8). */
static inline float h2f(slm_half h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

/* 4 fp16 -> 4 fp32 with the hardware conversion (baseline Armv8). */
static inline float32x4_t h4(const slm_half *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/* Sum of a 32-element 4-bit block times its activations into 4 int32 lanes.
 * lo/hi: the block's elements 0..15 / 16..31 as int8; a0/a1 the matching activations. */
static inline int32x4_t dot_q4_block(int32x4_t acc, int8x16_t lo, int8x16_t hi, int8x16_t a0, int8x16_t a1) {
#if NEON_DOTPROD
    return vdotq_s32(vdotq_s32(acc, lo, a0), hi, a1);
#else
    int16x8_t p = vmull_s8(vget_low_s8(lo), vget_low_s8(a0));
    p = vmlal_high_s8(p, lo, a0);
    p = vmlal_s8(p, vget_low_s8(hi), vget_low_s8(a1));
    p = vmlal_high_s8(p, hi, a1);
    return vpadalq_s16(acc, p);
#endif
}

/* Sum of 32 int8 x int8 products into 4 int32 lanes. */
static inline int32x4_t dot_q8_block(int32x4_t acc, int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
#if NEON_DOTPROD
    return vdotq_s32(vdotq_s32(acc, w0, a0), w1, a1);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w0), vget_low_s8(a0)));
    acc = vpadalq_s16(acc, vmull_high_s8(w0, a0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(a1)));
    return vpadalq_s16(acc, vmull_high_s8(w1, a1));
#endif
}

/* 16 packed bytes -> elements 0..15 (low nibbles) and 16..31 (high nibbles), minus `off`. */
static inline void unpack_q4(uint8x16_t q, int off, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    *lo = vreinterpretq_s8_u8(vandq_u8(q, m4));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    if (off) {
        *lo = vsubq_s8(*lo, vdupq_n_s8((int8_t)off));
        *hi = vsubq_s8(*hi, vdupq_n_s8((int8_t)off));
    }
}

/* ---- activation quantizers ---- */

static inline float quantize_block_q8_neon(const float *x, int8_t *qs, int *sum) {
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxq_f32(m, vabsq_f32(v[k]));
    }
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    int32x4_t s = vdupq_n_s32(0);
    int16x8_t h[4];
    for (int k = 0; k < 4; k++) {
        const int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id));
        const int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id));
        s = vaddq_s32(s, vaddq_s32(q0, q1));
        h[k] = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
    }
    vst1q_s8(qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
    vst1q_s8(qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    if (sum) *sum = vaddvq_s32(s);
    return d;
}

static void NEON_FN(from_float_q8_0)(const float *x, void *y, int64_t n) {
    slm_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / SLM_QK; i++)
        b[i].d = slm_fp32_to_fp16(quantize_block_q8_neon(x + i * SLM_QK, b[i].qs, NULL));
}

static void NEON_FN(from_float_q8_1)(const float *x, void *y, int64_t n) {
    slm_block_q8_1 *b = y;
    for (int64_t i = 0; i < n / SLM_QK; i++) {
        int sum;
        const float d = quantize_block_q8_neon(x + i * SLM_QK, b[i].qs, &sum);
        b[i].d = slm_fp32_to_fp16(d);
        b[i].s = slm_fp32_to_fp16((float)sum * d);
    }
}

/* ---- one-row dot products over plain rows ---- */

static void NEON_FN(vec_dot_q4_0)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        int8x16_t lo, hi;
        unpack_q4(vld1q_u8(w[b].qs), 8, &lo, &hi);
        const int32x4_t p = dot_q4_block(vdupq_n_s32(0), lo, hi, vld1q_s8(a[b].qs), vld1q_s8(a[b].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[b].d) * h2f(a[b].d));
    }
    *s = vaddvq_f32(acc);
}

static void NEON_FN(vec_dot_q4_1)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float summs = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        int8x16_t lo, hi;
        unpack_q4(vld1q_u8(w[b].qs), 0, &lo, &hi);
        const int32x4_t p = dot_q4_block(vdupq_n_s32(0), lo, hi, vld1q_s8(a[b].qs), vld1q_s8(a[b].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[b].d) * h2f(a[b].d));
        summs += h2f(w[b].m) * h2f(a[b].s);
    }
    *s = vaddvq_f32(acc) + summs;
}

static void NEON_FN(vec_dot_q8_0)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q8_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const int32x4_t p = dot_q8_block(vdupq_n_s32(0), vld1q_s8(w[b].qs), vld1q_s8(w[b].qs + 16),
                                         vld1q_s8(a[b].qs), vld1q_s8(a[b].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[b].d) * h2f(a[b].d));
    }
    *s = vaddvq_f32(acc);
}

static void NEON_FN(vec_dot_f16)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_half *w = w_row;
    const float *a = act_row;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, h4(w + i), vld1q_f32(a + i));
        acc1 = vfmaq_f32(acc1, h4(w + i + 4), vld1q_f32(a + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) sum += h2f(w[i]) * a[i];
    *s = sum;
}

static void NEON_FN(vec_dot_f32)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const float *w = w_row;
    const float *a = act_row;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(w + i), vld1q_f32(a + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(w + i + 4), vld1q_f32(a + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

#if !NEON_DOTPROD
/* ---- R4X2 tiles (the plain path; the dot-product path has its own, neon_dotprod_tiles.h) ---- */

/* Activations prepared once per product, per token and block pair: the two blocks' quants and
 * their scales as fp32 (d, and s for Q8_1), so the row-group loops below convert nothing.
 * A block past the end of an odd count is zero. */
typedef struct {
    int8_t q[64];
    float d[2], s[2];
} act_prep; /* 80 bytes */

static size_t prep_bytes(int64_t n_tok, int64_t nb) {
    return (size_t)((n_tok + 3) / 4 * 4 * ((nb + 1) / 2)) * sizeof(act_prep);
}

/* Tokens are padded with zero entries to a multiple of 4 (whole prefill tiles). */
static void prepare_acts(int type, const uint8_t *act, int64_t arb, int64_t n_tok, int64_t nb, act_prep *out) {
    const int64_t n_pairs = (nb + 1) / 2;
    memset(out + n_tok * n_pairs, 0, prep_bytes(n_tok, nb) - (size_t)(n_tok * n_pairs) * sizeof(act_prep));
    for (int64_t t = 0; t < n_tok; t++) {
        const uint8_t *row = act + t * arb;
        for (int64_t p = 0; p < n_pairs; p++) {
            act_prep *o = &out[t * n_pairs + p];
            for (int k = 0; k < 2; k++) {
                const int64_t b = 2 * p + k;
                if (b >= nb) {
                    memset(o->q + 32 * k, 0, 32);
                    o->d[k] = o->s[k] = 0.0f;
                } else if (type == SLM_TYPE_Q4_1) {
                    const slm_block_q8_1 *a = (const slm_block_q8_1 *)row + b;
                    memcpy(o->q + 32 * k, a->qs, 32);
                    o->d[k] = h2f(a->d);
                    o->s[k] = h2f(a->s);
                } else {
                    const slm_block_q8_0 *a = (const slm_block_q8_0 *)row + b;
                    memcpy(o->q + 32 * k, a->qs, 32);
                    o->d[k] = h2f(a->d);
                    o->s[k] = 0.0f;
                }
            }
        }
    }
}

/* Integer sums of row r of a tile against one activation block pair: [b0 b0 b1 b1]. */
static inline int32x4_t tile_row_sums(int type, const uint8_t *t, int r, const int8x16_t a[4]) {
    const int zero8 = type == SLM_TYPE_Q4_0 ? 8 : 0;
    int32x4_t s0, s1;
    if (type == SLM_TYPE_Q8_0) {
        const int8_t *w = (const int8_t *)(t + 16 + 64 * r);
        s0 = dot_q8_block(vdupq_n_s32(0), vld1q_s8(w), vld1q_s8(w + 16), a[0], a[1]);
        s1 = dot_q8_block(vdupq_n_s32(0), vld1q_s8(w + 32), vld1q_s8(w + 48), a[2], a[3]);
    } else {
        const uint8_t *q = t + (type == SLM_TYPE_Q4_1 ? 32 : 16) + 32 * r;
        int8x16_t lo, hi;
        unpack_q4(vld1q_u8(q), zero8, &lo, &hi);
        s0 = dot_q4_block(vdupq_n_s32(0), lo, hi, a[0], a[1]);
        unpack_q4(vld1q_u8(q + 16), zero8, &lo, &hi);
        s1 = dot_q4_block(vdupq_n_s32(0), lo, hi, a[2], a[3]);
    }
    return vpaddq_s32(s0, s1);
}

static inline void load_prep(const act_prep *pp, int8x16_t a[4]) {
    for (int i = 0; i < 4; i++) a[i] = vld1q_s8(pp->q + 16 * i);
}

/* 4 rows (one group) . one prepared activation row (its n_pairs entries). */
static inline __attribute__((always_inline)) void gemv4(int type, const uint8_t *tiles, int64_t nb,
                                                        const act_prep *ap, float out[4]) {
    const int64_t n_pairs = (nb + 1) / 2, tb = slm_r4x2_tile_bytes(type);
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    float32x4_t macc01 = vdupq_n_f32(0), macc23 = vdupq_n_f32(0);
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * tb;
        int8x16_t a[4];
        load_prep(&ap[p], a);
        const float32x2_t d2 = vld1_f32(ap[p].d);
        const float32x4_t da = vcombine_f32(d2, d2); /* [d0 d1 d0 d1] */
        /* [r0b0 r0b1 r1b0 r1b1] and [r2b0 r2b1 r3b0 r3b1], times the activation scales */
        const float32x4_t sc01 = vmulq_f32(h4((const slm_half *)t), da);
        const float32x4_t sc23 = vmulq_f32(h4((const slm_half *)t + 4), da);
        const float32x4_t scr[4] = {vzip1q_f32(sc01, sc01), vzip2q_f32(sc01, sc01),
                                    vzip1q_f32(sc23, sc23), vzip2q_f32(sc23, sc23)};
        for (int r = 0; r < 4; r++)
            acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(tile_row_sums(type, t, r, a)), scr[r]);
        if (type == SLM_TYPE_Q4_1) {
            const float32x2_t s2 = vld1_f32(ap[p].s);
            const float32x4_t sa = vcombine_f32(s2, s2);
            macc01 = vfmaq_f32(macc01, h4((const slm_half *)t + 8), sa);
            macc23 = vfmaq_f32(macc23, h4((const slm_half *)t + 12), sa);
        }
    }
    const float32x2_t m0 = vpadd_f32(vget_low_f32(macc01), vget_high_f32(macc01));
    const float32x2_t m1 = vpadd_f32(vget_low_f32(macc23), vget_high_f32(macc23));
    out[0] = vaddvq_f32(acc[0]) + vget_lane_f32(m0, 0);
    out[1] = vaddvq_f32(acc[1]) + vget_lane_f32(m0, 1);
    out[2] = vaddvq_f32(acc[2]) + vget_lane_f32(m1, 0);
    out[3] = vaddvq_f32(acc[3]) + vget_lane_f32(m1, 1);
}

/* 4 rows x 4 tokens: out[t][r]. `ap[j]` points at token j's prepared pairs. */
static inline __attribute__((always_inline)) void gemm4x4(int type, const uint8_t *tiles, int64_t nb,
                                                          const act_prep *const ap[4], float out[4][4]) {
    const int64_t n_pairs = (nb + 1) / 2, tb = slm_r4x2_tile_bytes(type);
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * tb;
        int8x16_t a[4][4];
        float da0[4], da1[4], sa0[4], sa1[4];
        for (int j = 0; j < 4; j++) {
            const act_prep *pp = ap[j] + p;
            load_prep(pp, a[j]);
            da0[j] = pp->d[0], da1[j] = pp->d[1], sa0[j] = pp->s[0], sa1[j] = pp->s[1];
        }
        const float32x4_t vda0 = vld1q_f32(da0), vda1 = vld1q_f32(da1);
        const float32x4_t wd01 = h4((const slm_half *)t), wd23 = h4((const slm_half *)t + 4);
        const float wd[8] = {vgetq_lane_f32(wd01, 0), vgetq_lane_f32(wd01, 1), vgetq_lane_f32(wd01, 2),
                             vgetq_lane_f32(wd01, 3), vgetq_lane_f32(wd23, 0), vgetq_lane_f32(wd23, 1),
                             vgetq_lane_f32(wd23, 2), vgetq_lane_f32(wd23, 3)};
        for (int r = 0; r < 4; r++) {
            int32x4_t s[4];
            for (int j = 0; j < 4; j++) s[j] = tile_row_sums(type, t, r, a[j]); /* [b0 b0 b1 b1] */
            /* [t0b0 t0b1 t1b0 t1b1], [t2b0 t2b1 t3b0 t3b1] -> per block over tokens */
            const int32x4_t p01 = vpaddq_s32(s[0], s[1]), p23 = vpaddq_s32(s[2], s[3]);
            const int32x4_t b0 = vuzp1q_s32(p01, p23), b1 = vuzp2q_s32(p01, p23); /* [t0 t1 t2 t3] */
            acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(b0), vmulq_n_f32(vda0, wd[2 * r]));
            acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(b1), vmulq_n_f32(vda1, wd[2 * r + 1]));
        }
        if (type == SLM_TYPE_Q4_1) {
            const float32x4_t wm01 = h4((const slm_half *)t + 8), wm23 = h4((const slm_half *)t + 12);
            const float wm[8] = {vgetq_lane_f32(wm01, 0), vgetq_lane_f32(wm01, 1), vgetq_lane_f32(wm01, 2),
                                 vgetq_lane_f32(wm01, 3), vgetq_lane_f32(wm23, 0), vgetq_lane_f32(wm23, 1),
                                 vgetq_lane_f32(wm23, 2), vgetq_lane_f32(wm23, 3)};
            const float32x4_t vs0 = vld1q_f32(sa0), vs1 = vld1q_f32(sa1);
            for (int r = 0; r < 4; r++) {
                acc[r] = vfmaq_n_f32(acc[r], vs0, wm[2 * r]);
                acc[r] = vfmaq_n_f32(acc[r], vs1, wm[2 * r + 1]);
            }
        }
    }
    for (int r = 0; r < 4; r++) {
        float v[4];
        vst1q_f32(v, acc[r]);
        for (int j = 0; j < 4; j++) out[j][r] = v[j];
    }
}

static void NEON_FN(gemv4_q4_0)(const uint8_t *t, int64_t nb, const act_prep *a, float o[4]) { gemv4(SLM_TYPE_Q4_0, t, nb, a, o); }
static void NEON_FN(gemv4_q4_1)(const uint8_t *t, int64_t nb, const act_prep *a, float o[4]) { gemv4(SLM_TYPE_Q4_1, t, nb, a, o); }
static void NEON_FN(gemv4_q8_0)(const uint8_t *t, int64_t nb, const act_prep *a, float o[4]) { gemv4(SLM_TYPE_Q8_0, t, nb, a, o); }
static void NEON_FN(gemm4x4_q4_0)(const uint8_t *t, int64_t nb, const act_prep *const a[4], float o[4][4]) { gemm4x4(SLM_TYPE_Q4_0, t, nb, a, o); }
static void NEON_FN(gemm4x4_q4_1)(const uint8_t *t, int64_t nb, const act_prep *const a[4], float o[4][4]) { gemm4x4(SLM_TYPE_Q4_1, t, nb, a, o); }
static void NEON_FN(gemm4x4_q8_0)(const uint8_t *t, int64_t nb, const act_prep *const a[4], float o[4][4]) { gemm4x4(SLM_TYPE_Q8_0, t, nb, a, o); }

/* Tiles of rows [r0, r1) from `packed` (whose first group starts at row packed_row0), against
 * activations prepared by prepare_acts. */
static void NEON_FN(matmul_tiles)(const slm_weight *w, const uint8_t *packed, int64_t packed_row0,
                                  const act_prep *prep, int64_t n_tok,
                                  float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    const int64_t gbytes = n_pairs * slm_r4x2_tile_bytes(w->type);
    const int64_t g0 = r0 / 4, g1 = (r1 + 3) / 4;
    for (int64_t gc = g0; gc < g1; gc += ROW_CHUNK / 4) {
        const int64_t gc1 = gc + ROW_CHUNK / 4 < g1 ? gc + ROW_CHUNK / 4 : g1;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
            const act_prep *ap[4];
            for (int j = 0; j < 4; j++) ap[j] = prep + (t0 + j) * n_pairs; /* padded to 4 tokens */
            for (int64_t g = gc; g < gc1; g++) {
                const uint8_t *tiles = packed + (g - packed_row0 / 4) * gbytes;
                float out[4][4];
                if (nt == 1) {
                    switch (w->type) {
                    case SLM_TYPE_Q4_0: NEON_FN(gemv4_q4_0)(tiles, nb, ap[0], out[0]); break;
                    case SLM_TYPE_Q4_1: NEON_FN(gemv4_q4_1)(tiles, nb, ap[0], out[0]); break;
                    default: NEON_FN(gemv4_q8_0)(tiles, nb, ap[0], out[0]); break;
                    }
                } else {
                    switch (w->type) {
                    case SLM_TYPE_Q4_0: NEON_FN(gemm4x4_q4_0)(tiles, nb, ap, out); break;
                    case SLM_TYPE_Q4_1: NEON_FN(gemm4x4_q4_1)(tiles, nb, ap, out); break;
                    default: NEON_FN(gemm4x4_q8_0)(tiles, nb, ap, out); break;
                    }
                }
                for (int j = 0; j < nt; j++)
                    for (int r = 0; r < 4; r++) {
                        const int64_t row = g * 4 + r;
                        if (row >= r0 && row < r1) y[(t0 + j) * y_stride + row] = out[j][r];
                    }
            }
        }
    }
}

static void NEON_FN(matmul_packed)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                                   float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / SLM_QK;
    act_prep *prep = slm_scratch(0, prep_bytes(n_tok, nb));
    if (!prep) { /* no memory for the prepared activations: the plain scalar path needs none */
        slm_matmul_scalar_plain(w, act, arb, n_tok, y, y_stride, r0, r1);
        return;
    }
    prepare_acts(w->type, act, arb, n_tok, nb, prep);
    NEON_FN(matmul_tiles)(w, w->packed, 0, prep, n_tok, y, y_stride, r0, r1);
}

#endif /* !NEON_DOTPROD */

static const slm_kernel_set *NEON_FN(set)(int type);

#if !NEON_DOTPROD
/* Plain rows: decode row by row; prefill packs a chunk of rows at a time on the fly. */
static void NEON_FN(matmul_plain)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                                  float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    if (n_tok == 1) {
        const slm_vec_dot_fn dot = NEON_FN(set)(w->type)->traits.vec_dot;
        for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    act_prep *prep = slm_scratch(0, prep_bytes(n_tok, nb));
    uint8_t *buf = slm_scratch(1, (size_t)(ROW_CHUNK / 4 * n_pairs * slm_r4x2_tile_bytes(w->type)));
    if (!prep || !buf) {
        slm_matmul_scalar_plain(w, act, arb, n_tok, y, y_stride, r0, r1);
        return;
    }
    prepare_acts(w->type, act, arb, n_tok, nb, prep);
    for (int64_t c0 = r0 / 4 * 4; c0 < r1; c0 += ROW_CHUNK) {
        const int64_t c1 = c0 + ROW_CHUNK < r1 ? c0 + ROW_CHUNK : r1;
        slm_pack_r4x2_rows(w, c0, (c1 - c0 + 3) / 4, buf);
        NEON_FN(matmul_tiles)(w, buf, c0, prep, n_tok, y, y_stride, c0 > r0 ? c0 : r0, c1);
    }
}

#define QUANT_MATMUL_PLAIN NEON_FN(matmul_plain)
#define QUANT_MATMUL_PACKED NEON_FN(matmul_packed)
#define QUANT_PREPARE slm_pack_r4x2
#define QUANT_LAYOUT SLM_LAYOUT_R4X2
#else
#include "arch/neon_dotprod_tiles.h"
#endif

/* Float weights: 4 rows x NT tokens per pass with every accumulator in a register (NT is a
 * compile-time constant at each call site); each converted weight vector is used NT times. */
static inline float32x4_t NEON_FN(load_w4)(const slm_weight *w, int64_t r, int64_t c, const int is_f16) {
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    return is_f16 ? h4((const slm_half *)row + c) : vld1q_f32((const float *)row + c);
}

static inline __attribute__((always_inline)) void NEON_FN(float_tile)(const slm_weight *w, const uint8_t *act,
                                                                      int64_t arb, int64_t t0, int64_t r,
                                                                      float *y, int64_t ys, const int NT,
                                                                      int64_t r0, int64_t r1, const int is_f16) {
    const int64_t n = w->cols;
    float32x4_t acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NT; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        float32x4_t a[4];
        for (int j = 0; j < NT; j++) a[j] = vld1q_f32((const float *)(act + (t0 + j) * arb) + c);
        for (int i = 0; i < 4; i++) {
            const float32x4_t wv = NEON_FN(load_w4)(w, r + i, c, is_f16);
            for (int j = 0; j < NT; j++) acc[i][j] = vfmaq_f32(acc[i][j], wv, a[j]);
        }
    }
    for (int i = 0; i < 4; i++) {
        const uint8_t *row = (const uint8_t *)w->data + (r + i) * w->row_bytes;
        for (int j = 0; j < NT && r + i >= r0 && r + i < r1; j++) {
            const float *a = (const float *)(act + (t0 + j) * arb);
            float sum = vaddvq_f32(acc[i][j]);
            for (int64_t k = c; k < n; k++)
                sum += (w->type == SLM_TYPE_F16 ? h2f(((const slm_half *)row)[k]) : ((const float *)row)[k]) * a[k];
            y[(t0 + j) * ys + r + i] = sum;
        }
    }
}

static void NEON_FN(matmul_float)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                                  float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const slm_vec_dot_fn dot = w->type == SLM_TYPE_F16 ? NEON_FN(vec_dot_f16) : NEON_FN(vec_dot_f32);
    if (n_tok == 1) {
        /* decode streams the weights: one row at a time is one sequential stream for the
         * hardware prefetchers (on x86, 4 interleaved rows reached only about half the bandwidth) */
        for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
        const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
        /* groups at absolute multiples of 4 rows: any split of the rows gives identical numbers */
        int64_t r = r0 / 4 * 4;
        const int f16 = w->type == SLM_TYPE_F16; /* one loop per (tokens, type): no branch inside */
        for (; r < r1 && r + 4 <= w->rows; r += 4) {
            switch (nt) {
            case 4: f16 ? NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 4, r0, r1, 1)
                          : NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 4, r0, r1, 0); break;
            case 3: f16 ? NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 3, r0, r1, 1)
                          : NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 3, r0, r1, 0); break;
            case 2: f16 ? NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 2, r0, r1, 1)
                          : NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 2, r0, r1, 0); break;
            default: f16 ? NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 1, r0, r1, 1)
                         : NEON_FN(float_tile)(w, act, arb, t0, r, y, y_stride, 1, r0, r1, 0); break;
            }
        }
        for (r = r > r0 ? r : r0; r < r1; r++) /* the last rows when the count is not a multiple of 4 */
            for (int j = 0; j < nt; j++)
                dot(w->cols, &y[(t0 + j) * y_stride + r], (const uint8_t *)w->data + r * w->row_bytes,
                    act + (t0 + j) * arb);
    }
}

static const slm_kernel_set NEON_FN(sets)[] = {
    [SLM_TYPE_F32] = {{SLM_TYPE_F32, slm_from_float_f32_copy, NEON_FN(vec_dot_f32)}, NEON_FN(matmul_float), NULL, NULL, 0},
    [SLM_TYPE_F16] = {{SLM_TYPE_F32, slm_from_float_f32_copy, NEON_FN(vec_dot_f16)}, NEON_FN(matmul_float), NULL, NULL, 0},
    [SLM_TYPE_Q4_0] = {{SLM_TYPE_Q8_0, NEON_FN(from_float_q8_0), NEON_FN(vec_dot_q4_0)}, QUANT_MATMUL_PLAIN,
                       QUANT_MATMUL_PACKED, QUANT_PREPARE, QUANT_LAYOUT},
    [SLM_TYPE_Q4_1] = {{SLM_TYPE_Q8_1, NEON_FN(from_float_q8_1), NEON_FN(vec_dot_q4_1)}, QUANT_MATMUL_PLAIN,
                       QUANT_MATMUL_PACKED, QUANT_PREPARE, QUANT_LAYOUT},
    [SLM_TYPE_Q8_0] = {{SLM_TYPE_Q8_0, NEON_FN(from_float_q8_0), NEON_FN(vec_dot_q8_0)}, QUANT_MATMUL_PLAIN,
                       QUANT_MATMUL_PACKED, QUANT_PREPARE, QUANT_LAYOUT},
};

static const slm_kernel_set *NEON_FN(set)(int type) {
    if (type < 0 || type >= (int)(sizeof NEON_FN(sets) / sizeof NEON_FN(sets)[0])) return NULL;
    return NEON_FN(sets)[type].matmul_plain ? &NEON_FN(sets)[type] : NULL;
}
