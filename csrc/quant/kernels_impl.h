/* Internal to the kernels: what every ISA file provides to the dispatcher, and the exact
 * integer block dot products that every path must reproduce. Not part of the public API. */
#ifndef SLM_KERNELS_IMPL_H
#define SLM_KERNELS_IMPL_H

#include "slm.h"

/* y[t*y_stride + r] for r in [r0, r1), t in [0, n_tok); arguments already validated. */
typedef void (*slm_matmul_fn)(const slm_weight *w, const uint8_t *act, int64_t act_row_bytes,
                              int64_t n_tok, float *y, int64_t y_stride, int64_t r0, int64_t r1);
typedef int (*slm_prepare_fn)(slm_weight *w);

/* One weight type's kernels on one ISA. */
typedef struct slm_kernel_set {
    slm_type_traits traits;      /* activation format, quantizer, one-row dot product */
    slm_matmul_fn matmul_plain;  /* over plain GGUF rows (w->data) */
    slm_matmul_fn matmul_packed; /* over w->packed in `packed_layout`, or NULL */
    slm_prepare_fn prepare;      /* builds w->packed in `packed_layout`, or NULL */
    int packed_layout;
} slm_kernel_set;

/* Each ISA file: the kernel set for a weight type, or NULL. */
const slm_kernel_set *slm_kernels_scalar(int type);
const slm_kernel_set *slm_kernels_avx2(int type);
const slm_kernel_set *slm_kernels_avx512vnni(int type);
const slm_kernel_set *slm_kernels_neon(int type);
const slm_kernel_set *slm_kernels_neon_dotprod(int type);

/* Scalar pieces other paths reuse (tails, fallbacks). */
void slm_from_float_q8_0_scalar(const float *x, void *y, int64_t n);
void slm_from_float_q8_1_scalar(const float *x, void *y, int64_t n);
void slm_from_float_f32_copy(const float *x, void *y, int64_t n);
void slm_matmul_scalar_plain(const slm_weight *w, const uint8_t *act, int64_t act_row_bytes,
                             int64_t n_tok, float *y, int64_t y_stride, int64_t r0, int64_t r1);

/* A per-thread buffer of at least `bytes` (slot 0, 1 or 2), kept for reuse; NULL if out of memory.
 * Valid until the same thread asks for the same slot again. */
void *slm_scratch(int slot, size_t bytes);

/* Packing shared by the SIMD paths: tiles of 4 rows x 2 blocks (see slm_quant.h), the same
 * size in both layouts. */
int slm_pack_r4x2(slm_weight *w);
int slm_pack_copy(slm_weight *w); /* SLM_LAYOUT_COPY */
int slm_pack_r4i(slm_weight *w);
void slm_packed_free(void *packed); /* what slm_pack_* allocated */
int64_t slm_r4x2_tile_bytes(int type); /* 0 for types without these layouts */
/* Pack n_groups groups of 4 rows starting at row0 (rows past the end are zero) into out. */
void slm_pack_rows(const slm_weight *w, int layout, int64_t row0, int64_t n_groups, uint8_t *out);
void slm_pack_r4x2_rows(const slm_weight *w, int64_t row0, int64_t n_groups, uint8_t *out);

/* Exact integer block dots (32 elements): the ground truth for every SIMD path. */
static inline int32_t slm_idot_q4_q8(const uint8_t *qs, const int8_t *a, int offset) {
    int32_t s = 0;
    for (int j = 0; j < SLM_QK / 2; j++) {
        s += ((qs[j] & 0x0F) - offset) * a[j];
        s += ((qs[j] >> 4) - offset) * a[j + SLM_QK / 2];
    }
    return s;
}

static inline int32_t slm_idot_q8_q8(const int8_t *w, const int8_t *a) {
    int32_t s = 0;
    for (int j = 0; j < SLM_QK; j++) s += w[j] * a[j];
    return s;
}

#endif
