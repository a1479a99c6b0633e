/* Inner loops of the calibration kernels, shared between calib.c and the per-ISA files. */
#ifndef SLM_CALIB_INTERNAL_H
#define SLM_CALIB_INTERNAL_H

#include <stdint.h>

#define SLM_CALIB_MAX_THREADS 256

/* Memory loops (stream.c): plain C that the compiler vectorises for the baseline ISA; the read
 * loop also in wider loads where the core has them (arch/read_*.c, x86-64 only). */
uint64_t slm_calib_read_u64(const uint64_t *a, int64_t n);
typedef uint64_t (*slm_calib_read_fn)(const uint64_t *a, int64_t n);
uint64_t slm_calib_read_avx2(const uint64_t *a, int64_t n);
uint64_t slm_calib_read_avx512(const uint64_t *a, int64_t n);
void slm_calib_copy_u64(uint64_t *restrict dst, const uint64_t *restrict src, int64_t n);
void slm_calib_triad_f64(double *restrict a, const double *restrict b, const double *restrict c,
                         double k, int64_t n);

/* FMA loops: `iters` rounds of independent multiply-add chains held in registers; each
 * returns a value folded from every chain. Operations per round are the *_OPS constants. */
typedef float (*slm_calib_fma_fn)(int64_t iters, float seed);
float slm_calib_fma_scalar(int64_t iters, float seed);
#define SLM_CALIB_FMA_SCALAR_OPS (2 * 16)
float slm_calib_fma_avx2(int64_t iters, float seed);   /* fma_avx2.c, x86-64 only */
#define SLM_CALIB_FMA_AVX2_OPS (2 * 8 * 12)
float slm_calib_fma_neon(int64_t iters, float seed);   /* fma_neon.c, aarch64 only */
#define SLM_CALIB_FMA_NEON_OPS (2 * 4 * 12)

#endif /* SLM_CALIB_INTERNAL_H */
