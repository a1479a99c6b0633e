/* AVX2 + FMA + F16C kernels of the K types (x86-64); the dispatcher calls them only when cpuid
 * says the CPU has all three. Q5_0 and Q5_1 share the 4-bit tiles of kernels_avx2.c.
 *
 * Every K super-block is read as 8 slices of 32 elements: 32 unsigned codes (at most 63), the
 * 16 group scales as int16 lanes [sc(2s) x8 | sc(2s+1) x8] matching maddubs' pair sums, and
 * per super-block the offset (sc*off) and min terms, which multiply the activation's bsums.
 *   decode (one token): each row is decoded slice by slice straight into the dot product;
 *   prefill: a chunk of rows is decoded once into slices in a scratch buffer and each row
 *     then meets 4 tokens at a time, so the decoding is shared by every token.
 * Integer sums are exact (checked against kquants.h); only the float accumulation order
 * differs from the scalar path. The Q8_K quantizer is bit-identical to the reference. */
#include <immintrin.h>
#include <string.h>

#include "arch/x86_prefetch.h"
#include "quant/kquants.h"

#define ROW_CHUNK 16 /* rows decoded at once for prefill (their slices stay in L1/L2) */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float h2f(slm_half h) { return _cvtsh_ss(h); }

/* ---- Q8_K activations ---- */

static void quantize_block_q8_K(const float *x, slm_block_q8_K *y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < SLM_QK_K; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (!amax) {
        memset(y, 0, sizeof *y);
        return;
    }
    float max = 0;
    const __m256 va = _mm256_set1_ps(amax);
    for (int i = 0; i < SLM_QK_K; i += 8) { /* the first element of largest magnitude, with its sign */
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), va, _CMP_EQ_OQ));
        if (hit) {
            max = x[i + __builtin_ctz((unsigned)hit)];
            break;
        }
    }
    const float iscale = -127.f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int i = 0; i < SLM_QK_K; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) /* round half to even, as the reference's nearest() */
            q[k] = _mm256_cvttps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vs),
                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* bsums of the two groups of 16: [g0 g1 g0 g1 | g0 g1 g0 g1] folded */
        const __m256i s01 = _mm256_add_epi32(q[0], q[1]), s23 = _mm256_add_epi32(q[2], q[3]);
        __m256i h = _mm256_hadd_epi32(s01, s23);
        h = _mm256_hadd_epi32(h, h);
        const __m128i g = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        y->bsums[i / 16] = (int16_t)_mm_cvtsi128_si32(g);
        y->bsums[i / 16 + 1] = (int16_t)_mm_extract_epi32(g, 1);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(y->qs + i), p);
    }
    y->d = 1 / iscale;
}

static void from_float_q8_K(const float *x, void *y, int64_t n) {
    for (int64_t i = 0; i < n / SLM_QK_K; i++) quantize_block_q8_K(x + i * SLM_QK_K, (slm_block_q8_K *)y + i);
}

/* ---- K super-blocks as slices ---- */

/* The group scales and the offset and min multipliers of one super-block, as int16 x 16. */
typedef struct {
    __m256i sc, k, mn;
    float d, dmin;
} sb_scales;

/* Byte controls picking int16 lanes (2s, 2s+1) of a 128-bit half: [lane 2s x8 | lane 2s+1 x8]. */
#define PAIR_CTL(b)                                                                                   \
    {b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1,                   \
     b + 2, b + 3, b + 2, b + 3, b + 2, b + 3, b + 2, b + 3, b + 2, b + 3, b + 2, b + 3, b + 2, b + 3, b + 2, b + 3}
static const uint8_t pair_ctl[4][32] __attribute__((aligned(32))) = {PAIR_CTL(0), PAIR_CTL(4), PAIR_CTL(8), PAIR_CTL(12)};
#undef PAIR_CTL

/* [sc(2s) x8 | sc(2s+1) x8] from the 16 int16 scales. */
static inline __m256i slice_scale(__m256i sc, int s) {
    const __m256i half = s < 4 ? _mm256_permute2x128_si256(sc, sc, 0x00) : _mm256_permute2x128_si256(sc, sc, 0x11);
    return _mm256_shuffle_epi8(half, _mm256_load_si256((const __m256i *)pair_ctl[s % 4]));
}

/* Q4_K/Q5_K: 8 scales and 8 mins of 6 bits from 12 bytes, each repeated for its two groups. */
static inline void scales_q45(const uint8_t *s12, slm_half d, slm_half dmin, sb_scales *o) {
    uint32_t u[4];
    memcpy(u, s12, 12);
    const uint32_t lo6 = 0x3f3f3f3f, lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
    u[3] = ((u[2] >> 4) & lo4) | ((u[1] >> 6) & lo2) << 4; /* mins 4..7 */
    const uint32_t mins03 = u[1] & lo6;
    u[1] = (u[2] & lo4) | ((u[0] >> 6) & lo2) << 4;        /* scales 4..7 */
    u[2] = mins03;
    u[0] &= lo6;                                           /* scales 0..3 */
    const __m128i v = _mm_loadu_si128((const __m128i *)u); /* sc0..7, m0..7 */
    o->sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
    o->mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v));
    o->k = _mm256_setzero_si256();
    o->d = h2f(d);
    o->dmin = h2f(dmin);
}

static inline void scales_q2(const slm_block_q2_K *b, sb_scales *o) {
    const __m128i v = _mm_loadu_si128((const __m128i *)b->scales);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    o->sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, m4));
    o->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4));
    o->k = _mm256_setzero_si256();
    o->d = h2f(b->d);
    o->dmin = h2f(b->dmin);
}

static inline void scales_q3(const slm_block_q3_K *b, sb_scales *o) {
    uint32_t a[4];
    memcpy(a, b->scales, 12);
    const uint32_t lo4 = 0x0f0f0f0f, lo2 = 0x03030303, hi = a[2];
    a[2] = ((a[0] >> 4) & lo4) | ((hi >> 4) & lo2) << 4;
    a[3] = ((a[1] >> 4) & lo4) | ((hi >> 6) & lo2) << 4;
    a[0] = (a[0] & lo4) | ((hi >> 0) & lo2) << 4;
    a[1] = (a[1] & lo4) | ((hi >> 2) & lo2) << 4;
    const __m128i v = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)a), _mm_set1_epi8(32));
    o->sc = _mm256_cvtepi8_epi16(v);
    o->k = _mm256_slli_epi16(o->sc, 2); /* codes are value + 4 */
    o->mn = _mm256_setzero_si256();
    o->d = h2f(b->d);
    o->dmin = 0.0f;
}

static inline void scales_q6(const slm_block_q6_K *b, sb_scales *o) {
    o->sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    o->k = _mm256_slli_epi16(o->sc, 5); /* codes are value + 32 */
    o->mn = _mm256_setzero_si256();
    o->d = h2f(b->d);
    o->dmin = 0.0f;
}

/* Codes of slice s (elements 32s .. 32s+31) of each type, unsigned bytes. */
static inline __m256i slice_q4(const uint8_t *qs, int s) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 2)));
    return _mm256_and_si256(s % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
}

static inline __m256i slice_q5(const uint8_t *qs, __m256i qh, int s) {
    const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, s), _mm256_set1_epi8(1));
    return _mm256_or_si256(slice_q4(qs, s), _mm256_slli_epi16(hb, 4));
}

static inline __m256i slice_q2(const uint8_t *qs, int s) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 4)));
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (s % 4)), _mm256_set1_epi8(3));
}

static inline __m256i slice_q3(const uint8_t *qs, __m256i hm, int s) {
    const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, s), _mm256_set1_epi8(1));
    return _mm256_or_si256(slice_q2(qs, s), _mm256_slli_epi16(hb, 2));
}

static inline __m256i slice_q6(const uint8_t *ql, const uint8_t *qh, int s) {
    const int h = s / 4, c = s % 4;
    const __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32 * (c & 1)));
    const __m256i lo = _mm256_and_si256(c < 2 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(0x0F));
    const __m256i hv = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hv, 2 * c), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* The 8 slices and scales of super-block `blk` of type T. */
static inline __attribute__((always_inline)) void sb_decode(int type, const uint8_t *blk, __m256i q[8], sb_scales *sc) {
    switch (type) {
    case SLM_TYPE_Q2_K: {
        const slm_block_q2_K *b = (const slm_block_q2_K *)blk;
        scales_q2(b, sc);
        for (int s = 0; s < 8; s++) q[s] = slice_q2(b->qs, s);
        break;
    }
    case SLM_TYPE_Q3_K: {
        const slm_block_q3_K *b = (const slm_block_q3_K *)blk;
        scales_q3(b, sc);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
        for (int s = 0; s < 8; s++) q[s] = slice_q3(b->qs, hm, s);
        break;
    }
    case SLM_TYPE_Q4_K: {
        const slm_block_q4_K *b = (const slm_block_q4_K *)blk;
        scales_q45(b->scales, b->d, b->dmin, sc);
        for (int s = 0; s < 8; s++) q[s] = slice_q4(b->qs, s);
        break;
    }
    case SLM_TYPE_Q5_K: {
        const slm_block_q5_K *b = (const slm_block_q5_K *)blk;
        scales_q45(b->scales, b->d, b->dmin, sc);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)b->qh);
        for (int s = 0; s < 8; s++) q[s] = slice_q5(b->qs, qh, s);
        break;
    }
    default: {
        const slm_block_q6_K *b = (const slm_block_q6_K *)blk;
        scales_q6(b, sc);
        for (int s = 0; s < 8; s++) q[s] = slice_q6(b->ql, b->qh, s);
        break;
    }
    }
}

/* ---- decode: one row . one Q8_K row ---- */

static inline __attribute__((always_inline)) float dot_k(int type, int64_t n, const void *w_row, const void *act_row) {
    const int64_t bb = slm_type_block_bytes(type);
    const slm_block_q8_K *a = act_row;
    const int has_k = type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q6_K;
    const int has_m = !has_k;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SLM_QK_K; b++) {
        __m256i q[8];
        sb_scales sc;
        prefetch_ahead((const uint8_t *)w_row + b * bb, bb);
        sb_decode(type, (const uint8_t *)w_row + b * bb, q, &sc);
        __m256i sum = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            const __m256i p = _mm256_maddubs_epi16(q[s], _mm256_loadu_si256((const __m256i *)(a[b].qs + 32 * s)));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, slice_scale(sc.sc, s)));
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)a[b].bsums);
        if (has_k) sum = _mm256_sub_epi32(sum, _mm256_madd_epi16(bs, sc.k));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(sc.d * a[b].d), _mm256_cvtepi32_ps(sum), acc);
        if (has_m)
            accm = _mm256_fmadd_ps(_mm256_set1_ps(sc.dmin * a[b].d), _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, sc.mn)), accm);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

#define K_DOT(T, ID)                                                                      \
    static void vec_dot_##T(int64_t n, float *s, const void *w_row, const void *act_row) { \
        *s = dot_k(ID, n, w_row, act_row);                                                \
    }
K_DOT(q2_K, SLM_TYPE_Q2_K)
K_DOT(q3_K, SLM_TYPE_Q3_K)
K_DOT(q4_K, SLM_TYPE_Q4_K)
K_DOT(q5_K, SLM_TYPE_Q5_K)
K_DOT(q6_K, SLM_TYPE_Q6_K)
#undef K_DOT

/* ---- prefill: decoded slices of a chunk of rows x 4 tokens ---- */

typedef struct {
    __m256i q[8], scale[8], k, mn;
    float d, dmin;
    float pad[6];
} sb_slices; /* 640 bytes, 32-byte aligned in an array */

static inline __attribute__((always_inline)) void decode_chunk(int type, const slm_weight *w, int64_t row0, int nr,
                                                               sb_slices *out) {
    const int64_t nsb = w->cols / SLM_QK_K, bb = slm_type_block_bytes(type);
    for (int r = 0; r < nr; r++)
        for (int64_t b = 0; b < nsb; b++) {
            sb_slices *o = &out[r * nsb + b];
            sb_scales sc;
            sb_decode(type, (const uint8_t *)w->data + (row0 + r) * w->row_bytes + b * bb, o->q, &sc);
            for (int s = 0; s < 8; s++) o->scale[s] = slice_scale(sc.sc, s);
            o->k = sc.k;
            o->mn = sc.mn;
            o->d = sc.d;
            o->dmin = sc.dmin;
        }
}

/* One row's decoded super-blocks . nt (<= 4) tokens' Q8_K rows. */
static inline __attribute__((always_inline)) void row_x4(const sb_slices *sb, int64_t nsb, const uint8_t *act, int64_t arb,
                                                         int nt, int has_k, int has_m, float out[4]) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nsb; b++) {
        const sb_slices *o = &sb[b];
        __m256i sum[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int s = 0; s < 8; s++) {
            const __m256i q = o->q[s], scale = o->scale[s];
            for (int t = 0; t < 4; t++) {
                if (t >= nt) break;
                const slm_block_q8_K *a = (const slm_block_q8_K *)(act + t * arb) + b;
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(a->qs + 32 * s)));
                sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p, scale));
            }
        }
        for (int t = 0; t < 4; t++) {
            if (t >= nt) break;
            const slm_block_q8_K *a = (const slm_block_q8_K *)(act + t * arb) + b;
            const __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            if (has_k) sum[t] = _mm256_sub_epi32(sum[t], _mm256_madd_epi16(bs, o->k));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(o->d * a->d), _mm256_cvtepi32_ps(sum[t]), acc[t]);
            if (has_m)
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-o->dmin * a->d), _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, o->mn)),
                                         acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = hsum_ps(acc[t]);
}

static inline __attribute__((always_inline)) void matmul_k(int type, const slm_weight *w, const uint8_t *act, int64_t arb,
                                                           int64_t n_tok, float *y, int64_t ys, int64_t r0, int64_t r1) {
    const int has_k = type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q6_K;
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) y[r] = dot_k(type, w->cols, (const uint8_t *)w->data + r * w->row_bytes, act);
        return;
    }
    const int64_t nsb = w->cols / SLM_QK_K;
    sb_slices *buf = slm_scratch(1, (size_t)(ROW_CHUNK * nsb) * sizeof(sb_slices));
    if (!buf) { /* no memory for the decoded chunk: row by row, token by token */
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t r = r0; r < r1; r++)
                y[t * ys + r] = dot_k(type, w->cols, (const uint8_t *)w->data + r * w->row_bytes, act + t * arb);
        return;
    }
    for (int64_t c0 = r0; c0 < r1; c0 += ROW_CHUNK) {
        const int nr = r1 - c0 < ROW_CHUNK ? (int)(r1 - c0) : ROW_CHUNK;
        decode_chunk(type, w, c0, nr, buf);
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
            for (int r = 0; r < nr; r++) {
                float out[4];
                row_x4(buf + r * nsb, nsb, act + t0 * arb, arb, nt, has_k, !has_k, out);
                for (int t = 0; t < nt; t++) y[(t0 + t) * ys + c0 + r] = out[t];
            }
        }
    }
}

#define K_MATMUL(T, ID)                                                                                      \
    static void matmul_##T(const slm_weight *w, const uint8_t *act, int64_t arb, int64_t n_tok, float *y,   \
                           int64_t ys, int64_t r0, int64_t r1) {                                            \
        matmul_k(ID, w, act, arb, n_tok, y, ys, r0, r1);                                                     \
    }
K_MATMUL(q2_K, SLM_TYPE_Q2_K)
K_MATMUL(q3_K, SLM_TYPE_Q3_K)
K_MATMUL(q4_K, SLM_TYPE_Q4_K)
K_MATMUL(q5_K, SLM_TYPE_Q5_K)
K_MATMUL(q6_K, SLM_TYPE_Q6_K)
#undef K_MATMUL

#define K_SET(T, ID) [ID] = {{SLM_TYPE_Q8_K, from_float_q8_K, vec_dot_##T}, matmul_##T, NULL, NULL, 0}
static const slm_kernel_set avx2_sets[] = {
    K_SET(q2_K, SLM_TYPE_Q2_K),
    K_SET(q3_K, SLM_TYPE_Q3_K),
    K_SET(q4_K, SLM_TYPE_Q4_K),
    K_SET(q5_K, SLM_TYPE_Q5_K),
    K_SET(q6_K, SLM_TYPE_Q6_K),
};
#undef K_SET

const slm_kernel_set *slm_kq_kernels_avx2(int type) {
    if (type < 0 || type >= (int)(sizeof avx2_sets / sizeof avx2_sets[0])) return NULL;
    return avx2_sets[type].matmul_plain ? &avx2_sets[type] : NULL;
}
