/* 5-bit and K-type kernels for baseline Armv8-A NEON (Cortex-A72, Raspberry Pi 4). */
#define KQ_DOTPROD 0
#define KQ_FN(name) name##_neon
#include "arch/kquants_neon_body.h"

const slm_kernel_set *slm_kq_kernels_neon(int type) { return set_neon(type); }
