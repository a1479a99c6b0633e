/* Reference quantizers and dequantizers: the ground truth every kernel path is tested against.
 * Layouts and rounding follow ggml's quantize_row_*_ref / dequantize_row_* exactly:
 *   Q4_0  d = max/-8 (signed extreme), q = min(15, trunc(x/d + 8.5))
 *   Q4_1  d = (max-min)/15, m = min, q = min(15, trunc((x-min)/d + 0.5))
 *   Q8_0  d = amax/127, q = roundf(x/d)                (round half away from zero)
 *   Q8_1  as Q8_0, plus s = fp16(d * sum(q)) with the fp32 d
 * Within a 32-element 4-bit block, byte j holds element j (low nibble) and j+16 (high nibble).
 * The 5-bit and K types are in kquants_ref.c. */
#include <math.h>
#include <string.h>

#include "quant/kquants.h"

/* x*id + 0.5 must round twice (as in ggml's C and numpy), never as one fused multiply-add. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void quantize_block_q4_0(const float *x, slm_block_q4_0 *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < SLM_QK; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = slm_fp32_to_fp16(d);
    for (int j = 0; j < SLM_QK / 2; j++) {
        const float x0 = x[j] * id, x1 = x[j + SLM_QK / 2] * id;
        int8_t q0 = (int8_t)(x0 + 8.5f), q1 = (int8_t)(x1 + 8.5f);
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quantize_block_q4_1(const float *x, slm_block_q4_1 *y) {
    float min = x[0], max = x[0];
    for (int j = 1; j < SLM_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = slm_fp32_to_fp16(d);
    y->m = slm_fp32_to_fp16(min);
    for (int j = 0; j < SLM_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + SLM_QK / 2] - min) * id;
        int8_t q0 = (int8_t)(x0 + 0.5f), q1 = (int8_t)(x1 + 0.5f);
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* Shared by Q8_0 and Q8_1; returns the fp32 scale and the sum of the quants. */
static float quantize_block_q8(const float *x, int8_t *qs, int *sum_q) {
    float amax = 0.0f;
    for (int j = 0; j < SLM_QK; j++) {
        const float v = fabsf(x[j]);
        if (v > amax) amax = v;
    }
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < SLM_QK; j++) {
        qs[j] = (int8_t)roundf(x[j] * id);
        sum += qs[j];
    }
    *sum_q = sum;
    return d;
}

static void quantize_block_q8_0(const float *x, slm_block_q8_0 *y) {
    int sum;
    y->d = slm_fp32_to_fp16(quantize_block_q8(x, y->qs, &sum));
}

static void quantize_block_q8_1(const float *x, slm_block_q8_1 *y) {
    int sum;
    const float d = quantize_block_q8(x, y->qs, &sum);
    y->d = slm_fp32_to_fp16(d);
    y->s = slm_fp32_to_fp16((float)sum * d);
}

int slm_quantize_row_ref(int type, const float *x, void *y, int64_t n) {
    if (!x || !y || n < 0) return SLM_EINVAL;
    if (slm_row_bytes(type, n) < 0)
        return slm_type_block_elems(type) ? SLM_ESHAPE : SLM_EUNSUPPORTED_TYPE;
    const int64_t nb = n / SLM_QK;
    switch (type) {
    case SLM_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        return SLM_OK;
    case SLM_TYPE_F16: {
        slm_half *h = y;
        for (int64_t i = 0; i < n; i++) h[i] = slm_fp32_to_fp16(x[i]);
        return SLM_OK;
    }
    default:
        break;
    }
    /* NaN/inf have no quantized representation; say so instead of producing garbage. */
    if (!all_finite(x, n)) return SLM_EINVAL;
    const int more = slm_kq_quantize_row_ref(type, x, y, n); /* Q5 and K types */
    if (more != SLM_EUNSUPPORTED_TYPE) return more;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * SLM_QK;
        switch (type) {
        case SLM_TYPE_Q4_0: quantize_block_q4_0(xb, (slm_block_q4_0 *)y + b); break;
        case SLM_TYPE_Q4_1: quantize_block_q4_1(xb, (slm_block_q4_1 *)y + b); break;
        case SLM_TYPE_Q8_0: quantize_block_q8_0(xb, (slm_block_q8_0 *)y + b); break;
        case SLM_TYPE_Q8_1: quantize_block_q8_1(xb, (slm_block_q8_1 *)y + b); break;
        default: return SLM_EUNSUPPORTED_TYPE;
        }
    }
    return SLM_OK;
}

int slm_dequantize_row(int type, const void *x, float *y, int64_t n) {
    if (!x || !y || n < 0) return SLM_EINVAL;
    if (slm_row_bytes(type, n) < 0)
        return slm_type_block_elems(type) ? SLM_ESHAPE : SLM_EUNSUPPORTED_TYPE;
    const int64_t nb = n / SLM_QK;
    const int half = SLM_QK / 2;
    switch (type) {
    case SLM_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case SLM_TYPE_F16: {
        const slm_half *h = x;
        for (int64_t i = 0; i < n; i++) y[i] = slm_fp16_to_fp32(h[i]);
        break;
    }
    case SLM_TYPE_Q4_0:
        for (int64_t b = 0; b < nb; b++) {
            const slm_block_q4_0 *blk = (const slm_block_q4_0 *)x + b;
            const float d = slm_fp16_to_fp32(blk->d);
            float *yb = y + b * SLM_QK;
            for (int j = 0; j < half; j++) {
                yb[j] = d * (float)((blk->qs[j] & 0x0F) - 8);
                yb[j + half] = d * (float)((blk->qs[j] >> 4) - 8);
            }
        }
        break;
    case SLM_TYPE_Q4_1:
        for (int64_t b = 0; b < nb; b++) {
            const slm_block_q4_1 *blk = (const slm_block_q4_1 *)x + b;
            const float d = slm_fp16_to_fp32(blk->d), m = slm_fp16_to_fp32(blk->m);
            float *yb = y + b * SLM_QK;
            for (int j = 0; j < half; j++) {
                yb[j] = d * (float)(blk->qs[j] & 0x0F) + m;
                yb[j + half] = d * (float)(blk->qs[j] >> 4) + m;
            }
        }
        break;
    case SLM_TYPE_Q8_0:
        for (int64_t b = 0; b < nb; b++) {
            const slm_block_q8_0 *blk = (const slm_block_q8_0 *)x + b;
            const float d = slm_fp16_to_fp32(blk->d);
            for (int j = 0; j < SLM_QK; j++) y[b * SLM_QK + j] = d * (float)blk->qs[j];
        }
        break;
    case SLM_TYPE_Q8_1:
        for (int64_t b = 0; b < nb; b++) {
            const slm_block_q8_1 *blk = (const slm_block_q8_1 *)x + b;
            const float d = slm_fp16_to_fp32(blk->d);
            for (int j = 0; j < SLM_QK; j++) y[b * SLM_QK + j] = d * (float)blk->qs[j];
        }
        break;
    default:
        return slm_kq_dequantize_row(type, x, y, n); /* Q5 and K types */
    }
    return SLM_OK;
}
