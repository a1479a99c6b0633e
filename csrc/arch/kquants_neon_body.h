/* NEON kernels of the 5-bit and K types, written once and compiled twice:
 *   kquants_neon.c          baseline Armv8-A (Cortex-A72, Pi 4): int8 products through
 *                           widening multiplies (vmull_s8 + pairwise add);
 *   kquants_neon_dotprod.c  Armv8.2-A + dotprod (Cortex-A76, Pi 5): vdotq_s32.
 * The includer defines KQ_DOTPROD (0/1) and KQ_FN(name) (symbol suffix).
 *
 * A K super-block is decoded to 256 codes (unsigned, at most 63, so they are valid int8 too)
 * and its 16 group scales; each group of 16 codes meets 16 activations in one int32x4 dot,
 * scaled by the group's scale with one multiply-accumulate. Decode (one token) decodes and
 * dots super-block by super-block; prefill decodes a super-block once for 4 tokens.
 * Q5 blocks decode to 32 codes the same way. Integer sums are exact (checked against
 * kquants.h); the Q8_K quantizer rounds half to even like the reference (FCVTNS). */
#include <arm_neon.h>
#include <string.h>

#include "quant/kquants.h"

static inline float h2f(slm_half h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

/* sum of 16 int8 x int8 products into 4 int32 lanes (|w| <= 63 keeps the int16 pairs exact) */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t a) {
#if KQ_DOTPROD
    return vdotq_s32(acc, w, a);
#else
    int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(a));
    p = vmlal_high_s8(p, w, a);
    return vpadalq_s16(acc, p);
#endif
}

/* ---- Q8_K activations ---- */

static void quantize_block_q8_K(const float *x, slm_block_q8_K *y) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < SLM_QK_K; i += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    const float amax = vmaxvq_f32(m);
    if (!amax) {
        memset(y, 0, sizeof *y);
        return;
    }
    float max = 0;
    for (int i = 0; i < SLM_QK_K; i++) /* the first element of largest magnitude, with its sign */
        if (x[i] == amax || x[i] == -amax) { max = x[i]; break; }
    const float iscale = -127.f / max;
    for (int i = 0; i < SLM_QK_K; i += 16) {
        int32x4_t q[4];
        for (int k = 0; k < 4; k++) q[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4 * k), iscale));
        const int16x8_t q01 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
        const int16x8_t q23 = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
        vst1q_s8(y->qs + i, vcombine_s8(vqmovn_s16(q01), vqmovn_s16(q23)));
        y->bsums[i / 16] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
    }
    y->d = 1 / iscale;
}

static void from_float_q8_K(const float *x, void *y, int64_t n) {
    for (int64_t i = 0; i < n / SLM_QK_K; i++) quantize_block_q8_K(x + i * SLM_QK_K, (slm_block_q8_K *)y + i);
}

/* ---- K super-blocks ---- */

typedef struct {
    uint8_t q[SLM_QK_K];   /* codes, element order */
    int16_t sc[16], k[16], mn[16];
    float d, dmin;
} sb_decoded;

static inline uint8x16_t shr_u8(uint8x16_t v, int n) { return vshlq_u8(v, vdupq_n_s8((int8_t)-n)); }

/* Q4_K/Q5_K scale and min of sub-block j */
static inline void scale_min_k4(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static inline __attribute__((always_inline)) void sb_decode(int type, const uint8_t *blk, sb_decoded *o) {
    const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    memset(o->k, 0, sizeof o->k);
    memset(o->mn, 0, sizeof o->mn);
    o->dmin = 0.0f;
    switch (type) {
    case SLM_TYPE_Q2_K:
    case SLM_TYPE_Q3_K: {
        const uint8_t *qs = type == SLM_TYPE_Q2_K ? ((const slm_block_q2_K *)blk)->qs : ((const slm_block_q3_K *)blk)->qs;
        uint8x16_t hm0 = vdupq_n_u8(0), hm1 = hm0;
        if (type == SLM_TYPE_Q3_K) {
            hm0 = vld1q_u8(((const slm_block_q3_K *)blk)->hmask);
            hm1 = vld1q_u8(((const slm_block_q3_K *)blk)->hmask + 16);
        }
        for (int s = 0; s < 8; s++) {
            const uint8_t *src = qs + 32 * (s / 4);
            uint8x16_t a = vandq_u8(shr_u8(vld1q_u8(src), 2 * (s % 4)), m3);
            uint8x16_t b = vandq_u8(shr_u8(vld1q_u8(src + 16), 2 * (s % 4)), m3);
            if (type == SLM_TYPE_Q3_K) {
                a = vorrq_u8(a, vshlq_n_u8(vandq_u8(shr_u8(hm0, s), one), 2));
                b = vorrq_u8(b, vshlq_n_u8(vandq_u8(shr_u8(hm1, s), one), 2));
            }
            vst1q_u8(o->q + 32 * s, a);
            vst1q_u8(o->q + 32 * s + 16, b);
        }
        if (type == SLM_TYPE_Q2_K) {
            const slm_block_q2_K *b = (const slm_block_q2_K *)blk;
            for (int g = 0; g < 16; g++) {
                o->sc[g] = b->scales[g] & 0x0F;
                o->mn[g] = b->scales[g] >> 4;
            }
            o->d = h2f(b->d);
            o->dmin = h2f(b->dmin);
        } else {
            const slm_block_q3_K *b = (const slm_block_q3_K *)blk;
            for (int g = 0; g < 16; g++) {
                const int lo = g < 8 ? b->scales[g] & 0x0F : b->scales[g - 8] >> 4;
                o->sc[g] = (int16_t)((lo | ((b->scales[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32);
                o->k[g] = (int16_t)(4 * o->sc[g]);
            }
            o->d = h2f(b->d);
        }
        break;
    }
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: {
        const int five = type == SLM_TYPE_Q5_K;
        const slm_block_q4_K *b4 = (const slm_block_q4_K *)blk;
        const slm_block_q5_K *b5 = (const slm_block_q5_K *)blk;
        const uint8_t *qs = five ? b5->qs : b4->qs, *scales = five ? b5->scales : b4->scales;
        uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
        if (five) {
            h0 = vld1q_u8(b5->qh);
            h1 = vld1q_u8(b5->qh + 16);
        }
        for (int c = 0; c < 4; c++) {
            const uint8x16_t v0 = vld1q_u8(qs + 32 * c), v1 = vld1q_u8(qs + 32 * c + 16);
            uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4), u0 = vshrq_n_u8(v0, 4), u1 = vshrq_n_u8(v1, 4);
            if (five) {
                l0 = vorrq_u8(l0, vshlq_n_u8(vandq_u8(shr_u8(h0, 2 * c), one), 4));
                l1 = vorrq_u8(l1, vshlq_n_u8(vandq_u8(shr_u8(h1, 2 * c), one), 4));
                u0 = vorrq_u8(u0, vshlq_n_u8(vandq_u8(shr_u8(h0, 2 * c + 1), one), 4));
                u1 = vorrq_u8(u1, vshlq_n_u8(vandq_u8(shr_u8(h1, 2 * c + 1), one), 4));
            }
            vst1q_u8(o->q + 64 * c, l0);
            vst1q_u8(o->q + 64 * c + 16, l1);
            vst1q_u8(o->q + 64 * c + 32, u0);
            vst1q_u8(o->q + 64 * c + 48, u1);
        }
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            o->sc[2 * j] = o->sc[2 * j + 1] = (int16_t)sc;
            o->mn[2 * j] = o->mn[2 * j + 1] = (int16_t)m;
        }
        o->d = h2f(five ? b5->d : b4->d);
        o->dmin = h2f(five ? b5->dmin : b4->dmin);
        break;
    }
    default: { /* Q6_K */
        const slm_block_q6_K *b = (const slm_block_q6_K *)blk;
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 4; c++)
                for (int half = 0; half < 2; half++) {
                    const uint8x16_t l = vld1q_u8(b->ql + 64 * h + 32 * (c & 1) + 16 * half);
                    const uint8x16_t lo = c < 2 ? vandq_u8(l, m4) : vshrq_n_u8(l, 4);
                    const uint8x16_t hi = vandq_u8(shr_u8(vld1q_u8(b->qh + 32 * h + 16 * half), 2 * c), m3);
                    vst1q_u8(o->q + 128 * h + 32 * c + 16 * half, vorrq_u8(lo, vshlq_n_u8(hi, 4)));
                }
        for (int g = 0; g < 16; g++) {
            o->sc[g] = b->scales[g];
            o->k[g] = (int16_t)(32 * b->scales[g]);
        }
        o->d = h2f(b->d);
        break;
    }
    }
}

/* sum_g sc[g] * (codes . a over group g) - sum_g k[g] * bsum[g]; *summ = sum_g mn[g] * bsum[g] */
static inline int32_t sb_dot(const sb_decoded *o, const slm_block_q8_K *a, int has_k, int has_m, int32_t *summ) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int g = 0; g < 16; g++) {
        const int32x4_t p = dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(vld1q_u8(o->q + 16 * g)), vld1q_s8(a->qs + 16 * g));
        acc = vmlaq_n_s32(acc, p, o->sc[g]);
    }
    int32_t s = vaddvq_s32(acc);
    const int16x8_t b0 = vld1q_s16(a->bsums), b1 = vld1q_s16(a->bsums + 8);
    if (has_k) {
        int32x4_t t = vmull_s16(vget_low_s16(b0), vld1_s16(o->k));
        t = vmlal_high_s16(t, b0, vld1q_s16(o->k));
        t = vmlal_s16(t, vget_low_s16(b1), vld1_s16(o->k + 8));
        t = vmlal_high_s16(t, b1, vld1q_s16(o->k + 8));
        s -= vaddvq_s32(t);
    }
    *summ = 0;
    if (has_m) {
        int32x4_t t = vmull_s16(vget_low_s16(b0), vld1_s16(o->mn));
        t = vmlal_high_s16(t, b0, vld1q_s16(o->mn));
        t = vmlal_s16(t, vget_low_s16(b1), vld1_s16(o->mn + 8));
        t = vmlal_high_s16(t, b1, vld1q_s16(o->mn + 8));
        *summ = vaddvq_s32(t);
    }
    return s;
}

static inline __attribute__((always_inline)) float dot_k(int type, int64_t n, const void *w_row, const void *act_row) {
    const int64_t bb = slm_type_block_bytes(type);
    const int has_k = type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q6_K;
    const slm_block_q8_K *a = act_row;
    float sum = 0.0f;
    sb_decoded o;
    for (int64_t b = 0; b < n / SLM_QK_K; b++) {
        sb_decode(type, (const uint8_t *)w_row + b * bb, &o);
        int32_t summ;
        const int32_t sumi = sb_dot(&o, &a[b], has_k, !has_k, &summ);
        sum += a[b].d * (o.d * (float)sumi - o.dmin * (float)summ);
    }
    return sum;
}

static inline __attribute__((always_inline)) void matmul_k(int type, const slm_weight *w, const uint8_t *act, int64_t arb,
                                                           int64_t n_tok, float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int64_t bb = slm_type_block_bytes(type), nsb = w->cols / SLM_QK_K;
    const int has_k = type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q6_K;
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) y[r] = dot_k(type, w->cols, (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    sb_decoded o;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
            float acc[4] = {0, 0, 0, 0};
            for (int64_t b = 0; b < nsb; b++) {
                sb_decode(type, row + b * bb, &o); /* once for up to 4 tokens */
                for (int t = 0; t < nt; t++) {
                    const slm_block_q8_K *a = (const slm_block_q8_K *)(act + (t0 + t) * arb) + b;
                    int32_t summ;
                    const int32_t sumi = sb_dot(&o, a, has_k, !has_k, &summ);
                    acc[t] += a->d * (o.d * (float)sumi - o.dmin * (float)summ);
                }
            }
            for (int t = 0; t < nt; t++) y[(t0 + t) * ys + r] = acc[t];
        }
    }
}

#define K_FNS(T, ID)                                                                                         \
    static void KQ_FN(vec_dot_##T)(int64_t n, float *s, const void *w_row, const void *act_row) {            \
        *s = dot_k(ID, n, w_row, act_row);                                                                   \
    }                                                                                                        \
    static void KQ_FN(matmul_##T)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok, float *y, \
                                  int64_t ys, int64_t r0, int64_t r1) {                                      \
        matmul_k(ID, w, act, arb, n_tok, y, ys, r0, r1);                                                     \
    }
K_FNS(q2_K, SLM_TYPE_Q2_K)
K_FNS(q3_K, SLM_TYPE_Q3_K)
K_FNS(q4_K, SLM_TYPE_Q4_K)
K_FNS(q5_K, SLM_TYPE_Q5_K)
K_FNS(q6_K, SLM_TYPE_Q6_K)
#undef K_FNS

/* ---- Q5_0 and Q5_1 ---- */

/* The 32 codes (0..31) of a Q5 block: elements 0..15 in lo, 16..31 in hi. */
static inline void q5_codes(const uint8_t *qh, const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    static const uint8_t spread_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t spread_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t h;
    memcpy(&h, qh, 4);
    const uint8x16_t hb = vreinterpretq_u8_u32(vdupq_n_u32(h)), bits = vld1q_u8(bit), x10 = vdupq_n_u8(0x10);
    const uint8x16_t set_lo = vandq_u8(vtstq_u8(vqtbl1q_u8(hb, vld1q_u8(spread_lo)), bits), x10);
    const uint8x16_t set_hi = vandq_u8(vtstq_u8(vqtbl1q_u8(hb, vld1q_u8(spread_hi)), bits), x10);
    const uint8x16_t q = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), set_lo));
    *hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), set_hi));
}

static inline int32_t dot32(int8x16_t lo, int8x16_t hi, const int8_t *a) {
    return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(a)), hi, vld1q_s8(a + 16)));
}

/* Q5_0: (q - 16) . a = q . a - 16 * sum(a) */
static inline float q5_0_block(const slm_block_q5_0 *w, const slm_block_q8_0 *a, int8x16_t lo, int8x16_t hi) {
    const int32_t sa = vaddlvq_s8(vld1q_s8(a->qs)) + vaddlvq_s8(vld1q_s8(a->qs + 16));
    return h2f(w->d) * h2f(a->d) * (float)(dot32(lo, hi, a->qs) - 16 * sa);
}

static void KQ_FN(vec_dot_q5_0)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        int8x16_t lo, hi;
        q5_codes(w[b].qh, w[b].qs, &lo, &hi);
        sum += q5_0_block(&w[b], &a[b], lo, hi);
    }
    *s = sum;
}

static void KQ_FN(vec_dot_q5_1)(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        int8x16_t lo, hi;
        q5_codes(w[b].qh, w[b].qs, &lo, &hi);
        sum += h2f(w[b].d) * h2f(a[b].d) * (float)dot32(lo, hi, a[b].qs) + h2f(w[b].m) * h2f(a[b].s);
    }
    *s = sum;
}

/* Prefill: each block's codes decoded once for up to 4 tokens. */
static void KQ_FN(matmul_q5)(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok, float *y, int64_t ys,
                             int64_t r0, int64_t r1) {
    const int is_q5_1 = w->type == SLM_TYPE_Q5_1;
    const slm_vec_dot_fn dot = is_q5_1 ? KQ_FN(vec_dot_q5_1) : KQ_FN(vec_dot_q5_0);
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    const int64_t nb = w->cols / SLM_QK;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
            float acc[4] = {0, 0, 0, 0};
            for (int64_t b = 0; b < nb; b++) {
                int8x16_t lo, hi;
                if (is_q5_1) {
                    const slm_block_q5_1 *wb = (const slm_block_q5_1 *)row + b;
                    q5_codes(wb->qh, wb->qs, &lo, &hi);
                    for (int t = 0; t < nt; t++) {
                        const slm_block_q8_1 *a = (const slm_block_q8_1 *)(act + (t0 + t) * arb) + b;
                        acc[t] += h2f(wb->d) * h2f(a->d) * (float)dot32(lo, hi, a->qs) + h2f(wb->m) * h2f(a->s);
                    }
                } else {
                    const slm_block_q5_0 *wb = (const slm_block_q5_0 *)row + b;
                    q5_codes(wb->qh, wb->qs, &lo, &hi);
                    for (int t = 0; t < nt; t++)
                        acc[t] += q5_0_block(wb, (const slm_block_q8_0 *)(act + (t0 + t) * arb) + b, lo, hi);
                }
            }
            for (int t = 0; t < nt; t++) y[(t0 + t) * ys + r] = acc[t];
        }
    }
}

#define K_SET(T, ID) [ID] = {{SLM_TYPE_Q8_K, from_float_q8_K, KQ_FN(vec_dot_##T)}, KQ_FN(matmul_##T), NULL, NULL, 0}
static const slm_kernel_set KQ_FN(sets)[] = {
    [SLM_TYPE_Q5_0] = {{SLM_TYPE_Q8_0, slm_from_float_q8_0_scalar, KQ_FN(vec_dot_q5_0)}, KQ_FN(matmul_q5), NULL, NULL, 0},
    [SLM_TYPE_Q5_1] = {{SLM_TYPE_Q8_1, slm_from_float_q8_1_scalar, KQ_FN(vec_dot_q5_1)}, KQ_FN(matmul_q5), NULL, NULL, 0},
    K_SET(q2_K, SLM_TYPE_Q2_K),
    K_SET(q3_K, SLM_TYPE_Q3_K),
    K_SET(q4_K, SLM_TYPE_Q4_K),
    K_SET(q5_K, SLM_TYPE_Q5_K),
    K_SET(q6_K, SLM_TYPE_Q6_K),
};
#undef K_SET

static const slm_kernel_set *KQ_FN(set)(int type) {
    if (type < 0 || type >= (int)(sizeof KQ_FN(sets) / sizeof KQ_FN(sets)[0])) return NULL;
    return KQ_FN(sets)[type].matmul_plain ? &KQ_FN(sets)[type] : NULL;
}
