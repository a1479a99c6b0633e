/* Internal to the kernels: the 5-bit types (Q5_0, Q5_1) and the K types (Q2_K .. Q6_K with
 * Q8_K activations): reference (de)quantizers, the unpacked super-block every kernel path
 * reduces a K block to, its exact integer dot with a Q8_K block, and each ISA's kernel sets.
 * Not part of the public API. */
#ifndef SLM_KQUANTS_H
#define SLM_KQUANTS_H

#include "quant/kernels_impl.h"

/* Reference row (de)quantizers for Q5_0, Q5_1, Q2_K .. Q6_K and Q8_K (ggml's _ref
 * algorithms). SLM_EUNSUPPORTED_TYPE for any other type; n is a whole number of blocks. */
int slm_kq_quantize_row_ref(int type, const float *x, void *y, int64_t n);
int slm_kq_dequantize_row(int type, const void *x, float *y, int64_t n);

int slm_is_k_type(int type); /* Q2_K .. Q6_K */

/* One K super-block unpacked: every element is (q - off) times its group's scale, where a
 * group is 16 elements (Q4_K/Q5_K's 32-element sub-blocks repeat their scale and min).
 *   w . a = d_a * (d * (sum_g sc[g] * sum_{i in g} q[i] a[i]  -  sum_g k[g] bsum_a[g])
 *                  - dmin * sum_g mn[g] bsum_a[g])
 * with k[g] = sc[g] * off. q is unsigned (at most 63), so u8 x s8 instructions take it as is. */
typedef struct slm_kq_unpacked {
    uint8_t q[SLM_QK_K];
    int16_t sc[16];
    int16_t k[16];
    int16_t mn[16];
    float d, dmin;
} slm_kq_unpacked;

void slm_kq_unpack_ref(int type, const void *block, slm_kq_unpacked *u);

/* The exact integer parts of one unpacked super-block . one Q8_K block:
 * *sumi = sum_g sc[g] * sum q a - sum_g k[g] bsum[g], *summ = sum_g mn[g] bsum[g]. */
static inline void slm_kq_idot(const slm_kq_unpacked *u, const slm_block_q8_K *a, int32_t *sumi, int32_t *summ) {
    int32_t s = 0, m = 0;
    for (int g = 0; g < 16; g++) {
        int32_t p = 0;
        for (int i = 16 * g; i < 16 * g + 16; i++) p += u->q[i] * a->qs[i];
        s += u->sc[g] * p - u->k[g] * a->bsums[g];
        m += u->mn[g] * a->bsums[g];
    }
    *sumi = s;
    *summ = m;
}

/* The float value every path must approximate (its integer parts exact). */
static inline float slm_kq_combine(float d_a, float d, float dmin, int32_t sumi, int32_t summ) {
    return d_a * (d * (float)sumi - dmin * (float)summ);
}

/* Q5 quants of a 32-element block, 0..31 (Q5_0's offset of 16 not taken off). */
static inline void slm_q5_codes(const uint8_t qh[4], const uint8_t qs[16], uint8_t out[32]) {
    const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 16; j++) {
        out[j] = (uint8_t)((qs[j] & 0x0F) | ((h >> j) & 1) << 4);
        out[j + 16] = (uint8_t)((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4);
    }
}

/* Scalar pieces other paths reuse. */
void slm_from_float_q8_K_scalar(const float *x, void *y, int64_t n);

/* Kernel sets of these types on each ISA (NULL for other types). */
const slm_kernel_set *slm_kq_kernels_scalar(int type);
const slm_kernel_set *slm_kq_kernels_avx2(int type);
const slm_kernel_set *slm_kq_kernels_neon(int type);
const slm_kernel_set *slm_kq_kernels_neon_dotprod(int type);

#endif
