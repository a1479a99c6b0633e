/* Generic C kernels: activation quantizers, one-row dot products and a blocked matrix product
 * that reuses each weight block across a tile of tokens. Every SIMD path is checked against
 * the integer block dots here (kernels_impl.h). */
#include <string.h>

#include "quant/kquants.h"

/* Activation quantizers must match the reference bit for bit (x*id rounded once, then roundf). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define TILE_ROWS 4
#define TILE_TOKS 4

static float quantize_q8_block(const float *x, int8_t *qs, int *sum_q) {
    float amax = 0.0f;
    for (int j = 0; j < SLM_QK; j++) {
        const float v = x[j] < 0 ? -x[j] : x[j];
        if (v > amax) amax = v;
    }
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < SLM_QK; j++) {
        float v = x[j] * id;
        /* a non-finite activation (damaged weights) must not reach the int conversion; finite
         * values already lie within +-127, so results are unchanged */
        if (v != v) v = 0.0f;
        else if (v > 127.0f) v = 127.0f;
        else if (v < -127.0f) v = -127.0f;
        /* round half away from zero without libm: truncate, then step away on |frac| >= 0.5 */
        int q = (int)v;
        const float frac = v - (float)q;
        if (frac >= 0.5f) q++;
        else if (frac <= -0.5f) q--;
        qs[j] = (int8_t)q;
        sum += q;
    }
    *sum_q = sum;
    return d;
}

void slm_from_float_q8_0_scalar(const float *x, void *y, int64_t n) {
    slm_block_q8_0 *b = y;
    int sum;
    for (int64_t i = 0; i < n / SLM_QK; i++)
        b[i].d = slm_fp32_to_fp16(quantize_q8_block(x + i * SLM_QK, b[i].qs, &sum));
}

void slm_from_float_q8_1_scalar(const float *x, void *y, int64_t n) {
    slm_block_q8_1 *b = y;
    int sum;
    for (int64_t i = 0; i < n / SLM_QK; i++) {
        const float d = quantize_q8_block(x + i * SLM_QK, b[i].qs, &sum);
        b[i].d = slm_fp32_to_fp16(d);
        b[i].s = slm_fp32_to_fp16((float)sum * d);
    }
}

void slm_from_float_f32_copy(const float *x, void *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

/* ---- one row . one activation row ---- */

static void vec_dot_q4_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++)
        sum += slm_fp16_to_fp32(w[b].d) * slm_fp16_to_fp32(a[b].d) * (float)slm_idot_q4_q8(w[b].qs, a[b].qs, 8);
    *s = sum;
}

static void vec_dot_q4_1(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        sum += slm_fp16_to_fp32(w[b].d) * slm_fp16_to_fp32(a[b].d) * (float)slm_idot_q4_q8(w[b].qs, a[b].qs, 0);
        sum += slm_fp16_to_fp32(w[b].m) * slm_fp16_to_fp32(a[b].s);
    }
    *s = sum;
}

static void vec_dot_q8_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q8_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++)
        sum += slm_fp16_to_fp32(w[b].d) * slm_fp16_to_fp32(a[b].d) * (float)slm_idot_q8_q8(w[b].qs, a[b].qs);
    *s = sum;
}

static void vec_dot_f16(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_half *w = w_row;
    const float *a = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += slm_fp16_to_fp32(w[i]) * a[i];
    *s = sum;
}

static void vec_dot_f32(int64_t n, float *s, const void *w_row, const void *act_row) {
    const float *w = w_row;
    const float *a = act_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

/* ---- blocked matrix product over plain rows ----
 * A tile of up to 4 rows x 4 tokens: each weight block is decoded once (scale, quants in
 * registers/L1) and used for every token of the tile. n_tok == 1 degenerates to a gemv. */

static void tile_quant(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t t0, int nt,
                       float *y, int64_t ys, int64_t r0, int nr) {
    float acc[TILE_ROWS][TILE_TOKS] = {{0}};
    float da[TILE_TOKS], sa[TILE_TOKS];
    const int64_t nb = w->cols / SLM_QK;
    const uint8_t *wbase = (const uint8_t *)w->data + r0 * w->row_bytes;
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *aq[TILE_TOKS];
        for (int j = 0; j < nt; j++) {
            const uint8_t *arow = act + (t0 + j) * arb;
            if (w->type == SLM_TYPE_Q4_1) {
                const slm_block_q8_1 *ab = (const slm_block_q8_1 *)arow + b;
                da[j] = slm_fp16_to_fp32(ab->d);
                sa[j] = slm_fp16_to_fp32(ab->s);
                aq[j] = ab->qs;
            } else {
                const slm_block_q8_0 *ab = (const slm_block_q8_0 *)arow + b;
                da[j] = slm_fp16_to_fp32(ab->d);
                aq[j] = ab->qs;
            }
        }
        for (int i = 0; i < nr; i++) {
            const uint8_t *wrow = wbase + i * w->row_bytes;
            switch (w->type) {
            case SLM_TYPE_Q4_0: {
                const slm_block_q4_0 *wb = (const slm_block_q4_0 *)wrow + b;
                const float dw = slm_fp16_to_fp32(wb->d);
                for (int j = 0; j < nt; j++)
                    acc[i][j] += dw * da[j] * (float)slm_idot_q4_q8(wb->qs, aq[j], 8);
                break;
            }
            case SLM_TYPE_Q4_1: {
                const slm_block_q4_1 *wb = (const slm_block_q4_1 *)wrow + b;
                const float dw = slm_fp16_to_fp32(wb->d), mw = slm_fp16_to_fp32(wb->m);
                for (int j = 0; j < nt; j++)
                    acc[i][j] += dw * da[j] * (float)slm_idot_q4_q8(wb->qs, aq[j], 0) + mw * sa[j];
                break;
            }
            default: { /* Q8_0 */
                const slm_block_q8_0 *wb = (const slm_block_q8_0 *)wrow + b;
                const float dw = slm_fp16_to_fp32(wb->d);
                for (int j = 0; j < nt; j++)
                    acc[i][j] += dw * da[j] * (float)slm_idot_q8_q8(wb->qs, aq[j]);
                break;
            }
            }
        }
    }
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < nr; i++) y[(t0 + j) * ys + r0 + i] = acc[i][j];
}

/* Float weights: 4 rows x 4 tokens, 8 columns at a time so each decoded weight is reused. */
static void tile_float(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t t0, int nt,
                       float *y, int64_t ys, int64_t r0, int nr) {
    float acc[TILE_ROWS][TILE_TOKS] = {{0}};
    const int64_t n = w->cols;
    for (int64_t c = 0; c < n; c += 8) {
        const int len = n - c < 8 ? (int)(n - c) : 8;
        for (int i = 0; i < nr; i++) {
            float wv[8];
            const uint8_t *wrow = (const uint8_t *)w->data + (r0 + i) * w->row_bytes;
            for (int k = 0; k < len; k++)
                wv[k] = w->type == SLM_TYPE_F16 ? slm_fp16_to_fp32(((const slm_half *)wrow)[c + k])
                                                : ((const float *)wrow)[c + k];
            for (int j = 0; j < nt; j++) {
                const float *a = (const float *)(act + (t0 + j) * arb) + c;
                float s = 0.0f;
                for (int k = 0; k < len; k++) s += wv[k] * a[k];
                acc[i][j] += s;
            }
        }
    }
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < nr; i++) y[(t0 + j) * ys + r0 + i] = acc[i][j];
}

void slm_matmul_scalar_plain(const slm_weight *w, const uint8_t *act, int64_t act_row_bytes,
                             int64_t n_tok, float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const int is_float = w->type == SLM_TYPE_F16 || w->type == SLM_TYPE_F32;
    for (int64_t t = 0; t < n_tok; t += TILE_TOKS) {
        const int nt = n_tok - t < TILE_TOKS ? (int)(n_tok - t) : TILE_TOKS;
        for (int64_t r = r0; r < r1; r += TILE_ROWS) {
            const int nr = r1 - r < TILE_ROWS ? (int)(r1 - r) : TILE_ROWS;
            if (is_float) tile_float(w, act, act_row_bytes, t, nt, y, y_stride, r, nr);
            else tile_quant(w, act, act_row_bytes, t, nt, y, y_stride, r, nr);
        }
    }
}

static const slm_kernel_set scalar_sets[] = {
    [SLM_TYPE_F32] = {{SLM_TYPE_F32, slm_from_float_f32_copy, vec_dot_f32}, slm_matmul_scalar_plain, NULL, NULL, 0},
    [SLM_TYPE_F16] = {{SLM_TYPE_F32, slm_from_float_f32_copy, vec_dot_f16}, slm_matmul_scalar_plain, NULL, NULL, 0},
    [SLM_TYPE_Q4_0] = {{SLM_TYPE_Q8_0, slm_from_float_q8_0_scalar, vec_dot_q4_0}, slm_matmul_scalar_plain, NULL, NULL, 0},
    [SLM_TYPE_Q4_1] = {{SLM_TYPE_Q8_1, slm_from_float_q8_1_scalar, vec_dot_q4_1}, slm_matmul_scalar_plain, NULL, NULL, 0},
    [SLM_TYPE_Q8_0] = {{SLM_TYPE_Q8_0, slm_from_float_q8_0_scalar, vec_dot_q8_0}, slm_matmul_scalar_plain, NULL, NULL, 0},
};

const slm_kernel_set *slm_kernels_scalar(int type) {
    if (type < 0 || type >= (int)(sizeof scalar_sets / sizeof scalar_sets[0]) || !scalar_sets[type].matmul_plain)
        return slm_kq_kernels_scalar(type); /* the 5-bit and K types */
    return &scalar_sets[type];
}
