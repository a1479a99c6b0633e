/* Reference quantizers and dequantizers of the 5-bit types and the K types, the ground truth
 * the kernels are tested against. They follow ggml's quantize_row_*_ref / dequantize_row_*
 * step for step (the float operations in the same order), so a file written here holds the
 * blocks ggml's own quantizer would write, and reads back to the same floats.
 *
 *   Q5_0  d = max/-16 (signed extreme), q = min(31, trunc(x/d + 16.5)), x = d*(q-16)
 *   Q5_1  d = (max-min)/31, m = min, q = trunc((x-min)/d + 0.5), x = d*q + m
 *   Q2_K  16 groups of 16: (scale, min) fitted per group by a weighted search, both coded in
 *         4 bits against fp16 d and dmin; q in 0..3; x = d*sc*q - dmin*m
 *   Q3_K  16 groups of 16, scale fitted by an iterative weighted search, coded in 6 bits
 *         (signed, -32..31) against d; q in -4..3 (2 low bits + a high bit); x = d*sc*q
 *   Q4_K  8 groups of 32, (scale, min) by a weighted search, coded in 6 bits; q in 0..15
 *   Q5_K  as Q4_K with q in 0..31 (a 5th bit)
 *   Q6_K  16 groups of 16, scale by a search around absmax, coded as int8 against d;
 *         q-32 in -32..31 (4 low bits + 2 high bits); x = d*sc*(q-32)
 *   Q8_K  d = max/-127 (fp32), q = round-half-even(x/d); bsums of 16
 * Element order in the K types' quant bytes (e = element index in the super-block):
 *   Q2_K/Q3_K low 2 bits  byte 32*(e/128) + e%32, bits 2*((e%128)/32)
 *   Q3_K high bit         hmask byte e%32, bit e/32
 *   Q4_K/Q5_K low 4 bits  byte 32*(e/64) + e%32, low nibble if e%64 < 32
 *   Q5_K 5th bit          qh byte e%32, bit e/32
 *   Q6_K low 4 bits       ql byte 64*(e/128) + 32*((e%128)/32 % 2) + e%32, low nibble if e%128 < 64
 *   Q6_K high 2 bits      qh byte 32*(e/128) + e%32, bits 2*((e%128)/32)
 * Scales: Q2_K one byte per group (scale low nibble, min high); Q4_K/Q5_K 12 bytes for 8
 * scales and 8 mins of 6 bits (scale_min below); Q3_K 12 bytes for 16 6-bit scales (low
 * nibbles in bytes 0..7, high 2 bits in bytes 8..11); Q6_K one int8 per group. */
#include <math.h>
#include <string.h>

#include "quant/kquants.h"

/* Every product and sum rounds on its own (as in ggml's C and in numpy): no fused multiply-add. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define EPS_ZERO 1e-15f /* a group whose largest |x| is below this is all zeros */

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Round to nearest, ties to even, for |v| < 2^22: the float's own rounding when 1.5*2^23 is added. */
static inline int nearest(float v) {
    const float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

int slm_is_k_type(int type) { return type >= SLM_TYPE_Q2_K && type <= SLM_TYPE_Q6_K; }

/* ---- 5-bit, 32-element blocks ---- */

static void pack_q5(const uint8_t codes[32], uint8_t qh[4], uint8_t qs[16]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((codes[j] & 0x0F) | (codes[j + 16] & 0x0F) << 4);
        h |= (uint32_t)(codes[j] >> 4 & 1) << j;
        h |= (uint32_t)(codes[j + 16] >> 4 & 1) << (j + 16);
    }
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(h >> (8 * i));
}

static void quantize_block_q5_0(const float *x, slm_block_q5_0 *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = slm_fp32_to_fp16(d);
    uint8_t codes[32];
    for (int j = 0; j < 32; j++) codes[j] = (uint8_t)imin(31, (int8_t)(x[j] * id + 16.5f));
    pack_q5(codes, y->qh, y->qs);
}

static void quantize_block_q5_1(const float *x, slm_block_q5_1 *y) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = slm_fp32_to_fp16(d);
    y->m = slm_fp32_to_fp16(min);
    uint8_t codes[32];
    for (int j = 0; j < 32; j++) codes[j] = (uint8_t)((x[j] - min) * id + 0.5f);
    pack_q5(codes, y->qh, y->qs);
}

/* ---- fitting a group's scale (and min) ---- */

/* Asymmetric fit for Q2_K, Q4_K, Q5_K: codes L in 0..nmax and (scale, min <= 0) minimising the
 * weighted error sum w*|scale*L + min - x|^p (p = 1 with use_abs, else 2): the plain min/max
 * grid first, then nstep+1 grids stretched by (rmin + rdelta*is) steps, each refitted by
 * weighted least squares. Returns the scale; *neg_min gets -min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, int use_abs) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest(iscale * (x[i] - min))));
        float diff = scale * L[i] + min - x[i];
        diff = use_abs ? fabsf(diff) : diff * diff;
        best += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, nearest(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_abs ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric fit for Q6_K (rmse weights x^2): codes L = l + nmax with l in -nmax..nmax-1, the
 * signed extreme on -nmax, then 18 neighbouring grids; the scale of the best least-squares fit. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax < EPS_ZERO) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, nearest(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric fit for Q3_K: codes l in -nmax..nmax-1 from absmax, then up to 5 passes moving
 * one code at a time while the weighted (x^2) least-squares fit improves. L = l + nmax, except
 * for an all-zero group (L = 0, scale 0). */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax < EPS_ZERO) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int l = imax(-nmax, imin(nmax - 1, nearest(x[i] * sl2 / slx)));
                if (l != L[i]) {
                    slx += w * x[i] * l;
                    sl2 += w * l * l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Q4_K/Q5_K scale and min of sub-block j (0..7), 6 bits each, from the 12 scale bytes. */
static inline void scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q3_K scale of group j (0..15), -32..31. */
static inline int q3_scale(int j, const uint8_t *s) {
    const int lo = j < 8 ? s[j] & 0x0F : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Low 2 bits of 256 codes (0..3) into Q2_K/Q3_K's 64 bytes. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < SLM_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* ---- K super-blocks ---- */

static void quantize_block_q2_K(const float *x, slm_block_q2_K *y) {
    uint8_t L[SLM_QK_K], Laux[16];
    float w[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
        scales[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)nearest(iscale * scales[j]);
        y->d = slm_fp32_to_fp16(max_scale / 15.f);
    } else {
        for (int j = 0; j < 16; j++) y->scales[j] = 0;
        y->d = slm_fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++) y->scales[j] |= (uint8_t)(nearest(iscale * mins[j]) << 4);
        y->dmin = slm_fp32_to_fp16(max_min / 15.f);
    } else {
        y->dmin = slm_fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; j++) {
        const float d = slm_fp16_to_fp32(y->d) * (y->scales[j] & 0x0F);
        if (!d) continue; /* the group keeps the codes of its fit */
        const float dm = slm_fp16_to_fp32(y->dmin) * (y->scales[j] >> 4);
        for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)imax(0, imin(3, nearest((x[16 * j + i] + dm) / d)));
    }
    pack_2bit(L, y->qs);
}

static void quantize_block_q3_K(const float *x, slm_block_q3_K *y) {
    int8_t L[SLM_QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max_scale = scales[j]; }
    }
    memset(y->scales, 0, 12);
    if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            const int l = imax(-32, imin(31, (int8_t)nearest(iscale * scales[j]))) + 32;
            if (j < 8) y->scales[j] = (uint8_t)(l & 0x0F);
            else y->scales[j - 8] |= (uint8_t)((l & 0x0F) << 4);
            y->scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        y->d = slm_fp32_to_fp16(1 / iscale);
    } else {
        y->d = slm_fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; j++) {
        const float d = slm_fp16_to_fp32(y->d) * q3_scale(j, y->scales);
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(imax(-4, imin(3, nearest(x[16 * j + i] / d))) + 4);
    }
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t low[SLM_QK_K];
    for (int e = 0; e < SLM_QK_K; e++) {
        int v = L[e];
        if (v > 3) {
            y->hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            v -= 4;
        }
        low[e] = (uint8_t)v;
    }
    pack_2bit(low, y->qs);
}

/* Q4_K and Q5_K share everything but the code range (nmax 15 or 31) and the search grid. */
static void quantize_scales_mins_k(const float *x, int nmax, float rmin, int nstep, uint8_t scales_out[12],
                                   slm_half *d_out, slm_half *dmin_out, uint8_t L[SLM_QK_K]) {
    uint8_t Laux[32];
    float w[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        const int ls = imin(63, (uint8_t)nearest(inv_scale * scales[j]));
        const int lm = imin(63, (uint8_t)nearest(inv_min * mins[j]));
        if (j < 4) {
            scales_out[j] = (uint8_t)ls;
            scales_out[j + 4] = (uint8_t)lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0x0F) | (lm & 0x0F) << 4);
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = slm_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = slm_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min(j, scales_out, &sc, &m);
        const float d = slm_fp16_to_fp32(*d_out) * sc;
        if (!d) continue;
        const float dm = slm_fp16_to_fp32(*dmin_out) * m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)imax(0, imin(nmax, nearest((x[32 * j + i] + dm) / d)));
    }
}

static void quantize_block_q4_K(const float *x, slm_block_q4_K *y) {
    uint8_t L[SLM_QK_K];
    memset(y->scales, 0, 12);
    quantize_scales_mins_k(x, 15, -1.f, 20, y->scales, &y->d, &y->dmin, L);
    for (int j = 0; j < SLM_QK_K; j += 64)
        for (int l = 0; l < 32; l++) y->qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

static void quantize_block_q5_K(const float *x, slm_block_q5_K *y) {
    uint8_t L[SLM_QK_K];
    memset(y->scales, 0, 12);
    quantize_scales_mins_k(x, 31, -0.5f, 15, y->scales, &y->d, &y->dmin, L);
    memset(y->qh, 0, sizeof y->qh);
    for (int e = 0; e < SLM_QK_K; e++)
        if (L[e] > 15) y->qh[e % 32] |= (uint8_t)(1 << (e / 32));
    for (int j = 0; j < SLM_QK_K; j += 64)
        for (int l = 0; l < 32; l++) y->qs[j / 2 + l] = (uint8_t)((L[j + l] & 0x0F) | (L[j + l + 32] & 0x0F) << 4);
}

static void quantize_block_q6_K(const float *x, slm_block_q6_K *y) {
    int8_t L[SLM_QK_K];
    float scales[16];
    float max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > max_abs) { max_abs = fabsf(scales[j]); max_scale = scales[j]; }
    }
    if (max_abs < EPS_ZERO) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.f / max_scale;
    y->d = slm_fp32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; j++) y->scales[j] = (int8_t)imin(127, nearest(iscale * scales[j]));
    for (int j = 0; j < 16; j++) {
        const float d = slm_fp16_to_fp32(y->d) * y->scales[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(imax(-32, imin(31, nearest(x[16 * j + i] / d))) + 32);
    }
    for (int h = 0; h < 2; h++) {
        const int8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((Lh[l] & 0x0F) | (Lh[l + 64] & 0x0F) << 4);
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0F) | (Lh[l + 96] & 0x0F) << 4);
            qh[l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
        }
    }
}

static void quantize_block_q8_K_ref(const float *x, slm_block_q8_K *y) {
    float max = 0, amax = 0;
    for (int j = 0; j < SLM_QK_K; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    if (!amax) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < SLM_QK_K; j++) y->qs[j] = (int8_t)imin(127, nearest(iscale * x[j]));
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += y->qs[16 * g + i];
        y->bsums[g] = (int16_t)s;
    }
    y->d = 1 / iscale;
}

/* ---- unpacking and dequantization ---- */

void slm_kq_unpack_ref(int type, const void *block, slm_kq_unpacked *u) {
    memset(u->k, 0, sizeof u->k);
    memset(u->mn, 0, sizeof u->mn);
    u->dmin = 0.0f;
    switch (type) {
    case SLM_TYPE_Q2_K: {
        const slm_block_q2_K *b = block;
        for (int e = 0; e < SLM_QK_K; e++)
            u->q[e] = (uint8_t)((b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
        for (int g = 0; g < 16; g++) {
            u->sc[g] = b->scales[g] & 0x0F;
            u->mn[g] = b->scales[g] >> 4;
        }
        u->d = slm_fp16_to_fp32(b->d);
        u->dmin = slm_fp16_to_fp32(b->dmin);
        break;
    }
    case SLM_TYPE_Q3_K: {
        const slm_block_q3_K *b = block;
        for (int e = 0; e < SLM_QK_K; e++) {
            const int low = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int high = (b->hmask[e % 32] >> (e / 32)) & 1;
            u->q[e] = (uint8_t)(low | high << 2); /* value + 4 */
        }
        for (int g = 0; g < 16; g++) {
            u->sc[g] = (int16_t)q3_scale(g, b->scales);
            u->k[g] = (int16_t)(4 * u->sc[g]);
        }
        u->d = slm_fp16_to_fp32(b->d);
        break;
    }
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: {
        const int five = type == SLM_TYPE_Q5_K;
        const slm_block_q4_K *b4 = block;
        const slm_block_q5_K *b5 = block;
        const uint8_t *qs = five ? b5->qs : b4->qs, *scales = five ? b5->scales : b4->scales;
        for (int e = 0; e < SLM_QK_K; e++) {
            const uint8_t byte = qs[32 * (e / 64) + e % 32];
            int v = e % 64 < 32 ? byte & 0x0F : byte >> 4;
            if (five) v |= ((b5->qh[e % 32] >> (e / 32)) & 1) << 4;
            u->q[e] = (uint8_t)v;
        }
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min(j, scales, &sc, &m);
            u->sc[2 * j] = u->sc[2 * j + 1] = (int16_t)sc;
            u->mn[2 * j] = u->mn[2 * j + 1] = (int16_t)m;
        }
        u->d = slm_fp16_to_fp32(five ? b5->d : b4->d);
        u->dmin = slm_fp16_to_fp32(five ? b5->dmin : b4->dmin);
        break;
    }
    default: { /* Q6_K */
        const slm_block_q6_K *b = block;
        for (int e = 0; e < SLM_QK_K; e++) {
            const int h = e / 128, c = (e % 128) / 32, l = e % 32;
            const uint8_t lb = b->ql[64 * h + 32 * (c & 1) + l];
            const int low = c < 2 ? lb & 0x0F : lb >> 4;
            const int high = (b->qh[32 * h + l] >> (2 * c)) & 3;
            u->q[e] = (uint8_t)(low | high << 4); /* value + 32 */
        }
        for (int g = 0; g < 16; g++) {
            u->sc[g] = b->scales[g];
            u->k[g] = (int16_t)(32 * b->scales[g]);
        }
        u->d = slm_fp16_to_fp32(b->d);
        break;
    }
    }
}

/* ggml's dequantizers compute each value as (d*sc)*q - (dmin*m) in float (Q6_K: (d*sc)*q;
 * Q3_K: (d*sc)*q); the same products in the same order give the same floats. */
static void dequantize_block_k(int type, const void *block, float *y) {
    slm_kq_unpacked u;
    slm_kq_unpack_ref(type, block, &u);
    const int off = type == SLM_TYPE_Q3_K ? 4 : type == SLM_TYPE_Q6_K ? 32 : 0;
    for (int e = 0; e < SLM_QK_K; e++) {
        const int g = e / 16;
        const float dl = u.d * u.sc[g];
        const int q = u.q[e] - off;
        if (type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q6_K) y[e] = dl * q;
        else y[e] = dl * q - u.dmin * u.mn[g];
    }
}

int slm_kq_quantize_row_ref(int type, const float *x, void *y, int64_t n) {
    const int64_t be = slm_type_block_elems(type), bb = slm_type_block_bytes(type);
    if (be == 0 || n % be != 0) return SLM_EUNSUPPORTED_TYPE;
    for (int64_t b = 0; b < n / be; b++) {
        const float *xb = x + b * be;
        void *yb = (uint8_t *)y + b * bb;
        switch (type) {
        case SLM_TYPE_Q5_0: quantize_block_q5_0(xb, yb); break;
        case SLM_TYPE_Q5_1: quantize_block_q5_1(xb, yb); break;
        case SLM_TYPE_Q2_K: quantize_block_q2_K(xb, yb); break;
        case SLM_TYPE_Q3_K: quantize_block_q3_K(xb, yb); break;
        case SLM_TYPE_Q4_K: quantize_block_q4_K(xb, yb); break;
        case SLM_TYPE_Q5_K: quantize_block_q5_K(xb, yb); break;
        case SLM_TYPE_Q6_K: quantize_block_q6_K(xb, yb); break;
        case SLM_TYPE_Q8_K: quantize_block_q8_K_ref(xb, yb); break;
        default: return SLM_EUNSUPPORTED_TYPE;
        }
    }
    return SLM_OK;
}

int slm_kq_dequantize_row(int type, const void *x, float *y, int64_t n) {
    const int64_t be = slm_type_block_elems(type), bb = slm_type_block_bytes(type);
    if (be == 0 || n % be != 0) return SLM_EUNSUPPORTED_TYPE;
    for (int64_t b = 0; b < n / be; b++) {
        const uint8_t *blk = (const uint8_t *)x + b * bb;
        float *yb = y + b * be;
        switch (type) {
        case SLM_TYPE_Q5_0: {
            const slm_block_q5_0 *q = (const slm_block_q5_0 *)blk;
            const float d = slm_fp16_to_fp32(q->d);
            uint8_t codes[32];
            slm_q5_codes(q->qh, q->qs, codes);
            for (int j = 0; j < 32; j++) yb[j] = (codes[j] - 16) * d;
            break;
        }
        case SLM_TYPE_Q5_1: {
            const slm_block_q5_1 *q = (const slm_block_q5_1 *)blk;
            const float d = slm_fp16_to_fp32(q->d), m = slm_fp16_to_fp32(q->m);
            uint8_t codes[32];
            slm_q5_codes(q->qh, q->qs, codes);
            for (int j = 0; j < 32; j++) yb[j] = codes[j] * d + m;
            break;
        }
        case SLM_TYPE_Q8_K: {
            const slm_block_q8_K *q = (const slm_block_q8_K *)blk;
            for (int j = 0; j < SLM_QK_K; j++) yb[j] = q->d * q->qs[j];
            break;
        }
        case SLM_TYPE_Q2_K:
        case SLM_TYPE_Q3_K:
        case SLM_TYPE_Q4_K:
        case SLM_TYPE_Q5_K:
        case SLM_TYPE_Q6_K:
            dequantize_block_k(type, blk, yb);
            break;
        default:
            return SLM_EUNSUPPORTED_TYPE;
        }
    }
    return SLM_OK;
}
