/* x86-64 kernels of the non-K quantized and float types, compiled twice: AVX2 + FMA + F16C
 * (kernels_avx2.c) and, for CPUs with AVX-512 VNNI, the same code with each u8 x s8 dot
 * product as one vpdpbusd (256-bit, EVEX) and the Q5 fifth bits through a byte mask
 * (kernels_avx512vnni.c). The includer defines X86_VNNI (0/1); the dispatcher calls each only
 * when cpuid says the CPU (and the OS's saved state) has what it needs.
 *
 * Q5_0 and Q5_1 use the 4-bit tiles with each row's fifth bits beside its nibbles.
 * Decode (one token) is bandwidth-bound: weights are repacked at load into tiles of 4 rows x
 * 2 blocks (SLM_LAYOUT_R4X2) so that one 8-lane F16C conversion yields all the tile's scales,
 * each activation load serves 4 rows, and the stream is one contiguous region; the activation
 * row is prepared once per product (permuted quants, pair scales). Measured on a Zen 4 core:
 * the Q4 gemv runs at ~30 GB/s from cache, so from DRAM it is bound by memory, not arithmetic.
 * Prefill multiplies each tile by 4 tokens at a time (blocked int8 GEMM): the tile's quants
 * are decoded once per 4 tokens, and the integer sums of 4 tokens x 2 blocks are folded into
 * one vector with three horizontal adds before the single float multiply-add per row.
 *
 * Integer block sums are exact (checked against kernels_impl.h); only the float accumulation
 * order differs from the scalar path. Activation quantizers are bit-identical to the reference. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels_impl.h"
#include "arch/x86_prefetch.h"

#ifndef X86_VNNI
#error "define X86_VNNI (0 or 1) before including x86_body.h"
#endif

static const slm_kernel_set *x86_set(int type);

/* sum over each 4 bytes of u8 x s8 added to int32 lanes; u x s pair sums must fit in int16
 * on the AVX2 path (they do wherever it is used: |u| <= 128, |s| <= 127, u <= 31 or the sign
 * trick), so both paths give the same exact integers. */
static inline __m256i dot_u8s8_add(__m256i acc, __m256i u, __m256i s) {
#if X86_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* lo . alo + hi . ahi in int32 lanes (4 bytes each): the nibble tiles' product. On AVX2 the
 * two halves are added as int16 (at most 2 x 2 x 31 x 127 = 15748) before one widening. */
static inline __m256i dot_pair(__m256i lo, __m256i alo, __m256i hi, __m256i ahi) {
#if X86_VNNI
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo), hi, ahi);
#else
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi)),
                             _mm256_set1_epi16(1));
#endif
}

#define ROW_CHUNK 64 /* rows whose tiles stay cache-resident while every token tile passes */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(slm_half h) { return _cvtsh_ss(h); }

/* 4-bit tile types read as such (Q4_0, Q4_1) or with a fifth bit per element (Q5_0, Q5_1);
 * the _1 types carry a min and read Q8_1 activations, the _0 types an offset (8 or 16). */
static inline int has_min(int type) { return type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1; }
static inline int has_fifth(int type) { return type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1; }
static inline int offset_shift(int type) { return type == SLM_TYPE_Q5_0 ? 4 : 3; } /* 16 or 8 */

/* 32 bytes, 0x10 where the matching bit of h is set. */
static inline __m256i fifth_bits(uint32_t h) {
#if X86_VNNI
    return _mm256_maskz_mov_epi8((__mmask32)h, _mm256_set1_epi8(0x10));
#endif
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h),
                                               _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

/* The 32 codes (0..31) of a Q5 block in element order. */
static inline __m256i q5_codes(const uint8_t *qh, const uint8_t *qs) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
    return _mm256_or_si256(lo, fifth_bits(h));
}

/* Low and high nibbles of a tile row (32 bytes: two blocks' quants), with the fifth bits of a
 * Q5 tile (`bits`: the row's two words) or NULL. */
static inline void tile_row_codes(const uint8_t *q32, const uint8_t *bits, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i q = _mm256_loadu_si256((const __m256i *)q32);
    *lo = _mm256_and_si256(q, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if (bits) {
        uint32_t h[2];
        memcpy(h, bits, 8);
        *lo = _mm256_or_si256(*lo, fifth_bits(h[0]));
        *hi = _mm256_or_si256(*hi, fifth_bits(h[1]));
    }
}

/* ---- activation quantizers (bit-identical to the reference) ---- */

/* Quantize 32 floats: returns d (fp32) and writes 32 int8; *sum gets the sum of the quants. */
static inline float quantize_block_q8_avx2(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256i q[4];
    __m256 vs[4] = {v0, v1, v2, v3};
    for (int k = 0; k < 4; k++) {
        /* roundf: truncate, then step one away from zero when |fraction| >= 0.5 */
        const __m256 v = _mm256_mul_ps(vs[k], vid);
        const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
        const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                          _mm256_or_ps(one, _mm256_and_ps(sign, v)));
        q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
    }
    if (sum) *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, p);
    return d;
}

static void from_float_q8_0(const float *x, void *y, int64_t n) {
    slm_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / SLM_QK; i++)
        b[i].d = slm_fp32_to_fp16(quantize_block_q8_avx2(x + i * SLM_QK, b[i].qs, NULL));
}

static void from_float_q8_1(const float *x, void *y, int64_t n) {
    slm_block_q8_1 *b = y;
    for (int64_t i = 0; i < n / SLM_QK; i++) {
        int sum;
        const float d = quantize_block_q8_avx2(x + i * SLM_QK, b[i].qs, &sum);
        b[i].d = slm_fp32_to_fp16(d);
        b[i].s = slm_fp32_to_fp16((float)sum * d);
    }
}

/* ---- one-row dot products over plain GGUF rows ---- */

static inline __m256i nibbles(const uint8_t *qs) { /* 16 bytes -> 32 values: lanes 0..15 low, 16..31 high */
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

static void vec_dot_q4_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    const __m256i ones = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const __m256i q = nibbles(w[b].qs);
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[b].qs);
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), ones);
        const __m256i as = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, av), ones);
        p = _mm256_sub_epi32(p, _mm256_slli_epi32(as, 3));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

static void vec_dot_q4_1(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q4_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const __m256i q = nibbles(w[b].qs);
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), ones);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(w[b].m) * h2f(a[b].s);
    }
    *s = hsum_ps(acc) + summs;
}

static void vec_dot_q5_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    const __m256i ones = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[b].qs);
        /* (q - 16) . a = q . a - 16 * sum(a) */
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q5_codes(w[b].qh, w[b].qs), av), ones);
        p = _mm256_sub_epi32(p, _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ones8, av), ones), 4));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

static void vec_dot_q5_1(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q5_1 *w = w_row;
    const slm_block_q8_1 *a = act_row;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const __m256i p = _mm256_madd_epi16(
            _mm256_maddubs_epi16(q5_codes(w[b].qh, w[b].qs), _mm256_loadu_si256((const __m256i *)a[b].qs)), ones);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(w[b].m) * h2f(a[b].s);
    }
    *s = hsum_ps(acc) + summs;
}

/* u8 x s8 products with the sign moved onto the activation: |w| <= 128 and |a| <= 127 keep
 * maddubs' pairwise int16 sums below saturation (2*128*127 = 32512). */
static inline __m256i dot_q8_q8(__m256i w, __m256i a) {
    return dot_u8s8_add(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
}

static void vec_dot_q8_0(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_block_q8_0 *w = w_row;
    const slm_block_q8_0 *a = act_row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SLM_QK; b++) {
        const __m256i p = dot_q8_q8(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                    _mm256_loadu_si256((const __m256i *)a[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

static void vec_dot_f16(int64_t n, float *s, const void *w_row, const void *act_row) {
    const slm_half *w = w_row;
    const float *a = act_row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(a + i + 8), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) sum += h2f(w[i]) * a[i];
    *s = sum;
}

static void vec_dot_f32(int64_t n, float *s, const void *w_row, const void *act_row) {
    const float *w = w_row;
    const float *a = act_row;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

/* ---- R4X2 tiles: decode (one token) ---- */

/* Lane pattern picking row r's two block scales, 4 lanes each: [2r x4, 2r+1 x4]. */
static inline __m256i idx_row_blocks(int r) {
    return _mm256_setr_epi32(2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1, 2 * r + 1, 2 * r + 1, 2 * r + 1);
}

/* Activation pair for 4-bit tiles: lo = elements 0..15 of both blocks, hi = 16..31. */
static inline void act_pair(const int8_t *q0, const int8_t *q1, __m256i *lo, __m256i *hi) {
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)q0);
    const __m256i a1 = q1 ? _mm256_loadu_si256((const __m256i *)q1) : _mm256_setzero_si256();
    *lo = _mm256_permute2x128_si256(a0, a1, 0x20);
    *hi = _mm256_permute2x128_si256(a0, a1, 0x31);
}

/* [x0 x1 x0 x1 x0 x1 x0 x1] from two fp16 values */
static inline __m256 pair_scales(slm_half h0, slm_half h1) {
    __m128 t = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | ((uint32_t)h1 << 16))));
    t = _mm_movelh_ps(t, t);
    return _mm256_set_m128(t, t);
}

/* One activation row prepared once per product for the decode kernels, per block pair: the
 * quants as the 4-bit tiles want them (Q8_0 weights: the two blocks as they are), the scales
 * [d0 d1 d0 d1 ...], and [s0 s1 s0 s1 ...] (Q4_1) or the Q4_0 correction 8 * (block sums). */
typedef struct {
    __m256i lo, hi;
    __m256 dd;
    union { __m256 ss; __m256i corr; } x;
} act1_pair; /* 128 bytes */

static void prepare_act1(int type, const uint8_t *act, int64_t nb, act1_pair *out) {
    const __m256i ones = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1);
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        const int64_t b0 = 2 * p, has1 = b0 + 1 < nb;
        act1_pair *o = &out[p];
        if (has_min(type)) {
            const slm_block_q8_1 *a = (const slm_block_q8_1 *)act;
            act_pair(a[b0].qs, has1 ? a[b0 + 1].qs : NULL, &o->lo, &o->hi);
            o->dd = pair_scales(a[b0].d, has1 ? a[b0 + 1].d : 0);
            o->x.ss = pair_scales(a[b0].s, has1 ? a[b0 + 1].s : 0);
        } else {
            const slm_block_q8_0 *a = (const slm_block_q8_0 *)act;
            o->dd = pair_scales(a[b0].d, has1 ? a[b0 + 1].d : 0);
            if (type == SLM_TYPE_Q8_0) {
                o->lo = _mm256_loadu_si256((const __m256i *)a[b0].qs);
                o->hi = has1 ? _mm256_loadu_si256((const __m256i *)a[b0 + 1].qs) : _mm256_setzero_si256();
            } else {
                act_pair(a[b0].qs, has1 ? a[b0 + 1].qs : NULL, &o->lo, &o->hi);
                /* codes are q+8 (Q5_0: q+16): subtract 8 (16) * (sum of the activation block), lane by lane */
                const __m256i as = _mm256_madd_epi16(
                    _mm256_add_epi16(_mm256_maddubs_epi16(ones8, o->lo), _mm256_maddubs_epi16(ones8, o->hi)), ones);
                o->x.corr = type == SLM_TYPE_Q5_0 ? _mm256_slli_epi32(as, 4) : _mm256_slli_epi32(as, 3);
            }
        }
    }
}

/* 4 rows (one group) . one prepared activation row; `tiles` = this group's n_pairs tiles. */
static inline __attribute__((always_inline)) void gemv4_q4(int type, const uint8_t *tiles, int64_t nb,
                                                           const act1_pair *ap, float out[4]) {
    const int64_t n_pairs = (nb + 1) / 2;
    const int is_q4_1 = has_min(type), fifth = has_fifth(type);
    const int64_t tb = slm_r4x2_tile_bytes(type), hdr = is_q4_1 ? 32 : 16, qoff = hdr + (fifth ? 32 : 0);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, macc = acc0;
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * tb;
        prefetch_ahead(t, tb);
        const __m256i alo = ap[p].lo, ahi = ap[p].hi;
        const __m256i corr = is_q4_1 ? _mm256_setzero_si256() : ap[p].x.corr;
        const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t)), ap[p].dd);
        if (is_q4_1)
            macc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t + 16))), ap[p].x.ss, macc);
#define ROW(r, acc)                                                                                   \
        {                                                                                             \
            __m256i lo, hi;                                                                           \
            tile_row_codes(t + qoff + 32 * (r), fifth ? t + hdr + 8 * (r) : NULL, &lo, &hi);          \
            __m256i s = dot_pair(lo, alo, hi, ahi);                                                   \
            if (!is_q4_1) s = _mm256_sub_epi32(s, corr);                                              \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),                                              \
                                  _mm256_permutevar8x32_ps(sc, idx_row_blocks(r)), acc);              \
        }
        ROW(0, acc0) ROW(1, acc1) ROW(2, acc2) ROW(3, acc3)
#undef ROW
    }
    float m[8];
    _mm256_storeu_ps(m, macc);
    out[0] = hsum_ps(acc0) + m[0] + m[1];
    out[1] = hsum_ps(acc1) + m[2] + m[3];
    out[2] = hsum_ps(acc2) + m[4] + m[5];
    out[3] = hsum_ps(acc3) + m[6] + m[7];
}

static void gemv4_q8_0(const uint8_t *tiles, int64_t nb, const act1_pair *ap, float out[4]) {
    const int64_t n_pairs = (nb + 1) / 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * 272;
        prefetch_ahead(t, 272);
        const __m256i a0 = ap[p].lo, a1 = ap[p].hi;
        /* scales per row as [b0 b0 b1 b1 b0 b0 b1 b1] to match the horizontal add below */
        const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t)), ap[p].dd);
#define ROW(r, acc)                                                                                   \
        {                                                                                             \
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(t + 16 + 64 * (r)));              \
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(t + 48 + 64 * (r)));              \
            const __m256i s = _mm256_hadd_epi32(dot_q8_q8(w0, a0), dot_q8_q8(w1, a1));                \
            const __m256i ix = _mm256_setr_epi32(2 * (r), 2 * (r), 2 * (r) + 1, 2 * (r) + 1,           \
                                                 2 * (r), 2 * (r), 2 * (r) + 1, 2 * (r) + 1);          \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_permutevar8x32_ps(sc, ix), acc);      \
        }
        ROW(0, acc0) ROW(1, acc1) ROW(2, acc2) ROW(3, acc3)
#undef ROW
    }
    out[0] = hsum_ps(acc0);
    out[1] = hsum_ps(acc1);
    out[2] = hsum_ps(acc2);
    out[3] = hsum_ps(acc3);
}

/* ---- R4X2 tiles: prefill (4 rows x 4 tokens per step) ----
 * Per token tile and block pair, the activations are prepared once ("act tile"):
 *   4-bit weights: for each token lo/hi permuted quants (64 B), then scales da4 (and sa4 or
 *   the Q4_0 correction) in lane order [t0b0 t1b0 t2b0 t3b0 t0b1 t1b1 t2b1 t3b1];
 *   Q8_0 weights: scales in lane order [t0b0 t0b1 t1b0 t1b1 t2b0 t2b1 t3b0 t3b1]. */
#define ACT4_BYTES (4 * 64 + 32 + 32)
#define ACT8_BYTES 32

static void prepare_act_tiles(int type, const uint8_t *act, int64_t arb, int64_t n_tok, int64_t nb,
                              uint8_t *out) {
    const int64_t n_pairs = (nb + 1) / 2, n_tt = (n_tok + 3) / 4;
    const int64_t per = type == SLM_TYPE_Q8_0 ? ACT8_BYTES : ACT4_BYTES;
    for (int64_t tt = 0; tt < n_tt; tt++) {
        for (int64_t p = 0; p < n_pairs; p++) {
            uint8_t *o = out + (tt * n_pairs + p) * per;
            float da[8] = {0}, sa[8] = {0};
            int32_t corr[8] = {0};
            for (int j = 0; j < 4; j++) {
                const int64_t tok = tt * 4 + j;
                for (int k = 0; k < 2; k++) {
                    const int64_t b = 2 * p + k;
                    const int lane = type == SLM_TYPE_Q8_0 ? 2 * j + k : 4 * k + j;
                    if (tok >= n_tok || b >= nb) continue;
                    const uint8_t *arow = act + tok * arb;
                    if (has_min(type)) {
                        const slm_block_q8_1 *ab = (const slm_block_q8_1 *)arow + b;
                        da[lane] = h2f(ab->d);
                        sa[lane] = h2f(ab->s);
                    } else {
                        const slm_block_q8_0 *ab = (const slm_block_q8_0 *)arow + b;
                        da[lane] = h2f(ab->d);
                        if (type != SLM_TYPE_Q8_0) {
                            int s = 0;
                            for (int e = 0; e < SLM_QK; e++) s += ab->qs[e];
                            corr[lane] = s * (1 << offset_shift(type)); /* s may be negative: no shift */
                        }
                    }
                }
                if (type == SLM_TYPE_Q8_0) continue;
                __m256i lo = _mm256_setzero_si256(), hi = lo;
                if (tok < n_tok) {
                    const uint8_t *arow = act + tok * arb;
                    const int8_t *q0, *q1 = NULL;
                    if (has_min(type)) {
                        q0 = ((const slm_block_q8_1 *)arow)[2 * p].qs;
                        if (2 * p + 1 < nb) q1 = ((const slm_block_q8_1 *)arow)[2 * p + 1].qs;
                    } else {
                        q0 = ((const slm_block_q8_0 *)arow)[2 * p].qs;
                        if (2 * p + 1 < nb) q1 = ((const slm_block_q8_0 *)arow)[2 * p + 1].qs;
                    }
                    act_pair(q0, q1, &lo, &hi);
                }
                _mm256_storeu_si256((__m256i *)(o + 64 * j), lo);
                _mm256_storeu_si256((__m256i *)(o + 64 * j + 32), hi);
            }
            if (type == SLM_TYPE_Q8_0) {
                memcpy(o, da, 32);
            } else {
                memcpy(o + 256, da, 32);
                if (has_min(type)) memcpy(o + 288, sa, 32);
                else memcpy(o + 288, corr, 32);
            }
        }
    }
}

/* out[t][r] for 4 rows (one group) x 4 tokens (one token tile). */
static inline __attribute__((always_inline)) void gemm4x4_q4(int type, const uint8_t *tiles, int64_t n_pairs, const uint8_t *at, float out[4][4]) {
    const int is_q4_1 = has_min(type), fifth = has_fifth(type);
    const int64_t tb = slm_r4x2_tile_bytes(type), hdr = is_q4_1 ? 32 : 16, qoff = hdr + (fifth ? 32 : 0);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * tb;
        const uint8_t *a = at + p * ACT4_BYTES;
        const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
        const __m256 da4 = _mm256_loadu_ps((const float *)(a + 256));
        const __m256 wm = is_q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t + 16))) : _mm256_setzero_ps();
        const __m256i corr = is_q4_1 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(a + 288));
        for (int r = 0; r < 4; r++) {
            __m256i lo, hi;
            tile_row_codes(t + qoff + 32 * r, fifth ? t + hdr + 8 * r : NULL, &lo, &hi);
            __m256i s[4];
            for (int j = 0; j < 4; j++) {
                const __m256i alo = _mm256_loadu_si256((const __m256i *)(a + 64 * j));
                const __m256i ahi = _mm256_loadu_si256((const __m256i *)(a + 64 * j + 32));
                s[j] = dot_pair(lo, alo, hi, ahi);
            }
            /* [t0b0 t1b0 t2b0 t3b0 | t0b1 t1b1 t2b1 t3b1] */
            __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            h = _mm256_sub_epi32(h, corr);
            const __m256i ix = idx_row_blocks(r);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(_mm256_permutevar8x32_ps(wd, ix), da4), acc[r]);
            if (is_q4_1)
                acc[r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(wm, ix),
                                         _mm256_loadu_ps((const float *)(a + 288)), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
        float v[4];
        _mm_storeu_ps(v, s);
        for (int j = 0; j < 4; j++) out[j][r] = v[j];
    }
}

static void gemm4x4_q8_0(const uint8_t *tiles, int64_t n_pairs, int64_t nb, const uint8_t *at,
                         const uint8_t *act, int64_t arb, int64_t tok0, int64_t n_tok, float out[4][4]) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const slm_block_q8_0 *arow[4];
    for (int j = 0; j < 4; j++)
        arow[j] = (const slm_block_q8_0 *)(act + (tok0 + j < n_tok ? tok0 + j : tok0) * arb);
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *t = tiles + p * 272;
        const int64_t b0 = 2 * p, has1 = b0 + 1 < nb;
        const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
        const __m256 da = _mm256_loadu_ps((const float *)(at + p * ACT8_BYTES));
        __m256i a0[4], a1[4];
        for (int j = 0; j < 4; j++) {
            a0[j] = _mm256_loadu_si256((const __m256i *)arow[j][b0].qs);
            a1[j] = has1 ? _mm256_loadu_si256((const __m256i *)arow[j][b0 + 1].qs) : _mm256_setzero_si256();
        }
        for (int r = 0; r < 4; r++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(t + 16 + 64 * r));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(t + 48 + 64 * r));
            const __m256i aw0 = _mm256_abs_epi8(w0), aw1 = _mm256_abs_epi8(w1);
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                const __m256i s0 = dot_u8s8_add(_mm256_setzero_si256(), aw0, _mm256_sign_epi8(a0[j], w0));
                const __m256i s1 = dot_u8s8_add(_mm256_setzero_si256(), aw1, _mm256_sign_epi8(a1[j], w1));
                q[j] = _mm256_hadd_epi32(s0, s1); /* [b0 b0 b1 b1 | b0 b0 b1 b1] */
            }
            const __m256i r01 = _mm256_hadd_epi32(q[0], q[1]), r23 = _mm256_hadd_epi32(q[2], q[3]);
            /* [t0b0 t0b1 t1b0 t1b1 | t2b0 t2b1 t3b0 t3b1] */
            const __m256i h = _mm256_add_epi32(_mm256_permute2x128_si256(r01, r23, 0x20),
                                               _mm256_permute2x128_si256(r01, r23, 0x31));
            const __m256i ix = _mm256_setr_epi32(2 * r, 2 * r + 1, 2 * r, 2 * r + 1, 2 * r, 2 * r + 1, 2 * r, 2 * r + 1);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(_mm256_permutevar8x32_ps(wd, ix), da), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        float v[8];
        _mm256_storeu_ps(v, acc[r]);
        for (int j = 0; j < 4; j++) out[j][r] = v[2 * j] + v[2 * j + 1];
    }
}

/* Specialised per type so the Q4_0 correction / Q4_1 min term cost nothing in the other. */
static void gemv4_q4_0(const uint8_t *tiles, int64_t nb, const act1_pair *ap, float out[4]) { gemv4_q4(SLM_TYPE_Q4_0, tiles, nb, ap, out); }
static void gemv4_q4_1(const uint8_t *tiles, int64_t nb, const act1_pair *ap, float out[4]) { gemv4_q4(SLM_TYPE_Q4_1, tiles, nb, ap, out); }
static void gemm4x4_q4_0(const uint8_t *tiles, int64_t n_pairs, const uint8_t *at, float out[4][4]) { gemm4x4_q4(SLM_TYPE_Q4_0, tiles, n_pairs, at, out); }
static void gemm4x4_q4_1(const uint8_t *tiles, int64_t n_pairs, const uint8_t *at, float out[4][4]) { gemm4x4_q4(SLM_TYPE_Q4_1, tiles, n_pairs, at, out); }
static void gemv4_q5_0(const uint8_t *tiles, int64_t nb, const act1_pair *ap, float out[4]) { gemv4_q4(SLM_TYPE_Q5_0, tiles, nb, ap, out); }
static void gemv4_q5_1(const uint8_t *tiles, int64_t nb, const act1_pair *ap, float out[4]) { gemv4_q4(SLM_TYPE_Q5_1, tiles, nb, ap, out); }
static void gemm4x4_q5_0(const uint8_t *tiles, int64_t n_pairs, const uint8_t *at, float out[4][4]) { gemm4x4_q4(SLM_TYPE_Q5_0, tiles, n_pairs, at, out); }
static void gemm4x4_q5_1(const uint8_t *tiles, int64_t n_pairs, const uint8_t *at, float out[4][4]) { gemm4x4_q4(SLM_TYPE_Q5_1, tiles, n_pairs, at, out); }

/* ---- matrix products ---- */

static void store_group(float *y, int64_t y_stride, int64_t tok0, int nt, int64_t g_row0,
                        int64_t r0, int64_t r1, float out[4][4]) {
    for (int j = 0; j < nt; j++)
        for (int r = 0; r < 4; r++) {
            const int64_t row = g_row0 + r;
            if (row >= r0 && row < r1) y[(tok0 + j) * y_stride + row] = out[j][r];
        }
}

/* `tiles(g)`: the packed tiles of group g (groups counted from row 0). */
static void matmul_tiles(const slm_weight *w, const uint8_t *packed, int64_t packed_row0,
                         const uint8_t *act, int64_t arb, int64_t n_tok, const uint8_t *act_tiles,
                         float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    const int64_t gbytes = n_pairs * slm_r4x2_tile_bytes(w->type);
    const int64_t g0 = r0 / 4, g1 = (r1 + 3) / 4;
    const int64_t per = w->type == SLM_TYPE_Q8_0 ? ACT8_BYTES : ACT4_BYTES;
    if (n_tok == 1) {
        act1_pair *ap = slm_scratch(0, (size_t)n_pairs * sizeof(act1_pair));
        if (!ap) { /* no memory for the prepared activations: one row at a time from plain rows */
            const slm_vec_dot_fn dot = x86_set(w->type)->traits.vec_dot;
            for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
            return;
        }
        prepare_act1(w->type, act, nb, ap);
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *tiles = packed + (g - packed_row0 / 4) * gbytes;
            float out[4][4];
            if (w->type == SLM_TYPE_Q8_0) gemv4_q8_0(tiles, nb, ap, out[0]);
            else if (w->type == SLM_TYPE_Q4_1) gemv4_q4_1(tiles, nb, ap, out[0]);
            else if (w->type == SLM_TYPE_Q5_0) gemv4_q5_0(tiles, nb, ap, out[0]);
            else if (w->type == SLM_TYPE_Q5_1) gemv4_q5_1(tiles, nb, ap, out[0]);
            else gemv4_q4_0(tiles, nb, ap, out[0]);
            store_group(y, y_stride, 0, 1, g * 4, r0, r1, out);
        }
        return;
    }
    const int64_t n_tt = (n_tok + 3) / 4;
    for (int64_t gc = g0; gc < g1; gc += ROW_CHUNK / 4) {
        const int64_t gc1 = gc + ROW_CHUNK / 4 < g1 ? gc + ROW_CHUNK / 4 : g1;
        for (int64_t tt = 0; tt < n_tt; tt++) {
            const int nt = n_tok - tt * 4 < 4 ? (int)(n_tok - tt * 4) : 4;
            const uint8_t *at = act_tiles + tt * n_pairs * per;
            for (int64_t g = gc; g < gc1; g++) {
                const uint8_t *tiles = packed + (g - packed_row0 / 4) * gbytes;
                float out[4][4];
                if (w->type == SLM_TYPE_Q8_0) gemm4x4_q8_0(tiles, n_pairs, nb, at, act, arb, tt * 4, n_tok, out);
                else if (w->type == SLM_TYPE_Q4_1) gemm4x4_q4_1(tiles, n_pairs, at, out);
                else if (w->type == SLM_TYPE_Q5_0) gemm4x4_q5_0(tiles, n_pairs, at, out);
                else if (w->type == SLM_TYPE_Q5_1) gemm4x4_q5_1(tiles, n_pairs, at, out);
                else gemm4x4_q4_0(tiles, n_pairs, at, out);
                store_group(y, y_stride, tt * 4, nt, g * 4, r0, r1, out);
            }
        }
    }
}

static uint8_t *alloc_act_tiles(int type, const uint8_t *act, int64_t arb, int64_t n_tok, int64_t nb) {
    const int64_t per = type == SLM_TYPE_Q8_0 ? ACT8_BYTES : ACT4_BYTES;
    const int64_t bytes = (n_tok + 3) / 4 * ((nb + 1) / 2) * per;
    uint8_t *at = slm_scratch(0, (size_t)bytes);
    if (at) prepare_act_tiles(type, act, arb, n_tok, nb, at);
    return at;
}

static void matmul_packed_quant(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                                float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    uint8_t *at = NULL;
    if (n_tok > 1) {
        at = alloc_act_tiles(w->type, act, arb, n_tok, w->cols / SLM_QK);
        if (!at) { /* no memory for the prefill tiles: the plain path needs none */
            slm_matmul_scalar_plain(w, act, arb, n_tok, y, y_stride, r0, r1);
            return;
        }
    }
    matmul_tiles(w, w->packed, 0, act, arb, n_tok, at, y, y_stride, r0, r1);
}

/* Plain rows: decode row by row; prefill packs a chunk of rows at a time into R4X2 on the fly. */
static void matmul_plain_quant(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                               float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const slm_kernel_set *ks = x86_set(w->type);
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r++)
            ks->traits.vec_dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    const int64_t nb = w->cols / SLM_QK, n_pairs = (nb + 1) / 2;
    const int64_t chunk_groups = ROW_CHUNK / 4;
    uint8_t *at = alloc_act_tiles(w->type, act, arb, n_tok, nb);
    uint8_t *buf = slm_scratch(1, (size_t)(chunk_groups * n_pairs * slm_r4x2_tile_bytes(w->type)));
    if (!at || !buf) {
        slm_matmul_scalar_plain(w, act, arb, n_tok, y, y_stride, r0, r1);
        return;
    }
    for (int64_t c0 = r0 / 4 * 4; c0 < r1; c0 += ROW_CHUNK) {
        const int64_t c1 = c0 + ROW_CHUNK < r1 ? c0 + ROW_CHUNK : r1;
        slm_pack_r4x2_rows(w, c0, (c1 - c0 + 3) / 4, buf);
        matmul_tiles(w, buf, c0, act, arb, n_tok, at, y, y_stride, c0 > r0 ? c0 : r0, c1);
    }
}

/* Float weights. 8 weights of row r starting at column c, as fp32. */
static inline __m256 load_w8(const slm_weight *w, int64_t r, int64_t c, const int is_f16) {
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    return is_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const slm_half *)row + c)))
                                   : _mm256_loadu_ps((const float *)row + c);
}

static inline float w_at(const slm_weight *w, int64_t r, int64_t c) {
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    return w->type == SLM_TYPE_F16 ? h2f(((const slm_half *)row)[c]) : ((const float *)row)[c];
}

/* 4 rows x NT tokens with every accumulator in a register (NT is a compile-time constant at
 * each call site), each converted weight vector used NT times. */
static inline __attribute__((always_inline)) void float_tile(const slm_weight *w, const uint8_t *act, int64_t arb,
                                                             int64_t t0, int64_t r, float *y, int64_t ys, const int NT,
                                                             int64_t r0, int64_t r1, const int is_f16) {
    const int64_t n = w->cols;
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 a[4];
        for (int j = 0; j < NT; j++) a[j] = _mm256_loadu_ps((const float *)(act + (t0 + j) * arb) + c);
        for (int i = 0; i < 4; i++) {
            const __m256 wv = load_w8(w, r + i, c, is_f16);
            for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(wv, a[j], acc[i][j]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NT && r + i >= r0 && r + i < r1; j++) {
            const float *a = (const float *)(act + (t0 + j) * arb);
            float sum = hsum_ps(acc[i][j]);
            for (int64_t k = c; k < n; k++) sum += w_at(w, r + i, k) * a[k];
            y[(t0 + j) * ys + r + i] = sum;
        }
}

static void matmul_float(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok,
                         float *y, int64_t y_stride, int64_t r0, int64_t r1) {
    const slm_vec_dot_fn dot = w->type == SLM_TYPE_F16 ? vec_dot_f16 : vec_dot_f32;
    if (n_tok == 1) {
        /* decode streams the weights: one row at a time is one sequential stream, which the
         * hardware prefetchers follow at full bandwidth (4 interleaved rows reach about half) */
        for (int64_t r = r0; r < r1; r++) dot(w->cols, &y[r], (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += 3) {
        const int nt = n_tok - t0 < 3 ? (int)(n_tok - t0) : 3;
        /* groups at absolute multiples of 4 rows: any split of the rows gives identical numbers */
        int64_t r = r0 / 4 * 4;
        for (; r < r1 && r + 4 <= w->rows; r += 4) {
            /* every (tokens, type) combination its own loop: no branch inside the hot loop */
            const int f16 = w->type == SLM_TYPE_F16;
            if (nt == 3) f16 ? float_tile(w, act, arb, t0, r, y, y_stride, 3, r0, r1, 1)
                             : float_tile(w, act, arb, t0, r, y, y_stride, 3, r0, r1, 0);
            else if (nt == 2) f16 ? float_tile(w, act, arb, t0, r, y, y_stride, 2, r0, r1, 1)
                                  : float_tile(w, act, arb, t0, r, y, y_stride, 2, r0, r1, 0);
            else f16 ? float_tile(w, act, arb, t0, r, y, y_stride, 1, r0, r1, 1)
                     : float_tile(w, act, arb, t0, r, y, y_stride, 1, r0, r1, 0);
        }
        for (r = r > r0 ? r : r0; r < r1; r++) /* the last rows when the count is not a multiple of 4 */
            for (int j = 0; j < nt; j++)
                dot(w->cols, &y[(t0 + j) * y_stride + r], (const uint8_t *)w->data + r * w->row_bytes,
                    act + (t0 + j) * arb);
    }
}

static const slm_kernel_set x86_sets[] = {
    [SLM_TYPE_F32] = {{SLM_TYPE_F32, slm_from_float_f32_copy, vec_dot_f32}, matmul_float, NULL, NULL, 0},
    [SLM_TYPE_F16] = {{SLM_TYPE_F32, slm_from_float_f32_copy, vec_dot_f16}, matmul_float, NULL, NULL, 0},
    [SLM_TYPE_Q4_0] = {{SLM_TYPE_Q8_0, from_float_q8_0, vec_dot_q4_0}, matmul_plain_quant, matmul_packed_quant,
                       slm_pack_r4x2, SLM_LAYOUT_R4X2},
    [SLM_TYPE_Q4_1] = {{SLM_TYPE_Q8_1, from_float_q8_1, vec_dot_q4_1}, matmul_plain_quant, matmul_packed_quant,
                       slm_pack_r4x2, SLM_LAYOUT_R4X2},
    [SLM_TYPE_Q8_0] = {{SLM_TYPE_Q8_0, from_float_q8_0, vec_dot_q8_0}, matmul_plain_quant, matmul_packed_quant,
                       slm_pack_r4x2, SLM_LAYOUT_R4X2},
    [SLM_TYPE_Q5_0] = {{SLM_TYPE_Q8_0, from_float_q8_0, vec_dot_q5_0}, matmul_plain_quant, matmul_packed_quant,
                       slm_pack_r4x2, SLM_LAYOUT_R4X2},
    [SLM_TYPE_Q5_1] = {{SLM_TYPE_Q8_1, from_float_q8_1, vec_dot_q5_1}, matmul_plain_quant, matmul_packed_quant,
                       slm_pack_r4x2, SLM_LAYOUT_R4X2},
};

static const slm_kernel_set *x86_set(int type) {
    if (type < 0 || type >= (int)(sizeof x86_sets / sizeof x86_sets[0])) return NULL;
    return x86_sets[type].matmul_plain ? &x86_sets[type] : NULL;
}
