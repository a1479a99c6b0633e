/* One query head's attention over the cached positions, per ISA (internal to the C core). */
#ifndef SLM_MODEL_ATTENTION_H
#define SLM_MODEL_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* out (head_dim) = softmax(scale * q . k_p) weighted sum of v_p, for p in [0, n_pos).
 * k, v: this KV head's row at position 0; row p is p * kv_stride elements further on.
 * Elements are fp16 if kv_f16, else f32. att: scratch of n_pos floats. Softmax in f32. */
typedef void (*slm_attend_fn)(const float *q, const void *k, const void *v, size_t kv_stride,
                              int n_pos, int head_dim, float scale, int kv_f16, float *att,
                              float *out);

void slm_attend_generic(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos,
                        int head_dim, float scale, int kv_f16, float *att, float *out);
#if defined(__aarch64__)
void slm_attend_neon(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos,
                     int head_dim, float scale, int kv_f16, float *att, float *out);
#endif
#if defined(__x86_64__)
void slm_attend_avx2(const float *q, const void *k, const void *v, size_t kv_stride, int n_pos,
                     int head_dim, float scale, int kv_f16, float *att, float *out);
#endif

/* The attention path for an ISA (isa < 0: the active one), chosen in csrc/arch/dispatch.c
 * beside the matrix kernels; never NULL. */
slm_attend_fn slm_attend_for(int isa);

/* Softmax of att[0..n) in place, returns nothing; shared by every path. */
void slm_softmax(float *att, int n);

/* SwiGLU in place: g[i] = silu(g[i]) * u[i], i < n; per ISA like attention. */
typedef void (*slm_swiglu_fn)(float *g, const float *u, int64_t n);
void slm_swiglu_generic(float *g, const float *u, int64_t n);
#if defined(__aarch64__)
void slm_swiglu_neon(float *g, const float *u, int64_t n);
#endif
#if defined(__x86_64__)
void slm_swiglu_avx2(float *g, const float *u, int64_t n);
#endif
slm_swiglu_fn slm_swiglu_for(int isa);

#endif
