/* Attention for one query head with AVX2 + FMA (+ F16C for an fp16 cache). Head dims that are
 * not a multiple of 8 take the portable path. */
#include <immintrin.h>

#include "slm.h"
#include "model/attention.h"

static inline __m256 load8(const void *base, size_t i, int kv_f16) {
    return kv_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const slm_half *)base + i)))
                  : _mm256_loadu_ps((const float *)base + i);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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
    slm_softmax(att, n_pos);
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
