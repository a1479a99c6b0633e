/* Attention for one query head: the portable path (auto-vectorized by the compiler), the
 * shared softmax; and SwiGLU's portable path. */
#include <math.h>
#include <string.h>

#include "slm.h"
#include "model/attention.h"

void slm_softmax(float *att, int n) {
    float max = att[0];
    for (int p = 1; p < n; p++)
        if (att[p] > max) max = att[p];
    float sum = 0;
    for (int p = 0; p < n; p++) {
        att[p] = expf(att[p] - max);
        sum += att[p];
    }
    const float inv_sum = 1.0f / sum;
    for (int p = 0; p < n; p++) att[p] *= inv_sum;
}

static inline float kv_at(const void *base, size_t i, int kv_f16) {
    return kv_f16 ? slm_fp16_to_fp32(((const slm_half *)base)[i]) : ((const float *)base)[i];
}

/* Eight independent partial sums: the compiler vectorizes it without reassociating. */
static float dot_kv(const float *q, const void *k, size_t off, int n, int kv_f16) {
    float acc[8] = {0};
    int i = 0;
    if (!kv_f16) {
        const float *kf = (const float *)k + off;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += q[i + j] * kf[i + j];
    }
    for (; i < n; i++) acc[i % 8] += q[i] * kv_at(k, off + i, kv_f16);
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#define V_CHUNK 16

void slm_attend_generic(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos,
                        int head_dim, float scale, int kv_f16, float *att, float *out) {
    for (int p = 0; p < n_pos; p++) att[p] = dot_kv(q, k, (size_t)p * kv_stride, head_dim, kv_f16) * scale;
    slm_softmax(att, n_pos);
    /* out in chunks that stay in registers while every position streams past */
    for (int c = 0; c < head_dim; c += V_CHUNK) {
        const int w = head_dim - c < V_CHUNK ? head_dim - c : V_CHUNK;
        float acc[V_CHUNK] = {0};
        for (int p = 0; p < n_pos; p++) {
            const size_t off = (size_t)p * kv_stride + c;
            if (!kv_f16 && w == V_CHUNK) {
                const float *vf = (const float *)v + off;
                for (int j = 0; j < V_CHUNK; j++) acc[j] += att[p] * vf[j];
            } else {
                for (int j = 0; j < w; j++) acc[j] += att[p] * kv_at(v, off + j, kv_f16);
            }
        }
        memcpy(out + c, acc, (size_t)w * sizeof(float));
    }
}

void slm_swiglu_generic(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
