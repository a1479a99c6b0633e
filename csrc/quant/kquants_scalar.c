/* Generic C kernels of the 5-bit and K types: the Q8_K activation quantizer, one-row dot
 * products, and a blocked product that decodes each weight block once for a tile of tokens.
 * Every SIMD path is checked against the exact integer sums these compute (kquants.h). */
#include <string.h>

#include "quant/kquants.h"

#define TILE_ROWS 4
#define TILE_TOKS 4

void slm_from_float_q8_K_scalar(const float *x, void *y, int64_t n) {
    slm_kq_quantize_row_ref(SLM_TYPE_Q8_K, x, y, n); /* the reference is bit-exact by definition */
}

/* ---- one row . one activation row ---- */

static float dot_k_row(int type, int64_t n, const void *w_row, const void *act_row) {
    const int64_t bb = slm_type_block_bytes(type);
    const slm_block_q8_K *a = act_row;
    float sum = 0.0f;
    slm_kq_unpacked u;
    for (int64_t b = 0; b < n / SLM_QK_K; b++) {
        slm_kq_unpack_ref(type, (const uint8_t *)w_row + b * bb, &u);
        int32_t sumi, summ;
        slm_kq_idot(&u, &a[b], &sumi, &summ);
        sum += slm_kq_combine(a[b].d, u.d, u.dmin, sumi, summ);
    }
    return sum;
}

#define K_DOT(T, ID)                                                                      \
    static void vec_dot_##T(int64_t n, float *s, const void *w_row, const void *act_row) { \
        *s = dot_k_row(ID, n, w_row, act_row);                                            \
    }
K_DOT(q2_K, SLM_TYPE_Q2_K)
K_DOT(q3_K, SLM_TYPE_Q3_K)
K_DOT(q4_K, SLM_TYPE_Q4_K)
K_DOT(q5_K, SLM_TYPE_Q5_K)
K_DOT(q6_K, SLM_TYPE_Q6_K)
#undef K_DOT

static inline int32_t idot_q5(const uint8_t codes[32], const int8_t *a, int offset) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += (codes[j] - offset) * a[j];
    return s;
}

static void vec_dot_q5_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    float sum = 0.0f;
    uint8_t codes[32];
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        slm_q5_codes(w[b].qh, w[b].qs, codes);
        sum += slm_fp16_to_fp32(w[b].d) * slm_fp16_to_fp32(a[b].d) * (float)idot_q5(codes, a[b].qs, 16);
    }
    *s = sum;
}

static void vec_dot_q5_1(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    float sum = 0.0f;
    uint8_t codes[32];
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        slm_q5_codes(w[b].qh, w[b].qs, codes);
        sum += slm_fp16_to_fp32(w[b].d) * slm_fp16_to_fp32(a[b].d) * (float)idot_q5(codes, a[b].qs, 0);
        sum += slm_fp16_to_fp32(w[b].m) * slm_fp16_to_fp32(a[b].s);
    }
    *s = sum;
}

/* ---- blocked product: a tile of up to 4 rows x 4 tokens, each weight block decoded once ---- */

static void tile_k(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t t0, int nt, float *y,
                   int64_t ys, int64_t r0, int nr) {
    float acc[TILE_ROWS][TILE_TOKS] = {{0}};
    const int64_t bb = slm_type_block_bytes(w->type);
    slm_kq_unpacked u;
    for (int64_t b = 0; b < w->cols / SLM_QK_K; b++) {
        for (int i = 0; i < nr; i++) {
            slm_kq_unpack_ref(w->type, (const uint8_t *)w->data + (r0 + i) * w->row_bytes + b * bb, &u);
            for (int j = 0; j < nt; j++) {
                const slm_block_q8_K *a = (const slm_block_q8_K *)(act + (t0 + j) * arb) + b;
                int32_t sumi, summ;
                slm_kq_idot(&u, a, &sumi, &summ);
                acc[i][j] += slm_kq_combine(a->d, u.d, u.dmin, sumi, summ);
            }
        }
    }
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < nr; i++) y[(t0 + j) * ys + r0 + i] = acc[i][j];
}

static void tile_q5(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t t0, int nt, float *y,
                    int64_t ys, int64_t r0, int nr) {
    float acc[TILE_ROWS][TILE_TOKS] = {{0}};
    const int is_q5_1 = w->type == SLM_TYPE_Q5_1;
    uint8_t codes[32];
    for (int64_t b = 0; b < w->cols / SLM_QK; b++) {
        for (int i = 0; i < nr; i++) {
            const uint8_t *row = (const uint8_t *)w->data + (r0 + i) * w->row_bytes;
            float dw, mw = 0.0f;
            if (is_q5_1) {
                const slm_block_q5_1 *wb = (const slm_block_q5_1 *)row + b;
                slm_q5_codes(wb->qh, wb->qs, codes);
                dw = slm_fp16_to_fp32(wb->d);
                mw = slm_fp16_to_fp32(wb->m);
            } else {
                const slm_block_q5_0 *wb = (const slm_block_q5_0 *)row + b;
                slm_q5_codes(wb->qh, wb->qs, codes);
                dw = slm_fp16_to_fp32(wb->d);
            }
            for (int j = 0; j < nt; j++) {
                const uint8_t *arow = act + (t0 + j) * arb;
                if (is_q5_1) {
                    const slm_block_q8_1 *ab = (const slm_block_q8_1 *)arow + b;
                    acc[i][j] += dw * slm_fp16_to_fp32(ab->d) * (float)idot_q5(codes, ab->qs, 0) +
                                 mw * slm_fp16_to_fp32(ab->s);
                } else {
                    const slm_block_q8_0 *ab = (const slm_block_q8_0 *)arow + b;
                    acc[i][j] += dw * slm_fp16_to_fp32(ab->d) * (float)idot_q5(codes, ab->qs, 16);
                }
            }
        }
    }
    for (int j = 0; j < nt; j++)
        for (int i = 0; i < nr; i++) y[(t0 + j) * ys + r0 + i] = acc[i][j];
}

static void matmul_plain(const slm_weight *w, const uint8_t *act, int64_t act_row_bytes, int64_t n_tok,
                         float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const int k = slm_is_k_type(w->type);
    for (int64_t t = 0; t < n_tok; t += TILE_TOKS) {
        const int nt = n_tok - t < TILE_TOKS ? (int)(n_tok - t) : TILE_TOKS;
        for (int64_t r = r0; r < r1; r += TILE_ROWS) {
            const int nr = r1 - r < TILE_ROWS ? (int)(r1 - r) : TILE_ROWS;
            if (k) tile_k(w, act, act_row_bytes, t, nt, y, y_stride, r, nr);
            else tile_q5(w, act, act_row_bytes, t, nt, y, y_stride, r, nr);
        }
    }
}

#define K_SET(T, ID) [ID] = {{SLM_TYPE_Q8_K, slm_from_float_q8_K_scalar, vec_dot_##T}, matmul_plain, NULL, NULL, 0}
static const slm_kernel_set scalar_sets[] = {
    [SLM_TYPE_Q5_0] = {{SLM_TYPE_Q8_0, slm_from_float_q8_0_scalar, vec_dot_q5_0}, matmul_plain, NULL, NULL, 0},
    [SLM_TYPE_Q5_1] = {{SLM_TYPE_Q8_1, slm_from_float_q8_1_scalar, vec_dot_q5_1}, matmul_plain, NULL, NULL, 0},
    K_SET(q2_K, SLM_TYPE_Q2_K),
    K_SET(q3_K, SLM_TYPE_Q3_K),
    K_SET(q4_K, SLM_TYPE_Q4_K),
    K_SET(q5_K, SLM_TYPE_Q5_K),
    K_SET(q6_K, SLM_TYPE_Q6_K),
};
#undef K_SET

const slm_kernel_set *slm_kq_kernels_scalar(int type) {
    if (type < 0 || type >= (int)(sizeof scalar_sets / sizeof scalar_sets[0])) return NULL;
    return scalar_sets[type].matmul_plain ? &scalar_sets[type] : NULL;
}
