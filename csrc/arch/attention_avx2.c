/* Attention for one query head with AVX2 + FMA (+ F16C for an fp16 cache). Head dims that are
 * not a multiple of 8 take the portable path. The softmax's exponentials are vectorized, and so
 * is the other exponential of the forward pass, SwiGLU's (a scalar expf per element cost a
 * 2560-wide FFN about 6 us a token per layer, between the weight streams). */
#include <immintrin.h>
#include <math.h>

#include "slm.h"
#include "model/attention.h"

static inline __m256 load8(const void *base, size_t i, int kv_f16) {
    return kv_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const slm_half *)base + i)))
                  : _mm256_loadu_ps((const float *)base + i);
}

/* e^x, x clamped to [-87, 88] (beyond, e^x is 0 or inf for the callers' purposes): x = n ln2 + r
 * with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7), times 2^n
 * built in the exponent bits. The same steps as the NEON path's exp4. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln2, split for exact n*hi */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void slm_swiglu_avx2(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
    }
    if (i < n) slm_swiglu_generic(g + i, u + i, n - i);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static void softmax_avx2(float *att, int n) {
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= n; p += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(att + p));
    float max = hmax8(m8);
    for (; p < n; p++) max = att[p] > max ? att[p] : max;
    __m256 s8 = _mm256_setzero_ps();
    const __m256 mx = _mm256_set1_ps(max);
    for (p = 0; p + 8 <= n; p += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(att + p), mx));
        _mm256_storeu_ps(att + p, e);
        s8 = _mm256_add_ps(s8, e);
    }
    float sum = hsum8(s8);
    for (; p < n; p++) {
        att[p] = expf(att[p] - max);
        sum += att[p];
    }
    const float inv = 1.0f / sum;
    const __m256 inv8 = _mm256_set1_ps(inv);
    for (p = 0; p + 8 <= n; p += 8) _mm256_storeu_ps(att + p, _mm256_mul_ps(_mm256_loadu_ps(att + p), inv8));
    for (; p < n; p++) att[p] *= inv;
}

void slm_attend_avx2(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos,
                     int head_dim, float scale, int kv_f16, float *att, float *out) {
    if (head_dim % 8 != 0) {
        slm_attend_generic(q, k, v, kv_stride, n_pos, head_dim, scale, kv_f16, att, out);
        return;
    }
    for (int p = 0; p < n_pos; p++) {
        const size_t off = (size_t)p * kv_stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= head_dim; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, off + i, kv_f16), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k, off + i + 8, kv_f16), a1);
        }
        if (i < head_dim) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, off + i, kv_f16), a0);
        att[p] = hsum8(_mm256_add_ps(a0, a1)) * scale;
    }
    softmax_avx2(att, n_pos);
    /* 32 outputs at a time stay in four registers while every position streams past */
    int c = 0;
    for (; c + 32 <= head_dim; c += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
        __m256 o2 = _mm256_setzero_ps(), o3 = _mm256_setzero_ps();
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride + c;
            const __m256 a = _mm256_broadcast_ss(&att[p]);
            o0 = _mm256_fmadd_ps(a, load8(v, off, kv_f16), o0);
            o1 = _mm256_fmadd_ps(a, load8(v, off + 8, kv_f16), o1);
            o2 = _mm256_fmadd_ps(a, load8(v, off + 16, kv_f16), o2);
            o3 = _mm256_fmadd_ps(a, load8(v, off + 24, kv_f16), o3);
        }
        _mm256_storeu_ps(out + c, o0);
        _mm256_storeu_ps(out + c + 8, o1);
        _mm256_storeu_ps(out + c + 16, o2);
        _mm256_storeu_ps(out + c + 24, o3);
    }
    for (; c < head_dim; c += 8) {
        __m256 o = _mm256_setzero_ps();
        for (int p = 0; p < n_pos; p++)
            o = _mm256_fmadd_ps(_mm256_broadcast_ss(&att[p]), load8(v, (size_t)p * kv_stride + c, kv_f16), o);
        _mm256_storeu_ps(out + c, o);
    }
}
